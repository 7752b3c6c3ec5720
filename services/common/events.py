"""The APU event model shared by every service.

A *recording* is the exact log of writes a Game Boy program made to the sound
registers (0xFF10-0xFF3F, wave RAM included): for each write the T-cycle at
which it happened (4,194,304 per second, counted from the start of the
recording), the register address and the value. Nothing is filtered, so the
log is lossless for all four channels, the master registers and wave RAM.

Writes are held as three numpy columns (``ApuWrites``), never as one Python
object per write: a fast emulator produces about a million writes per second.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

CPU_HZ = 4_194_304
"""T-cycles per second of the DMG master clock."""

FRAME_CYCLES = 70_224
"""T-cycles per LCD frame (154 lines of 456 cycles): 59.73 frames per second."""

REGISTER_FIRST = 0xFF10
REGISTER_LAST = 0xFF3F
WAVE_RAM_FIRST = 0xFF30

CYCLE_DTYPE = np.dtype(np.int64)
REGISTER_DTYPE = np.dtype(np.uint16)
VALUE_DTYPE = np.dtype(np.uint8)


class RecordingError(ValueError):
    """A recording or its columns are malformed."""


class SourceKind(StrEnum):
    """What kind of file a recording was made from."""

    ROM = "rom"
    GBS = "gbs"
    VGM = "vgm"
    GENERATED = "generated"
    MUSICXML = "musicxml"
    MIDI = "midi"
    MOD = "mod"
    ABC = "abc"
    """Scores and tracker modules: arranged for the Game Boy, played by our sound driver."""

    @property
    def is_score(self) -> bool:
        return self in SCORE_KINDS


SCORE_KINDS = frozenset({SourceKind.MUSICXML, SourceKind.MIDI, SourceKind.MOD, SourceKind.ABC})


class Phase(StrEnum):
    """What the emulator was doing from a phase mark on.

    ``BOOT`` (no input yet) and ``OBSERVE`` spans hold what the program plays on
    its own; ``PRESS`` and ``SETTLE`` spans may hold sound effects caused by the
    explorer's input, so recordings keep no writes from them.
    """

    BOOT = "boot"
    OBSERVE = "observe"
    PRESS = "press"
    SETTLE = "settle"


@dataclass(frozen=True)
class Source:
    """The file a recording came from."""

    sha256: str
    file_name: str
    kind: SourceKind
    title: str = ""
    subsong: int | None = None
    """Subsong number counting from 1 (as gbsplay's command line), for GBS files; for an
    arranged score, the part (a long piece is recorded in parts cut at bar lines)."""
    licence: str = ""
    """The file's licence from its collection's ``MANIFEST.tsv`` (scores: "unknown" without)."""
    transpose: int = 0
    """Semitones an arranged score was shifted by (augmentation)."""
    tempo_factor: float = 1.0
    """Factor an arranged score's tempo was multiplied by (augmentation)."""


@dataclass(frozen=True)
class PhaseMark:
    """From ``cycle`` on (recording time), the emulator was in ``phase``."""

    cycle: int
    phase: Phase


@dataclass(frozen=True, eq=False)
class ApuWrites:
    """Sound-register writes as numpy columns of equal length.

    ``cycles`` are int64 T-cycles, non-decreasing; ``registers`` are full
    addresses (uint16, 0xFF10-0xFF3F); ``values`` are uint8.
    """

    cycles: np.ndarray
    registers: np.ndarray
    values: np.ndarray

    @classmethod
    def empty(cls) -> ApuWrites:
        return cls(np.empty(0, CYCLE_DTYPE), np.empty(0, REGISTER_DTYPE), np.empty(0, VALUE_DTYPE))

    @classmethod
    def from_arrays(cls, cycles, registers, values, *, validate: bool = True) -> ApuWrites:
        """Build from any array-likes, converting dtypes; checks the columns by default."""
        registers = np.asarray(registers)
        if registers.size and registers.max(initial=0) <= 0xFF:
            # Low-byte form (0x10-0x3F), as on the wire: widen to full addresses.
            registers = registers.astype(REGISTER_DTYPE) | 0xFF00
        writes = cls(
            np.ascontiguousarray(cycles, dtype=CYCLE_DTYPE),
            np.ascontiguousarray(registers, dtype=REGISTER_DTYPE),
            np.ascontiguousarray(values, dtype=VALUE_DTYPE),
        )
        if validate:
            writes.validate()
        return writes

    @classmethod
    def concat(cls, parts: list[ApuWrites]) -> ApuWrites:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.cycles for p in parts]),
            np.concatenate([p.registers for p in parts]),
            np.concatenate([p.values for p in parts]),
        )

    def __len__(self) -> int:
        return int(self.cycles.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ApuWrites):
            return NotImplemented
        return (
            np.array_equal(self.cycles, other.cycles)
            and np.array_equal(self.registers, other.registers)
            and np.array_equal(self.values, other.values)
        )

    def validate(self) -> None:
        """Raise ``RecordingError`` unless the columns form a valid write log."""
        n = len(self.cycles)
        if len(self.registers) != n or len(self.values) != n:
            raise RecordingError(
                f"column lengths differ: cycles={n} registers={len(self.registers)} "
                f"values={len(self.values)}"
            )
        if self.cycles.dtype != CYCLE_DTYPE or self.registers.dtype != REGISTER_DTYPE:
            raise RecordingError("columns must be int64 cycles and uint16 registers")
        if self.values.dtype != VALUE_DTYPE:
            raise RecordingError("values must be uint8")
        if n == 0:
            return
        if self.cycles[0] < 0:
            raise RecordingError(f"negative cycle {int(self.cycles[0])}")
        if n > 1 and np.any(np.diff(self.cycles) < 0):
            i = int(np.argmax(np.diff(self.cycles) < 0))
            raise RecordingError(
                f"cycles go backwards at write {i + 1}: "
                f"{int(self.cycles[i])} then {int(self.cycles[i + 1])}"
            )
        bad = (self.registers < REGISTER_FIRST) | (self.registers > REGISTER_LAST)
        if np.any(bad):
            i = int(np.argmax(bad))
            raise RecordingError(
                f"write {i} is to 0x{int(self.registers[i]):04X}, outside the sound "
                f"registers 0x{REGISTER_FIRST:04X}-0x{REGISTER_LAST:04X}"
            )

    def between(self, start_cycle: int, end_cycle: int) -> ApuWrites:
        """Writes with ``start_cycle <= cycle < end_cycle`` (a view, not rebased)."""
        lo, hi = np.searchsorted(self.cycles, [start_cycle, end_cycle], side="left")
        return ApuWrites(self.cycles[lo:hi], self.registers[lo:hi], self.values[lo:hi])

    def shifted(self, delta_cycles: int) -> ApuWrites:
        """The same writes with ``delta_cycles`` added to every cycle."""
        return ApuWrites(self.cycles + delta_cycles, self.registers, self.values)


