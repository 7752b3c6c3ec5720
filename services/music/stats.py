"""Musical statistics of a song, from the notes its register writes play (``notes.py``).

``song_stats(notes, duration_cycles)`` (or ``stats_of_writes``) measures what a listener would
hear. Every statistic uses onsets (``notes.onset_groups``): notes that begin with a
trigger or a held legato pitch (arpeggio and slide steps are ornaments), those of a
channel less than 3 frames apart taken as one (a slide into a note), with the pitch
of the longest; unless it says otherwise. ``docs/evaluation.md`` has the same
definitions and the figures on real Game Boy music.

- ``in_tune``: share of pitched onsets (pulse and wave) within +-30 cents of A440 equal
  temperament (``IN_TUNE_CENTS``). Notes below the lowest equal-tempered note a channel
  can play (pulse C2, wave C1, less 30 cents: frequency register values near 0, which
  drivers use for thumps) are not counted as pitched.
- ``regularity``: how strongly onsets fall on one steady grid, above chance. Onsets of
  all channels within a frame are merged. For each grid step ``g`` from 0.06 to 0.5 s
  (``GRID_SECONDS``, geometric steps of 0.1%: from a sixteenth note at 250 BPM, four
  frames, to an eighth at 60 BPM, so a beat or one of its subdivisions) and its best
  phase, ``hit(g)`` is the share of onsets within ``GRID_TOLERANCE`` of the grid (20 ms,
  counted on 0.5 ms bins: a driver whose rows are not a whole number of frames starts
  each row up to a frame off its ideal time). ``fit(g) = (hit - c) / (1 - c)``, where
  ``c = 2 tolerance / g`` is the share a random onset hits; ``S`` is the best ``fit``
  over ``g``. The same search on as many uniformly random onsets over the same span
  (mean of ``RANDOM_DRAWS`` seeded draws) gives ``S0``, and ``regularity = (S - S0) /
  (1 - S0)``, clipped to 0..1: random onsets score about 0, a drum machine 1.
  ``grid_seconds`` is the best ``g``.
- ``motif_repetition``: share of ``MOTIF_NOTES``-note patterns that recur elsewhere in
  the song. On each pitched channel, each run of 4 consecutive onsets gives a pattern:
  its 3 pitch intervals in semitones (rounded) and the 2 ratios of consecutive
  inter-onset intervals, as log2 rounded to halves (so a quarter then an eighth is the
  same pattern at any tempo). A pattern recurs if an equal one starts on another
  channel or at least 4 notes away on the same channel.
- ``key_clarity``: the Pearson correlation between the song's pitch-class histogram
  (pitched notes, steps included, weighted by duration) and the Krumhansl-Kessler
  major and minor key profiles rotated to all 12 tonics; the best of the 24 (``key``).
- per channel: ``pitch_range`` (lowest and highest pitched onset, MIDI) and
  ``notes_per_second`` (onsets a second);
- ``silence_share``: share of the song's length in which no channel sounds;
  ``silent``: the song sounds less than ``SILENT_BELOW`` (10%) of the time.
- ``memorisation`` (``CopyIndex``): the longest stretch of a generated song copied from
  a set of training songs, in notes and seconds. A song is a sequence of onsets of all
  channels in order of their start frame (channel order within a frame), each a token
  (channel, pitch rounded to a semitone or the NR43 value, frames since the previous
  onset). Every ``COPY_NGRAM``-token n-gram of the training songs is hashed; the
  generated song's n-grams are looked up and each match is extended along its diagonal
  (same offset between the two songs); the longest chain of consecutive matches is the
  copy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numba as nb
import numpy as np

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES, ApuWrites
from gbsynth.common.hashing import mix64
from gbsynth.music.notes import CHANNELS, NOISE, Notes, decode_notes, onset_groups

IN_TUNE_CENTS = 30.0
LOWEST_PITCHED = (36 - 0.3, 36 - 0.3, 24 - 0.3)
"""Per pitched channel, the lowest pitch counted as a pitch: its lowest equal-tempered note
(pulse C2 = 65.4 Hz, wave C1 = 32.7 Hz) less 30 cents."""
GRID_SECONDS = (0.06, 0.5)
GRID_STEP_RATIO = 1.001
GRID_TOLERANCE = 0.020
GRID_BIN_SECONDS = 0.0005
"""Onset phases are counted in bins this wide: the tolerance holds to half a bin."""
RANDOM_DRAWS = 4
MIN_ONSETS = 8
"""Fewer onsets than this give a regularity and motif repetition of 0."""
MOTIF_NOTES = 4
SILENT_BELOW = 0.10
COPY_NGRAM = 8
PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# Krumhansl and Kessler (1982) probe-tone ratings, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


class StatsError(ValueError):
    """Input a statistic cannot be computed from (a negative length, say)."""


@dataclass(frozen=True)
class SongStats:
    """The statistics of one song (see the module docstring). ``None``: not measurable
    (no pitched notes, too few onsets)."""

    seconds: float
    in_tune: float | None
    regularity: float
    grid_seconds: float | None
    motif_repetition: float
    key_clarity: float | None
    key: str | None
    pitch_range: tuple[tuple[float, float] | None, ...]
    """Per channel (pulse 1, pulse 2, wave): lowest and highest onset pitch; None if none."""
    notes_per_second: tuple[float, ...]
    """Per channel (pulse 1, pulse 2, wave, noise)."""
    silence_share: float
    silent: bool

    def as_dict(self) -> dict:
        return asdict(self)


def pitched_onsets(notes: Notes) -> Notes:
    """Onsets (``onset_groups``) of the pulse and wave channels at or above the channel's
    lowest pitch."""
    onsets = onset_groups(notes)
    floor = np.array(LOWEST_PITCHED + (np.inf,))[onsets.channel]
    return onsets.select(onsets.pitched & (onsets.pitch >= floor))


def in_tune_share(notes: Notes) -> float | None:
    pitched = pitched_onsets(notes)
    if not len(pitched):
        return None
    cents = np.abs(pitched.pitch - np.round(pitched.pitch)) * 100.0
    return float(np.mean(cents <= IN_TUNE_CENTS))


def merged_onset_seconds(notes: Notes) -> np.ndarray:
    """Onset times of all channels in seconds, those within a frame of the previous merged."""
    times = np.sort(onset_groups(notes).start) / CPU_HZ
    if times.size == 0:
        return times
    frame = FRAME_CYCLES / CPU_HZ
    keep = [0]
    for i in range(1, times.size):  # onsets a second: a Python loop is fast enough
        if times[i] - times[keep[-1]] >= frame:
            keep.append(i)
    return times[np.array(keep)]


@nb.njit(cache=True, nogil=True)
def _best_grid(times, lo, hi, ratio, tolerance):
    """Best ``fit`` over grid steps ``lo..hi`` (geometric, ``ratio`` apart) and its step.

    Each step's onset phases are counted in ``GRID_BIN_SECONDS`` bins and the best phase
    is the circular window of ``2 tolerance`` holding the most (a sort-free pass)."""
    n = times.shape[0]
    best, best_step = -1.0, 0.0
    counts = np.zeros(int(hi / GRID_BIN_SECONDS) + 2, np.int64)
    window = int(round(2.0 * tolerance / GRID_BIN_SECONDS)) + 1
    step = lo
    while step <= hi:
        bins = int(np.ceil(step / GRID_BIN_SECONDS))
        counts[:bins] = 0
        for k in range(n):
            counts[int((times[k] % step) / GRID_BIN_SECONDS) % bins] += 1
        width = min(window, bins)
        total = 0
        for b in range(width):
            total += counts[b]
        most = total
        for b in range(bins):
            total += counts[(b + width) % bins] - counts[b]
            most = max(most, total)
        chance = min(2.0 * tolerance / step, 0.999)
        fit = (min(most, n) / n - chance) / (1.0 - chance)
        if fit > best:
            best, best_step = fit, step
        step *= ratio
    return best, best_step


def regularity(onset_seconds: np.ndarray) -> tuple[float, float | None]:
    """Metric regularity of merged onset times and the best grid step (module docstring)."""
    times = np.asarray(onset_seconds, np.float64)
    if times.size < MIN_ONSETS:
        return 0.0, None
    lo, hi = GRID_SECONDS
    search = (lo, hi, GRID_STEP_RATIO, GRID_TOLERANCE)
    fit, step = _best_grid(times, *search)
    rng = np.random.default_rng(0)
    chance = np.mean(
        [
            _best_grid(np.sort(rng.uniform(times[0], times[-1], times.size)), *search)[0]
            for _ in range(RANDOM_DRAWS)
        ]
    )
    value = (fit - chance) / (1.0 - chance) if chance < 1 else 0.0
    return float(np.clip(value, 0.0, 1.0)), float(step)


def motif_repetition(notes: Notes) -> float:
    """Share of 4-onset patterns (intervals and rhythm ratios) that recur (module docstring)."""
    keys, places = [], []
    pitched = pitched_onsets(notes)
    for channel in range(NOISE):
        track = pitched.on_channel(channel)
        if len(track) < MOTIF_NOTES:
            continue
        intervals = np.round(np.diff(track.pitch)).astype(np.int64)
        gaps = np.maximum(np.diff(track.start), 1).astype(np.float64)
        ratios = np.round(2 * np.log2(gaps[1:] / gaps[:-1])).astype(np.int64)
        count = len(track) - MOTIF_NOTES + 1
        for i in range(count):
            keys.append((*intervals[i : i + 3], *ratios[i : i + 2]))
            places.append((channel, i))
    if len(keys) < 2:
        return 0.0
    seen: dict[tuple, list[tuple[int, int]]] = {}
    for key, place in zip(keys, places, strict=True):
        seen.setdefault(key, []).append(place)
    recurring = 0
    for key, (channel, i) in zip(keys, places, strict=True):
        if any(c != channel or abs(j - i) >= MOTIF_NOTES for c, j in seen[key]):
            recurring += 1
    return recurring / len(keys)


def best_key(histogram: np.ndarray) -> tuple[float, int, str]:
    """The Krumhansl-Kessler key that best fits a 12-bin pitch-class histogram: its
    correlation, tonic (0 = C) and mode (``"major"`` or ``"minor"``)."""
    best, tonic_of, mode_of = -2.0, 0, "major"
    for mode, profile in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for tonic in range(12):
            r = float(np.corrcoef(histogram, np.roll(profile, tonic))[0, 1])
            if r > best:
                best, tonic_of, mode_of = r, tonic, mode
    return best, tonic_of, mode_of


def key_clarity(notes: Notes) -> tuple[float | None, str | None]:
    """Best correlation of the duration-weighted pitch-class histogram with the 24
    Krumhansl-Kessler key profiles, and that key's name."""
    floor = np.array(LOWEST_PITCHED + (np.inf,))[notes.channel]
    pitched = notes.select(notes.pitched & (notes.pitch >= floor))
    if not len(pitched):
        return None, None
    classes = np.round(pitched.pitch).astype(np.int64) % 12
    histogram = np.bincount(classes, weights=pitched.seconds, minlength=12)
    if np.count_nonzero(histogram) < 2:
        return None, None  # one pitch class correlates with no profile meaningfully
    r, tonic, mode = best_key(histogram)
    return r, f"{PITCH_CLASSES[tonic]} {mode}"


