"""Arrange a ``Score`` for the Game Boy: songs our sound driver plays.

Voices. Pitched notes go to three channels by role: the melody to pulse 1, a second line
to pulse 2 and the bass to the wave channel; percussion goes to the noise channel through
the song's drum kit. The first pitched part of a score (the voice of a song, the first
violin, the tune of a folk tune) is the melody; of the other parts the lowest is the bass
and the rest the second line. When one part must feed two roles (a piano accompaniment,
a chord track) each onset's lowest note is the bass and the others the second line; a
score with one pitched part gives its top note to the melody. A ProTracker module keeps
its own channel layout (channels 1-3 to pulse 1, pulse 2 and wave).

Each channel plays one note at a time, started only at a source onset: the melody keeps
the highest line (a new note lower than the one sounding waits), the bass the lowest, and
the second line plays a chord's notes as the driver's arpeggio (root, +x, +y each frame).
The other notes of a chord in the melody's or the bass's part join the second line; a
second-line note in unison with the melody is left out.
Pitches are folded by octaves into what each channel plays well.

Time. A row is a fixed fraction of a quarter note at the piece's main tempo; the rows per
quarter are chosen so that as many onsets as possible land exactly on a row (8 for
sixteenths and thirty-seconds, 12 or 6 with triplets...), as fine as the driver allows (a
row lasts at least a frame). The driver plays one tempo, so a stretch at another tempo of
the tempo map is stretched in rows (each starting on a whole row) and its notes rounded to
the nearest row. Velocity sets each note's envelope volume.

Sounds come from ``composer.sound_set(seed)``: duty, envelopes, vibrato, wave shape and
drum kit differ between seeds. A piece longer than ``seconds_limit`` (or too big for one
GBS file) is cut at bar lines into several songs.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gbsynth.music import driver as D
from gbsynth.music.composer import SoundSet, _events, _Note, sound_set
from gbsynth.music.rom import RomBuildError, gbs_file
from gbsynth.music.score import Note, Score, ScoreError
from gbsynth.music.song import Module, Song, SongError, assemble_song

DEFAULT_SECONDS_LIMIT = 300.0
"""Longest song made from one piece; longer pieces are recorded in parts."""
ROW_CHOICES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48)
"""Rows per quarter note the arranger considers."""
ON_ROW_QUARTERS = 1 / 256
"""An onset this close to a row (in quarter notes) lands on it: MIDI files whose ticks cannot
hold a triplet exactly (1,024 a quarter) write it a tick off."""
GRID_SLACK = 0.005
"""A coarser grid is taken when it puts at most this share fewer onsets on a row."""
MELODY, SECOND, BASS, DRUMS = 0, 1, 2, 3
ROLE_NAMES = ("melody", "second line", "bass", "drums")
# Ranges (MIDI numbers) each channel plays well: the wave channel's bass lies lower.
RANGES = {MELODY: (55, 96), SECOND: (48, 84), BASS: (36, 64)}
SPLIT_PITCH = 55
"""In a part split between bass and second line, a lone note below G3 is bass."""
ROLE_GAIN = {MELODY: 1.0, SECOND: 0.75, BASS: 1.0}
MAX_ARPEGGIO_STEP = 15
GBS_END = 0x8000
MAX_SECONDS = 4 * 3600.0
TAIL_SECONDS = 0.25
"""Silence recorded after each part's music (its last notes released)."""
MAX_BARS = 100_000

# General MIDI percussion keys -> kit drum (the composer's kit: kick, snare, hat, open, tom)
DRUM_OF_KEY = {35: "kick", 36: "kick", 37: "snare", 38: "snare", 39: "snare", 40: "snare",
               41: "tom", 43: "tom", 45: "tom", 47: "tom", 48: "tom", 50: "tom", 42: "hat",
               44: "hat", 54: "hat", 69: "hat", 70: "hat", 46: "open", 49: "open", 51: "open",
               52: "open", 53: "open", 55: "open", 57: "open", 59: "open"}  # fmt: skip
DRUM_PRIORITY = ("kick", "snare", "tom", "open", "hat")


@dataclass
class ArrangedPart:
    """One song made from a piece (the whole piece or one part of it), assembled."""

    song: Song
    module: Module
    part: int
    """0 for the first part (or the whole piece)."""
    parts: int
    start_quarter: float
    end_quarter: float
    seconds: float
    """Length of the music and a short silence after it: what a recording of the part
    should cover (the song goes on resting a little longer, then loops)."""
    on_row_share: float
    """Share of the piece's onsets that land exactly on a row."""
    rows_per_quarter: int
    notes: dict[int, list[ChannelNote]] = field(default_factory=dict)
    """What each channel plays (for checks against the source)."""

    def gbs(self) -> bytes:
        return gbs_file(self.module, title=self.song.title, author="gbsynth arrange")


