"""ABC notation reader: a common subset of ABC 2.1 into a ``Score``.

Supported: the X/T/C/M/L/Q/K/V header fields (and K/M/L/Q/V in the body, as lines or
inline ``[K:...]``), notes with accidentals (carried through the bar, key signatures
with modes and explicit accidentals), octave marks, lengths (``2``, ``/``, ``3/2``, ``//``),
rests (``z``, ``x``, multi-bar ``Z4``), bar lines, repeats (``|:``, ``:|``, ``::``) with
numbered endings (``[1``, ``|2``, ``:|2``), chords in brackets, ties (``-``), broken rhythm
(``>``, ``<``, ``>>``), tuplets (``(3``, ``(p:q:r``), voices (``V:``) and voice overlay (``&``),
dynamics decorations (``!p!``, ``!ff!``). Skipped: grace notes, chord symbols and
annotations in quotes, other decorations, slurs, lyrics. A file may hold many tunes
(``X:`` fields); ``read_abc`` reads one of them (the first by default) and
``count_abc_tunes`` says how many there are. Repeats, ties and dynamics are laid out by
the same code as MusicXML (``musicxml.laid_out_score``).
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import PurePosixPath

from gbsynth.music.musicxml import (
    ACCENT_DYNAMICS,
    DYNAMIC_VELOCITY,
    MAX_NOTES,
    Measure,
    add_tempo,
    laid_out_score,
    tempo_from_words,
)
from gbsynth.music.score import Part, Score, ScoreError

MAX_ABC_BYTES = 16 * 1024 * 1024
MAX_LENGTH_QUARTERS = 4096.0
"""Longest note or rest read (a typo such as ``C99999`` should not make a day of music)."""

_LETTER_SEMITONES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_LETTER_FIFTHS = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}
_MODE_FIFTHS = {"maj": 0, "ion": 0, "mix": -1, "dor": -2, "aeo": -3, "min": -3, "phr": -4}
_MODE_FIFTHS |= {"lyd": 1, "loc": -5}
_FIELD = re.compile(r"^([A-Za-z]):(.*)$")
_TUNE_START = re.compile(r"^X:", re.MULTILINE)
# Digit runs are bounded: Python refuses int() of more than 4,300 digits.
_NOTE = re.compile(r"(\^\^|\^|__|_|=)?([A-Ga-g])([',]*)(\d{0,6})(/*)(\d{0,6})")
_REST = re.compile(r"([zxZX])(\d{0,6})(/*)(\d{0,6})")
_LENGTH = re.compile(r"(\d{0,6})(/*)(\d{0,6})")
_TUPLET = re.compile(r"\((\d)(?::(\d?))?(?::(\d?))?")
_BAR = re.compile(r":*(?:\[\||\|\]|\|\||\|)+:*|::+")
_ENDING = re.compile(r"\[?(\d{1,3}(?:[-,]\d{1,3})*)")
_INLINE_FIELD = re.compile(r"\[([A-Za-z]):([^\]]*)\]")
_TEMPO_BEATS = re.compile(r"(\d{1,4})/(\d{1,4})")


def count_abc_tunes(data: bytes) -> int:
    """How many tunes (``X:`` fields) an ABC file holds."""
    return max(1, len(_TUNE_START.findall(_decode(data, "abc"))))


def read_abc(data: bytes, name: str, tune: int = 0) -> Score:
    """Tune number ``tune`` (counted from 0 in file order) of an ABC file as a ``Score``."""
    text = _decode(data, name)
    starts = [m.start() for m in _TUNE_START.finditer(text)]
    file_header = text[: starts[0]] if starts else ""
    if not starts:
        starts = [0]
    if not 0 <= tune < len(starts):
        raise ScoreError(f"{name}: tune {tune} asked for, the file holds {len(starts)}")
    end = starts[tune + 1] if tune + 1 < len(starts) else len(text)
    # Fields in the file header (before the first X:) are defaults for every tune.
    defaults = [line for line in file_header.splitlines() if _FIELD.match(line)]
    return _Tune(name).read(defaults + text[starts[tune] : end].splitlines())


def _decode(data: bytes, name: str) -> str:
    if len(data) > MAX_ABC_BYTES:
        raise ScoreError(f"{name}: {len(data)} bytes; the limit is {MAX_ABC_BYTES}", "too_large")
    if data[:3] == b"\xef\xbb\xbf":
        data = data[3:]
    return data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")


def _length(numerator: str, slashes: str, denominator: str) -> Fraction:
    """An ABC length multiplier: ``3`` = 3, ``/`` = 1/2, ``//`` = 1/4, ``3/2`` = 3/2."""
    top = int(numerator) if numerator else 1
    if denominator:
        bottom = int(denominator) * 2 ** max(len(slashes) - 1, 0)
    else:
        bottom = 2 ** len(slashes)
    if bottom == 0:
        raise ScoreError(f"a note length with denominator 0: {numerator}/{denominator}")
    return Fraction(top, bottom)


