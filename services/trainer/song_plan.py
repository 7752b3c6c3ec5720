"""What the sampler holds fixed for a whole song: rows (the beat), form, key and registers.

Game Boy music is written in trackers: notes start on *rows* of a fixed number of frames
(the song's speed), rows make patterns of 64, and an order list plays patterns again
(A A B A). The network places notes well from one moment to the next but does not keep a
pulse or bring a passage back over tens of seconds (docs/model.md: its predictions hardly
change with context beyond a few hundred tokens), nor a key or a register. A ``SongPlan``
gives the sampler what a composer fixes before writing the notes:

- **Rows** (``row_frames`` > 0): note and drum onsets (and unmutes) start only in the first
  frame of a row, and time stops at every row start; the probability the network gives
  onsets off the rows is owed to the next row start and offered there (``sampling``), so
  onsets fall on one steady grid as often as the network would play them; what happens
  between rows (arpeggio and vibrato steps, slides, envelopes, note ends) stays where the
  network puts it.
- **Form** (``form``, e.g. ``"AABA"``): the song is sections of ``section_rows`` rows, one
  letter each, cycling through the form to the song's end. The network composes each new
  letter's section, continuing from the section it composed before; a letter heard before
  plays its section again (its register writes, after a snapshot of the registers at its
  start), as an order list repeats a pattern. Repeats cost no sampling.
- **Phrases** (``phrases``, e.g. ``"aaba"``): inside each new section, its phrases (the
  section split in ``len(phrases)`` equal parts: bars of 16 rows for four) follow the same
  rule: a phrase letter heard before in this section plays that phrase again, as a
  tracker pattern repeats a bar (a riff, a drum figure, a call and its answer).
- **Key and registers** (``keep_key``): the network chooses the key with its first
  ``KEY_NOTES`` notes (the Krumhansl-Kessler key their pitch classes fit best, as
  ``key_clarity`` measures it) and each tone channel's register with its first
  ``REGISTER_NOTES`` (an octave either side of their median; arpeggio steps count from
  the note they decorate); from then on a note outside
  that key's scale (major, or minor with both its sixth and seventh degrees) is
  ``OUT_OF_KEY`` times as likely as the network makes it, a note outside its channel's
  register ``OUT_OF_REGISTER`` times (an instrument's range is firmer than a key).
  Arpeggio steps, bends and slides are the network's own.
- **Wave instruments** (with rows): the wave channel's first ``WAVE_INSTRUMENTS`` shapes
  the network writes are the song's wave instruments, as a tracker module lists its
  waves; after them the probability it gives a new shape goes to loading one of those.
  Real songs keep a few (30 s of nightmode hold 5, most DevSound subsongs 1-2, the demo
  songs 1, GBT Player's tests 1-8; drivers that animate the wave as an effect write
  dozens); the network, left alone, writes a new shape of 33 tokens every second or so,
  heard as a timbre that never settles.

``SongPlan.free()`` (no rows, no form, no key) leaves the song to the network alone.
``SongPlan.for_seed(seed)`` is the default: a speed and a form drawn from the seed, among
those of real songs (``ROW_FRAMES``, ``FORMS``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES
from gbsynth.music.stats import PITCH_CLASSES, best_key

ROW_FRAMES = (5, 6, 7, 8)
"""Default speeds, frames per row: 112-179 BPM at four rows a beat."""
FORMS = ("AABA", "AABB", "ABAB", "ABAC")
"""Default forms: song form, folk strains, verse-chorus, rondo-like."""
PHRASE_FORMS = ("aaba", "abab", "aabb", "abac", "abcd")
"""Default bar forms inside a section; ``abcd`` repeats no bar."""
SECTION_ROWS = 64
"""Rows in a section: one tracker pattern (four bars of 16 rows)."""
MAX_ROW_FRAMES = 16
MAX_SECTION_ROWS = 256
KEY_NOTES = 12
"""Notes the network plays before the key is fixed."""
OUT_OF_KEY = 0.1
"""The factor on the probability of a note outside the key."""
OUT_OF_REGISTER = 0.01
"""The factor on the probability of a note outside its channel's register."""
REGISTER_NOTES = 4
"""Notes a channel plays before its register is fixed."""
WAVE_INSTRUMENTS = 4
"""Wave shapes a song with rows writes; later wave changes load one of them."""
REGISTER_SEMITONES = 12
"""A channel's register: an octave either side of its first notes' median (real Game Boy
songs of docs/evaluation.md span 11-22 semitones per channel, median)."""
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 9, 10, 11)}
"""Pitch classes above the tonic that are in a key."""