@dataclass(frozen=True)
class ChannelNote:
    """A note as a channel plays it: ``row`` and ``end`` in song rows, ``note`` as the driver
    numbers it (0 = C2; noise: the drum), the source note it came from."""

    row: int
    end: int
    note: int
    arpeggio: int
    velocity: int
    source: Note


class _RowMap:
    """Quarter notes -> rows (as floats) through the tempo map, vectorised.

    The song has one tempo, the piece's main one: a quarter at another tempo lasts
    ``rows x main / bpm`` rows. Each tempo change starts on a whole row, so the notes of
    every stretch at the main tempo land on rows wherever the stretches before it ended.
    """

    def __init__(self, score: Score, main: float, rows: int) -> None:
        self.at = np.array([t.at for t in score.tempos], dtype=np.float64)
        self.per_quarter = rows * main / np.array([t.bpm for t in score.tempos], np.float64)
        base = [0.0]
        for i in range(1, len(self.at)):
            base.append(round(base[-1] + (self.at[i] - self.at[i - 1]) * self.per_quarter[i - 1]))
        self.base = np.array(base)

    def rows(self, quarters: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.at, quarters, side="right") - 1
        i = np.clip(i, 0, len(self.at) - 1)
        return self.base[i] + (quarters - self.at[i]) * self.per_quarter[i]


def main_bpm(score: Score) -> float:
    """The tempo most of the piece is in (by quarters played at it)."""
    end = max(score.end, score.tempos[-1].at + 1e-9)
    spans: dict[float, float] = defaultdict(float)
    for i, change in enumerate(score.tempos):
        stop = score.tempos[i + 1].at if i + 1 < len(score.tempos) else end
        spans[round(change.bpm, 3)] += max(0.0, stop - change.at)
    return max(spans.items(), key=lambda kv: (kv[1], -kv[0]))[0]


def _choose_rows(
    score: Score, bpm: float, rows_float_of: Callable[[np.ndarray, int], np.ndarray]
) -> tuple[int, float, np.ndarray]:
    """Rows per quarter (the coarsest grid within GRID_SLACK of the best fit), its share of
    onsets on a row, and the onsets' rows."""
    starts = np.array([n.start for n in score.notes], dtype=np.float64)
    fastest = D.FRAMES_PER_SECOND * 60.0 / bpm  # rows per quarter at one row a frame
    bar = score.meters[0].bar_quarters
    candidates = [r for r in ROW_CHOICES if r < fastest and abs(r * bar - round(r * bar)) < 1e-9]
    if not candidates:
        raise ScoreError(f"{score.title}: {bpm:.0f} bpm is too fast for the driver", "tempo")
    shares = {}
    for rows in candidates:
        exact = rows_float_of(starts, rows)
        shares[rows] = float(np.mean(np.abs(exact - np.round(exact)) < ON_ROW_QUARTERS * rows))
    best = max(shares.values())
    rows = next(r for r in candidates if shares[r] >= best - GRID_SLACK)
    return rows, shares[rows], rows_float_of(starts, rows)


def _fold(pitch: int, low: int, high: int) -> int:
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


def _volume(velocity: int, gain: float) -> int:
    return max(1, min(15, round((2 + 13 * velocity / 127) * gain)))


def _part_roles(score: Score) -> dict[int, int | str]:
    """Role of each pitched part: MELODY/SECOND/BASS, or ``"split"`` (lowest note bass, the
    rest second line) or ``"all"`` (top melody, bottom bass, the rest second line)."""
    pitched = [i for i, p in enumerate(score.parts) if not p.drums]
    used = {n.part for n in score.notes}
    pitched = [i for i in pitched if i in used]
    if not pitched:
        return {}
    if score.kind == "mod":
        # a module laid out for the Game Boy: its channels 1-3 are pulse 1, pulse 2, wave
        order = {0: MELODY, 1: SECOND, 2: BASS}
        return {p: order.get(p, SECOND) for p in pitched}
    if len(pitched) == 1:
        return {pitched[0]: "all"}
    roles: dict[int, int | str] = {pitched[0]: MELODY}
    rest = pitched[1:]
    if len(rest) == 1:
        roles[rest[0]] = "split"
        return roles
    mean = defaultdict(list)
    for n in score.notes:
        if n.part in rest:
            mean[n.part].append(n.pitch)
    lowest = min(rest, key=lambda p: (float(np.mean(mean[p])), -p))
    for p in rest:
        roles[p] = BASS if p == lowest else SECOND
    return roles