def sounding_share(notes: Notes, duration_cycles: int) -> float:
    """Share of ``duration_cycles`` in which at least one note sounds."""
    if duration_cycles <= 0 or not len(notes):
        return 0.0
    start = np.clip(notes.start, 0, duration_cycles)
    end = np.clip(notes.end, 0, duration_cycles)
    order = np.argsort(start, kind="stable")
    start, end = start[order], end[order]
    reach = np.maximum.accumulate(end)
    # A new covered span begins where a note starts after everything before it has ended.
    new = np.empty(len(start), bool)
    new[0] = True
    new[1:] = start[1:] > reach[:-1]
    span_starts = start[new]
    span_ends = np.append(reach[np.flatnonzero(new)[1:] - 1], reach[-1])
    return float(np.sum(span_ends - span_starts)) / duration_cycles


def song_stats(notes: Notes, duration_cycles: int) -> SongStats:
    """All statistics of a song's notes over ``duration_cycles``."""
    if duration_cycles <= 0:
        raise StatsError(f"a song must last more than 0 cycles, got {duration_cycles}")
    seconds = duration_cycles / CPU_HZ
    onsets = onset_groups(notes)
    pitched = pitched_onsets(notes)
    ranges = []
    for channel in range(NOISE):
        p = pitched.pitch[pitched.channel == channel]
        ranges.append((round(float(p.min()), 2), round(float(p.max()), 2)) if p.size else None)
    per_second = np.bincount(onsets.channel, minlength=len(CHANNELS)) / seconds
    reg, grid = regularity(merged_onset_seconds(notes))
    clarity, key = key_clarity(notes)
    sounding = sounding_share(notes, duration_cycles)
    return SongStats(
        seconds=seconds,
        in_tune=in_tune_share(notes),
        regularity=reg,
        grid_seconds=grid,
        motif_repetition=motif_repetition(notes) if len(onsets) >= MIN_ONSETS else 0.0,
        key_clarity=clarity,
        key=key,
        pitch_range=tuple(ranges),
        notes_per_second=tuple(float(x) for x in per_second),
        silence_share=1.0 - sounding,
        silent=sounding < SILENT_BELOW,
    )


