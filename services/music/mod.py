"""ProTracker MOD reader: 4-channel modules (M.K., M!K!, FLT4, 4CHN and 15-sample
Soundtracker files) into a ``Score`` with one ``Part`` per channel.

The song is played once in order-table order: pattern breaks (Dxx) and forward position
jumps (Bxx) are followed, the first jump backwards (the song's loop) ends it, and no
(position, row) is played twice. One row is a 16th note (4 rows per beat), so a quarter
note lasts ``4 * speed`` ticks of ``2.5 / BPM`` seconds: ``bpm = 6 * BPM / speed``.

Pitches: ProTracker period 428 (the tracker's C-2; GBT Player, which GB Studio uses, plays it
as C5) is MIDI 60; sample finetune adds eighths of a semitone. Channel 4 follows GB Studio's
layout (1-2 pulse, 3 wave, 4 noise) and is a drum part, its notes mapped to General MIDI
percussion keys by ``drum_key``.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import PurePosixPath

from gbsynth.music.score import Note, Part, Score, ScoreError, TempoChange, drum_key_for_name

ROWS_PER_PATTERN = 64
CHANNELS = 4
ROW_QUARTERS = 0.25
"""One row is a 16th note: the usual tracker layout of 4 rows per beat."""
SIGNATURES_4_CHANNELS = frozenset({b"M.K.", b"M!K!", b"FLT4", b"4CHN"})
DRUM_CHANNEL = 3
"""Channel 4 (index 3) is the noise channel in GB Studio's layout."""

# GBT Player's 16 noise instruments (samples 16-31 on channel 4) as NR43 values; the noise
# clock and the LFSR width decide what drum each one sounds like (see ``drum_key``).
GBT_NOISE_NR43 = (
    0x5F, 0x5B, 0x4B, 0x2F, 0x3B, 0x58, 0x1F, 0x0F,
    0x90, 0x80, 0x70, 0x50, 0x00, 0x67, 0x63, 0x53,
)  # fmt: skip


@dataclass(frozen=True)
class Sample:
    name: str
    length: int
    """In bytes."""
    finetune: int
    """-8..7 eighths of a semitone."""
    volume: int
    """Default volume 0-64."""


@dataclass(frozen=True)
class _Layout:
    samples: int
    song_length_at: int
    patterns_at: int


_PROTRACKER = _Layout(samples=31, song_length_at=950, patterns_at=1084)
_SOUNDTRACKER = _Layout(samples=15, song_length_at=470, patterns_at=600)


def read_mod(data: bytes, name: str) -> Score:
    """A ``Score`` from a 4-channel ProTracker module; ``ScoreError`` for anything else."""
    layout = _layout(data, name)
    samples = [_sample(data, 20 + 30 * i) for i in range(layout.samples)]
    song_length = data[layout.song_length_at]
    orders = data[layout.song_length_at + 2 : layout.song_length_at + 130]
    if not 1 <= song_length <= 128:
        raise ScoreError(f"{name}: song length {song_length} (must be 1-128)")
    # ProTracker stores every pattern the order table names, used or not.
    patterns = max(orders) + 1
    if patterns > 128:
        raise ScoreError(f"{name}: order table names pattern {patterns - 1} (at most 127)")
    samples_at = layout.patterns_at + patterns * ROWS_PER_PATTERN * CHANNELS * 4
    if samples_at > len(data):
        raise ScoreError(
            f"{name}: {patterns} patterns need {samples_at} bytes, the file has {len(data)}"
        )
    sample_bytes = sum(s.length for s in samples)
    if samples_at + sample_bytes > len(data):
        raise ScoreError(
            f"{name}: sample data runs {samples_at + sample_bytes - len(data)} bytes past the "
            "end of the file (truncated?)"
        )
    title = data[:20].split(b"\0", 1)[0].decode("latin-1").strip()
    notes, tempos = _play(data, layout.patterns_at, orders[:song_length], samples, name)
    parts = [Part(name=f"Channel {c + 1}", drums=c == DRUM_CHANNEL) for c in range(CHANNELS)]
    return Score(
        title=title if title.lower() not in ("", "untitled") else PurePosixPath(name).stem,
        kind="mod",
        parts=parts,
        notes=notes,
        tempos=tempos,
    ).check()