def parse_key(text: str) -> tuple[int | None, bool | None, dict[str, int]]:
    """(fifths, minor, accidental per letter) of a K: field such as ``Gm``, ``D dor``,
    ``Bb``, ``F#mix``, ``D ^g`` or ``none``."""
    words = text.strip()
    match = re.match(r"([A-G])([#b]?)\s*([A-Za-z]*)(.*)", words)
    alters: dict[str, int] = {}
    if match is None:
        return None, None, alters  # "none", "HP" or only clef= etc.: no key signature
    letter, accidental, mode_word, rest = match.groups()
    fifths = _LETTER_FIFTHS[letter] + {"#": 7, "b": -7, "": 0}[accidental]
    mode = mode_word.lower()
    minor: bool | None = False
    if mode[:3] in _MODE_FIFTHS:
        fifths += _MODE_FIFTHS[mode[:3]]
        minor = {"min": True, "aeo": True, "maj": False, "ion": False}.get(mode[:3])
    elif mode == "m":
        fifths -= 3
        minor = True
    elif mode and not mode.startswith(("clef", "transpose", "middle", "octave")):
        rest = mode_word + rest
    fifths = max(-7, min(7, fifths))
    if fifths > 0:
        alters.update({letter: 1 for letter in "FCGDAEB"[:fifths]})
    elif fifths < 0:
        alters.update({letter: -1 for letter in "BEADGCF"[:-fifths]})
    for sign, note in re.findall(r"(\^\^|\^|__|_|=)([A-Ga-g])", rest):
        alters[note.upper()] = {"^^": 2, "^": 1, "__": -2, "_": -1, "=": 0}[sign]
    return fifths, minor, alters


class _Voice:
    __slots__ = (
        "ordinal",
        "name",
        "bar",
        "cursor",
        "content",
        "accidentals",
        "last",
        "last_start",
        "last_length",
        "broken",
        "tuplet_left",
        "tuplet_factor",
        "ties",
    )

    def __init__(self, ordinal: int, name: str) -> None:
        self.ordinal = ordinal
        self.name = name
        self.bar = 0
        self.cursor = Fraction(0)  # quarter notes from the bar's start
        self.content = False  # the bar has notes or rests
        self.accidentals: dict[tuple[str, int], int] = {}
        self.last: list[list] = []  # note events of the last note or chord
        self.last_start = Fraction(0)
        self.last_length = Fraction(0)
        self.broken: Fraction | None = None  # length factor for the next note (> or <)
        self.tuplet_left = 0
        self.tuplet_factor = Fraction(1)
        self.ties: set[int] = set()  # pitches tied into the next note