@dataclass
class _Slot:
    row: int
    end: int
    pitch: int
    velocity: int
    source: Note


def _monophonic(
    slots: list[_Slot], role: int, melody_at: dict[int, int]
) -> list[tuple[_Slot, list[int]]]:
    """One note at a time from a role's notes: (the note, the chord's other pitches). The
    second line leaves out a note the melody plays at the same time (a unison doubling)."""
    by_row: dict[int, list[_Slot]] = defaultdict(list)
    for s in slots:
        by_row[s.row].append(s)
    out: list[tuple[_Slot, list[int]]] = []
    current: _Slot | None = None
    for row in sorted(by_row):
        group = sorted(by_row[row], key=lambda s: (s.pitch, -s.end))
        if role == SECOND:
            group = [s for s in group if s.pitch != melody_at.get(row)]
            if not group:
                continue
            root = group[0]
            end = max(s.end for s in group)
            chosen = _Slot(row, end, root.pitch, max(s.velocity for s in group), root.source)
            others = sorted({s.pitch for s in group[1:]} - {root.pitch})
            out.append((chosen, others))
            current = chosen
            continue
        chosen = group[-1] if role == MELODY else group[0]
        if current is not None and current.end > row:
            if role == MELODY and chosen.pitch < current.pitch:
                continue
            if role == BASS and chosen.pitch > current.pitch:
                continue
        out.append((chosen, []))
        current = chosen
    return out


def _arpeggio(root: int, others: list[int]) -> int:
    """The driver's $xy arpeggio for a chord: up to two intervals above the root (<= 15)."""
    steps: list[int] = []
    for pitch in others:
        step = pitch - root
        while step > MAX_ARPEGGIO_STEP:
            step -= 12
        if 0 < step and step not in steps and all((step - s) % 12 for s in steps):
            steps.append(step)
    steps = sorted(steps[:2])
    if not steps:
        return 0
    return steps[0] << 4 | (steps[1] if len(steps) > 1 else 0)


def _sanitize_title(title: str) -> str:
    clean = re.sub(r"[^ -~]", "?", title).replace(";", ",").strip()
    return clean[:60] or "untitled"


def _key_and_mode(score: Score, transpose: int) -> tuple[int, str]:
    if score.key_fifths is None:
        return transpose % 12, "major"
    tonic = (7 * score.key_fifths + (9 if score.minor else 0) + transpose) % 12
    return tonic, "minor" if score.minor else "major"


def _bar_layout(bar_quarters: float, rows: int) -> tuple[int, int]:
    """(beats_per_bar, rows_per_beat) of a Song whose bar is ``bar_quarters`` long."""
    bar_rows = max(1, round(bar_quarters * rows))
    beats = max(1, round(bar_quarters)) if bar_quarters >= 1 else 1
    if bar_rows % beats:
        return 1, bar_rows
    return beats, bar_rows // beats


