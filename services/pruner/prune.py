"""Pruning: cut a recording into musical segments and say why everything else was dropped.

``prune_recording(recording, config)`` is a plain function (no Kafka): the service
and the offline tool both call it, and the same recording always gives the same
segments with the same ids (recording id + start cycle), so reprocessing never
duplicates anything downstream.

How a recording is cut (all on the LCD-frame grid of ``analysis``):

1. Only observing spans count (``Recording.observing_spans``): boot and observe
   phases, never while the explorer pressed buttons nor in the settle time after.
2. In each span, *passages* are runs of sound separated by at least
   ``silence_gap_seconds`` of silence. A span with no sound is ``silence``; a passage
   shorter than ``min_seconds`` standing alone between silences is ``one_shot`` (a
   sound effect, a jingle, a beep); one cut short by the end of the span is
   ``too_short``.
3. Repeats: note starts (triggers, and pitch changes that are not steps of an
   arpeggio or slide) are hashed in windows of ``repeat_window_notes`` consecutive
   (channel, pitch) pairs, timing left out, so a loop replayed on another frame grid
   still matches. A note whose window was heard earlier in the recording (earlier
   loops, earlier spans) repeats; a run of repeats at least ``repeat_min_seconds``
   long is a loop played again: it becomes a ``repeat`` rejection and cuts the
   passage, so a segment ends at the loop point. Novel material shorter than
   ``min_seconds`` is topped up from the repeat that follows, so a short loop still
   gives one whole segment.
4. Novel stretches longer than ``max_seconds`` are split into equal parts, each
   cut moved to the strongest downbeat (most notes starting together) within
   ``boundary_search_seconds``; parts stay within [min_seconds, max_seconds].
5. Each part must sound like music, else it is rejected with the first failing
   reason: ``quiet`` (loudness below ``min_loudness_db``), ``noise_only`` (the
   noise channel carries more than ``max_noise_share`` of the sound),
   ``few_pitches`` (fewer than ``min_pitches`` distinct notes on the tonal
   channels), ``no_rhythm`` (onset autocorrelation below ``min_regularity``).

Every dropped stretch of an observing span that could have held a segment gets a
``Rejection`` with its reason and span; silent gaps between passages do not.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np

from gbsynth.common.avro import Segment, SegmentFeatures
from gbsynth.common.config import Setting, read_settings
from gbsynth.common.events import CPU_HZ, FRAME_CYCLES, ApuWrites, Recording
from gbsynth.pruner.analysis import (
    FRAMES_PER_SECOND,
    TONAL_CHANNELS,
    FrameAnalysis,
    analyse,
    loudness_db,
    rhythm,
    sequence_hashes,
)

REASONS = (
    "silence",
    "quiet",
    "one_shot",
    "too_short",
    "noise_only",
    "few_pitches",
    "no_rhythm",
    "repeat",
)
"""Every rejection reason, for metrics and summaries."""

SILENT_LEVEL = 1e-4
"""A frame whose level (0..1 of the chip's loudest) is at or below this is silent."""


class PruneConfigError(ValueError):
    """Pruning settings that contradict each other."""


_SETTINGS = {
    "min_seconds": Setting(
        "GBSYNTH_PRUNE_MIN_SECONDS", float, 8.0, "shortest segment kept", minimum=1.0
    ),
    "max_seconds": Setting(
        "GBSYNTH_PRUNE_MAX_SECONDS", float, 30.0, "longest segment kept", minimum=1.0
    ),
    "silence_gap_seconds": Setting(
        "GBSYNTH_PRUNE_SILENCE_GAP_SECONDS",
        float,
        1.5,
        "silence at least this long separates passages (segments never span it)",
        minimum=0.05,
    ),
    "min_loudness_db": Setting(
        "GBSYNTH_PRUNE_MIN_LOUDNESS_DB",
        float,
        -45.0,
        "quieter segments are rejected as near-silence (estimated RMS level of the rendered "
        "audio in dBFS; music is around -15 to -25)",
        maximum=0.0,
    ),
    "min_pitches": Setting(
        "GBSYNTH_PRUNE_MIN_PITCHES",
        int,
        4,
        "fewest distinct notes on pulse and wave channels for a segment to count as music",
        minimum=0,
    ),
    "min_regularity": Setting(
        "GBSYNTH_PRUNE_MIN_REGULARITY",
        float,
        0.2,
        "lowest onset autocorrelation peak (0..1) for a segment to count as rhythmic",
        minimum=0.0,
        maximum=1.0,
    ),
    "max_noise_share": Setting(
        "GBSYNTH_PRUNE_MAX_NOISE_SHARE",
        float,
        0.85,
        "largest share of the sound the noise channel may carry",
        minimum=0.0,
        maximum=1.0,
    ),
    "repeat_window_notes": Setting(
        "GBSYNTH_PRUNE_REPEAT_WINDOW_NOTES",
        int,
        24,
        "consecutive note starts hashed together to recognise music heard before",
        minimum=2,
    ),
    "repeat_min_seconds": Setting(
        "GBSYNTH_PRUNE_REPEAT_MIN_SECONDS",
        float,
        6.0,
        "a stretch heard before in the recording at least this long is dropped as a repeat",
        minimum=0.1,
    ),
    "boundary_search_seconds": Setting(
        "GBSYNTH_PRUNE_BOUNDARY_SEARCH_SECONDS",
        float,
        2.0,
        "how far a cut inside a long passage may move to land on a downbeat",
        minimum=0.0,
    ),
}


@dataclass(frozen=True)
class PruneConfig:
    """Pruning thresholds; the defaults are those of the ``GBSYNTH_PRUNE_*`` settings."""

    min_seconds: float = _SETTINGS["min_seconds"].default
    max_seconds: float = _SETTINGS["max_seconds"].default
    silence_gap_seconds: float = _SETTINGS["silence_gap_seconds"].default
    min_loudness_db: float = _SETTINGS["min_loudness_db"].default
    min_pitches: int = _SETTINGS["min_pitches"].default
    min_regularity: float = _SETTINGS["min_regularity"].default
    max_noise_share: float = _SETTINGS["max_noise_share"].default
    repeat_window_notes: int = _SETTINGS["repeat_window_notes"].default
    repeat_min_seconds: float = _SETTINGS["repeat_min_seconds"].default
    boundary_search_seconds: float = _SETTINGS["boundary_search_seconds"].default

    def __post_init__(self) -> None:
        if self.min_seconds <= 0 or self.max_seconds < self.min_seconds:
            raise PruneConfigError(
                f"segment length: need 0 < min ({self.min_seconds:g} s) <= max "
                f"({self.max_seconds:g} s)"
            )
        if self.max_seconds < 2 * self.min_seconds:
            # A long passage is split into parts of max/2..max; below 2x min they could
            # not all reach the minimum.
            raise PruneConfigError(
                f"max segment length ({self.max_seconds:g} s) must be at least twice the "
                f"minimum ({self.min_seconds:g} s)"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> PruneConfig:
        values = read_settings(_SETTINGS.values(), environ)
        kwargs = {attr: values[setting.name] for attr, setting in _SETTINGS.items()}
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)

    def frames(self, seconds: float) -> int:
        return max(1, int(round(seconds * FRAMES_PER_SECOND)))


assert {f.name for f in fields(PruneConfig)} == set(_SETTINGS)


@dataclass(frozen=True)
class Rejection:
    """A stretch ``[start_cycle, end_cycle)`` of a recording that gave no segment, and why."""

    start_cycle: int
    end_cycle: int
    reason: str
    detail: str = ""

    @property
    def seconds(self) -> float:
        return (self.end_cycle - self.start_cycle) / CPU_HZ


@dataclass
class PruneResult:
    """Segments kept (in time order) and rejections of one recording."""

    recording_id: str
    segments: list[Segment] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def rejected_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(r.reason for r in self.rejections).items()))