class _Tune:
    def __init__(self, name: str) -> None:
        self.name = name
        self.title = ""
        self.composer = ""
        self.unit: Fraction | None = None  # L: as a fraction of a whole note
        self.meter: tuple[int, int] | None = None
        self.key_fifths: int | None = None
        self.minor: bool | None = None
        self.key_seen = False
        self.key_alters: dict[str, int] = {}
        self.measures: list[Measure] = [Measure()]
        self.voices: dict[str, _Voice] = {}
        self.voice: _Voice | None = None
        self.notes = 0

    # fields

    def read(self, lines: list[str]) -> Score:
        in_body = False
        for raw in lines:
            line = _strip_comment(raw)
            if not line.strip():
                continue
            field = _FIELD.match(line)
            # In the body, "E:|" is a note and a repeat sign, not a field.
            if field and not (
                in_body and field.group(1) in "ABCDEFG" and field.group(2)[:1] in "|:"
            ):
                letter, value = field.group(1), field.group(2).strip()
                self.field(letter, value)
                if letter == "K" and not in_body:
                    in_body = True
                    # The body starts in the first voice the header declared, if any.
                    self.voice = min(self.voices.values(), key=lambda v: v.ordinal, default=None)
            elif in_body:
                self.music(line)
        return self.score()

    def field(self, letter: str, value: str) -> None:
        if letter == "T" and not self.title:
            self.title = value
        elif letter == "C" and not self.composer:
            self.composer = value
        elif letter == "M":
            self.set_meter(value)
        elif letter == "L":
            top, _, bottom = value.partition("/")
            try:
                unit = Fraction(int(top), int(bottom or 1))
            except (ValueError, ZeroDivisionError):
                raise ScoreError(f"{self.name}: unit note length L:{value!r}") from None
            if not 0 < unit <= 4:
                raise ScoreError(f"{self.name}: unit note length L:{value!r} out of range")
            self.unit = unit
        elif letter == "Q":
            self.set_tempo(value)
        elif letter == "K":
            fifths, minor, alters = parse_key(value)
            if not self.key_seen:
                self.key_fifths, self.minor, self.key_seen = fifths, minor, True
            if fifths is not None or value.strip().lower().startswith(("none", "hp")):
                self.key_alters = alters
        elif letter == "V":
            self.select_voice(value)  # in the header it declares, fixing the voice order

    def set_meter(self, value: str) -> None:
        text = value.strip()
        meter = {"C": (4, 4), "C|": (2, 2)}.get(text)
        if meter is None:
            match = re.match(r"\(?([\d+]{1,12})\)?\s*/\s*(\d{1,3})", text)
            if match is None:
                return  # M:none or free metre
            try:
                numerator = sum(int(n) for n in match.group(1).split("+") if n)
            except ValueError:
                return
            meter = (numerator, int(match.group(2)))
        if 1 <= meter[0] <= 64 and meter[1] in (1, 2, 4, 8, 16, 32, 64):
            self.meter = meter
            bar, _ = self.position()
            if self.voice is not None and self.voice.content:
                bar += 1  # a change in mid-bar starts with the next bar
            self.measure(bar).meter = meter

    def set_tempo(self, value: str) -> None:
        beats = _TEMPO_BEATS.findall(value.split("=")[0]) if "=" in value else []
        number = re.search(r"=\s*(\d+(?:\.\d+)?)", value) if "=" in value else None
        bpm: float | None = None
        if beats and number:
            quarters = sum(Fraction(int(n), int(d)) for n, d in beats if int(d)) * 4
            bpm = float(number.group(1)) * float(quarters)
        elif re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", value):
            bpm = float(value) * float(self.unit_length() * 4)  # in L: units
        else:
            words = " ".join(re.findall(r'"([^"]*)"', value)) or value
            guess = tempo_from_words(words)
            if guess is not None:
                bar, at = self.position()
                add_tempo(self.measure(bar).word_tempos, at, guess)
            return
        bar, at = self.position()
        add_tempo(self.measure(bar).tempos, at, bpm)

    def position(self) -> tuple[int, float]:
        """The current voice's bar and offset in it (the start before any music)."""
        if self.voice is None:
            return 0, 0.0
        return self.voice.bar, float(self.voice.cursor)

    def select_voice(self, value: str) -> None:
        ident = value.split()[0] if value.split() else "1"
        voice = self.voices.get(ident)
        if voice is None:
            named = re.search(r'(?:name|nm)="([^"]*)"', value)
            voice = _Voice(len(self.voices), named.group(1) if named else f"Voice {ident}")
            self.voices[ident] = voice
        self.voice = voice

    def current_voice(self) -> _Voice:
        if self.voice is None:
            self.select_voice("1")
        assert self.voice is not None
        return self.voice

    def unit_length(self) -> Fraction:
        if self.unit is None:
            # ABC's default: 1/16 for metres below 3/4, else 1/8.
            small = self.meter is not None and Fraction(*self.meter) < Fraction(3, 4)
            return Fraction(1, 16) if small else Fraction(1, 8)
        return self.unit

    def measure(self, index: int) -> Measure:
        while len(self.measures) <= index:
            self.measures.append(Measure())
        return self.measures[index]

    # music

    def music(self, line: str) -> None:
        voice = self.current_voice()
        i, end = 0, len(line)
        while i < end:
            char = line[i]
            if char in " \t\\`$y)":
                i += 1
            elif char == '"':
                close = line.find('"', i + 1)
                i = end if close < 0 else close + 1  # chord symbol or annotation
            elif char in "!+":
                close = line.find(char, i + 1)
                if close < 0:
                    i += 1
                    continue
                self.decoration(voice, line[i + 1 : close])
                i = close + 1
            elif char == "{":
                close = line.find("}", i + 1)
                i = end if close < 0 else close + 1  # grace notes are skipped
            elif char == "[" and (field := _INLINE_FIELD.match(line, i)):
                self.field(field.group(1), field.group(2).strip())
                voice = self.current_voice()
                i = field.end()
            elif char in "|:" or line.startswith("[|", i):
                i = self.bar_line(voice, line, i)
            elif char == "[" and i + 1 < end and line[i + 1].isdigit():
                ending = _ENDING.match(line, i)
                assert ending is not None
                self.start_ending(voice, ending.group(1))
                i = ending.end()
            elif char == "[":
                i = self.chord(voice, line, i + 1)
            elif char == "(":
                tuplet = _TUPLET.match(line, i)
                if tuplet is None:
                    i += 1  # a slur
                    continue
                self.start_tuplet(voice, *tuplet.groups())
                i = tuplet.end()
            elif char == "-":
                for event in voice.last:
                    event[6] = True
                    voice.ties.add(event[5])
                i += 1
            elif char in "<>":
                run = 1
                while i + run < end and line[i + run] == char:
                    run += 1
                self.broken_rhythm(voice, char, min(run, 3))
                i += run
            elif char == "&":
                voice.cursor = Fraction(0)  # voice overlay: back to the start of the bar
                voice.last = []
                i += 1
            elif rest := _REST.match(line, i):
                self.rest(voice, rest)
                i = rest.end()
            elif note := _NOTE.match(line, i):
                self.element(voice, [note])
                i = note.end()
            else:
                i += 1  # decorations such as . ~ H T u v, and anything unknown

    def decoration(self, voice: _Voice, text: str) -> None:
        level = DYNAMIC_VELOCITY.get(text, 0)
        accent = 0
        if text in ACCENT_DYNAMICS:
            accent, after = ACCENT_DYNAMICS[text]
            level = after or 0
        if level or accent:
            self.measure(voice.bar).events.append(
                [float(voice.cursor), 0, voice.ordinal, level, accent]
            )

    def bar_line(self, voice: _Voice, line: str, i: int) -> int:
        bar = _BAR.match(line, i)
        if bar is None:
            return i + 1  # a lone ':'
        token = bar.group()
        backward = token.startswith(":") or token.startswith("::")
        forward = token.endswith(":")
        double = "||" in token or "|]" in token or "[|" in token
        if voice.content:
            measure = self.measure(voice.bar)
            if backward:
                measure.backward = max(measure.backward, 2)
            if backward or double:
                measure.stop = True
            voice.bar += 1
            voice.cursor = Fraction(0)
            voice.content = False
            voice.accidentals.clear()
            self.measure(voice.bar)
        elif backward and voice.bar > 0:
            previous = self.measure(voice.bar - 1)
            previous.backward = max(previous.backward, 2)
            previous.stop = True
        if forward:
            self.measure(voice.bar).forward = True
        position = bar.end()
        ending = _ENDING.match(line, position)
        if ending is not None:
            self.start_ending(voice, ending.group(1))
            position = ending.end()
        return position

    def start_ending(self, voice: _Voice, numbers: str) -> None:
        found: set[int] = set()
        for part in numbers.split(","):
            low, _, high = part.partition("-")
            first, last = int(low), int(high or low)
            if 0 < first <= last <= 64:
                found.update(range(first, last + 1))
        if found:
            measure = self.measure(voice.bar)
            measure.ending = (measure.ending or set()) | found

    def start_tuplet(self, voice: _Voice, p: str, q: str | None, r: str | None) -> None:
        count = int(p)
        if count < 2:
            return
        if q:
            over = int(q)
        elif count in (2, 4, 8):
            over = 3
        elif count in (3, 6):
            over = 2
        else:
            compound = self.meter is not None and self.meter[0] % 3 == 0 and self.meter[0] > 3
            over = 3 if compound else 2
        if over == 0:
            return
        voice.tuplet_factor = Fraction(over, count)
        voice.tuplet_left = int(r) if r else count

    def broken_rhythm(self, voice: _Voice, direction: str, run: int) -> None:
        if not voice.last:
            return
        shift = 1 - Fraction(1, 2**run)  # > dots the first note: 1/2, >> 3/4, >>> 7/8
        first = 1 + shift if direction == ">" else 1 - shift
        for event in voice.last:
            event[4] *= float(first)
        voice.last_length *= first
        voice.cursor = voice.last_start + voice.last_length
        voice.broken = 2 - first

    def duration(self, voice: _Voice, multiplier: Fraction) -> Fraction:
        length = self.unit_length() * 4 * multiplier
        if voice.tuplet_left > 0:
            length *= voice.tuplet_factor
            voice.tuplet_left -= 1
        if voice.broken is not None:
            length *= voice.broken
            voice.broken = None
        if length > MAX_LENGTH_QUARTERS:
            raise ScoreError(f"{self.name}: a note or rest of {float(length):g} quarter notes")
        return length

    def advance(self, voice: _Voice, length: Fraction) -> None:
        voice.cursor += length
        voice.content = True
        measure = self.measure(voice.bar)
        if voice.cursor > measure.length:
            measure.length = float(voice.cursor)

    def rest(self, voice: _Voice, match: re.Match[str]) -> None:
        kind, numerator, slashes, denominator = match.groups()
        if kind in "ZX":
            bars = int(numerator) if numerator else 1
            meter = self.meter or (4, 4)
            length = Fraction(meter[0] * 4, meter[1]) * min(bars, 1024)
        else:
            length = self.duration(voice, _length(numerator, slashes, denominator))
        voice.last = []
        voice.ties.clear()
        self.advance(voice, length)

    def chord(self, voice: _Voice, line: str, i: int) -> int:
        notes: list[re.Match[str]] = []
        while i < len(line) and line[i] != "]":
            note = _NOTE.match(line, i)
            if note is not None:
                notes.append(note)
                i = note.end()
            else:
                i += 1
        i += 1  # the closing bracket
        multiplier = _LENGTH.match(line, i)
        assert multiplier is not None
        if notes:
            self.element(voice, notes, _length(*multiplier.groups()))
        return multiplier.end()

    def element(
        self, voice: _Voice, notes: list[re.Match[str]], outer: Fraction = Fraction(1)
    ) -> None:
        """A note or a chord: the chord lasts as long as its first note."""
        start = voice.cursor
        measure = self.measure(voice.bar)
        events: list[list] = []
        length = Fraction(0)
        for index, note in enumerate(notes):
            sign, letter, octaves, numerator, slashes, denominator = note.groups()
            multiplier = _length(numerator, slashes, denominator) * outer
            note_length = self.unit_length() * 4 * multiplier
            if index == 0:
                length = self.duration(voice, multiplier)
                scale = length / note_length if note_length else Fraction(1)
            note_length *= scale
            if note_length > MAX_LENGTH_QUARTERS:
                raise ScoreError(f"{self.name}: a chord note of {float(note_length):g} quarters")
            pitch = self.pitch(voice, sign, letter, octaves)
            if not 0 <= pitch <= 127 or note_length <= 0:
                continue
            self.notes += 1
            if self.notes > MAX_NOTES:
                raise ScoreError(f"{self.name}: more than {MAX_NOTES} notes", "too_large")
            tied = pitch in voice.ties
            event = [
                float(start),
                1,
                voice.ordinal,
                1,
                float(note_length),
                pitch,
                False,
                tied,
                0,
                0,
            ]
            measure.events.append(event)
            events.append(event)
        voice.ties.clear()
        voice.last = events
        voice.last_start, voice.last_length = start, length
        self.advance(voice, length)

    def pitch(self, voice: _Voice, sign: str | None, letter: str, octaves: str) -> int:
        upper = letter.upper()
        octave = (1 if letter.islower() else 0) + octaves.count("'") - octaves.count(",")
        key = (upper, octave)
        if sign is not None:
            alter = {"^^": 2, "^": 1, "__": -2, "_": -1, "=": 0}[sign]
            voice.accidentals[key] = alter
        else:
            alter = voice.accidentals.get(key, self.key_alters.get(upper, 0))
        return 60 + 12 * octave + _LETTER_SEMITONES[upper] + alter

    def score(self) -> Score:
        if not self.voices:
            raise ScoreError(f"{self.name}: no music (an ABC tune needs a K: line)", "empty")
        ordered = sorted(self.voices.values(), key=lambda v: v.ordinal)
        used = sorted({e[2] for m in self.measures for e in m.events if e[1] == 1})
        if not used:
            raise ScoreError(f"{self.name}: no notes", "empty")
        part_index = {(ordinal, 1): i for i, ordinal in enumerate(used)}
        names = {v.ordinal: v.name for v in ordered}
        single = len(used) == 1
        parts = [Part(name="Melody" if single else names[ordinal]) for ordinal in used]
        title = self.title or PurePosixPath(self.name).stem
        return laid_out_score(self, "abc", title, parts, part_index)


def _strip_comment(line: str) -> str:
    at = line.find("%")
    while at > 0 and line[at - 1] == "\\":
        at = line.find("%", at + 1)
    return line if at < 0 else line[:at]