def arrange_parts(
    score: Score,
    seed: int,
    *,
    transpose: int = 0,
    tempo_factor: float = 1.0,
    seconds_limit: float = DEFAULT_SECONDS_LIMIT,
) -> list[ArrangedPart]:
    """The piece as assembled songs, one per part of at most ``seconds_limit``."""
    score.check()
    if not (math.isfinite(tempo_factor) and 0.25 <= tempo_factor <= 4.0):
        raise ScoreError(f"tempo factor {tempo_factor} is outside 0.25-4", "bad_arrangement")
    if not -24 <= transpose <= 24:
        raise ScoreError(f"transposition {transpose} is outside -24..24", "bad_arrangement")
    if not seconds_limit > 0:
        raise ScoreError(f"seconds limit {seconds_limit} must be positive", "bad_arrangement")
    if score.seconds > MAX_SECONDS:
        raise ScoreError(f"{score.title}: {score.seconds / 3600:.1f} hours long", "too_large")
    if score.end / min(m.bar_quarters for m in score.meters) > MAX_BARS:
        raise ScoreError(f"{score.title}: more than {MAX_BARS} bars", "too_large")
    sounds = sound_set(seed)
    main = main_bpm(score)
    bpm = main * tempo_factor

    def rows_float_of(quarters: np.ndarray, rows: int) -> np.ndarray:
        return _RowMap(score, main, rows).rows(quarters)

    rows, on_row_share, _ = _choose_rows(score, bpm, rows_float_of)
    tempo = D.tempo_value(bpm, rows)
    rows_per_second = D.rows_per_second(tempo)
    row_map = _RowMap(score, main, rows)

    def row_of(quarters: np.ndarray) -> np.ndarray:
        return np.round(row_map.rows(quarters)).astype(np.int64)

    notes = score.notes
    starts = row_of(np.array([n.start for n in notes], dtype=np.float64))
    ends = row_of(np.array([n.start + n.length for n in notes], dtype=np.float64))
    ends = np.maximum(ends, starts + 1)

    roles = _part_roles(score)
    by_role: dict[int, list[_Slot]] = {MELODY: [], SECOND: [], BASS: []}
    drum_hits: dict[int, tuple[int, Note]] = {}
    split_groups: dict[tuple[int, int], list[_Slot]] = defaultdict(list)  # (part, row)
    for n, start, end in zip(notes, starts.tolist(), ends.tolist(), strict=True):
        if score.parts[n.part].drums:
            name = DRUM_OF_KEY.get(n.pitch, "snare" if n.pitch < 60 else "hat")
            rank = DRUM_PRIORITY.index(name)
            held = drum_hits.get(start)
            if held is None or rank < held[0]:
                drum_hits[start] = (rank, n)
            continue
        split_groups[(n.part, start)].append(_Slot(start, end, n.pitch + transpose, n.velocity, n))
    for (part, _), group in split_groups.items():
        group.sort(key=lambda s: s.pitch)
        if roles[part] == MELODY:  # a double stop: the top note is the melody's
            by_role[MELODY].append(group[-1])
            by_role[SECOND].extend(group[:-1])
        elif roles[part] == BASS:  # a chord in the bass part: its lowest note is the bass
            by_role[BASS].append(group[0])
            by_role[SECOND].extend(group[1:])
        elif roles[part] == SECOND:
            by_role[SECOND].extend(group)
        elif roles[part] == "all":
            by_role[MELODY].append(group[-1])
            group = group[:-1]
            if group:
                by_role[BASS].append(group[0])
                by_role[SECOND].extend(group[1:])
        elif len(group) == 1 and group[0].pitch >= SPLIT_PITCH:
            by_role[SECOND].append(group[0])
        else:
            by_role[BASS].append(group[0])
            by_role[SECOND].extend(group[1:])

    channel_notes: dict[int, list[ChannelNote]] = {}
    melody_at: dict[int, int] = {}
    for role in (MELODY, SECOND, BASS):
        low, high = RANGES[role]
        played = []
        for slot, others in _monophonic(by_role[role], role, melody_at):
            if role == MELODY and score.kind != "mod":  # a module's doublings are its own
                melody_at[slot.row] = slot.pitch
            pitch = _fold(slot.pitch, low, high)
            shift = pitch - slot.pitch  # a chord moves as a whole: its voicing stays
            arp = _arpeggio(pitch, [p + shift for p in others]) if others else 0
            arp = arp or (slot.source.arpeggio if score.kind == "mod" else 0)
            played.append(
                ChannelNote(
                    slot.row, slot.end, pitch - D.LOWEST_MIDI, arp, slot.velocity, slot.source
                )
            )
        channel_notes[role] = played
    channel_notes[DRUMS] = [
        ChannelNote(row, row + 1, sounds.kit[DRUM_PRIORITY[rank]], 0, n.velocity, n)
        for row, (rank, n) in sorted(drum_hits.items())
    ]

    # cut at bar lines into parts of at most seconds_limit
    bar_rows_at = row_of(np.array(score.bar_starts() + [score.end], dtype=np.float64)).tolist()
    bar_quarters = score.bar_starts() + [score.end]
    total_rows = max(int(ends.max()), bar_rows_at[-1])
    limit_rows = max(1, int(seconds_limit * rows_per_second))
    spans: list[tuple[int, int]] = []  # bar indexes [first, last)
    first = 0
    for i in range(1, len(bar_rows_at)):
        if bar_rows_at[i] - bar_rows_at[first] > limit_rows and i - 1 > first:
            spans.append((first, i - 1))
            first = i - 1
    spans.append((first, len(bar_rows_at) - 1))
    bar_rows_at[-1] = total_rows

    tail_rows = math.ceil(TAIL_SECONDS * rows_per_second)
    title = _sanitize_title(score.title)
    key, mode = _key_and_mode(score, transpose)
    beats, rows_per_beat = _bar_layout(score.meters[0].bar_quarters, rows)

    def build(first_bar: int, last_bar: int) -> list[tuple[int, int, Song, Module, dict]]:
        lo, hi = bar_rows_at[first_bar], bar_rows_at[last_bar]
        try:
            song, picked = _song(
                channel_notes,
                lo,
                hi,
                sounds,
                title,
                key,
                mode,
                tempo,
                beats,
                rows_per_beat,
                seed,
                rows,
                tail_rows,
            )
            module = assemble_song(song)
            if module.origin + len(module.code) > GBS_END:
                raise RomBuildError("too large")
        except SongError as exc:
            raise ScoreError(f"{title}: {exc}", "bad_arrangement") from exc
        except RomBuildError as exc:
            if last_bar - first_bar < 2:
                raise ScoreError(
                    f"{title}: one bar does not fit in a GBS file", "too_large"
                ) from exc
            middle = (first_bar + last_bar) // 2
            return build(first_bar, middle) + build(middle, last_bar)
        return [(first_bar, last_bar, song, module, picked)]

    built = []
    for first_bar, last_bar in spans:
        built += build(first_bar, last_bar)
    out = []
    for index, (first_bar, last_bar, song, module, picked) in enumerate(built):
        seconds = (bar_rows_at[last_bar] - bar_rows_at[first_bar] + tail_rows) / rows_per_second
        out.append(
            ArrangedPart(
                song,
                module,
                index,
                len(built),
                bar_quarters[first_bar],
                bar_quarters[last_bar],
                seconds,
                on_row_share,
                rows,
                picked,
            )
        )
    return out


