"""Music sources: turn a GBS rip, a ROM or a VGM file into a recording, piece by piece.

Every source is a *session* that advances in emulated time and hands back the
sound-register writes of each stretch, so the worker can publish a long
recording as it is made (bounded memory, steady output) and the offline tools
can collect the same pieces into one ``Recording``.

- GBS: init is called at recording cycle 0 with the LCD restarted at line 0,
  as gbsplay does, so our write times line up with ``gbsplay -o iodumper``.
- ROM: seeded exploration (see ``explore``); only quiet spans (boot and observing)
  are kept, each later one opened with a register snapshot so that it stands on its own.
- VGM: the logged writes, with exact timing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gbsynth.common.events import (
    CPU_HZ,
    FRAME_CYCLES,
    ApuWrites,
    Phase,
    PhaseMark,
    Recording,
    Source,
    SourceKind,
    make_recording_id,
    register_snapshot,
    sha256_hex,
)
from gbsynth.common.vgm import VgmError, read_vgm
from gbsynth.emulator.cartridge.header import RomError
from gbsynth.emulator.explore import ExploreSettings, phase_schedule, random_buttons
from gbsynth.emulator.gbs import IDLE_ADDRESS, GbsError, build_player_rom
from gbsynth.emulator.machine import EmulatorHang, GameBoy
from gbsynth.emulator.state import EXIT_RETURNED

INIT_LIMIT_SECONDS = 10.0
"""A GBS init routine that has not returned after this long is reported as broken."""

DEFAULT_PIECE_SECONDS = 1.0

QUIET_PHASES = (Phase.BOOT, Phase.OBSERVE)
"""Phases with no input since power-on or since the settle time: their sound is the program's
own (title music, a jingle at start-up), so they are recorded."""


class SourceError(ValueError):
    """A file cannot be played: not a ROM/GBS/VGM, broken, or it hung.

    ``reason`` is a short label for metrics: ``invalid_file``, ``unreadable``,
    ``hang`` or ``init_failed``.
    """

    def __init__(self, message: str, reason: str = "invalid_file") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Piece:
    """One stretch of a recording: ``[start_cycle, end_cycle)`` with its writes and marks."""

    start_cycle: int
    end_cycle: int
    writes: ApuWrites
    phases: list[PhaseMark] = field(default_factory=list)


class Session:
    """Common part of every source: identity and the pieces' bookkeeping."""

    def __init__(self, source: Source, seed: int | None) -> None:
        self.source = source
        self.seed = seed
        self.recording_id = make_recording_id(source, seed)
        self.cycle = 0
        """Recording cycles produced so far."""

    def advance(self, cycles: int) -> Piece:
        """Run ``cycles`` more T-cycles; return what they recorded."""
        raise NotImplementedError

    def pieces(
        self, seconds: float, piece_seconds: float = DEFAULT_PIECE_SECONDS
    ) -> Iterator[Piece]:
        """Pieces of about ``piece_seconds`` until ``seconds`` of recording exist."""
        total = int(round(seconds * CPU_HZ))
        step = max(1, int(round(piece_seconds * CPU_HZ)))
        while self.cycle < total:
            yield self.advance(min(step, total - self.cycle))

    def record(self, seconds: float) -> Recording:
        """The whole recording of ``seconds`` emulated seconds."""
        parts, marks = [], []
        for piece in self.pieces(seconds, piece_seconds=max(seconds, 1.0)):
            parts.append(piece.writes)
            marks.extend(piece.phases)
        return Recording(
            recording_id=self.recording_id,
            source=self.source,
            writes=ApuWrites.concat(parts),
            duration_cycles=self.cycle,
            seed=self.seed,
            phases=tuple(marks),
        )


class GbsSession(Session):
    """Plays one subsong of a GBS rip."""

    def __init__(self, data: bytes, file_name: str, subsong: int | None = None) -> None:
        try:
            rom, header = build_player_rom(data, subsong or 1)
            if subsong is None:
                rom, header = build_player_rom(data, header.first_song)
        except GbsError as exc:
            raise SourceError(f"{file_name}: {exc}") from exc
        self.header = header
        subsong = subsong or header.first_song
        super().__init__(
            Source(sha256_hex(data), file_name, SourceKind.GBS, header.title, subsong), None
        )
        gb = GameBoy(rom)
        # gbsplay's start: LCD at line 0 and DIV at 0 when init begins, IME off
        # during init, play called from the interrupt afterwards.
        gb.poke(0xFF40, 0x00)
        gb.poke(0xFF40, 0x91)
        gb.poke(0xFF04, 0x00)
        gb.poke(0xFF06, header.timer_modulo)
        gb.poke(0xFF07, header.timer_control)
        gb.poke(0xFFFF, header.interrupt_enable)
        gb.poke(0xFF0F, 0x00)
        gb.ime = 0
        gb.sp = header.stack_pointer
        gb.a = subsong - 1
        gb.start_recording()
        try:
            reason = gb.call(header.init_address, int(INIT_LIMIT_SECONDS * CPU_HZ))
        except EmulatorHang as exc:
            raise SourceError(f"{file_name}: init routine hung: {exc}", "hang") from exc
        if reason != EXIT_RETURNED:
            raise SourceError(
                f"{file_name}: init routine did not return within {INIT_LIMIT_SECONDS:g} s",
                "init_failed",
            )
        gb.pc = IDLE_ADDRESS
        gb.ime = 1
        self.gb = gb
        self._pending = gb.take_writes()  # writes init made, kept for the first piece

    def advance(self, cycles: int) -> Piece:
        gb = self.gb
        start = self.cycle
        end = start + cycles
        remaining = end - (gb.cycle - gb.recording_origin)
        if remaining > 0:
            try:
                gb.run_cycles(remaining)
            except EmulatorHang as exc:
                raise SourceError(f"{self.source.file_name}: {exc}", "hang") from exc
        writes = ApuWrites.concat([self._pending, gb.take_writes()])
        self._pending = ApuWrites.empty()
        # init may run past the first piece's end: keep later writes for the next one
        keep = int(np.searchsorted(writes.cycles, end, side="left"))
        if keep < len(writes):
            self._pending = ApuWrites(
                writes.cycles[keep:], writes.registers[keep:], writes.values[keep:]
            )
            writes = ApuWrites(writes.cycles[:keep], writes.registers[:keep], writes.values[:keep])
        self.cycle = end
        return Piece(start, end, writes)