# Order in which a register snapshot is replayed: power first (NR52), then wave
# RAM with the wave DAC off (NR30 = 0) so every byte lands, then the other
# registers, and NR30's real value last.
_NR52 = 0xFF26
_NR30 = 0xFF1A
_TRIGGER_REGISTERS = (0xFF14, 0xFF19, 0xFF1E, 0xFF23)
_SNAPSHOT_ORDER = (
    [_NR52]
    + list(range(WAVE_RAM_FIRST, REGISTER_LAST + 1))
    + [r for r in range(REGISTER_FIRST, 0xFF27) if r not in (_NR52, _NR30)]
    + [_NR30]
)


def register_snapshot(writes: ApuWrites, at_cycle: int) -> ApuWrites:
    """Writes at cycle 0 that leave the registers as ``writes`` did just before ``at_cycle``.

    Only registers written at least once appear. Trigger bits (NRx4 bit 7) are
    cleared: a snapshot restores settings, it does not restart notes. Used to
    make a cut-out piece of a recording self-contained.
    """
    cut = int(np.searchsorted(writes.cycles, at_cycle, side="left"))
    last_index = np.full(REGISTER_LAST - REGISTER_FIRST + 1, -1, dtype=np.int64)
    np.maximum.at(
        last_index,
        writes.registers[:cut].astype(np.int64) - REGISTER_FIRST,
        np.arange(cut, dtype=np.int64),
    )
    registers, values = [], []

    def restore(register: int, value: int | None = None) -> None:
        index = int(last_index[register - REGISTER_FIRST])
        if index >= 0:
            registers.append(register)
            values.append(int(writes.values[index]) if value is None else value)

    restore(_NR52)
    if last_index[WAVE_RAM_FIRST - REGISTER_FIRST :].max() >= 0:
        registers.append(_NR30)  # wave DAC off while wave RAM is restored
        values.append(0)
    for register in _SNAPSHOT_ORDER[1:]:
        index = int(last_index[register - REGISTER_FIRST])
        trigger_free = int(writes.values[index]) & 0x7F if index >= 0 else None
        restore(register, trigger_free if register in _TRIGGER_REGISTERS else None)
    n = len(registers)
    return ApuWrites(
        np.zeros(n, CYCLE_DTYPE),
        np.array(registers, dtype=REGISTER_DTYPE),
        np.array(values, dtype=VALUE_DTYPE),
    )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_recording_id(source: Source, seed: int | None = None, start_cycle: int = 0) -> str:
    """A deterministic id: the same file, subsong, seed and start give the same id.

    Reprocessing the same job therefore never creates a second recording downstream.
    """
    parts = [source.sha256, source.kind.value, str(source.subsong or 0), str(seed or 0)]
    if start_cycle:
        parts.append(str(start_cycle))
    if source.transpose or source.tempo_factor != 1.0:
        # each augmented variant of an arranged score is a recording of its own
        parts.append(f"arrangement:{source.transpose}:{source.tempo_factor!r}")
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return f"{source.sha256[:12]}-{digest[:12]}"


