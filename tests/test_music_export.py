"""export-gb: replay ROMs of recordings, run in our emulator, reproduce the recordings' writes
in order and within one frame (or one timer tick) of their recorded times."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES, ApuWrites, Recording, Source, SourceKind
from gbsynth.common.formats import write_iodump, write_recordings
from gbsynth.emulator.core.cartridge.header import NINTENDO_LOGO, global_checksum, parse_header
from gbsynth.emulator.sources import GbsSession, RomSession
from gbsynth.music.composer import compose
from gbsynth.music.replay_rom import (
    ExportError,
    decode_stream,
    encode_stream,
    export_writes,
    tick_phase,
    timer_tick,
)
from gbsynth.music.rom import song_files

NR52 = 0xFF26


def replay(rom: bytes, seconds: float) -> ApuWrites:
    return RomSession(rom, "export.gb", explore=None).record(seconds).writes


def assert_replayed(original: ApuWrites, duration: int, replayed: ApuWrites, tick_cycles: int):
    n = len(original)
    assert np.array_equal(replayed.registers[:n], original.registers)
    assert np.array_equal(replayed.values[:n], original.values)
    # after the recording's end the player switches the sound off, and nothing else
    assert replayed.registers[n:].tolist() == [NR52] and replayed.values[n:].tolist() == [0]
    assert replayed.cycles[n] - replayed.cycles[0] >= duration - tick_cycles - original.cycles[0]
    # one constant delay (start-up, then the tick's phase), give or take less than a tick
    delay = replayed.cycles[:n] - original.cycles
    assert delay.max() - delay.min() < tick_cycles, (delay.min(), delay.max())
    return delay


@pytest.fixture(scope="module")
def nightmode(shared_dir):
    data = (shared_dir / "corpus/nightmode.gbs").read_bytes()
    return GbsSession(data, "nightmode.gbs").record(30)


def test_nightmode_recording_replays_within_a_frame(nightmode):
    rom, stream = export_writes(nightmode.writes, nightmode.duration_cycles, title="Nightmode")
    assert len(stream.banks) >= 2  # 28,000 writes: more than one 16 KiB bank
    header = parse_header(rom)
    assert header.type_name == "MBC5" and header.checksum_ok and header.title == "NIGHTMODE"
    assert rom[0x104:0x134] == NINTENDO_LOGO
    assert int.from_bytes(rom[0x14E:0x150], "big") == global_checksum(rom)
    replayed = replay(rom, 31)
    delay = assert_replayed(nightmode.writes, nightmode.duration_cycles, replayed, FRAME_CYCLES)
    # each play call's burst stays together: the spread is the player's own write time
    assert delay.max() - delay.min() < FRAME_CYCLES // 4


def test_a_generated_song_replays_within_a_frame():
    gbs, _ = song_files(compose(11, 4))
    recording = GbsSession(gbs, "song.gbs").record(30)
    rom, _ = export_writes(recording.writes, recording.duration_cycles, title="song")
    assert_replayed(recording.writes, recording.duration_cycles, replay(rom, 31), FRAME_CYCLES)


def test_timer_ticks_replay_closer(nightmode):
    tick = timer_tick(240)
    assert tick.uses_timer and abs(tick.hz - 240) < 2
    rom, _ = export_writes(nightmode.writes, nightmode.duration_cycles, tick=tick)
    replayed = replay(rom, 31)
    delay = assert_replayed(nightmode.writes, nightmode.duration_cycles, replayed, FRAME_CYCLES)
    # a tick of 17,408 cycles, plus the time the player takes for the writes before
    assert delay.max() - delay.min() < tick.cycles + 4096


def synthetic(ticks: list[int], per_tick: int, period: int = FRAME_CYCLES) -> ApuWrites:
    """``per_tick`` writes (NR13/NR23 and wave RAM values) in each of ``ticks``."""
    cycles, registers, values = [], [], []
    spacing = min(30, (period - 2000) // per_tick)
    for k, t in enumerate(ticks):
        for j in range(per_tick):
            cycles.append(t * period + 1000 + spacing * j)
            registers.append(0xFF30 + (j % 16) if j % 3 else 0xFF13)
            values.append((k * 7 + j) & 0xFF)
    return ApuWrites.from_arrays(cycles, registers, values)


def test_stream_round_trips_across_banks_and_long_waits():
    writes = synthetic([0, 1, 2, 5, 70_000, 200_000], per_tick=3000)
    stream = encode_stream(writes, 200_010 * FRAME_CYCLES)
    assert len(stream.banks) >= 3
    decoded, end = decode_stream(stream.banks)
    assert [(r, v) for _, r, v in decoded] == list(
        zip(writes.registers.tolist(), writes.values.tolist(), strict=True)
    )
    ticks = (writes.cycles + stream.phase) // FRAME_CYCLES
    assert [t for t, _, _ in decoded] == ticks.tolist()
    assert end == stream.ticks
    assert all(len(bank) <= 0x4000 for bank in stream.banks)


def test_many_banks_replay_in_the_emulator():
    writes = synthetic(list(range(0, 600, 2)), per_tick=90)  # 27,000 writes, 54 KB
    duration = 601 * FRAME_CYCLES
    rom, stream = export_writes(writes, duration)
    assert len(stream.banks) >= 4 and len(rom) == 128 * 1024
    assert_replayed(writes, duration, replay(rom, duration / CPU_HZ + 0.1), FRAME_CYCLES)


def test_long_silences_chain_waits_in_the_emulator():
    tick = timer_tick(4096)
    assert tick.cycles == 1024
    writes = ApuWrites.from_arrays(
        [100, 70_000 * 1024 + 100, 70_001 * 1024 + 100], [0xFF24, 0xFF25, 0xFF24], [0x77, 1, 2]
    )
    duration = 70_010 * 1024
    rom, stream = export_writes(writes, duration, tick=tick)
    assert decode_stream(stream.banks)[1] == stream.ticks
    replayed = replay(rom, duration / CPU_HZ + 0.1)
    assert_replayed(writes, duration, replayed, tick.cycles)


def test_loop_starts_again():
    writes = ApuWrites.from_arrays([0, FRAME_CYCLES * 10], [0xFF24, 0xFF24], [0x11, 0x22])
    rom, _ = export_writes(writes, FRAME_CYCLES * 20, loop=True)
    replayed = replay(rom, 1.0)
    assert replayed.values.tolist()[:6] == [0x11, 0x22] * 3
    assert NR52 not in replayed.registers.tolist()


def test_tick_phase_keeps_bursts_together():
    # bursts at 65,000-66,000 cycles into each frame: boundaries go in the gap
    cycles = np.array([k * FRAME_CYCLES + 65_000 + j * 100 for k in range(5) for j in range(11)])
    phase = tick_phase(cycles, FRAME_CYCLES)
    ticks = (cycles + phase) // FRAME_CYCLES
    assert len(set(ticks.reshape(5, 11)[:, 0] - ticks.reshape(5, 11)[:, -1])) == 1
    assert np.all(ticks.reshape(5, 11) == ticks.reshape(5, 11)[:, :1])


@pytest.mark.parametrize("hz", [10, 5000])
def test_timer_rate_limits(hz):
    with pytest.raises(ExportError, match="--tick-hz"):
        timer_tick(hz)


# -- the command line ------------------------------------------------------------------------


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "gbsynth", "export-gb", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def recording_files(tmp_path_factory, nightmode):
    folder = tmp_path_factory.mktemp("export")
    other = Recording(
        "other",
        Source("0" * 64, "other.gbs", SourceKind.GBS, "Other"),
        ApuWrites.from_arrays([10, 20], [0xFF24, 0xFF25], [0x77, 0xFF]),
        1000,
    )
    avro = folder / "two.avro"
    write_recordings(avro, [nightmode, other])
    dump = folder / "nightmode.txt"
    write_iodump(nightmode, dump)
    return folder, avro, dump


def test_cli_exports_avro_and_iodump_files(recording_files, nightmode):
    folder, avro, dump = recording_files
    for source in (avro, dump):
        out = folder / f"{source.stem}.gb"
        result = run_cli(str(source), "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert "writes over" in result.stderr
        assert_replayed(
            nightmode.writes, nightmode.duration_cycles, replay(out.read_bytes(), 31), FRAME_CYCLES
        )
    second = folder / "second.gb"
    assert run_cli(str(avro), "--index", "1", "--out", str(second)).returncode == 0
    assert parse_header(second.read_bytes()).title == "OTHER"


def test_cli_window_opens_with_the_register_state(recording_files, nightmode):
    folder, avro, _ = recording_files
    out = folder / "window.gb"
    result = run_cli(str(avro), "--start", "10", "--seconds", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    replayed = replay(out.read_bytes(), 6)
    start = 10 * CPU_HZ
    body = nightmode.writes.between(start, start + 5 * CPU_HZ)
    # a snapshot of the registers first (NR52 first of all), then the window's writes
    assert replayed.registers[0] == NR52
    tail = replayed.registers[-len(body) - 1 : -1]
    assert np.array_equal(tail, body.registers)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.avro"], "no such file"),
        (["{avro}", "--index", "5"], "--index 5 is outside 0..1"),
        (["{bad}"], "not an Avro recordings/segments file nor gbsplay iodumper text"),
        (["{avro}", "--tick-hz", "99999"], "--tick-hz"),
        (["{avro}", "--start", "100"], "past the recording's end"),
    ],
)
def test_cli_errors_are_one_line(recording_files, args, message):
    folder, avro, _ = recording_files
    bad = folder / "bad.txt"
    bad.write_text("hello\n")
    args = [a.format(avro=avro, bad=bad) for a in args]
    result = run_cli(*args, "--out", str(folder / "x.gb"))
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