def _layout(data: bytes, name: str) -> _Layout:
    if len(data) < _SOUNDTRACKER.patterns_at:
        raise ScoreError(f"{name}: {len(data)} bytes is too short for a MOD file")
    signature = data[1080:1084]
    if signature in SIGNATURES_4_CHANNELS:
        return _PROTRACKER
    if signature.isalnum() or signature[:1].isdigit():
        raise ScoreError(
            f"{name}: {signature.decode('latin-1')!r} module; only 4-channel ProTracker "
            "modules (M.K., M!K!, FLT4, 4CHN) are read",
            "unsupported",
        )
    # No signature: an original 15-sample Soundtracker module, if its header makes sense.
    for i in range(15):
        sample = data[20 + 30 * i : 50 + 30 * i]
        if sample[25] > 64 or any(0 < c < 32 for c in sample[:22]):
            raise ScoreError(f"{name}: no MOD signature and not a Soundtracker module")
    return _SOUNDTRACKER


def _sample(data: bytes, at: int) -> Sample:
    raw_name, length, finetune, volume, _, _ = struct.unpack_from(">22sHBBHH", data, at)
    finetune &= 0x0F
    return Sample(
        name=raw_name.split(b"\0", 1)[0].decode("latin-1").strip(),
        length=length * 2,
        finetune=finetune - 16 if finetune > 7 else finetune,
        volume=min(volume, 64),
    )


def period_to_pitch(period: int, finetune: int = 0) -> int:
    """The MIDI note of a ProTracker period (428 -> 60), finetune in eighths of a semitone."""
    return round(60 + 12 * math.log2(428 / period) + finetune / 8)


def drum_key(sample_number: int, sample: Sample | None, pitch: int) -> int:
    """General MIDI percussion key for a note on the drum channel.

    1. A sample name that names a drum ("kick", "snare", "hat", ...) decides.
    2. GB Studio / GBT Player noise instruments (samples 16-31) are classified by their noise
       clock: 15-bit (hiss) noise below 1.5 kHz is a kick, to 6 kHz a snare, to 100 kHz an
       open hi-hat, above that (the brightest, shortest hiss) a closed hi-hat; 7-bit
       (metallic buzz) noise in the same bands is a floor tom, side stick, cowbell and ride.
       The 103 GB Studio modules agree: instrument 29 (585 Hz) sits mostly on beats 1 and 3,
       31 (2.7 kHz) on 2 and 4, 28 (524 kHz) on the off-beats: kick, snare, hat.
    3. Otherwise the note's pitch: below C3 a kick, below C4 a snare, else a closed hi-hat.
    """
    if sample is not None and sample.name:
        key = drum_key_for_name(sample.name)
        if key is not None:
            return key
    if 16 <= sample_number <= 31:
        nr43 = GBT_NOISE_NR43[sample_number - 16]
        divisor = (nr43 & 7) or 0.5
        clock = 524288 / divisor / 2 ** ((nr43 >> 4) + 1)
        band = 0 if clock < 1500 else 1 if clock < 6000 else 2 if clock < 100_000 else 3
        return (41, 37, 56, 51)[band] if nr43 & 8 else (36, 38, 46, 42)[band]
    return 36 if pitch < 48 else 38 if pitch < 60 else 42


class _Channel:
    __slots__ = ("note", "sample", "volume", "arpeggio_open")

    def __init__(self) -> None:
        self.note: list | None = None  # [start, length, pitch, velocity, sample, arpeggio]
        self.sample = 0
        self.volume = 64
        self.arpeggio_open = False  # the sounding note has no arpeggio yet