def stats_of_writes(writes: ApuWrites, duration_cycles: int) -> SongStats:
    return song_stats(decode_notes(writes, duration_cycles), duration_cycles)


# -- memorisation ----------------------------------------------------------------------------


def copy_tokens(notes: Notes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A song's onsets as copy tokens (uint64), in order, with their start and end cycles.

    A token packs the channel, the pitch (rounded; noise: NR43) and the frames since the
    previous onset (capped at 4095)."""
    onsets = onset_groups(notes)
    frame = onsets.start // FRAME_CYCLES
    order = np.lexsort((onsets.channel, frame))
    frame, channel = frame[order], onsets.channel[order].astype(np.int64)
    pitch = np.round(onsets.pitch[order]).astype(np.int64) & 0xFFFF
    gap = np.minimum(np.diff(frame, prepend=frame[:1]), 4095)
    tokens = (channel << 28 | pitch << 12 | gap).astype(np.uint64) + np.uint64(1)
    return tokens, onsets.start[order], onsets.end[order]


@nb.njit(cache=True, nogil=True)
def _ngram_hashes(tokens, n):
    """Hash of each ``n``-token window (order-sensitive); one fewer than ``n`` at the end."""
    count = max(0, tokens.shape[0] - n + 1)
    out = np.empty(count, np.uint64)
    for i in range(count):
        h = np.uint64(0x9E3779B97F4A7C15)
        for k in range(n):
            h = mix64(h ^ tokens[i + k])
        out[i] = h
    return out


@nb.njit(cache=True, nogil=True)
def _longest_chain(query, sorted_hashes, positions, song_of, max_hits):
    """Longest run of consecutive query windows matching consecutive windows of one
    training song: (first query window, windows in the run)."""
    n = query.shape[0]
    best_len, best_at = 0, -1
    # For each query window, the diagonals (training position - query position) it
    # continues: run length per diagonal carried from the previous window.
    prev_diag = np.empty(0, np.int64)
    prev_len = np.empty(0, np.int64)
    for i in range(n):
        lo = np.searchsorted(sorted_hashes, query[i])
        hi = np.searchsorted(sorted_hashes, query[i], side="right")
        hi = min(hi, lo + max_hits)
        diag = np.empty(hi - lo, np.int64)
        length = np.ones(hi - lo, np.int64)
        for k in range(lo, hi):
            d = positions[k] - i
            diag[k - lo] = d
            for m in range(prev_diag.shape[0]):
                if prev_diag[m] == d and song_of[positions[k]] == song_of[positions[k] - 1]:
                    length[k - lo] = prev_len[m] + 1
                    break
            if length[k - lo] > best_len:
                best_len = length[k - lo]
                best_at = i - best_len + 1
        prev_diag, prev_len = diag, length
    return best_at, best_len


@dataclass(frozen=True)
class Copy:
    """The longest stretch of a song found in the training songs."""

    notes: int
    seconds: float
    start_seconds: float | None


class CopyIndex:
    """Hashed n-grams of training songs' onsets, to find what a generated song copies.

    Building and querying are numpy and numba passes: 25 hours of music (940,000 onsets)
    index in about 4 s and a 30 s song is looked up in about 60 ms. A hash matching
    more than ``max_hits`` training places is followed at its first ``max_hits``.
    """

    def __init__(self, songs: Iterable[Notes], ngram: int = COPY_NGRAM, max_hits: int = 64):
        self.ngram = ngram
        self.max_hits = max_hits
        hashes, song_ids = [], []
        for index, notes in enumerate(songs):
            tokens, _, _ = copy_tokens(notes)
            h = _ngram_hashes(tokens, ngram)
            hashes.append(h)
            song_ids.append(np.full(h.size, index, np.int64))
        # Windows of all songs end to end; song_of tells a chain not to cross songs.
        all_hashes = np.concatenate(hashes) if hashes else np.empty(0, np.uint64)
        self.song_of = np.concatenate(song_ids) if song_ids else np.empty(0, np.int64)
        order = np.argsort(all_hashes, kind="stable")
        self.sorted_hashes = all_hashes[order]
        self.positions = order.astype(np.int64)
        self.songs = len(hashes)

    def __len__(self) -> int:
        return int(self.sorted_hashes.size)

    def longest_copy(self, notes: Notes) -> Copy:
        tokens, start, end = copy_tokens(notes)
        query = _ngram_hashes(tokens, self.ngram)
        if query.size == 0 or len(self) == 0:
            return Copy(0, 0.0, None)
        at, windows = _longest_chain(
            query, self.sorted_hashes, self.positions, self.song_of, self.max_hits
        )
        if windows == 0:
            return Copy(0, 0.0, None)
        count = windows + self.ngram - 1
        last = at + count - 1
        return Copy(count, float(end[last] - start[at]) / CPU_HZ, float(start[at]) / CPU_HZ)


# -- tables ----------------------------------------------------------------------------------

SUMMARY_ROWS = (
    ("in tune (share of notes)", "in_tune"),
    ("metric regularity", "regularity"),
    ("motif repetition", "motif_repetition"),
    ("key clarity", "key_clarity"),
    ("silence share", "silence_share"),
)


def _values(stats: Sequence[SongStats], field: str) -> np.ndarray:
    values = [getattr(s, field) for s in stats]
    return np.array([v for v in values if v is not None], np.float64)


def summary(stats: Sequence[SongStats]) -> dict:
    """Median, minimum and maximum of each statistic over songs (JSON-ready)."""
    out: dict = {"songs": len(stats), "silent_songs": sum(1 for s in stats if s.silent)}
    for _, field in SUMMARY_ROWS:
        v = _values(stats, field)
        out[field] = (
            {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}
            if v.size
            else None
        )
    for index, name in enumerate(CHANNELS):
        rate = np.array([s.notes_per_second[index] for s in stats])
        out[f"notes_per_second {name}"] = (
            {"median": float(np.median(rate)), "min": float(rate.min()), "max": float(rate.max())}
            if rate.size
            else None
        )
        if index < NOISE:
            spans = np.array(
                [
                    s.pitch_range[index][1] - s.pitch_range[index][0]
                    for s in stats
                    if s.pitch_range[index] is not None
                ]
            )
            out[f"pitch_range {name}"] = (
                {
                    "median": float(np.median(spans)),
                    "min": float(spans.min()),
                    "max": float(spans.max()),
                }
                if spans.size
                else None
            )
    return out


def _cell(entry: dict | None) -> str:
    if entry is None:
        return "-"
    return f"{entry['median']:.2f} ({entry['min']:.2f}-{entry['max']:.2f})"


def comparison_table(generated: Sequence[SongStats], real: Sequence[SongStats]) -> str:
    """A text table: per statistic, generated and real median (range)."""
    g, r = summary(generated), summary(real)
    rows = [(label, field) for label, field in SUMMARY_ROWS]
    rows += [(f"notes per second, {name}", f"notes_per_second {name}") for name in CHANNELS]
    rows += [
        (f"pitch range (semitones), {name}", f"pitch_range {name}") for name in CHANNELS[:NOISE]
    ]
    width = max(len(label) for label, _ in rows) + 2
    lines = [
        f"{'statistic':<{width}}{'generated median (range)':<28}real median (range)",
        f"{'songs':<{width}}{g['songs']:<28}{r['songs']}",
    ]
    for label, field in rows:
        lines.append(f"{label:<{width}}{_cell(g.get(field)):<28}{_cell(r.get(field))}")
    lines.append(f"{'silent songs':<{width}}{g['silent_songs']:<28}{r['silent_songs']}")
    return "\n".join(lines)


def format_stats(name: str, stats: SongStats) -> str:
    """One line per song: its main statistics."""

    def f(v: float | None) -> str:
        return "  -  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:5.2f}"

    return (
        f"{name:<28} tune {f(stats.in_tune)} reg {f(stats.regularity)} "
        f"motif {f(stats.motif_repetition)} key {f(stats.key_clarity)} {stats.key or '-':<9} "
        f"silence {f(stats.silence_share)} notes/s "
        + "/".join(f"{x:.1f}" for x in stats.notes_per_second)
    )