# -- the passes ------------------------------------------------------------------------------


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of True in a boolean array."""
    if mask.size == 0:
        return []
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _passages(sounding: np.ndarray, gap: int) -> list[tuple[int, int]]:
    """Runs of sound, joined across silences shorter than ``gap`` frames."""
    merged: list[tuple[int, int]] = []
    for start, end in _runs(sounding):
        if merged and start - merged[-1][1] < gap:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _sound_passages(level: np.ndarray, gap_frames: int) -> list[tuple[int, int]]:
    """Frames ``[a, b)`` of sound in a per-frame level, joined across shorter silences."""
    return _passages(level > SILENT_LEVEL, gap_frames)


def sounding_passages(
    writes: ApuWrites, duration_cycles: int, gap_seconds: float | None = None
) -> list[tuple[int, int]]:
    """``[start, end)`` cycles of each stretch of sound in ``writes``, joined across silences
    shorter than ``gap_seconds`` (default: the ``silence_gap_seconds`` setting's)."""
    gap = PruneConfig.silence_gap_seconds if gap_seconds is None else gap_seconds
    level = analyse(writes, duration_cycles).level
    frames = _sound_passages(level, PruneConfig().frames(gap))
    return [(a * FRAME_CYCLES, min(b * FRAME_CYCLES, duration_cycles)) for a, b in frames]


class _Pruner:
    """One recording's pruning: its analysis, note-sequence hashes, segments and rejections."""

    def __init__(self, recording: Recording, config: PruneConfig) -> None:
        self.recording = recording
        self.config = config
        self.analysis: FrameAnalysis = analyse(recording.writes, recording.duration_cycles)
        onsets = self.analysis.onsets
        starts = np.flatnonzero(onsets.starts)
        self.window = config.repeat_window_notes
        self.note_frames = onsets.cycles[starts] // FRAME_CYCLES
        self.note_hashes = sequence_hashes(
            onsets.channels[starts], onsets.pitches[starts], self.window
        )
        self.note_known, self.note_repeated = self._repeated_notes(recording.observing_spans())
        self.result = PruneResult(recording.recording_id)
        self.min_frames = config.frames(config.min_seconds)
        self.max_frames = config.frames(config.max_seconds)

    # frames <-> cycles: frame f covers [f * FRAME_CYCLES, (f + 1) * FRAME_CYCLES)
    def _cycle(self, frame: int, lo: int, hi: int) -> int:
        return min(max(frame * FRAME_CYCLES, lo), hi)

    def reject(self, lo_cycle: int, hi_cycle: int, reason: str, detail: str = "") -> None:
        if hi_cycle > lo_cycle:
            self.result.rejections.append(Rejection(lo_cycle, hi_cycle, reason, detail))

    def reject_frames(
        self, a: int, b: int, lo_cycle: int, hi_cycle: int, reason: str, detail: str
    ) -> None:
        """Reject frames ``[a, b)``, as cycles clipped to the span ``[lo_cycle, hi_cycle)``."""
        self.reject(
            self._cycle(a, lo_cycle, hi_cycle), self._cycle(b, lo_cycle, hi_cycle), reason, detail
        )

    def run(self) -> PruneResult:
        for start_cycle, end_cycle in self.recording.observing_spans():
            self.span(start_cycle, end_cycle)
        self.result.rejections.sort(key=lambda r: (r.start_cycle, r.end_cycle))
        return self.result

    def span(self, start_cycle: int, end_cycle: int) -> None:
        spans = self._spans_in_frames([(start_cycle, end_cycle)])
        if not spans:
            return
        first, last = spans[0]
        gap = self.config.frames(self.config.silence_gap_seconds)
        passages = [
            (first + a, first + b) for a, b in _sound_passages(self.analysis.level[first:last], gap)
        ]
        if not passages:
            if last - first >= self.min_frames:
                self.reject(start_cycle, end_cycle, "silence", "no channel sounds")
            return
        # Silent stretches long enough to have been a segment are reported too.
        previous_end = first
        for a, b in passages + [(last, last)]:
            if a - previous_end >= self.min_frames:
                self.reject_frames(
                    previous_end, a, start_cycle, end_cycle, "silence", "no channel sounds"
                )
            previous_end = b
        for a, b in passages:
            if b - a < self.min_frames:
                # Sound running into a span boundary may have gone on outside it (nothing
                # comes before the recording's start); sound with silence around it did not.
                cut_off = (a == first and start_cycle > 0) or b == last
                if cut_off:
                    reason, detail = "too_short", "cut off by the end of the observing span"
                else:
                    reason, detail = "one_shot", f"{(b - a) / FRAMES_PER_SECOND:.1f} s alone"
                self.reject_frames(a, b, start_cycle, end_cycle, reason, detail)
                continue
            self.passage(a, b, start_cycle, end_cycle)

    def _spans_in_frames(self, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Observing spans as whole frames (a frame half in a press phase is not observed)."""
        frames = []
        for start_cycle, end_cycle in spans:
            first = -(-start_cycle // FRAME_CYCLES)
            last = min(end_cycle // FRAME_CYCLES, self.analysis.frames)
            if last > first:
                frames.append((first, last))
        return frames

    def _repeated_notes(self, spans: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Per note start: can it be compared, and was its window of notes heard before?

        A window is comparable when all its notes lie in one observing span (what the
        explorer's buttons caused is never "heard"). It repeats when the same window
        occurred earlier in the recording and ended before this one starts, so a loop
        shorter than the window, or one note played over and over, does not repeat itself.
        """
        count = self.note_frames.shape[0]
        span_of = np.full(count, -1, dtype=np.int64)
        for index, (first, last) in enumerate(self._spans_in_frames(spans)):
            lo, hi = np.searchsorted(self.note_frames, [first, last])
            span_of[lo:hi] = index
        known = (self.note_hashes != 0) & (span_of >= 0)
        if count >= self.window:
            tail = np.concatenate([span_of[self.window - 1 :], np.full(self.window - 1, -2)])
            known &= tail == span_of
        else:
            known[:] = False
        repeated = np.zeros(count, dtype=bool)
        where = np.flatnonzero(known)
        if where.size:
            _, first_index, inverse = np.unique(
                self.note_hashes[where], return_index=True, return_inverse=True
            )
            first_heard = where[first_index][inverse]
            repeated[where] = first_heard + self.window <= where
        return known, repeated

    def repeated_frames(self, a: int, b: int) -> np.ndarray:
        """Per frame of ``[a, b)``: do the notes from here on repeat music heard before?

        A frame takes the verdict of the last note started at or before it in the passage;
        a note whose window cannot be compared takes the verdict of the note before it.
        """
        lo, hi = np.searchsorted(self.note_frames, [a, b])
        if hi == lo:
            return np.zeros(b - a, dtype=bool)  # a held sound, no note starts: nothing repeats
        known = self.note_known[lo:hi]
        last_known = np.where(known, np.arange(hi - lo), -1)
        np.maximum.accumulate(last_known, out=last_known)
        verdict = np.where(
            last_known >= 0, self.note_repeated[lo:hi][np.maximum(last_known, 0)], False
        )
        note = np.searchsorted(self.note_frames[lo:hi], np.arange(a, b), side="right") - 1
        return np.where(note >= 0, verdict[np.maximum(note, 0)], False)

    def passage(self, a: int, b: int, lo_cycle: int, hi_cycle: int) -> None:
        """Split a passage into novel stretches and repeats of a loop, then into segments."""
        repeat_min = self.config.frames(self.config.repeat_min_seconds)
        # Half a second of new notes inside a repeat (a fill, a changed note) does not end it.
        repeats = [
            (a + s, a + e)
            for s, e in _passages(self.repeated_frames(a, b), self.config.frames(0.5))
            if e - s >= repeat_min
        ]
        novel_start = a
        bounds = repeats + [(b, b)]
        for r_start, r_end in bounds:
            s, e = novel_start, r_start
            if e > s:
                if e - s < self.min_frames:
                    # Top up a short novel stretch (a short loop) from the repeat after it:
                    # the segment then holds the loop more than once, which is still music.
                    e = min(r_end, s + self.min_frames)
                self.segments(s, e, lo_cycle, hi_cycle)
                r_start = max(r_start, e)
            if r_end > r_start:
                self.reject_frames(
                    r_start,
                    r_end,
                    lo_cycle,
                    hi_cycle,
                    "repeat",
                    "notes heard earlier in the recording",
                )
            novel_start = r_end

    def segments(self, a: int, b: int, lo_cycle: int, hi_cycle: int) -> None:
        """Cut ``[a, b)`` (at least ``min_frames`` long unless the passage is) into parts."""
        length = b - a
        if length < self.min_frames:
            self.reject_frames(a, b, lo_cycle, hi_cycle, "too_short", "shorter than a segment")
            return
        parts = max(1, math.ceil(length / self.max_frames))
        cuts = [a]
        search = self.config.frames(self.config.boundary_search_seconds)
        for k in range(1, parts):
            target = a + round(k * length / parts)
            # Keep both neighbours within [min, max] whatever the snap does.
            lo = max(target - search, cuts[-1] + self.min_frames, b - (parts - k) * self.max_frames)
            hi = min(target + search, cuts[-1] + self.max_frames, b - (parts - k) * self.min_frames)
            if lo > hi:  # no frame satisfies every bound: keep this part within limits
                lo = hi = min(max(target, cuts[-1] + self.min_frames), cuts[-1] + self.max_frames)
            cuts.append(self._downbeat(target, lo, hi))
        cuts.append(b)
        for start, end in zip(cuts, cuts[1:], strict=False):
            self.judge(start, end, lo_cycle, hi_cycle)

    def _downbeat(self, target: int, lo: int, hi: int) -> int:
        """The frame in [lo, hi] where most notes start, nearest ``target`` on ties."""
        counts = self.analysis.onset_counts[lo : hi + 1]
        if counts.size == 0 or counts.max() == 0:
            return min(max(target, lo), hi)
        best = np.flatnonzero(counts == counts.max()) + lo
        return int(best[np.argmin(np.abs(best - target))])

    def judge(self, a: int, b: int, lo_cycle: int, hi_cycle: int) -> None:
        """Keep ``[a, b)`` as a segment, or reject it with the first failing reason."""
        cfg = self.config
        start = self._cycle(a, lo_cycle, hi_cycle)
        end = self._cycle(b, lo_cycle, hi_cycle)
        analysis = self.analysis
        level = analysis.level[a:b]
        activity = analysis.activity[a:b]
        loudness = loudness_db(activity, analysis.master_volume[a:b])
        if loudness < cfg.min_loudness_db:
            self.reject(start, end, "quiet", f"{loudness:.1f} dB < {cfg.min_loudness_db:g} dB")
            return
        total = float(activity.sum(dtype=np.float64))
        noise_share = float(activity[:, 3].sum(dtype=np.float64)) / total if total > 0 else 0.0
        if noise_share > cfg.max_noise_share:
            self.reject(start, end, "noise_only", f"noise channel carries {noise_share:.0%}")
            return
        onsets = analysis.onsets
        i, j = np.searchsorted(onsets.cycles, [start, end])
        channels = onsets.channels[i:j]
        tonal = channels < TONAL_CHANNELS
        pitches = int(np.unique(onsets.pitches[i:j][tonal]).size)
        if pitches < cfg.min_pitches:
            self.reject(start, end, "few_pitches", f"{pitches} distinct < {cfg.min_pitches}")
            return
        beat = rhythm(analysis.onset_counts[a:b])
        if beat.regularity < cfg.min_regularity:
            self.reject(
                start,
                end,
                "no_rhythm",
                f"regularity {beat.regularity:.2f} < {cfg.min_regularity:g}",
            )
            return
        used = 0
        for channel in range(4):
            if np.any(activity[:, channel] > 0):
                used |= 1 << channel
        duration = (end - start) / CPU_HZ
        features = SegmentFeatures(
            duration_seconds=round(duration, 6),
            write_count=int(
                np.searchsorted(self.recording.writes.cycles, end)
                - np.searchsorted(self.recording.writes.cycles, start)
            ),
            channels_used=used,
            distinct_pitches=pitches,
            loudness_db=round(loudness, 2),
            tempo_bpm=beat.tempo_bpm,
            extra={
                "rhythm_regularity": round(beat.regularity, 4),
                "noise_share": round(noise_share, 4),
                "sounding_share": round(float(np.mean(level > SILENT_LEVEL)), 4),
                "onsets_per_second": round(float(j - i) / duration, 3) if duration else 0.0,
            },
        )
        self.result.segments.append(Segment.cut(self.recording, start, end, features))


def prune_recording(recording: Recording, config: PruneConfig | None = None) -> PruneResult:
    """Segments of ``recording`` worth training on, and a reason for each stretch dropped."""
    return _Pruner(recording, config or PruneConfig()).run()
