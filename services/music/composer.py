"""A seeded composer: the same seed and index always give the same song.

Each song gets a key and mode, a tempo and meter, a form of sections (AABA, ABAB,
verse/chorus...) each with its own chord progression, and an arrangement: a
melody on pulse 1 built from rhythm cells and a motif that comes back as a
sequence, harmony or arpeggios on pulse 2 (arpeggiated chords, broken chords,
pads, parallel thirds, an echo of the melody or a counter-line), a bass line on
the wave channel with a wave shape of its own, and drums on the noise channel
from a kit tuned per song, with fills at section ends. Instruments (duty,
envelope, vibrato, now and then a sweep), slides and bends are chosen per song.
The song loops after its intro.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from gbsynth.music import driver as D
from gbsynth.music.song import Drum, Event, Instrument, Song

# Scales as semitones above the tonic, with how often each mode is picked.
MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
}
MODE_WEIGHTS = {"major": 3.0, "minor": 3.0, "dorian": 1.5, "mixolydian": 1.2,
                "harmonic minor": 1.0, "lydian": 0.6, "phrygian": 0.5}  # fmt: skip

# Chord progressions as scale degrees (0 = the tonic's chord), four chords each.
PROGRESSIONS: tuple[tuple[int, ...], ...] = (
    (0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 0), (5, 3, 0, 4), (0, 3, 0, 4), (1, 4, 0, 0),
    (0, 6, 5, 6), (0, 5, 2, 6), (0, 3, 4, 4), (0, 2, 3, 4), (0, 0, 3, 3), (0, 4, 3, 3),
    (3, 4, 0, 5), (0, 1, 2, 1), (0, 6, 3, 0), (5, 4, 3, 4), (0, 3, 5, 4), (3, 0, 4, 5),
    (0, 2, 5, 4), (5, 1, 4, 0), (0, 5, 1, 4), (0, 4, 0, 3), (3, 3, 0, 0), (0, 1, 0, 6),
)  # fmt: skip
FORMS = {"AABA": 3.0, "ABAB": 2.0, "AABB": 1.5, "ABAC": 1.5, "ABCB": 1.0, "AB": 1.0,
         "AABAB": 1.0, "ABCA": 0.7}  # fmt: skip
SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
"""Neutral spellings, for notes outside any key."""
# Where each mode's tonic lies above the major scale with the same notes.
MODE_OFFSETS = {"major": 0, "dorian": 2, "phrygian": 4, "lydian": 5, "mixolydian": 7,
                "minor": 9, "harmonic minor": 9}  # fmt: skip
FLAT_MAJOR_KEYS = {1, 3, 5, 8, 10}  # Db Eb F Ab Bb; F# major is written with sharps


def pitch_name(pitch_class: int, key: int, mode: str) -> str:
    """A pitch class spelled as the key signature of ``key`` in ``mode`` would write it."""
    major = (key - MODE_OFFSETS[mode]) % 12
    names = FLAT_NAMES if major in FLAT_MAJOR_KEYS else SHARP_NAMES
    return names[pitch_class % 12]


# One-beat (4-row) and two-beat rhythm cells; negative lengths are rests.
BEAT_CELLS = {(4,): 3.0, (2, 2): 3.0, (3, 1): 1.2, (1, 1, 2): 0.8, (2, 1, 1): 0.8,
              (-2, 2): 0.8, (1, 3): 0.4, (-4,): 0.3}  # fmt: skip
TWO_BEAT_CELLS = {(8,): 1.5, (6, 2): 1.5, (2, 4, 2): 1.0, (3, 3, 2): 1.2, (4, 2, 2): 1.0,
                  (-2, 2, 4): 0.6}  # fmt: skip

# Drum patterns: one string per drum, a character per row ('x': hit).
DRUM_STYLES_4 = {
    "rock": {"kick": "x.......x.x.....", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "four": {"kick": "x...x...x...x...", "snare": "....x.......x...", "open": "..x...x...x...x."},
    "half": {"kick": "x.........x.....", "snare": "........x.......", "hat": "x.x.x.x.x.x.x.x."},
    "break": {"kick": "x.....x...x.....", "snare": "....x.......x..x",
              "hat": "x.xxx.x.x.xxx.x."},
    "sparse": {"kick": "x.......x.......", "hat": "x...x...x...x..."},
    "shuffle": {"kick": "x.....x.x.......", "snare": "....x.......x...",
                "hat": "x..xx..xx..xx..x"},
    "gallop": {"kick": "x.....x.x.....x.", "snare": "....x.......x...",
               "hat": "xx.xxx.xxx.xxx.x"},
}  # fmt: skip
DRUM_STYLES_3 = {
    "waltz": {"kick": "x...........", "snare": "....x...x...", "hat": "x.x.x.x.x.x."},
    "waltz2": {"kick": "x.......x...", "snare": "....x.......", "hat": "..x...x...x."},
    "sparse3": {"kick": "x...........", "hat": "x...x...x..."},
    "rock3": {"kick": "x.....x.....", "snare": "....x.....x.", "hat": "x.x.x.x.x.x."},
}  # fmt: skip
DRUM_PRIORITY = ("kick", "snare", "tom", "open", "hat")

TITLE_WORDS_A = ("Neon", "Pixel", "Lunar", "Crystal", "Velvet", "Rusty", "Silent", "Hidden",
                 "Frozen", "Golden", "Cosmic", "Misty", "Paper", "Copper", "Amber", "Cobalt",
                 "Polar", "Sunny", "Dusty", "Secret", "Tiny", "Wild", "Quiet", "Mossy", "Swift",
                 "Distant", "Lazy", "Bright", "Clever", "Brave")  # fmt: skip
TITLE_WORDS_B = ("Harbor", "Forest", "Dungeon", "Skyline", "Garden", "Circuit", "Voyage",
                 "Meadow", "Arcade", "Comet", "Canyon", "Tower", "Lagoon", "River", "Cavern",
                 "Station", "Parade", "Island", "Orbit", "Market", "Summit", "Valley", "Bridge",
                 "Temple", "Lights", "Rain", "Engine", "Castle", "Tides", "Dream")  # fmt: skip

MELODY_TONIC = 24
"""Note of C4 (0 = C2): the melody's tonic is the key's pitch in the octave from C4."""
HARMONY_TONIC = 12
BASS_TONIC = 0


def _pick(rng: random.Random, weighted: dict):
    keys = list(weighted)
    return rng.choices(keys, weights=[weighted[k] for k in keys])[0]


@dataclass(frozen=True)
class Chord:
    degree: int
    """Scale degree of the root (0-6)."""
    root: int
    """Semitones above the tonic (0-11)."""
    third: int
    fifth: int

    def name(self, key: int, mode: str) -> str:
        quality = {(4, 7): "", (3, 7): "m", (3, 6): "dim", (4, 8): "+"}.get(
            (self.third, self.fifth), "?"
        )
        return pitch_name(key + self.root, key, mode) + quality

    @property
    def tones(self) -> tuple[int, int, int]:
        return (0, self.third, self.fifth)


def chord_on(scale: tuple[int, ...], degree: int) -> Chord:
    """The triad on a scale degree, built from the scale's own notes."""
    root = scale[degree % 7]
    third = (scale[(degree + 2) % 7] - root) % 12
    fifth = (scale[(degree + 4) % 7] - root) % 12
    return Chord(degree % 7, root, third, fifth)