class SongPlanError(ValueError):
    """A plan the sampler cannot follow (bad speed, form or section length)."""


def _check_letters(name: str, letters: str, alphabet: str) -> None:
    """``SongPlanError`` unless ``letters`` are 1-16 of ``alphabet``, first used in order."""
    if not 1 <= len(letters) <= 16 or not set(letters) <= set(alphabet):
        span = f"{alphabet[0]}-{alphabet[-1]}"
        raise SongPlanError(f"{name} must be 1-16 letters {span}: {letters!r}")
    first_use = "".join(dict.fromkeys(letters))
    if first_use != alphabet[: len(first_use)]:
        raise SongPlanError(
            f"{name} letters must first appear in order {', '.join(alphabet[:3])}...: {letters!r}"
        )


@dataclass(frozen=True)
class SongPlan:
    row_frames: int = 0
    """Frames per row; 0: onsets anywhere (no rows)."""
    form: str = ""
    """Section letters, ``A``-``Z`` in order of first use; empty: one section, no repeats."""
    section_rows: int = SECTION_ROWS
    keep_key: bool = False
    """Keep the key the network's first notes choose (module docstring)."""
    phrases: str = ""
    """Phrase letters of each new section, ``a``-``p`` in order of first use; empty: one."""

    def __post_init__(self) -> None:
        if not 0 <= self.row_frames <= MAX_ROW_FRAMES:
            raise SongPlanError(f"row_frames must be 0..{MAX_ROW_FRAMES}, not {self.row_frames}")
        if self.form:
            _check_letters("form", self.form, "ABCDEFGHIJKLMNOP")
            if not self.row_frames:
                raise SongPlanError("a form needs rows (row_frames > 0) to measure its sections")
        if self.phrases:
            _check_letters("phrases", self.phrases, "abcdefghijklmnop")
            if not self.form:
                raise SongPlanError("phrases divide the sections of a form: give a form too")
            if self.section_rows % len(self.phrases):
                raise SongPlanError(
                    f"{len(self.phrases)} phrases do not divide a section of "
                    f"{self.section_rows} rows"
                )
        if self.keep_key and not self.row_frames:
            raise SongPlanError("'free' keeps no key; a plan with rows does (FORM@FRAMES)")
        if not 1 <= self.section_rows <= MAX_SECTION_ROWS:
            raise SongPlanError(
                f"section_rows must be 1..{MAX_SECTION_ROWS}, not {self.section_rows}"
            )

    @classmethod
    def free(cls) -> SongPlan:
        return cls()

    @classmethod
    def for_seed(cls, seed: int) -> SongPlan:
        """The default plan of a seed (its own random stream: the notes' draws do not change)."""
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x50_4C_41_4E])
        row_frames, form = int(rng.choice(ROW_FRAMES)), str(rng.choice(FORMS))
        phrases = str(rng.choice(PHRASE_FORMS))
        return cls(row_frames=row_frames, form=form, keep_key=True, phrases=phrases)

    @classmethod
    def default(cls, seed: int, *, primed: bool, rows: bool = True) -> SongPlan:
        """The plan of a song that asks for none: the seed's (``for_seed``), or ``free()`` for
        a primed song or a representation that cannot follow rows (``rows`` False)."""
        return cls.for_seed(seed) if rows and not primed else cls.free()

    @classmethod
    def parse(cls, text: str) -> SongPlan:
        """``"free"``, or ``"<form>[:<phrases>]@<frames per row>"`` such as ``"AABA@6"`` or
        ``"AABA:aaba@6"`` (``"@6"``: rows, no form), which keeps a key unless it ends in
        ``"/chromatic"`` - the form of ``--plan`` and the API's ``plan``."""
        text = text.strip()
        if text == "free":
            return cls.free()
        plan, slash, chromatic = text.partition("/")
        forms, at, frames = plan.partition("@")
        form, colon, phrases = forms.partition(":")
        if (
            not at
            or not frames.isdigit()
            or (slash and chromatic != "chromatic")
            or (colon and not phrases)
        ):
            raise SongPlanError(
                "a plan is 'free' or FORM[:PHRASES]@FRAMES[/chromatic] such as 'AABA@6' or "
                f"'AABA:aaba@6', not {text!r}"
            )
        return cls(row_frames=int(frames), form=form, keep_key=not slash, phrases=phrases)

    def __str__(self) -> str:
        if not self.row_frames:
            return "free"
        forms = f"{self.form}:{self.phrases}" if self.phrases else self.form
        return f"{forms}@{self.row_frames}" + ("" if self.keep_key else "/chromatic")

    @property
    def wave_shapes(self) -> int:
        """Wave shapes the song writes before it only reuses them; 0: any number."""
        return WAVE_INSTRUMENTS if self.row_frames else 0

    @property
    def row_cycles(self) -> int:
        return self.row_frames * FRAME_CYCLES

    @property
    def section_cycles(self) -> int:
        """A section's length; 0 without a form (the song is one section)."""
        return self.section_rows * self.row_cycles if self.form else 0

    @property
    def beats_per_minute(self) -> float:
        """At four rows a beat (a row a sixteenth note)."""
        return 60.0 * CPU_HZ / (4 * self.row_cycles) if self.row_frames else 0.0

    @property
    def part_cycles(self) -> int:
        """The length of what the form plays again: a phrase, or a section without phrases."""
        return self.section_cycles // max(1, len(self.phrases))

    def part_of(self, index: int) -> int:
        """Which composed part (0, 1, ... in order of first use) the song's ``index``-th
        part (a phrase, or a section without phrases) plays."""
        phrases = self.phrases or " "
        parts: dict[tuple[str, str], int] = {}
        for i in range(index + 1):
            section, phrase = divmod(i, len(phrases))
            key = (self.form[section % len(self.form)], phrases[phrase])
            parts.setdefault(key, len(parts))
        return parts[key]