def _song(
    channel_notes: dict[int, list[ChannelNote]],
    lo: int,
    hi: int,
    sounds: SoundSet,
    title: str,
    key: int,
    mode: str,
    tempo: int,
    beats: int,
    rows_per_beat: int,
    seed: int,
    rows_per_quarter: int,
    tail_rows: int,
) -> tuple[Song, dict[int, list[ChannelNote]]]:
    bar_rows = beats * rows_per_beat
    # rests after the music (and at least one row more before the song would loop)
    bars = max(1, -(-(hi - lo + tail_rows + 1) // bar_rows))
    total = bars * bar_rows
    long_second = _long_notes(channel_notes[SECOND], rows_per_quarter)
    second = sounds.harmony_pad if long_second else sounds.harmony_pluck
    instrument_of = {MELODY: sounds.lead, SECOND: second, BASS: sounds.bass, DRUMS: sounds.noise}
    channels = []
    picked: dict[int, list[ChannelNote]] = {}
    for role in (MELODY, SECOND, BASS, DRUMS):
        instrument = instrument_of[role]
        base = sounds.instruments[instrument].envelope
        inside = [c for c in channel_notes[role] if lo <= c.row < hi]
        picked[role] = [
            ChannelNote(c.row - lo, min(c.end, hi) - lo, c.note, c.arpeggio, c.velocity, c.source)
            for c in inside
        ]
        spans = []
        for c in picked[role]:
            if role == DRUMS:
                envelope = None
            elif role == BASS:
                envelope = base if c.velocity >= 48 else min(0x60, base + 0x20)
            else:
                envelope = _volume(c.velocity, ROLE_GAIN[role]) << 4 | (base & 0x0F)
            spans.append(_Note(c.row, c.end - c.row, c.note, instrument, envelope, c.arpeggio))
        channels.append(_events(spans, total, hold_gaps=role == DRUMS))
    song = Song(
        title=title,
        key=key,
        mode=mode,
        tempo=tempo,
        beats_per_bar=beats,
        rows_per_beat=rows_per_beat,
        bars=bars,
        loop_bar=0,
        channels=channels,
        instruments=sounds.instruments,
        drums=sounds.drums,
        wave=sounds.wave,
        seed=seed,
        form="arranged",
        styles={"wave": sounds.wave_name, "second": sounds.instruments[second].name},
    )
    return song, picked


def _long_notes(notes: list[ChannelNote], rows_per_quarter: int) -> bool:
    """Whether the line's notes are mostly a quarter note or longer (pads suit them)."""
    if not notes:
        return False
    return float(np.median([c.end - c.row for c in notes])) >= rows_per_quarter
