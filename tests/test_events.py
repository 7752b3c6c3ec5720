import numpy as np
import pytest

from gbsynth.common.events import (
    ApuWrites,
    Phase,
    PhaseMark,
    Recording,
    RecordingError,
    Source,
    SourceKind,
    make_recording_id,
)

SRC = Source(sha256="ab" * 32, file_name="x.gbs", kind=SourceKind.GBS, title="X", subsong=1)


def test_from_arrays_widens_low_byte_registers():
    w = ApuWrites.from_arrays([0, 5, 5], [0x12, 0x26, 0x3F], [1, 2, 3])
    assert w.registers.tolist() == [0xFF12, 0xFF26, 0xFF3F]
    assert w.cycles.dtype == np.int64 and w.values.dtype == np.uint8


@pytest.mark.parametrize(
    "cycles,regs,match",
    [([5, 4], [0xFF10, 0xFF10], "backwards"), ([0], [0xFF40], "outside"), ([-1], [0xFF10], "neg")],
)
def test_validate_rejects(cycles, regs, match):
    with pytest.raises(RecordingError, match=match):
        ApuWrites.from_arrays(cycles, regs, [0] * len(cycles))


def test_between_and_concat():
    w = ApuWrites.from_arrays(np.arange(10) * 100, [0xFF10] * 10, np.arange(10))
    part = w.between(200, 500)
    assert part.cycles.tolist() == [200, 300, 400]
    assert ApuWrites.concat([w.between(0, 500), w.between(500, 10_000)]) == w


def test_recording_phase_spans():
    rec = Recording(
        "r",
        SRC,
        ApuWrites.empty(),
        duration_cycles=1000,
        phases=(
            PhaseMark(100, Phase.PRESS),
            PhaseMark(300, Phase.SETTLE),
            PhaseMark(400, Phase.OBSERVE),
        ),
    )
    assert rec.observing_spans() == [(0, 100), (400, 1000)]


def test_recording_rejects_write_past_duration():
    with pytest.raises(RecordingError):
        Recording("r", SRC, ApuWrites.from_arrays([10], [0xFF10], [0]), duration_cycles=10)


def test_recording_id_is_deterministic():
    assert make_recording_id(SRC, 7) == make_recording_id(SRC, 7)
    assert make_recording_id(SRC, 7) != make_recording_id(SRC, 8)


def test_register_snapshot_restores_state_without_triggers():
    from gbsynth.common.events import register_snapshot

    w = ApuWrites.from_arrays(
        [0, 10, 20, 30, 40, 50],
        [0xFF26, 0xFF1A, 0xFF30, 0xFF14, 0xFF12, 0xFF12],
        [0x80, 0x80, 0x12, 0x87, 0xF0, 0xA0],
    )
    snap = register_snapshot(w, 45)
    pairs = list(zip(snap.registers.tolist(), snap.values.tolist(), strict=True))
    assert pairs[0] == (0xFF26, 0x80)  # power first
    assert pairs[1] == (0xFF1A, 0x00) and pairs[2] == (0xFF30, 0x12)  # wave RAM with DAC off
    assert (0xFF14, 0x07) in pairs  # trigger bit cleared
    assert (0xFF12, 0xF0) in pairs and (0xFF12, 0xA0) not in pairs  # value before the cut
    assert pairs[-1] == (0xFF1A, 0x80)  # wave DAC back on last
    assert snap.cycles.tolist() == [0] * len(snap)
    assert len(register_snapshot(w, 0)) == 0
