"""Standard MIDI files (format 0 and 1) as a ``Score``.

The format is small, so it is parsed here: ``MThd`` then ``MTrk`` chunks of delta-timed
events with running status. Notes are paired per (track, channel, key): a note-off (or a
note-on with velocity 0) ends the earliest note still sounding on that key, so overlapping
notes of one pitch keep their own lengths; a note still sounding at the end of its track
ends there. Tempo, time and key signatures come from any track (format 1 keeps them in the
first). Channel 10 is General MIDI percussion. Each (track, channel) with notes becomes one
``Part`` carrying the channel's first program change.

Every malformed file (bad chunk lengths, truncation, absurd sizes, values out of range)
raises ``ScoreError`` with a reason; reading is one pass over the bytes, so it cannot hang.
"""

from __future__ import annotations

import struct
from collections import defaultdict, deque
from pathlib import PurePath

from gbsynth.music.score import MeterChange, Note, Part, Score, ScoreError, TempoChange

MIDI_MAGIC = b"MThd"
TRACK_MAGIC = b"MTrk"
DRUM_CHANNEL = 9
"""Channel 10 counting from 1: General MIDI percussion."""
MAX_NOTES = 400_000
"""More notes than any piece of music we record; beyond this a file is taken as broken."""
MAX_TRACKS = 1024
MAX_QUARTERS = 200_000.0
"""About 28 hours at 120 bpm: later events mean broken delta times."""
SHORTEST_QUARTERS = 1 / 64
"""Length given to a note whose on and off share a tick (drum hits often do)."""

# data bytes after each channel status (high nibble 8-E)
_DATA_BYTES = {0x8: 2, 0x9: 2, 0xA: 2, 0xB: 2, 0xC: 1, 0xD: 1, 0xE: 2}


def is_midi(head: bytes) -> bool:
    return head[:4] == MIDI_MAGIC


def _riff_midi(data: bytes, name: str) -> bytes:
    """The Standard MIDI file inside a RIFF RMID file (its ``data`` chunk)."""
    at = 12
    while at + 8 <= len(data):
        kind = data[at : at + 4]
        (length,) = struct.unpack("<I", data[at + 4 : at + 8])
        if kind == b"data":
            if at + 8 + length > len(data):
                raise ScoreError(f"{name}: RMID data chunk runs past the end of the file")
            return data[at + 8 : at + 8 + length]
        at += 8 + length + (length & 1)
    raise ScoreError(f"{name}: RIFF RMID file without a data chunk")


def _chunks(data: bytes, name: str) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk; a length past the end of the file is an error."""
    chunks = []
    at = 0
    while at + 8 <= len(data):
        kind = data[at : at + 4]
        (length,) = struct.unpack(">I", data[at + 4 : at + 8])
        if at + 8 + length > len(data):
            raise ScoreError(
                f"{name}: chunk {kind!r} at byte {at} claims {length} bytes; "
                f"only {len(data) - at - 8} remain (truncated or bad length)"
            )
        chunks.append((kind, data[at + 8 : at + 8 + length]))
        at += 8 + length
    if at != len(data) and data[at:].strip(b"\x00"):
        raise ScoreError(f"{name}: {len(data) - at} stray bytes after the last chunk")
    return chunks


class _Track:
    """A cursor over one track's bytes."""

    def __init__(self, body: bytes, name: str, index: int) -> None:
        self.body = body
        self.at = 0
        self.where = f"{name}: track {index}"

    def byte(self) -> int:
        if self.at >= len(self.body):
            raise ScoreError(f"{self.where}: ends in the middle of an event")
        value = self.body[self.at]
        self.at += 1
        return value

    def varlen(self) -> int:
        value = 0
        for _ in range(4):
            b = self.byte()
            value = value << 7 | (b & 0x7F)
            if not b & 0x80:
                return value
        raise ScoreError(f"{self.where}: variable-length number longer than 4 bytes")

    def take(self, count: int) -> bytes:
        if self.at + count > len(self.body):
            raise ScoreError(f"{self.where}: event of {count} bytes runs past the track's end")
        out = self.body[self.at : self.at + count]
        self.at += count
        return out