def scale_note(scale: tuple[int, ...], index: int) -> int:
    """Semitones above the tonic of scale step ``index`` (7 steps an octave, may be negative)."""
    return 12 * (index // 7) + scale[index % 7]


@dataclass
class _Note:
    start: int
    length: int
    note: int | None
    instrument: int = 0
    envelope: int | None = None
    arpeggio: int = 0
    slide: int = 0
    bend: int = 0


class _Composer:
    def __init__(self, seed: int, index: int) -> None:
        self.seed = seed
        self.index = index
        self.rng = random.Random(f"gbsynth-music/{seed}/{index}")
        self.instruments: list[Instrument] = []

    # ---- song-level choices ------------------------------------------------------------------
    def compose(self) -> Song:
        rng = self.rng
        self.key = rng.randrange(12)
        self.mode = _pick(rng, MODE_WEIGHTS)
        self.scale = MODES[self.mode]
        self.beats = 3 if rng.random() < 0.15 else 4
        self.rpb = 4  # rows a beat: sixteenth notes
        self.bar_rows = self.beats * self.rpb
        bpm = rng.uniform(84, 168) if self.beats == 4 else rng.uniform(96, 180)
        self.tempo = D.tempo_value(bpm, self.rpb)
        self.title = self._title()

        self.form = _pick(rng, FORMS)
        seconds_per_bar = self.bar_rows / D.rows_per_second(self.tempo)
        # sections of 8 bars at a fast tempo or in short forms, else 4 or 8
        long_sections = len(self.form) <= 2 or seconds_per_bar < 1.7 or rng.random() < 0.35
        self.section_bars = 8 if long_sections else 4
        self.intro_bars = rng.choice((0, 0, 1, 2, 2))
        self.progressions = self._progressions()
        self._plan_sections()
        self._choose_instruments()
        self.drums = self._drum_kit()
        wave_name, wave = self._wave()
        self.styles["wave"] = wave_name

        channels = [
            self._melody(),
            self._harmony(),
            self._bass(),
            self._drum_track(),
        ]
        nr51 = rng.choice((0xFF, 0xFF, 0xFF, 0xFF, 0xDE, 0xED, 0xFD, 0xFE, 0xDF, 0xEF))
        total = self.bars * self.bar_rows
        return Song(
            title=self.title,
            key=self.key,
            mode=self.mode,
            tempo=self.tempo,
            beats_per_bar=self.beats,
            rows_per_beat=self.rpb,
            bars=self.bars,
            loop_bar=self.intro_bars,
            channels=[
                _events(notes, total, hold_gaps=(c == 3)) for c, notes in enumerate(channels)
            ],  # fmt: skip
            instruments=self.instruments,
            drums=self.drums,
            wave=wave,
            nr50=0x77,
            nr51=nr51,
            seed=self.seed,
            form=self.form,
            sections=self.sections,
            progression={
                k: [c.name(self.key, self.mode) for c in v] for k, v in self.progressions.items()
            },  # fmt: skip
            styles=self.styles,
        )

    def _title(self) -> str:
        while True:
            title = f"{self.rng.choice(TITLE_WORDS_A)} {self.rng.choice(TITLE_WORDS_B)}"
            if len(title) <= 15:
                return title

    def _progressions(self) -> dict[str, list[Chord]]:
        """A chord for each half bar of each section kind (A, B, C)."""
        usable = [p for p in PROGRESSIONS
                  if all(chord_on(self.scale, d).fifth == 7 for d in p)]  # fmt: skip
        kinds = sorted(set(self.form))
        out: dict[str, list[Chord]] = {}
        used: set[tuple[int, ...]] = set()
        for kind in kinds:
            choices = [p for p in usable if p not in used] or usable
            degrees = list(self.rng.choice(choices))
            used.add(tuple(degrees))
            if kind != "A" and degrees[0] == 0 and self.rng.random() < 0.6:
                degrees = degrees[1:] + degrees[:1]  # B and C sections leave the tonic
            n = self.section_bars
            # a chord a bar, now and then two (4-bar sections: the progression twice) or,
            # in 8-bar sections, a chord every two bars
            if n == 4 and self.rng.random() < 0.25:
                halves = degrees * 2
            elif n == 8 and self.rng.random() < 0.5:
                halves = [d for d in degrees for _ in range(4)]
            else:
                halves = [d for d in degrees * (n // 4) for _ in (0, 1)]
            out[kind] = [chord_on(self.scale, d) for d in halves]
        return out

    def _plan_sections(self) -> None:
        self.sections: list[tuple[str, int, int]] = []
        bar = 0
        if self.intro_bars:
            self.sections.append(("intro", 0, self.intro_bars))
            bar = self.intro_bars
        for kind in self.form:
            self.sections.append((kind, bar, self.section_bars))
            bar += self.section_bars
        self.bars = bar
        self.bar_chords: list[list[Chord]] = []  # two halves per bar
        for kind, _, n in self.sections:
            if kind == "intro":
                first = self.progressions["A"][0]
                self.bar_chords += [[first, first]] * n
            else:
                halves = self.progressions[kind]
                self.bar_chords += [halves[2 * i : 2 * i + 2] for i in range(n)]
        self.styles: dict[str, str] = {}

    def chord_at(self, row: int) -> Chord:
        bar, within = divmod(row, self.bar_rows)
        bar = min(bar, len(self.bar_chords) - 1)
        return self.bar_chords[bar][0 if within * 2 < self.bar_rows else 1]

    # ---- instruments -------------------------------------------------------------------------
    def _add(self, instrument: Instrument) -> int:
        if instrument in self.instruments:
            return self.instruments.index(instrument)
        self.instruments.append(instrument)
        return len(self.instruments) - 1

    def _choose_instruments(self) -> None:
        rng = self.rng
        duties = [0, 1, 2, 3]
        lead_duty = rng.choice((1, 2, 2, 0, 3))
        duties.remove(lead_duty)
        self.lead_sustains = rng.random() < 0.5
        if self.lead_sustains:
            envelope = rng.randrange(11, 16) << 4 | rng.choice((0, 0, 7))
        else:
            envelope = rng.randrange(12, 16) << 4 | rng.choice((1, 2, 2, 3, 4))
        vibrato = rng.random() < (0.8 if self.lead_sustains else 0.3)
        lead = Instrument(
            "lead",
            nrx1=lead_duty << 6,
            envelope=envelope,
            vibrato_delay=rng.randrange(6, 24) if vibrato else 0,
            vibrato_speed=rng.randrange(12, 30) if vibrato else 0,
            vibrato_shift=rng.choice((5, 6, 6, 7)) if vibrato else 0,
        )
        self.lead = self._add(lead)
        # the B/C sections' lead: another duty, and now and then a sweep
        sweep = 0
        if not self.lead_sustains and rng.random() < 0.35:
            sweep = rng.randrange(3, 8) << 4 | rng.choice((0, 8)) | rng.randrange(5, 8)
        lead2 = Instrument(
            "lead 2" + (" (sweep)" if sweep else ""),
            nrx1=rng.choice(duties) << 6 if rng.random() < 0.6 else lead.nrx1,
            envelope=envelope,
            sweep=sweep,
            vibrato_delay=0 if sweep else lead.vibrato_delay,
            vibrato_speed=0 if sweep else lead.vibrato_speed,
            vibrato_shift=0 if sweep else lead.vibrato_shift,
        )
        self.lead2 = self._add(lead2)
        self.lead_has_sweep = {self.lead: False, self.lead2: bool(sweep)}
        harmony_duty = rng.choice(duties)
        self.harmony_pluck = self._add(Instrument(
            "harmony pluck", nrx1=harmony_duty << 6,
            envelope=rng.randrange(7, 12) << 4 | rng.choice((1, 2, 3)),
        ))  # fmt: skip
        self.harmony_pad = self._add(Instrument(
            "harmony pad", nrx1=harmony_duty << 6, envelope=rng.randrange(5, 9) << 4,
            vibrato_delay=12, vibrato_speed=rng.randrange(10, 20),
            vibrato_shift=7 if rng.random() < 0.5 else 0,
        ))  # fmt: skip
        self.echo_envelope = rng.randrange(4, 8) << 4 | (envelope & 0x0F)
        self.bass = self._add(Instrument("bass", nrx1=0x00, envelope=0x20))
        self.noise = self._add(Instrument("drums", nrx1=0x00, envelope=0x00))
        self.slide_chance = rng.choice((0.0, 0.0, 0.08, 0.15, 0.25))
        self.fall_chance = rng.choice((0.0, 0.3, 0.6))

    def _drum_kit(self) -> list[Drum]:
        rng = self.rng
        self.kit: dict[str, int] = {}
        drums = [
            Drum("kick", rng.choice((0xF1, 0xE1, 0xF2, 0xD1)), rng.choice((0x30, 0x31, 0x40, 0x41)),
                 rng.choice((0x60, 0x61, 0x70, 0x62)), rng.choice((1, 2, 2, 3))),
            Drum("snare", rng.choice((0xC2, 0xB2, 0xD2, 0xC3, 0xA3)),
                 rng.choice((0x22, 0x32, 0x33, 0x42, 0x23)), 0x00, 0),
            Drum("hat", rng.choice((0x81, 0x61, 0x91, 0x71)), rng.choice((0x00, 0x01, 0x10, 0x11)),
                 0x00, 0),
            Drum("open", rng.choice((0x83, 0x74, 0x93, 0x64)), rng.choice((0x00, 0x10, 0x01)),
                 0x00, 0),
            Drum("tom", rng.choice((0xC2, 0xD3, 0xB2)), rng.choice((0x4C, 0x5C, 0x4D, 0x3D)),
                 rng.choice((0x5D, 0x6D, 0x5E)), rng.choice((2, 3, 4))),
        ]  # fmt: skip
        for i, drum in enumerate(drums):
            self.kit[drum.name] = i
        return drums

    def _wave(self) -> tuple[str, bytes]:
        rng = self.rng
        name = rng.choice(("triangle", "saw", "square", "pulse", "sine", "organ", "soft square",
                           "harmonics"))  # fmt: skip
        n = 32
        if name == "triangle":
            samples = [15 - abs(31 - 2 * k) * 15 / 31 for k in range(n)]
        elif name == "saw":
            samples = [k * 15 / 31 for k in range(n)]
        elif name == "square":
            samples = [15 if k < 16 else 0 for k in range(n)]
        elif name == "pulse":
            width = rng.choice((8, 10, 12))
            samples = [15 if k < width else 0 for k in range(n)]
        elif name == "sine":
            samples = [7.5 + 7.5 * math.sin(2 * math.pi * k / n) for k in range(n)]
        else:
            if name == "organ":
                amps = (1.0, 0.5, 0.33, 0.0)
            elif name == "soft square":
                amps = (1.0, 0.0, 0.33, 0.0)
            else:
                amps = (1.0, rng.uniform(0, 0.7), rng.uniform(0, 0.5), rng.uniform(0, 0.4))
            raw = [sum(a * math.sin(2 * math.pi * (h + 1) * k / n) for h, a in enumerate(amps))
                   for k in range(n)]  # fmt: skip
            lo, hi = min(raw), max(raw)
            samples = [(v - lo) / (hi - lo) * 15 for v in raw]
        nibbles = [max(0, min(15, int(round(s)))) for s in samples]
        data = bytes(nibbles[i] << 4 | nibbles[i + 1] for i in range(0, n, 2))
        if name in ("square", "pulse", "saw"):
            # loud shapes at half level
            self.instruments[self.bass] = Instrument("bass", nrx1=0x00, envelope=0x40)
        return name, data

    # ---- melody ------------------------------------------------------------------------------
    def _rhythm_bar(self, density: float, cadence: bool = False) -> list[int]:
        """Lengths (negative: rests) filling one bar."""
        rng = self.rng
        out: list[int] = []
        beat = 0
        last_beats = 2 if cadence else 0
        while beat < self.beats - last_beats:
            left = self.beats - last_beats - beat
            if left >= 2 and beat % 2 == 0 and rng.random() < 0.55 - 0.25 * density:
                cell = _pick(rng, TWO_BEAT_CELLS)
                beat += 2
            else:
                weights = {c: w * (1 + density if len(c) > 1 else 1.0)
                           for c, w in BEAT_CELLS.items()}  # fmt: skip
                cell = _pick(rng, weights)
                beat += 1
            out.extend(cell)
        if cadence:  # a long last note, held or followed by a breath
            out.extend((8,) if rng.random() < 0.6 else rng.choice(((6, -2), (4, -4))))
        if out[0] < 0 and not cadence and rng.random() < 0.5:
            out[0] = -out[0]
        return out

    def _chord_tones(self, chord: Chord, lo: int, hi: int) -> list[int]:
        return [i for i in range(lo, hi + 1) if (i - chord.degree) % 7 in (0, 2, 4)]

    def _melody_pitches(
        self, onsets: list[tuple[int, int]], lo: int, hi: int, start: int | None, final_root: bool
    ) -> list[int]:
        """Scale steps (0 = tonic) for notes at (row, length); strong beats take chord tones."""
        rng = self.rng
        pitches: list[int] = []
        prev = start if start is not None else rng.randrange(lo + 3, hi - 2)
        direction = rng.choice((-1, 1))
        for n, (row, _) in enumerate(onsets):
            chord = self.chord_at(row)
            strong = row % self.rpb == 0
            last = n == len(onsets) - 1
            if last and final_root:
                tones = [i for i in range(lo, hi + 1) if (i - chord.degree) % 7 == 0]
                pitch = min(tones, key=lambda i: (abs(i - prev), i))
            elif n == 0 and start is None or strong:
                tones = self._chord_tones(chord, lo, hi)
                weights = [math.exp(-abs(t - prev - direction) / 1.5) for t in tones]
                pitch = rng.choices(tones, weights=weights)[0]
            else:
                step = rng.choices((1, 2, 0, 3), weights=(0.62, 0.16, 0.12, 0.1))[0]
                pitch = prev + direction * step
            if not lo <= pitch <= hi:
                direction = -direction
                pitch = max(lo, min(hi, prev + direction))
            if abs(pitch - prev) >= 3:
                direction = -1 if pitch > prev else 1  # after a leap, turn back
            elif rng.random() < 0.25:
                direction = -direction
            pitches.append(pitch)
            prev = pitch
        return pitches

    def _melody_section(self, kind: str, first_row: int, bars: int) -> list[tuple[int, int, int]]:
        """(row, length, scale step) notes of one section; rows from the section start."""
        rng = self.rng
        density = {"A": 0.4, "B": 0.7, "C": 0.2}.get(kind, 0.4) + rng.uniform(-0.2, 0.2)
        lift = {"A": 0, "B": 2, "C": -1}.get(kind, 0)
        lo, hi = -3 + lift, 9 + lift
        motif_a = self._rhythm_bar(density)
        motif_b = self._rhythm_bar(density)
        notes: list[tuple[int, int, int]] = []
        first_pitches: list[int] | None = None
        prev: int | None = None
        for phrase in range(bars // 4):
            plan = rng.choice((("a", "b", "a", "c"), ("a", "a", "b", "c"), ("a", "b", "a", "b")))
            final = phrase == bars // 4 - 1
            for bar_in_phrase, which in enumerate(plan):
                cadence = which == "c" or (bar_in_phrase == 3 and final)
                rhythm = {"a": motif_a, "b": motif_b}.get(which) or self._rhythm_bar(density, True)
                if cadence and which != "c":
                    rhythm = self._rhythm_bar(density, True)
                bar = phrase * 4 + bar_in_phrase
                row0 = bar * self.bar_rows
                onsets, row = [], row0
                for length in rhythm:
                    if length > 0:
                        onsets.append((row, length))
                    row += abs(length)
                if not onsets:
                    continue
                abs_onsets = [(first_row + r, n) for r, n in onsets]
                if which == "a" and first_pitches is not None and not cadence:
                    # the motif again, as a sequence from this bar's chord
                    chord = self.chord_at(abs_onsets[0][0])
                    tones = self._chord_tones(chord, lo, hi)
                    base = min(tones, key=lambda t: abs(t - first_pitches[0]))
                    pitches = [max(lo, min(hi, base + p - first_pitches[0]))
                               for p in first_pitches]  # fmt: skip
                else:
                    pitches = self._melody_pitches(abs_onsets, lo, hi, prev, cadence and final)
                    if which == "a" and first_pitches is None:
                        first_pitches = pitches
                notes += [(r, n, p) for (r, n), p in zip(onsets, pitches, strict=True)]
                prev = pitches[-1]
        return notes

    def _melody(self) -> list[_Note]:
        rng = self.rng
        scale, tonic = self.scale, MELODY_TONIC + self.key
        by_kind: dict[str, list[tuple[int, int, int]]] = {}
        self.melody_steps: list[tuple[int, int, int]] = []  # absolute (row, length, step)
        out: list[_Note] = []
        seen: dict[str, int] = {}
        staccato = rng.random() < 0.25
        self.styles["melody"] = "staccato" if staccato else "legato"
        for kind, bar, n in self.sections:
            if kind == "intro":
                continue
            first_row = bar * self.bar_rows
            if kind not in by_kind:
                by_kind[kind] = self._melody_section(kind, first_row, n)
            notes = by_kind[kind]
            seen[kind] = seen.get(kind, 0) + 1
            if seen[kind] > 1 and rng.random() < 0.5:
                # a later A ends differently: new pitches for its last bar
                last_bar_row = (n - 1) * self.bar_rows
                head = [x for x in notes if x[0] < last_bar_row]
                tail = [x for x in notes if x[0] >= last_bar_row]
                onsets = [(first_row + r, length) for r, length, _ in tail]
                prev = head[-1][2] if head else None
                lift = {"A": 0, "B": 2, "C": -1}.get(kind, 0)
                pitches = self._melody_pitches(onsets, -3 + lift, 9 + lift, prev, True)
                notes = head + [(r, length, p) for (r, length, _), p in
                                zip(tail, pitches, strict=True)]  # fmt: skip
            instrument = self.lead if kind == "A" else self.lead2
            previous: _Note | None = None
            for r, length, step in notes:
                note = tonic + scale_note(scale, step)
                row = first_row + r
                self.melody_steps.append((row, length, step))
                sound = max(1, length // 2) if staccato and length >= 2 else length
                event = _Note(row, sound, note, instrument)
                if (previous is not None and previous.start + previous.length == row
                        and not self.lead_has_sweep[instrument]
                        and 0 < abs(note - previous.note) <= 7
                        and rng.random() < self.slide_chance):  # fmt: skip
                    event.slide = _slide_speed(previous.note, note, frames=5)
                out.append(event)
                previous = event
            # a short last note of the section may fall away
            if (out and out[-1].length <= 4 and not self.lead_has_sweep[instrument]
                    and rng.random() < self.fall_chance):  # fmt: skip
                out[-1].bend = -rng.choice((1, 2))
        return out

    # ---- harmony -----------------------------------------------------------------------------
    def _harmony(self) -> list[_Note]:
        rng = self.rng
        styles = ["arpeggio", "broken", "pad", "thirds", "echo", "counter"]
        weights = [3.0, 2.0, 1.5, 1.2, 1.2, 1.0]
        per_kind: dict[str, str] = {}
        for kind in sorted(set(self.form)):
            per_kind[kind] = rng.choices(styles, weights=weights)[0]
        if "B" in per_kind and per_kind["B"] == per_kind["A"] and rng.random() < 0.5:
            per_kind["B"] = rng.choices(styles, weights=weights)[0]
        self.styles["harmony"] = "/".join(f"{k}:{v}" for k, v in sorted(per_kind.items()))
        out: list[_Note] = []
        for kind, bar, n in self.sections:
            if kind == "intro":
                if rng.random() < 0.5:
                    out += self._harmony_arpeggio(bar, n, retrigger=True)
                continue
            style = per_kind[kind]
            method = {
                "arpeggio": lambda b, k: self._harmony_arpeggio(b, k, rng.random() < 0.5),
                "broken": self._harmony_broken,
                "pad": self._harmony_pad,
                "thirds": self._harmony_thirds,
                "echo": self._harmony_echo,
                "counter": self._harmony_counter,
            }[style]
            out += method(bar, n)
        return out

    def _chord_note(self, chord: Chord, tone: int, base: int) -> int:
        """A chord tone (0: root, 1: third, 2: fifth) of the chord rooted in ``base``'s octave."""
        return base + (self.key + chord.root) % 12 + chord.tones[tone]

    def _harmony_arpeggio(self, bar: int, bars: int, retrigger: bool) -> list[_Note]:
        out = []
        half = self.bar_rows // 2
        for b in range(bar, bar + bars):
            for h in range(2):
                row = b * self.bar_rows + h * half
                chord = self.chord_at(row)
                arp = chord.third << 4 | chord.fifth
                root = self._chord_note(chord, 0, HARMONY_TONIC + 12)
                if retrigger:
                    for beat in range(0, half, self.rpb):
                        length = min(self.rpb, half - beat)
                        out.append(_Note(row + beat, length, root, self.harmony_pluck,
                                         arpeggio=arp))  # fmt: skip
                else:
                    out.append(_Note(row, half, root, self.harmony_pad, arpeggio=arp))
        return _merge_repeats(out, self.bar_rows) if not retrigger else out

    def _harmony_broken(self, bar: int, bars: int) -> list[_Note]:
        figure = self.rng.choice(((0, 2, 1, 2), (0, 1, 2, 1), (0, 2, 3, 2), (2, 1, 0, 1)))
        step = self.rng.choice((2, 2, 4))
        out = []
        for b in range(bar, bar + bars):
            for k, row in enumerate(range(b * self.bar_rows, (b + 1) * self.bar_rows, step)):
                chord = self.chord_at(row)
                tone = figure[k % len(figure)]
                note = self._chord_note(chord, tone % 3, HARMONY_TONIC + 12) + 12 * (tone // 3)
                out.append(_Note(row, step, note, self.harmony_pluck))
        return out

    def _harmony_pad(self, bar: int, bars: int) -> list[_Note]:
        out = []
        tone = self.rng.choice((1, 2))
        half = self.bar_rows // 2
        for b in range(bar, bar + bars):
            for h in range(2):
                row = b * self.bar_rows + h * half
                chord = self.chord_at(row)
                out.append(_Note(row, half, self._chord_note(chord, tone, HARMONY_TONIC + 12),
                                 self.harmony_pad))  # fmt: skip
        return _merge_repeats(out, self.bar_rows)

    def _melody_in(self, bar: int, bars: int) -> list[tuple[int, int, int]]:
        lo, hi = bar * self.bar_rows, (bar + bars) * self.bar_rows
        return [m for m in self.melody_steps if lo <= m[0] < hi]

    def _harmony_thirds(self, bar: int, bars: int) -> list[_Note]:
        tonic = MELODY_TONIC + self.key
        return [
            _Note(row, length, tonic + scale_note(self.scale, step - 2), self.harmony_pluck)
            for row, length, step in self._melody_in(bar, bars)
        ]

    def _harmony_echo(self, bar: int, bars: int) -> list[_Note]:
        delay = self.rng.choice((2, 3, 3, 6))
        tonic = MELODY_TONIC + self.key
        end = (bar + bars) * self.bar_rows
        out = []
        for row, length, step in self._melody_in(bar, bars):
            start = row + delay
            if start >= end:
                break
            out.append(_Note(start, min(length, end - start),
                             tonic + scale_note(self.scale, step), self.lead,
                             envelope=self.echo_envelope))  # fmt: skip
        return out

    def _harmony_counter(self, bar: int, bars: int) -> list[_Note]:
        out = []
        prev = HARMONY_TONIC + 12 + self.key + 4
        half = self.bar_rows // 2
        for b in range(bar, bar + bars):
            for h in range(2):
                row = b * self.bar_rows + h * half
                chord = self.chord_at(row)
                options = [self._chord_note(chord, t, HARMONY_TONIC + 12) + o
                           for t in range(3) for o in (-12, 0, 12)]  # fmt: skip
                options = [o for o in options if HARMONY_TONIC + 7 <= o <= HARMONY_TONIC + 28]
                note = min(options, key=lambda o: (abs(o - prev), o))
                if note == prev:
                    others = [o for o in options if o != prev]
                    note = min(others, key=lambda o: abs(o - prev)) if others else note
                out.append(_Note(row, half, note, self.harmony_pad))
                prev = note
        return out

    # ---- bass --------------------------------------------------------------------------------
    def _bass(self) -> list[_Note]:
        rng = self.rng
        styles = ["roots", "eighths", "root-fifth", "octaves", "walking", "syncopated"]
        weights = [1.2, 2.0, 2.0, 1.5, 1.2, 1.5]
        main = rng.choices(styles, weights=weights)[0]
        chorus = main if rng.random() < 0.5 else rng.choices(styles, weights=weights)[0]
        self.styles["bass"] = main if chorus == main else f"{main}/{chorus}"
        punchy = rng.random() < 0.5
        out: list[_Note] = []
        for kind, bar, n in self.sections:
            style = chorus if kind == "B" else main
            if kind == "intro":
                style = "roots"
            for b in range(bar, bar + n):
                out += self._bass_bar(b, style, punchy)
            if kind != "intro" and out and rng.random() < self.fall_chance * 0.5:
                out[-1].bend = -rng.choice((2, 3, 4))  # a dive into the next section
        return out

    def _bass_bar(self, bar: int, style: str, punchy: bool) -> list[_Note]:
        rows, rpb = self.bar_rows, self.rpb
        start = bar * rows
        out: list[_Note] = []

        def root(row: int, octave: int = 0) -> int:
            chord = self.chord_at(row)
            return BASS_TONIC + (self.key + chord.root) % 12 + 12 * octave

        def fifth(row: int) -> int:
            """The fifth below a high root, else above."""
            note = root(row) + self.chord_at(row).fifth
            return note - 12 if note >= 12 + 7 else note

        def add(row: int, length: int, note: int) -> None:
            sound = length - 1 if punchy and length >= 2 else length
            out.append(_Note(row, sound, note, self.bass))

        if style == "roots":
            half = rows // 2
            add(start, half, root(start))
            add(start + half, half, root(start + half))
        elif style == "eighths":
            for k, row in enumerate(range(start, start + rows, 2)):
                add(row, 2, root(row, 1 if k % 8 == 7 else 0))
        elif style == "octaves":
            for k, row in enumerate(range(start, start + rows, 2)):
                add(row, 2, root(row, k % 2))
        elif style == "root-fifth":
            for k, row in enumerate(range(start, start + rows, rpb)):
                add(row, rpb, root(row) if k % 2 == 0 else fifth(row))
        elif style == "walking":
            # root, chord tones, then a step that leads into the next bar's root
            chord = self.chord_at(start)
            here = root(start)
            nxt = root(start + rows) if bar + 1 < self.bars else here
            approach = nxt + 1 if nxt < 23 and (nxt <= here or nxt == 0) else nxt - 1
            beats = [here, here + chord.third, here + chord.fifth][: self.beats - 1] + [approach]
            for k, note in enumerate(beats):
                add(start + k * rpb, rpb, note)
        else:  # syncopated: 3 + 3 + 2 in each half bar
            for half in range(0, rows, 8 if rows == 16 else 6):
                cells = (3, 3, 2) if rows == 16 else (3, 3)
                row = start + half
                for k, length in enumerate(cells):
                    add(row, length, root(row) if k != 1 else root(row, 1))
                    row += length
        return out

    # ---- drums -------------------------------------------------------------------------------
    def _drum_track(self) -> list[_Note]:
        rng = self.rng
        styles = DRUM_STYLES_4 if self.beats == 4 else DRUM_STYLES_3
        names = list(styles)
        main = rng.choice([n for n in names if n not in ("sparse", "sparse3")])
        busy = rng.choice(names)
        calm = "sparse" if self.beats == 4 else "sparse3"
        self.styles["drums"] = f"{main}/{busy}"
        fills = rng.random() < 0.8
        bridge = calm if rng.random() < 0.5 else main
        out: list[_Note] = []
        for kind, bar, n in self.sections:
            style = {"intro": calm, "A": main, "B": busy, "C": bridge}[kind]
            for b in range(bar, bar + n):
                fill = fills and kind != "intro" and b == bar + n - 1
                out += self._drum_bar(b, styles[style], fill)
        return out

    def _drum_bar(self, bar: int, pattern: dict[str, str], fill: bool) -> list[_Note]:
        rows = self.bar_rows
        hits: dict[int, str] = {}
        for name in reversed(DRUM_PRIORITY):
            for row, ch in enumerate(pattern.get(name, "")):
                if ch == "x":
                    hits[row] = name
        if fill:
            kind = self.rng.choice(("snare", "tom", "mixed"))
            first = rows - self.rpb * self.rng.choice((1, 2))
            step = self.rng.choice((1, 2))
            for row in range(first, rows, step):
                hits[row] = kind if kind != "mixed" else ("tom" if row % 4 < 2 else "snare")
        start = bar * rows
        return [_Note(start + row, 1, self.kit[name], self.noise)
                for row, name in sorted(hits.items())]  # fmt: skip


def _slide_speed(from_note: int, to_note: int, frames: int) -> int:
    distance = abs(D.frequency_register(to_note) - D.frequency_register(from_note))
    return max(1, min(255, -(-distance // frames)))


def _merge_repeats(notes: list[_Note], bar_rows: int) -> list[_Note]:
    """Join back-to-back notes of the same pitch and settings into one longer note (within a
    bar: each bar starts its note again)."""
    out: list[_Note] = []
    for note in notes:
        prev = out[-1] if out else None
        if (prev is not None and prev.start + prev.length == note.start and prev.note == note.note
                and note.start % bar_rows != 0
                and (prev.instrument, prev.arpeggio, prev.envelope)
                == (note.instrument, note.arpeggio, note.envelope)):  # fmt: skip
            prev.length += note.length
        else:
            out.append(_Note(**note.__dict__))
    return out


def _events(notes: list[_Note], total: int, hold_gaps: bool) -> list[Event]:
    """Events covering ``total`` rows: the notes (cut where the next begins), gaps as rests
    (or, for drums, held so hits ring out)."""
    notes = sorted((n for n in notes if n.start < total), key=lambda n: n.start)
    events: list[Event] = []
    row = 0
    for i, note in enumerate(notes):
        if note.start < row:
            continue  # two notes at one row: the first is kept
        if note.start > row:
            events.append(Event(row, note.start - row, None, note.instrument, hold=hold_gaps))
        nxt = notes[i + 1].start if i + 1 < len(notes) else total
        end = min(note.start + note.length, nxt, total) if not hold_gaps else min(nxt, total)
        end = max(end, note.start + 1)
        events.append(Event(note.start, end - note.start, note.note, note.instrument,
                            envelope=note.envelope, arpeggio=note.arpeggio, slide=note.slide,
                            bend=note.bend))  # fmt: skip
        row = end
    if row < total:
        events.append(Event(row, total - row, None, notes[-1].instrument if notes else 0,
                            hold=hold_gaps))  # fmt: skip
    return events


@dataclass(frozen=True)
class SoundSet:
    """A song's sounds as the composer picks them, for other song makers (the arranger):
    instruments with the index of each role, the drum kit (by name) and the wave table."""

    instruments: list[Instrument]
    lead: int
    lead2: int
    harmony_pluck: int
    harmony_pad: int
    bass: int
    noise: int
    lead_sustains: bool
    drums: list[Drum]
    kit: dict[str, int]
    wave_name: str
    wave: bytes


def sound_set(seed: int) -> SoundSet:
    """The instruments, drum kit and wave table the composer would pick for ``seed``."""
    composer = _Composer(seed, 0)
    composer._choose_instruments()
    drums = composer._drum_kit()
    wave_name, wave = composer._wave()  # may swap in a quieter bass for loud wave shapes
    c = composer
    return SoundSet(list(c.instruments), c.lead, c.lead2, c.harmony_pluck, c.harmony_pad, c.bass,
                    c.noise, c.lead_sustains, drums, dict(c.kit), wave_name, wave)  # fmt: skip


def compose(seed: int, index: int = 0) -> Song:
    """Song ``index`` of the set made with ``seed`` (the same arguments, the same song)."""
    return _Composer(seed, index).compose()


def song_summary(song: Song) -> dict:
    """What the JSON index says about a song."""
    return {
        "title": song.title,
        "seed": song.seed,
        "key": pitch_name(song.key, song.key, song.mode),
        "key_pitch_class": song.key,
        "mode": song.mode,
        "bpm": round(song.bpm, 2),
        "tempo": song.tempo,
        "meter": f"{song.beats_per_bar}/4",
        "bars": song.bars,
        "loop_bar": song.loop_bar,
        "seconds": round(song.seconds, 1),
        "loop_seconds": round(song.loop_seconds, 1),
        "form": song.form,
        "sections": [name for name, _, _ in song.sections],
        "progression": song.progression,
        "styles": song.styles,
    }
