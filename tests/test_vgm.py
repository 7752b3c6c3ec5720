import gzip
import struct

import numpy as np
import pytest

from gbsynth.common.events import CPU_HZ, ApuWrites
from gbsynth.common.vgm import VGM_RATE, VgmError, read_vgm, read_vgm_info, write_vgm


def _writes(n: int = 2000, seed: int = 1) -> ApuWrites:
    rng = np.random.default_rng(seed)
    cycles = np.cumsum(rng.integers(0, 20_000, n))
    regs = rng.integers(0xFF10, 0xFF40, n)
    return ApuWrites.from_arrays(cycles, regs, rng.integers(0, 256, n))


def test_round_trip_keeps_every_write_within_one_sample():
    w = _writes()
    duration = int(w.cycles[-1]) + CPU_HZ
    data = write_vgm(w, duration, title="Song", author="Me")
    back, back_duration, info = read_vgm(data)
    assert info.title == "Song" and info.author == "Me" and info.dmg_clock == CPU_HZ
    assert np.array_equal(back.registers, w.registers)
    assert np.array_equal(back.values, w.values)
    one_sample = CPU_HZ / VGM_RATE
    assert np.abs(back.cycles - w.cycles).max() <= one_sample
    assert abs(back_duration - duration) <= one_sample


def test_timing_does_not_drift_over_an_hour():
    # one write every 735 samples (a 60 Hz frame) for an hour
    n = 60 * 60 * 60
    samples = np.arange(n, dtype=np.int64) * 735
    cycles = samples * CPU_HZ // VGM_RATE
    w = ApuWrites.from_arrays(cycles, np.full(n, 0xFF12), np.zeros(n))
    back, _, _ = read_vgm(write_vgm(w, int(cycles[-1]) + 1))
    assert np.array_equal(back.cycles, cycles)


def test_gzip_and_cut_and_loop():
    w = _writes(500)
    data = write_vgm(w, int(w.cycles[-1]) + 10)
    full, duration, _ = read_vgm(gzip.compress(data))
    assert full == read_vgm(data)[0]
    cut, cut_duration, _ = read_vgm(data, max_seconds=0.5)
    assert cut_duration == CPU_HZ // 2 and len(cut) == int((w.cycles < CPU_HZ // 2).sum())
    # loop from the start of the data (loop offset = data offset)
    looped = bytearray(data)
    struct.pack_into("<I", looped, 0x1C, 0x100 - 0x1C)
    twice, twice_duration, _ = read_vgm(bytes(looped), max_loops=1)
    assert len(twice) == 2 * len(full) and abs(twice_duration - 2 * duration) <= 1


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: b"RIFF" + d[4:], "signature"),
        (lambda d: d[:8] + struct.pack("<I", 0x150) + d[12:], "1.61"),
        (lambda d: d[:0x80] + b"\0\0\0\0" + d[0x84:], "DMG"),
        (lambda d: d[:0x110], "truncated"),
        (lambda d: d[:0x100] + b"\x01" + d[0x101:], "unknown VGM command"),
        (lambda d: b"\x1f\x8b broken", "gzip"),
    ],
)
def test_bad_files_get_clear_errors(mutate, message):
    data = write_vgm(_writes(200), 10 * CPU_HZ)
    with pytest.raises(VgmError, match=message):
        read_vgm(mutate(data))


def test_header_fields():
    data = write_vgm(_writes(10), CPU_HZ)
    info = read_vgm_info(data)
    assert info.version == 0x161 and info.data_offset == 0x100 and info.loop_offset == 0
    assert info.total_samples == VGM_RATE