def _play(
    data: bytes, patterns_at: int, orders: bytes, samples: list[Sample], name: str
) -> tuple[list[Note], list[TempoChange]]:
    channels = [_Channel() for _ in range(CHANNELS)]
    done: list[tuple[int, list]] = []  # (channel, note)
    tempos: list[TempoChange] = []
    speed, bpm = 6, 125
    at = 0.0
    position, row = 0, 0
    seen: set[tuple[int, int]] = set()

    def end_note(channel: int, when: float) -> None:
        held = channels[channel].note
        if held is not None:
            held[1] = when - held[0]
            if held[1] > 1e-9:
                done.append((channel, held))
            channels[channel].note = None

    while position < len(orders) and (position, row) not in seen:
        seen.add((position, row))
        base = patterns_at + (orders[position] * ROWS_PER_PATTERN + row) * CHANNELS * 4
        cells = []
        for c in range(CHANNELS):
            b0, b1, b2, b3 = data[base + 4 * c : base + 4 * c + 4]
            cells.append(((b0 & 0xF0) | (b2 >> 4), ((b0 & 0x0F) << 8) | b1, b2 & 0x0F, b3))
        # Row effects first: speed and tempo apply to this row already.
        stop = False
        jump: int | None = None
        break_row: int | None = None
        delay_rows = 0
        for _, _, effect, param in cells:
            if effect == 0xF:
                if param == 0:
                    stop = True
                elif param < 0x20:
                    speed = param
                else:
                    bpm = param
            elif effect == 0xB:
                jump = param
            elif effect == 0xD:
                break_row = (param >> 4) * 10 + (param & 0x0F)
            elif effect == 0xE and param >> 4 == 0xE:
                delay_rows = param & 0x0F
        if stop:
            break
        quarter_bpm = 6.0 * bpm / speed
        if not tempos or tempos[-1].bpm != quarter_bpm:
            tempos.append(TempoChange(at, quarter_bpm))
        tick = ROW_QUARTERS / speed
        for c, (number, period, effect, param) in enumerate(cells):
            channel = channels[c]
            sample = samples[number - 1] if 0 < number <= len(samples) else None
            if number and sample is not None:
                channel.sample = number
                channel.volume = sample.volume
            if effect == 0xC:
                channel.volume = min(param, 64)
            start = at
            if effect == 0xE and param >> 4 == 0xD:
                start += (param & 0x0F) * tick  # note delay
            if period:
                end_note(c, start)
                current = samples[channel.sample - 1] if channel.sample else None
                if channel.volume > 0 and 28 <= period <= 3424:
                    pitch = period_to_pitch(period, current.finetune if current else 0)
                    if c == DRUM_CHANNEL:
                        pitch = drum_key(channel.sample, current, pitch)
                    if 0 <= pitch <= 127:
                        velocity = max(1, min(127, channel.volume * 2))
                        arpeggio = param if effect == 0 else 0
                        channel.note = [start, 0.0, pitch, velocity, channel.sample, arpeggio]
                        channel.arpeggio_open = arpeggio == 0
            elif channel.note is not None:
                if effect == 0 and param and channel.arpeggio_open:
                    channel.note[5] = param
                    channel.arpeggio_open = False
                if effect == 0xC and param == 0:
                    end_note(c, at)
            if effect == 0xE and param >> 4 == 0xC and 0 < (param & 0x0F) < speed:
                end_note(c, start + (param & 0x0F) * tick)  # note cut after x ticks
        at += ROW_QUARTERS * (1 + delay_rows)
        if jump is not None:
            if jump <= position:
                break  # the song loops back: played once
            position, row = jump, break_row if break_row is not None else 0
        elif break_row is not None:
            position, row = position + 1, break_row
        else:
            row += 1
            if row == ROWS_PER_PATTERN:
                position, row = position + 1, 0
        if row >= ROWS_PER_PATTERN:
            row = 0
    for c in range(CHANNELS):
        end_note(c, at)
    notes = [
        Note(start, length, pitch, velocity, c, instrument, arpeggio)
        for c, (start, length, pitch, velocity, instrument, arpeggio) in done
    ]
    return notes, tempos