def checked_plan_text(text: str) -> str:
    """``text`` as given if it is empty (the default plan) or a plan ``SongPlan.parse``
    reads; ``SongPlanError`` (a ``ValueError``) saying what is wrong otherwise."""
    if text:
        SongPlan.parse(text)
    return text


def key_bias(histogram: np.ndarray, note_pitches: np.ndarray) -> tuple[np.ndarray, str]:
    """Log-probability offsets (float32, per token) against the notes outside the key
    ``histogram`` (notes per pitch class so far) fits best, and the key's name."""
    _, tonic, mode = best_key(histogram)
    in_key = np.zeros(12, bool)
    in_key[(tonic + np.array(SCALES[mode])) % 12] = True
    outside = (note_pitches >= 0) & ~in_key[note_pitches % 12]
    return np.where(outside, np.log(OUT_OF_KEY), 0.0).astype(np.float32), (
        f"{PITCH_CLASSES[tonic]} {mode}"
    )


def register_bias(
    channel: int, center: float, pitches: np.ndarray, channels: np.ndarray
) -> np.ndarray:
    """Log-probability offsets (float32, per token) against ``channel``'s tokens whose
    ``pitches`` lie more than ``REGISTER_SEMITONES`` from ``center`` (``channels``: each
    token's channel, -1 for none): notes, or arpeggio steps from the note last played."""
    far = (channels == channel) & (np.abs(pitches - center) > REGISTER_SEMITONES)
    return np.where(far, np.log(OUT_OF_REGISTER), 0.0).astype(np.float32)