@dataclass(frozen=True)
class Recording:
    """A whole recording: its writes, where they came from and how they were made."""

    recording_id: str
    source: Source
    writes: ApuWrites
    duration_cycles: int
    """Span the recording covers; at least the last write's cycle + 1 when there are writes."""
    seed: int | None = None
    phases: tuple[PhaseMark, ...] = field(default=())
    """Phase marks in cycle order; none means the whole recording is ``OBSERVE``."""

    def __post_init__(self) -> None:
        if self.duration_cycles < 0:
            raise RecordingError(f"negative duration {self.duration_cycles}")
        if len(self.writes) and int(self.writes.cycles[-1]) >= self.duration_cycles:
            raise RecordingError(
                f"last write at cycle {int(self.writes.cycles[-1])} is past the "
                f"duration {self.duration_cycles}"
            )
        last = -1
        for mark in self.phases:
            if mark.cycle < last:
                raise RecordingError("phase marks are not in cycle order")
            last = mark.cycle

    def __len__(self) -> int:
        return len(self.writes)

    @property
    def seconds(self) -> float:
        return self.duration_cycles / CPU_HZ

    def phase_spans(self) -> list[tuple[int, int, Phase]]:
        """``(start_cycle, end_cycle, phase)`` spans covering the whole recording."""
        if not self.phases:
            return [(0, self.duration_cycles, Phase.OBSERVE)]
        spans = []
        marks = list(self.phases)
        if marks[0].cycle > 0:
            marks.insert(0, PhaseMark(0, Phase.OBSERVE))
        for mark, nxt in zip(marks, marks[1:] + [None], strict=True):
            end = self.duration_cycles if nxt is None else nxt.cycle
            if end > mark.cycle:
                spans.append((mark.cycle, end, mark.phase))
        return spans

    def observing_spans(self) -> list[tuple[int, int]]:
        """Spans in which the program played on its own (boot or observing), merged."""
        spans: list[tuple[int, int]] = []
        for start, end, phase in self.phase_spans():
            if phase not in (Phase.BOOT, Phase.OBSERVE):
                continue
            if spans and spans[-1][1] == start:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
        return spans

    def with_writes(self, writes: ApuWrites, duration_cycles: int | None = None) -> Recording:
        return replace(
            self,
            writes=writes,
            duration_cycles=self.duration_cycles if duration_cycles is None else duration_cycles,
        )