class RomSession(Session):
    """Explores a game ROM with seeded random input, keeping only observing spans."""

    def __init__(
        self,
        data: bytes,
        file_name: str,
        seed: int = 0,
        explore: ExploreSettings | None = None,
    ) -> None:
        try:
            gb = GameBoy(data)
        except RomError as exc:
            raise SourceError(f"{file_name}: {exc}") from exc
        super().__init__(Source(sha256_hex(data), file_name, SourceKind.ROM, gb.header.title), seed)
        self.gb = gb
        self.explore = explore
        self.rng = np.random.default_rng(seed)
        self._shadow = ApuWrites.empty()  # register state, as a snapshot
        self._phase = Phase.OBSERVE if explore is None else Phase.BOOT
        self._marked = False
        gb.start_recording()

    def _phase_at(self, cycle: int) -> tuple[Phase, int]:
        """Phase in force at ``cycle`` and where it ends."""
        if self.explore is None:
            return Phase.OBSERVE, 1 << 62
        for span in phase_schedule(self.explore, 1 << 62):
            if span.start_cycle <= cycle < span.end_cycle:
                return span.phase, span.end_cycle
        raise AssertionError("phase schedule has a gap")  # pragma: no cover

    def _run(self, cycles: int, phase: Phase) -> None:
        gb = self.gb
        try:
            if phase is Phase.PRESS:
                # buttons are re-rolled every frame
                done = 0
                while done < cycles:
                    step = min(FRAME_CYCLES, cycles - done)
                    gb.set_buttons(int(random_buttons(self.rng, 1)[0]))
                    gb.run_cycles(step)
                    done += step
                gb.set_buttons(0)
            else:
                gb.run_cycles(cycles)
        except EmulatorHang as exc:
            raise SourceError(f"{self.source.file_name}: {exc}", "hang") from exc

    def advance(self, cycles: int) -> Piece:
        start, end = self.cycle, self.cycle + cycles
        kept: list[ApuWrites] = []
        marks: list[PhaseMark] = []
        cycle = start
        while cycle < end:
            phase, phase_end = self._phase_at(cycle)
            if phase is not self._phase or not self._marked:
                marks.append(PhaseMark(cycle, phase))
                if phase in QUIET_PHASES and self._phase not in QUIET_PHASES:
                    # open the observing span with the register state it starts from
                    kept.append(self._shadow.shifted(cycle))
                self._phase, self._marked = phase, True
            stop = min(phase_end, end)
            self._run(stop - cycle, phase)
            writes = self.gb.take_writes()
            self._shadow = register_snapshot(ApuWrites.concat([self._shadow, writes]), 1 << 62)
            if phase in QUIET_PHASES:
                kept.append(writes)
            cycle = stop
        self.cycle = end
        if self.explore is None:
            marks = []  # a plain run is all observing
        return Piece(start, end, ApuWrites.concat(kept), marks)


class VgmSession(Session):
    """Replays a VGM file's logged writes (looping from its loop point if it has one)."""

    def __init__(self, data: bytes, file_name: str, max_seconds: float = 3600.0) -> None:
        try:
            writes, duration, info = read_vgm(data, max_seconds=max_seconds, max_loops=1000)
        except VgmError as exc:
            raise SourceError(f"{file_name}: {exc}") from exc
        super().__init__(Source(sha256_hex(data), file_name, SourceKind.VGM, info.title), None)
        self.writes = writes
        self.duration = duration

    def advance(self, cycles: int) -> Piece:
        start, end = self.cycle, self.cycle + cycles
        self.cycle = end
        return Piece(start, end, self.writes.between(start, end))


def open_session(
    path: Path,
    *,
    kind: SourceKind | None = None,
    subsong: int | None = None,
    seed: int = 0,
    explore: ExploreSettings | None = None,
    file_name: str | None = None,
) -> Session:
    """A session for a file; the kind is detected from its contents when not given."""
    from gbsynth.emulator.jobs import HEAD_BYTES, JobError, detect_kind, read_source_file

    name = file_name or Path(path).name
    try:
        data = read_source_file(Path(path))
    except (OSError, JobError) as exc:
        raise SourceError(f"{name}: cannot read: {exc}", "unreadable") from exc
    kind = kind or detect_kind(Path(path), data[:HEAD_BYTES])
    if kind is SourceKind.GBS:
        return GbsSession(data, name, subsong)
    if kind is SourceKind.VGM:
        return VgmSession(data, name)
    if kind is SourceKind.ROM:
        return RomSession(data, name, seed, explore)
    if kind is not None and kind.is_score:
        from gbsynth.emulator.score_source import open_score_session

        return open_score_session(Path(path), data, name, kind, part=subsong, seed=seed)
    raise SourceError(f"{name}: not a Game Boy ROM, GBS or VGM file, score or tracker module")
