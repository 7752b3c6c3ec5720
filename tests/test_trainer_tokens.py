"""The event representation: round trips on real music, the timing bound, dropped writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gbsynth.common.events import ApuWrites, Recording
from gbsynth.emulator.sources import open_session
from gbsynth.synth import render
from gbsynth.trainer import tokens


@pytest.fixture(scope="module")
def recordings(shared_dir: Path) -> list[Recording]:
    """20 s of nightmode.gbs, two DevSound subsongs and a DevSoundX ROM."""
    corpus = shared_dir / "corpus"
    sessions = [
        open_session(corpus / "nightmode.gbs"),
        open_session(corpus / "DevSound_demo.gbs", subsong=1),
        open_session(corpus / "DevSound_demo.gbs", subsong=3),
        open_session(shared_dir / "roms/music/devsoundx/DevSoundX.gb", seed=0),
    ]
    return [s.record(20.0) for s in sessions]


def test_round_trip_keeps_every_audible_write_in_order_within_the_timing_bound(recordings):
    for rec in recordings:
        audible = tokens.audible_writes(rec.writes)
        events = tokens.encode(rec.writes)
        tokens.check_events(events)
        decoded = tokens.decode(events)
        assert np.array_equal(decoded.registers, audible.registers)
        assert np.array_equal(decoded.values, audible.values)
        error = np.abs(decoded.cycles - audible.cycles)
        assert error.max() <= tokens.MAX_TIMING_ERROR_CYCLES
        decoded.validate()
        # Lossless mode keeps every write.
        every = tokens.decode(tokens.encode(rec.writes, drop_inaudible=False))
        assert np.array_equal(every.registers, rec.writes.registers)
        assert np.abs(every.cycles - rec.writes.cycles).max() <= tokens.MAX_TIMING_ERROR_CYCLES


def test_dropped_writes_leave_the_rendered_audio_unchanged(recordings):
    for rec in recordings:
        audible = tokens.audible_writes(rec.writes)
        assert len(audible) < len(rec.writes)
        original = render(rec)
        pruned = render(rec.with_writes(audible))
        assert original.shape == pruned.shape
        assert np.abs(original - pruned).max() < 1e-6, rec.source.file_name
    # nightmode's driver rewrites most registers every frame.
    nightmode = recordings[0]
    assert len(tokens.audible_writes(nightmode.writes)) < 0.2 * len(nightmode.writes)


def test_writes_with_effects_are_never_dropped():
    def keep(registers, values):
        writes = ApuWrites.from_arrays(range(len(registers)), registers, values)
        return tokens.audible_writes(writes).values.tolist()

    # Power on, then triggers, envelope (zombie) and wave RAM rewrites all stay.
    assert keep([0xFF26, 0xFF14, 0xFF14], [0x80, 0x87, 0x87]) == [0x80, 0x87, 0x87]
    assert keep([0xFF26, 0xFF12, 0xFF12], [0x80, 0xF3, 0xF3]) == [0x80, 0xF3, 0xF3]
    assert keep([0xFF26, 0xFF30, 0xFF30], [0x80, 0x12, 0x12]) == [0x80, 0x12, 0x12]
    # A plain rewrite of a frequency register goes; a power cycle forgets what was held.
    assert keep([0xFF26, 0xFF13, 0xFF13], [0x80, 0x40, 0x40]) == [0x80, 0x40]
    assert keep([0xFF26, 0xFF13, 0xFF26, 0xFF26, 0xFF13], [0x80, 1, 0, 0x80, 1]) == [
        0x80, 1, 0, 0x80, 1,
    ]  # fmt: skip
    # A length reload matters once the length counter has run (NRx4 bit 6).
    assert keep([0xFF26, 0xFF11, 0xFF11], [0x80, 0x80, 0x80]) == [0x80, 0x80, 0x80]
    regs = [0xFF26, 0xFF14, 0xFF11, 0xFF11, 0xFF14, 0xFF11]
    assert keep(regs, [0x80, 0x00, 0x80, 0x80, 0x40, 0x80]) == [0x80, 0x00, 0x80, 0x40, 0x80]
    # Writes while the APU is off are kept as they are.
    assert keep([0xFF13, 0xFF13], [5, 5]) == [5, 5]


def test_long_gaps_become_waits_and_bad_input_is_refused():
    writes = ApuWrites.from_arrays(
        [0, 10 * tokens.DT_MAX_CYCLES + 123], [0xFF26, 0xFF24], [0x80, 7]
    )
    events = tokens.encode(writes)
    assert (events[:, tokens.REG] == tokens.WAIT).sum() == 10
    decoded = tokens.decode(events)
    assert decoded.registers.tolist() == [0xFF26, 0xFF24]
    assert abs(int(decoded.cycles[1]) - 10 * tokens.DT_MAX_CYCLES - 123) <= 2
    assert tokens.duration_cycles(events) == int(decoded.cycles[-1])
    with pytest.raises(ValueError):
        tokens.encode(writes, start_cycle=5)
    with pytest.raises(ValueError):
        tokens.decode(np.array([[tokens.N_DT, 0, 0]]))
    flat = tokens.flatten(events)
    assert len(flat) == 3 * len(events) - 10  # a wait has no val token
    assert np.array_equal(tokens.unflatten(flat), events)


def test_vocabulary_is_what_the_docstring_says():
    assert (tokens.N_DT, tokens.N_REG, tokens.N_VAL) == (193, 49, 256)
    assert tokens.DT_CYCLES[0] == 0 and np.all(np.diff(tokens.DT_CYCLES) > 0)
    assert np.array_equal(tokens.DT_CYCLES[1:65], np.arange(4, 257, 4))
    assert tokens.MAX_TIMING_ERROR_CYCLES == 6910
    assert "6,910 cycles" in tokens.__doc__