def read_midi(data: bytes, name: str) -> Score:
    """The score of a Standard MIDI file; ``ScoreError`` for anything malformed."""
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":
        data = _riff_midi(data, name)
    if not is_midi(data):
        raise ScoreError(f"{name}: not a Standard MIDI file (no MThd header)")
    chunks = _chunks(data, name)
    header = chunks[0][1]
    if len(header) < 6:
        raise ScoreError(f"{name}: MThd chunk of {len(header)} bytes; 6 expected")
    file_format, track_count, division = struct.unpack(">HHH", header[:6])
    if file_format > 1:
        raise ScoreError(
            f"{name}: MIDI format {file_format} (independent sequences) is not supported",
            "unsupported",
        )
    if division & 0x8000:
        # SMPTE: frames a second x ticks a frame; read as quarters of 0.5 s at 120 bpm
        fps = 256 - (division >> 8)
        ticks_per_quarter = fps * (division & 0xFF) / 2
    else:
        ticks_per_quarter = division
    if ticks_per_quarter <= 0:
        raise ScoreError(f"{name}: time division {division:#06x} has no ticks")
    tracks = [body for kind, body in chunks[1:] if kind == TRACK_MAGIC]
    if not tracks:
        raise ScoreError(f"{name}: no MTrk chunk", "empty")
    if len(tracks) > MAX_TRACKS:
        raise ScoreError(f"{name}: {len(tracks)} tracks", "too_large")
    if file_format == 0 and len(tracks) > 1:
        tracks = tracks[:1]  # format 0 has one track; the rest is not part of the sequence
    del track_count  # the chunks say how many tracks there are

    title = ""
    tempos: list[TempoChange] = []
    meters: list[MeterChange] = []
    key_fifths: int | None = None
    minor: bool | None = None
    parts: list[Part] = []
    part_of: dict[tuple[int, int], int] = {}
    notes: list[Note] = []
    limit_ticks = MAX_QUARTERS * ticks_per_quarter

    for index, body in enumerate(tracks):
        track = _Track(body, name, index)
        track_name = ""
        tick = 0
        status = 0
        programs = [0] * 16
        first_program: dict[int, int] = {}
        sounding: dict[tuple[int, int], deque[tuple[int, int, int]]] = defaultdict(deque)
        pending: list[tuple[int, int, int, int, int, int]] = []  # channel, key, on, off, vel, prog

        while track.at < len(body):
            tick += track.varlen()
            if tick > limit_ticks:
                raise ScoreError(f"{track.where}: events past {MAX_QUARTERS:g} quarter notes")
            first = track.byte()
            if first & 0x80:
                status = first
                data1 = None
            elif status and status < 0xF0:
                data1 = first  # running status
            else:
                raise ScoreError(f"{track.where}: data byte {first:#04x} with no status")
            if status == 0xFF:
                meta = track.byte()
                payload = track.take(track.varlen())
                status = 0  # meta and sysex events cancel running status
                if meta == 0x2F:
                    break
                if meta == 0x03 and not track_name:
                    track_name = payload.decode("latin-1").strip()
                elif meta == 0x51 and len(payload) == 3:
                    micros = int.from_bytes(payload, "big")
                    if micros:
                        tempos.append(TempoChange(tick / ticks_per_quarter, 60e6 / micros))
                elif meta == 0x58 and len(payload) >= 2:
                    if payload[0] and payload[1] <= 6:
                        meters.append(
                            MeterChange(tick / ticks_per_quarter, payload[0], 1 << payload[1])
                        )
                elif meta == 0x59 and len(payload) == 2 and key_fifths is None:
                    fifths = payload[0] - 256 if payload[0] > 127 else payload[0]
                    if -7 <= fifths <= 7:
                        key_fifths, minor = fifths, bool(payload[1])
                continue
            if status in (0xF0, 0xF7):
                track.take(track.varlen())
                status = 0
                continue
            if status > 0xF0:
                raise ScoreError(f"{track.where}: system message {status:#04x} inside a file")
            kind, channel = status >> 4, status & 0x0F
            values = [track.byte() if data1 is None else data1]
            if _DATA_BYTES[kind] == 2:
                values.append(track.byte())
            if any(v > 0x7F for v in values):
                raise ScoreError(f"{track.where}: data byte above 127 in a {kind:X}x message")
            if kind == 0xC:
                programs[channel] = values[0]
                first_program.setdefault(channel, values[0])
            elif kind in (0x8, 0x9):
                key, velocity = values
                if kind == 0x9 and velocity:
                    sounding[(channel, key)].append((tick, velocity, programs[channel]))
                elif sounding[(channel, key)]:
                    on, vel, prog = sounding[(channel, key)].popleft()
                    pending.append((channel, key, on, tick, vel, prog))
            if len(notes) + len(pending) > MAX_NOTES:
                raise ScoreError(f"{name}: more than {MAX_NOTES} notes", "too_large")
        for (channel, key), queue in sounding.items():
            for on, vel, prog in queue:
                pending.append((channel, key, on, tick, vel, prog))
        if index == 0 and track_name:
            title = track_name
        for channel, key, on, off, vel, prog in pending:
            slot = (index, channel)
            if slot not in part_of:
                part_of[slot] = len(parts)
                label = track_name or f"track {index}"
                parts.append(
                    Part(
                        f"{label} (channel {channel + 1})",
                        drums=channel == DRUM_CHANNEL,
                        program=None if channel == DRUM_CHANNEL else first_program.get(channel),
                    )
                )
            length = max((off - on) / ticks_per_quarter, SHORTEST_QUARTERS)
            notes.append(
                Note(on / ticks_per_quarter, length, key, vel, part_of[slot], instrument=prog)
            )
    if not notes:
        raise ScoreError(f"{name}: no notes", "empty")
    # one change per position: the last one written wins
    tempos = list({t.at: t for t in tempos}.values())
    meters = list({m.at: m for m in meters}.values())
    for change in tempos:
        if not 1.0 <= change.bpm <= 2000.0:
            raise ScoreError(f"{name}: tempo of {change.bpm:.3g} bpm")
    score = Score(
        title=title or PurePath(name).stem,
        kind="midi",
        parts=parts,
        notes=notes,
        tempos=tempos,
        meters=meters,
        key_fifths=key_fifths,
        minor=minor,
    )
    return score.check()
