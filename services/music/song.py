"""A song as the driver plays it, and its translation into driver data (assembler source).

A ``Song`` holds per channel a list of ``Event`` (a note, rest or held sound over a
span of rows, with its instrument and effects) covering the whole song, plus the
song's instruments, drum kit and wave table. ``song_source`` cuts each channel into
one pattern per bar, stores each distinct pattern once (bars that differ only by a
transposition share it: the order list carries the transposition) and writes the
order lists with their loop point. ``module_source`` puts the driver and any number
of songs together, ready for ``asm.assemble``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from gbsynth.music import driver as D
from gbsynth.music.asm import Program, assemble

CHANNEL_NAMES = ("pulse 1", "pulse 2", "wave", "noise")
NOISE = 3


@dataclass(frozen=True)
class Instrument:
    """One channel setting. Register values are raw bytes; see ``driver`` for their meaning."""

    name: str
    nrx1: int = 0x80
    """Duty (bits 7-6) and length (bits 5-0) for the pulse channels; NR31 for the wave."""
    envelope: int = 0xF0
    """NRx2 for pulse and noise; for the wave channel the NR32 level ($20 full, $40 half)."""
    nrx4: int = 0x00
    """$40: stop the note when the length counter runs out."""
    sweep: int = 0x00
    """NR10 at each note (channel 1 only)."""
    vibrato_delay: int = 0
    vibrato_speed: int = 0
    vibrato_shift: int = 0
    """Vibrato amplitude is (2048 - frequency) >> shift; 0: no vibrato."""

    def to_bytes(self) -> bytes:
        values = (self.nrx1, self.envelope, self.nrx4, self.sweep, self.vibrato_delay,
                  self.vibrato_speed, self.vibrato_shift, 0)  # fmt: skip
        return bytes(v & 0xFF for v in values)


@dataclass(frozen=True)
class Drum:
    name: str
    envelope: int
    poly: int
    """NR43 at the hit."""
    poly_after: int
    frames: int
    """Frames until NR43 becomes ``poly_after`` (0: never)."""

    def to_bytes(self) -> bytes:
        return bytes([self.envelope, self.poly, self.poly_after, self.frames])


@dataclass(frozen=True)
class Event:
    """A note (``note`` >= 0), a rest (``note`` is None) or a held sound (``hold``)."""

    start: int
    """Row at which it begins (rows since the song's start)."""
    length: int
    note: int | None = None
    """Semitones above C2; on the noise channel, the drum number."""
    instrument: int = 0
    envelope: int | None = None
    """Overrides the instrument's envelope (an echo's quieter volume, say)."""
    arpeggio: int = 0
    slide: int = 0
    """Glide into this note from the pitch sounding, this many register units a frame."""
    bend: int = 0
    """Signed change of the frequency register each frame while the note sounds."""
    hold: bool = False
    """Keep what sounds (no retrigger, no silence)."""

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass
class Song:
    title: str
    key: int
    """Pitch class of the tonic, 0 = C."""
    mode: str
    tempo: int
    """The driver's tempo (rows per frame x 65536)."""
    beats_per_bar: int
    rows_per_beat: int
    bars: int
    loop_bar: int
    channels: list[list[Event]]
    instruments: list[Instrument]
    drums: list[Drum]
    wave: bytes
    nr50: int = 0x77
    nr51: int = 0xFF
    seed: int = 0
    form: str = ""
    sections: list[tuple[str, int, int]] = field(default_factory=list)
    """(name, first bar, bars) of each section, intro included."""
    progression: dict[str, list[str]] = field(default_factory=dict)
    """Chord names of each section kind."""
    styles: dict[str, str] = field(default_factory=dict)

    @property
    def bar_rows(self) -> int:
        return self.beats_per_bar * self.rows_per_beat

    @property
    def bpm(self) -> float:
        return D.tempo_bpm(self.tempo, self.rows_per_beat)

    @property
    def loop_seconds(self) -> float:
        """Length of the looping part in seconds."""
        return (self.bars - self.loop_bar) * self.bar_rows / D.rows_per_second(self.tempo)

    @property
    def seconds(self) -> float:
        """Length of one pass, intro included."""
        return self.bars * self.bar_rows / D.rows_per_second(self.tempo)

    @property
    def key_name(self) -> str:
        from gbsynth.music.composer import pitch_name

        return pitch_name(self.key, self.key, self.mode)


class SongError(ValueError):
    """A song the driver cannot play as given (a gap, a note out of range...)."""


# -- from events to patterns ------------------------------------------------------------------


@dataclass(frozen=True)
class _Piece:
    """An event, or the part of one inside a bar and at most MAX_LENGTH rows long."""

    length: int
    kind: str  # "note", "rest" or "hold"
    event: Event


def _check_channel(song: Song, channel: int, events: list[Event]) -> None:
    total = song.bars * song.bar_rows
    row = 0
    for event in events:
        if event.start != row:
            raise SongError(
                f"{CHANNEL_NAMES[channel]}: events must cover the song without gaps or "
                f"overlaps: row {row} is followed by an event at row {event.start}"
            )
        if event.length <= 0:
            raise SongError(f"{CHANNEL_NAMES[channel]}: event at row {row} has no length")
        if event.note is not None and not event.hold:
            top = D.NOTE_COUNT - (D.WAVE_OCTAVE if channel == 2 else 0)
            limit = len(song.drums) if channel == NOISE else top
            if not 0 <= event.note < limit:
                raise SongError(
                    f"{CHANNEL_NAMES[channel]}: note {event.note} at row {row} "
                    f"is outside 0..{limit - 1}"
                )
        if not 0 <= event.instrument < len(song.instruments):
            raise SongError(f"{CHANNEL_NAMES[channel]}: no instrument {event.instrument}")
        row = event.end
    if row != total:
        raise SongError(f"{CHANNEL_NAMES[channel]}: events end at row {row}, the song at {total}")


def _bar_pieces(song: Song, events: list[Event]) -> list[list[_Piece]]:
    """Each bar's pieces: events split at bar lines and into MAX_LENGTH-row parts."""
    bars: list[list[_Piece]] = [[] for _ in range(song.bars)]
    rows = song.bar_rows
    for event in events:
        start = event.start
        first = True
        while start < event.end:
            bar = start // rows
            end = min(event.end, (bar + 1) * rows, start + D.MAX_LENGTH)
            if event.hold:
                kind = "hold"
            elif event.note is None:
                kind = "rest" if first else "hold"  # silence goes on silently
            else:
                kind = "note" if first else "hold"
            bars[bar].append(_Piece(end - start, kind, event))
            start, first = end, False
    return bars


def _pattern(pieces: list[_Piece], transpose: int, song: Song, uses_arpeggio: bool) -> bytes:
    out = bytearray()
    length = instrument = envelope = arpeggio = None
    for piece in pieces:
        event = piece.event
        if piece.kind == "note":
            if event.instrument != instrument:
                instrument = event.instrument
                envelope = song.instruments[instrument].envelope
                out += bytes([D.CMD_INSTRUMENT, instrument])
            wanted = (
                song.instruments[instrument].envelope
                if event.envelope is None
                else (event.envelope)
            )
            if wanted != envelope:
                envelope = wanted
                out += bytes([D.CMD_ENVELOPE, wanted])
            if uses_arpeggio and event.arpeggio != arpeggio:
                arpeggio = event.arpeggio
                out += bytes([D.CMD_ARPEGGIO, arpeggio])
            if event.slide:
                out += bytes([D.CMD_SLIDE, event.slide])
            if event.bend:
                out += bytes([D.CMD_BEND, event.bend & 0xFF])
        if piece.length != length:
            length = piece.length
            out.append(D.FIRST_LENGTH + length - 1)
        if piece.kind == "note":
            out.append(event.note - transpose)
        else:
            out.append(D.CMD_REST if piece.kind == "rest" else D.CMD_TIE)
    out.append(D.CMD_END)
    return bytes(out)


def _db_lines(data: bytes, width: int = 16) -> list[str]:
    return [
        "        db " + ", ".join(f"${b:02X}" for b in data[i : i + width])
        for i in range(0, len(data), width)
    ]


def _check_song(song: Song) -> None:
    if len(song.wave) != 16:
        raise SongError("the wave table must be 16 bytes (32 samples)")
    if not song.instruments or len(song.instruments) > D.MAX_INSTRUMENTS:
        raise SongError(f"a song needs 1 to {D.MAX_INSTRUMENTS} instruments")
    if len(song.drums) > D.MAX_DRUMS:
        raise SongError(f"at most {D.MAX_DRUMS} drums")
    if not 0 <= song.loop_bar < song.bars:
        raise SongError(f"loop bar {song.loop_bar} is outside 0..{song.bars - 1}")
    if not 1 <= song.tempo < D.TEMPO_ONE:
        raise SongError(f"tempo {song.tempo} is outside 1..{D.TEMPO_ONE - 1}")
    if len(song.channels) != 4:
        raise SongError("a song has four channels")


def _channel_orders(song: Song) -> list[list[tuple[bytes, int]]]:
    """Each channel's order list as (pattern bytes, transposition) per bar."""
    orders = []
    for channel, events in enumerate(song.channels):
        _check_channel(song, channel, events)
        uses_arpeggio = any(e.arpeggio for e in events)
        order = []
        for pieces in _bar_pieces(song, events):
            notes = [p.event.note for p in pieces if p.kind == "note"]
            transpose = min(notes) if notes and channel != NOISE else 0
            order.append((_pattern(pieces, transpose, song, uses_arpeggio), transpose))
        orders.append(order)
    return orders


def song_source(song: Song, label: str) -> str:
    """Driver data for ``song`` as assembler source; its header is at ``label``."""
    _check_song(song)
    lines = [f"; {song.title}: {song.key_name} {song.mode}, {song.bpm:.0f} BPM, {song.form}",
             f"{label}:",
             f"        dw ${song.tempo:04X}",
             f"        db ${song.nr50:02X}, ${song.nr51:02X}",
             f"        dw {label}_Wave, {label}_Instruments, {label}_Drums",
             "        dw " + ", ".join(f"{label}_Order{c}" for c in range(4)),
             f"{label}_Wave:", *_db_lines(song.wave),
             f"{label}_Instruments:"]  # fmt: skip
    for instrument in song.instruments:
        lines += [f"{line}  ; {instrument.name}" for line in _db_lines(instrument.to_bytes())]
    lines.append(f"{label}_Drums:")
    for drum in song.drums:
        lines += [f"{line}  ; {drum.name}" for line in _db_lines(drum.to_bytes())]
    if not song.drums:
        lines.append("        db $00, $00, $00, $00")

    patterns: dict[bytes, str] = {}
    pattern_lines: list[str] = []
    for channel, entries in enumerate(_channel_orders(song)):
        order = [f"{label}_Order{channel}:"]
        for bar, (data, transpose) in enumerate(entries):
            name = patterns.get(data)
            if name is None:
                name = patterns[data] = f"{label}_P{len(patterns)}"
                pattern_lines.append(f"{name}:")
                pattern_lines += _db_lines(data)
            if bar == song.loop_bar:
                order.append(".loop:")
            order.append(f"        dw {name}")
            order.append(f"        db {transpose}")
        order.append("        dw 0, .loop")
        lines += order
    lines += pattern_lines
    return "\n".join(lines) + "\n"


def song_data(song: Song, base: int) -> bytes:
    """The bytes ``song_source`` assembles to when its header is at address ``base``: the
    same layout, written directly (assembling a long song's text is slow)."""
    _check_song(song)
    orders = _channel_orders(song)
    header_size = 2 + 2 + 3 * 2 + 4 * 2
    wave_at = base + header_size
    instruments_at = wave_at + 16
    drums_at = instruments_at + D.INSTRUMENT_SIZE * len(song.instruments)
    orders_at = drums_at + D.DRUM_SIZE * max(1, len(song.drums))
    order_sizes = [3 * len(entries) + 4 for entries in orders]
    order_at = [orders_at + sum(order_sizes[:c]) for c in range(4)]
    address = orders_at + sum(order_sizes)
    pattern_at: dict[bytes, int] = {}
    pattern_bytes = bytearray()
    for entries in orders:
        for data, _ in entries:
            if data not in pattern_at:
                pattern_at[data] = address + len(pattern_bytes)
                pattern_bytes += data
    end = address + len(pattern_bytes)
    if end > 0x10000:
        raise SongError(f"song data ends at 0x{end:X}, past the 64 KiB address space")

    def word(value: int) -> bytes:
        return bytes((value & 0xFF, value >> 8 & 0xFF))

    out = bytearray(word(song.tempo) + bytes((song.nr50 & 0xFF, song.nr51 & 0xFF)))
    out += word(wave_at) + word(instruments_at) + word(drums_at)
    for c in range(4):
        out += word(order_at[c])
    out += song.wave
    for instrument in song.instruments:
        out += instrument.to_bytes()
    for drum in song.drums:
        out += drum.to_bytes()
    if not song.drums:
        out += bytes(4)
    for c, entries in enumerate(orders):
        for data, transpose in entries:
            out += word(pattern_at[data]) + bytes((transpose & 0xFF,))
        out += word(0) + word(order_at[c] + 3 * song.loop_bar)
    out += pattern_bytes
    return bytes(out)


def module_source(songs: list[Song]) -> str:
    """The driver, a table of the songs and their data."""
    if not songs:
        raise SongError("no songs")
    table = ["SongTable:"] + [f"        dw Song{i}" for i in range(len(songs))]
    parts = [D.DRIVER_SOURCE, "\n".join(table)]
    parts += [song_source(song, f"Song{i}") for i, song in enumerate(songs)]
    return "\n".join(parts)


@dataclass(frozen=True)
class Module:
    """The driver and songs assembled at ``origin``: what a GBS file holds."""

    program: Program
    origin: int
    song_count: int

    @property
    def init(self) -> int:
        return self.program["DriverInit"]

    @property
    def play(self) -> int:
        return self.program["DriverPlay"]

    @property
    def code(self) -> bytes:
        start, end = self.program.sections["driver"]
        return self.program.image(start, end, fill=0x00)


@functools.lru_cache(maxsize=8)
def _driver_for_one_song(origin: int, ram: int) -> Program:
    """The driver assembled with a one-song table; the song's data goes at ``Song0``."""
    source = D.DRIVER_SOURCE + "\nSongTable:\n        dw Song0\nSong0:\n"
    return assemble(source, name="driver", symbols={"DRIVER_ORG": origin, "DRIVER_RAM": ram})


def assemble_song(song: Song, origin: int = 0x0400, ram: int = D.RAM_START) -> Module:
    """``assemble_module([song])`` made fast: the driver is assembled once per address and
    the song's data written directly (``song_data``); the same bytes."""
    driver = _driver_for_one_song(origin, ram)
    start, end = driver.sections["driver"]
    base = driver["Song0"]
    code = driver.image(start, base, fill=0x00) + song_data(song, base)
    program = Program(
        chunks=[(start, code)],
        symbols=dict(driver.symbols),
        sections={"driver": (start, start + len(code))},
        listing=[],
    )
    return Module(program, origin, 1)


def assemble_module(songs: list[Song], origin: int = 0x0400, ram: int = D.RAM_START) -> Module:
    """Assemble the driver with ``songs`` at ``origin``; its variables at ``ram``."""
    program = assemble(
        module_source(songs),
        name="driver+songs",
        symbols={"DRIVER_ORG": origin, "DRIVER_RAM": ram},
    )
    return Module(program, origin, len(songs))
