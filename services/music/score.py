"""A piece of music as notes in time, before it is arranged for the Game Boy.

Every score reader (MusicXML, Standard MIDI, ProTracker MOD, ABC) produces a ``Score``;
the arranger turns a ``Score`` into a ``Song`` that our sound driver plays. Time is
counted in quarter notes from the start of the piece, so tempo changes stay separate
from rhythm; pitches are MIDI note numbers (60 = middle C).
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field


class ScoreError(ValueError):
    """A file cannot be read as a score.

    ``reason`` is a short label for metrics and corpus summaries, such as ``invalid_file``
    (not the format it claims, or broken), ``empty`` (no notes) or ``too_large``.
    """

    def __init__(self, message: str, reason: str = "invalid_file") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Part:
    """One voice or instrument of the source: a MusicXML part, a MIDI track/channel, a MOD
    channel."""

    name: str
    drums: bool = False
    """Unpitched percussion (MIDI channel 10, a MusicXML percussion part, MOD drum samples):
    ``Note.pitch`` is then a General MIDI percussion key."""
    program: int | None = None
    """General MIDI program (0-127) when the source names one."""


@dataclass(frozen=True)
class Note:
    start: float
    """Onset in quarter notes from the start of the piece."""
    length: float
    """Duration in quarter notes (> 0)."""
    pitch: int
    """MIDI note number, 0-127 (for a drum part, the General MIDI percussion key)."""
    velocity: int = 80
    """Loudness 1-127 (MIDI velocity; MusicXML dynamics; MOD volume x 2)."""
    part: int = 0
    """Index into ``Score.parts``."""
    instrument: int = 0
    """The source's own instrument or sample number within the part (0 when it has none),
    so an arranger can give different sounds to different source instruments."""
    arpeggio: int = 0
    """A tracker arpeggio effect as written ($xy: +x and +y semitones), 0 for none."""


@dataclass(frozen=True)
class TempoChange:
    at: float
    """Position in quarter notes."""
    bpm: float
    """Quarter notes per minute from here on."""


@dataclass(frozen=True)
class MeterChange:
    at: float
    numerator: int
    denominator: int

    @property
    def bar_quarters(self) -> float:
        return self.numerator * 4.0 / self.denominator


@dataclass
class Score:
    title: str
    kind: str
    """The reader that made it: ``musicxml``, ``midi``, ``mod`` or ``abc``."""
    parts: list[Part]
    notes: list[Note]
    tempos: list[TempoChange] = field(default_factory=lambda: [TempoChange(0.0, 100.0)])
    meters: list[MeterChange] = field(default_factory=lambda: [MeterChange(0.0, 4, 4)])
    key_fifths: int | None = None
    """Key signature as notated (sharps positive, flats negative), when the source has one."""
    minor: bool | None = None
    composer: str = ""

    def __post_init__(self) -> None:
        self.notes.sort(key=lambda n: (n.start, n.part, n.pitch))
        self.tempos.sort(key=lambda t: t.at)
        self.meters.sort(key=lambda m: m.at)
        if not self.tempos or self.tempos[0].at > 0:
            self.tempos.insert(0, TempoChange(0.0, 100.0))
        if not self.meters or self.meters[0].at > 0:
            self.meters.insert(0, MeterChange(0.0, 4, 4))

    def check(self) -> Score:
        """Raise ``ScoreError`` unless every value is in range; returns the score."""
        if not self.notes:
            raise ScoreError(f"{self.title or 'score'}: no notes", "empty")
        for n in self.notes:
            if not (
                0 <= n.pitch <= 127 and 1 <= n.velocity <= 127 and 0 <= n.part < len(self.parts)
            ):
                raise ScoreError(f"note out of range: {n}")
            if (
                not (math.isfinite(n.start) and math.isfinite(n.length))
                or n.start < 0
                or n.length <= 0
            ):
                raise ScoreError(f"note with a bad time: {n}")
        for t in self.tempos:
            if not (math.isfinite(t.bpm) and 1.0 <= t.bpm <= 2000.0):
                raise ScoreError(f"tempo out of range: {t.bpm} bpm")
        for m in self.meters:
            if not (1 <= m.numerator <= 64 and m.denominator in (1, 2, 4, 8, 16, 32, 64)):
                raise ScoreError(f"time signature out of range: {m.numerator}/{m.denominator}")
        return self

    @property
    def end(self) -> float:
        """Where the last note ends, in quarter notes."""
        return max((n.start + n.length for n in self.notes), default=0.0)

    def seconds_at(self, quarters: float) -> float:
        """Time in seconds of a position in quarter notes, through the tempo map."""
        seconds, position, bpm = 0.0, 0.0, self.tempos[0].bpm
        for change in self.tempos[1:]:
            if change.at >= quarters:
                break
            seconds += (change.at - position) * 60.0 / bpm
            position, bpm = change.at, change.bpm
        return seconds + (quarters - position) * 60.0 / bpm

    @property
    def seconds(self) -> float:
        return self.seconds_at(self.end)

    def bar_starts(self) -> list[float]:
        """Positions (quarters) of every bar line from 0 to the end, through the meter map."""
        starts: list[float] = []
        at, end = 0.0, self.end
        index = 0
        while at < end or not starts:
            starts.append(at)
            while index + 1 < len(self.meters) and self.meters[index + 1].at <= at + 1e-9:
                index += 1
            at += self.meters[index].bar_quarters
        return starts

    def meter_at(self, quarters: float) -> MeterChange:
        i = bisect.bisect_right([m.at for m in self.meters], quarters + 1e-9) - 1
        return self.meters[max(i, 0)]

    def tempo_at(self, quarters: float) -> float:
        i = bisect.bisect_right([t.at for t in self.tempos], quarters + 1e-9) - 1
        return self.tempos[max(i, 0)].bpm


# General MIDI percussion keys by instrument name, most specific words first. Readers use it
# when a source names its drum sounds (MusicXML score-instruments, MOD sample names).
_DRUM_NAME_KEYS: tuple[tuple[re.Pattern[str], int], ...] = tuple(
    (re.compile(pattern), key)
    for pattern, key in (
        (r"kick|bass ?drum|bassdrum|\bbd\b|\bkck\b", 36),
        (r"side ?stick|rim", 37),
        (r"snare|\bsd\b|\bsnr\b", 38),
        (r"clap", 39),
        (r"open ?hi|open ?hat|\bohh?\b", 46),
        (r"pedal ?hi|pedal ?hat", 44),
        (r"hi-?hat|\bhh\b|\bhat\b|hihat|closed ?hi|\bchh?\b", 42),
        (r"crash|cymbal|splash|china", 49),
        (r"ride", 51),
        (r"floor ?tom|low ?tom", 41),
        (r"high ?tom|hi ?tom", 50),
        (r"tom", 45),
        (r"tambourine|tamb", 54),
        (r"cowbell", 56),
        (r"bongo", 60),
        (r"conga", 63),
        (r"timbale", 65),
        (r"shaker|maraca|cabasa", 70),
        (r"clave", 75),
        (r"wood ?block|block", 76),
        (r"triangle", 81),
    )
)


def drum_key_for_name(name: str) -> int | None:
    """The General MIDI percussion key an instrument name suggests (``"Snare Drum"`` -> 38),
    or None when the name says nothing about a drum sound."""
    lowered = name.lower()
    for pattern, key in _DRUM_NAME_KEYS:
        if pattern.search(lowered):
            return key
    return None
