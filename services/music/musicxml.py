"""MusicXML reader: compressed ``.mxl`` and plain ``.musicxml`` (score-partwise and
score-timewise) into a ``Score``.

The XML is read as a stream with expat (no element tree): every measure of every part is
collected with its notes, dynamics, tempo marks, time signature and repeat barlines; then
the measures are laid out in playing order (simple repeats and 1st/2nd endings expanded),
tied notes are merged and dynamics become velocities. Streaming keeps the reader fast:
the 1,582 OpenScore files (1.2 GB of XML) take about a minute on one core.

Grace notes and cue notes are skipped (a grace note has no duration of its own; a cue
note is another instrument's line printed small). D.C./D.S./coda jumps are not followed:
the music plays straight through. Each staff of a part becomes its own ``Part``, so a
piano's right and left hand stay apart; unpitched notes make a drum part.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from operator import itemgetter
from pathlib import PurePosixPath
from xml.parsers import expat

from gbsynth.music.score import (
    MeterChange,
    Note,
    Part,
    Score,
    ScoreError,
    TempoChange,
    drum_key_for_name,
)

MAX_XML_BYTES = 64 * 1024 * 1024
"""Largest uncompressed MusicXML document read (a zip bomb stops here)."""
MAX_NOTES = 2_000_000
"""Most notes in one score, after repeats are expanded."""
MAX_REPEAT_GROWTH = 8
"""Repeats may make a piece at most this many times longer than written; beyond that the
barlines are taken to be broken and the music plays straight through."""

DEFAULT_VELOCITY = 80
# Velocities of the dynamic marks, close to what notation programs play back.
DYNAMIC_VELOCITY = {
    "pppppp": 5,
    "ppppp": 10,
    "pppp": 16,
    "ppp": 24,
    "pp": 36,
    "p": 49,
    "mp": 64,
    "mf": 80,
    "f": 96,
    "ff": 112,
    "fff": 120,
    "ffff": 127,
    "fffff": 127,
    "ffffff": 127,
}
# Accents: (velocity of the accented note, level after it or None to keep the level).
ACCENT_DYNAMICS = {
    "sf": (104, None),
    "sfz": (108, None),
    "sffz": (120, None),
    "fz": (104, None),
    "rf": (100, None),
    "rfz": (104, None),
    "fp": (96, 49),
    "sfp": (104, 49),
    "sfpp": (104, 36),
    "sfzp": (108, 49),
    "pf": (49, 96),
}
_DYNAMIC_MARKS = frozenset(DYNAMIC_VELOCITY) | frozenset(ACCENT_DYNAMICS) | {"n"}

_STEP_SEMITONES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# Quarter notes per note type, for metronome marks.
_TYPE_QUARTERS = {
    "maxima": 32.0,
    "long": 16.0,
    "breve": 8.0,
    "whole": 4.0,
    "half": 2.0,
    "quarter": 1.0,
    "eighth": 0.5,
    "16th": 0.25,
    "32nd": 0.125,
    "64th": 0.0625,
}
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?|[-+]?\.\d+")
_EPS = 1e-6
_BEAT_TYPES = frozenset({1, 2, 4, 8, 16, 32, 64})


def read_musicxml(data: bytes, name: str) -> Score:
    """A ``Score`` from a MusicXML file: a ``.mxl`` zip or the XML itself.

    Raises ``ScoreError`` for anything that is not a readable MusicXML score.
    """
    xml = _unzip_root(data, name) if data[:4] == b"PK\x03\x04" else data
    if len(xml) > MAX_XML_BYTES:
        raise ScoreError(
            f"{name}: {len(xml)} bytes of XML; the limit is {MAX_XML_BYTES}", "too_large"
        )
    reader = _Reader(name)
    parser = _safe_parser()
    parser.buffer_text = True
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.text.append
    try:
        parser.Parse(xml, True)
    except ScoreError:
        raise
    except expat.ExpatError as exc:
        raise ScoreError(f"{name}: not well-formed XML: {exc}") from None
    except (LookupError, ValueError) as exc:  # an encoding declaration expat cannot use
        raise ScoreError(f"{name}: unreadable XML encoding: {exc}") from None
    return reader.score()


def _safe_parser() -> expat.XMLParserType:
    """An expat parser that refuses entity declarations (no entity-expansion bombs) and never
    reads external DTDs."""
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.EntityDeclHandler = _refuse_entity
    return parser


def _refuse_entity(name: str, *_: object) -> None:
    raise ScoreError(f"XML declares an entity ({name!r}); MusicXML files do not need any")


def _unzip_root(data: bytes, name: str) -> bytes:
    """The root MusicXML document of a ``.mxl`` zip (named by META-INF/container.xml)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            root = None
            if "META-INF/container.xml" in names:
                root = _container_root(_read_member(archive, "META-INF/container.xml", 1 << 20))
            if root is None or root not in names:
                candidates = [
                    n
                    for n in names
                    if not n.startswith("META-INF/")
                    and PurePosixPath(n).suffix.lower() in (".xml", ".musicxml")
                ]
                if not candidates:
                    raise ScoreError(f"{name}: the zip holds no MusicXML document")
                root = candidates[0]
            return _read_member(archive, root, MAX_XML_BYTES)
    except ScoreError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        EOFError,
        NotImplementedError,
        RuntimeError,
        ValueError,
        OSError,
        struct.error,
        KeyError,
    ) as exc:
        raise ScoreError(f"{name}: broken .mxl zip: {exc}") from None


def _read_member(archive: zipfile.ZipFile, member: str, limit: int) -> bytes:
    # Read one byte past the limit instead of trusting the size the zip header claims.
    with archive.open(member) as stream:
        blob = stream.read(limit + 1)
    if len(blob) > limit:
        raise ScoreError(f"{member} unpacks to more than {limit} bytes", "too_large")
    return blob


def _container_root(container: bytes) -> str | None:
    roots: list[str] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        media = attrs.get("media-type", "")
        if tag == "rootfile" and "full-path" in attrs and (not media or "musicxml" in media):
            roots.append(attrs["full-path"])

    parser = _safe_parser()
    parser.StartElementHandler = start
    try:
        parser.Parse(container, True)
    except ScoreError:
        raise
    except (expat.ExpatError, LookupError, ValueError) as exc:
        raise ScoreError(f"META-INF/container.xml is not readable XML: {exc}") from None
    return roots[0] if roots else None


def _number(text: str, what: str) -> float:
    match = _NUMBER.search(text)
    if match is None:
        raise ScoreError(f"{what} is not a number: {text.strip()[:40]!r}")
    value = float(match.group())
    if value != value or abs(value) > 1e9:
        raise ScoreError(f"{what} is out of range: {text.strip()[:40]!r}")
    return value


def _numbers(text: str) -> set[int]:
    """Ending numbers such as ``"1, 2"`` or ``"1-3"``."""
    found: set[int] = set()
    for first, last in re.findall(r"(\d+)\s*(?:-\s*(\d+))?", text):
        low = int(first)
        high = int(last) if last else low
        if 0 < low <= high <= 64:
            found.update(range(low, high + 1))
    return found


class _Measure:
    __slots__ = ("length", "events", "tempos", "meter", "forward", "backward", "ending", "stop")

    def __init__(self) -> None:
        self.length = 0.0
        # Notes (kind 1) and dynamics (kind 0) of every part: (offset, kind, ordinal, ...).
        self.events: list[tuple] = []
        self.tempos: list[tuple[float, float]] = []
        self.meter: tuple[int, int] | None = None
        self.forward = False
        self.backward = 0  # times to play when a backward repeat ends this measure
        self.ending: set[int] | None = None  # numbers of a 1st/2nd ending starting here
        self.stop = False  # an ending stops at the end of this measure


class _PartState:
    __slots__ = ("ordinal", "divisions", "cursor", "onset", "transpose", "measure")

    def __init__(self, ordinal: int) -> None:
        self.ordinal = ordinal
        self.divisions = 1.0
        # Counted in divisions (whole numbers in practice, so no rounding drift) from the
        # start of the current measure.
        self.cursor = 0.0
        self.onset = 0.0  # onset of the last note that was not a chord member
        self.transpose = 0
        self.measure = -1

    @property
    def position(self) -> float:
        """The cursor in quarter notes."""
        return self.cursor / self.divisions

    def advance(self, measure: _Measure, divisions: float) -> None:
        self.cursor += divisions
        if self.cursor / self.divisions > measure.length:
            measure.length = self.cursor / self.divisions


class _Reader:
    """expat callbacks that collect the measures, then ``score()`` lays them out."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.text: list[str] = []  # character data since the last start tag
        self.measures: list[_Measure] = []
        self.states: dict[str, _PartState] = {}
        self.part_ids: list[str] = []
        self.part_names: dict[str, str] = {}
        self.programs: dict[str, int] = {}
        self.instruments: dict[str, list[str]] = {}  # part id -> score-instrument ids
        self.instrument_names: dict[str, str] = {}
        self.unpitched_keys: dict[str, int] = {}  # instrument id -> GM key
        self.drum_staves: set[tuple[int, int]] = set()
        self.titles: dict[str, str] = {}
        self.composer = ""
        self.key_fifths: int | None = None
        self.minor: bool | None = None
        self.timewise = False
        self.timewise_measure = -1
        self.notes = 0
        self.state: _PartState | None = None
        self.measure: _Measure | None = None
        self.score_part = ""
        self.midi_instrument = ""
        self.creator = ""
        # The element being read.
        self.in_note = self.in_direction = self.in_dynamics = False
        self.duration = 0.0
        self._reset_note({})
        self.beats: list[str] = []
        self.beat_types: list[str] = []
        self.transpose = [0.0, 0.0]
        self.key_mode = ""
        self.marks: list[str] = []
        self.sound_tempo: float | None = None
        self.sound_dynamics: float | None = None
        self.beat_unit = ""
        self.beat_dots = 0
        self.per_minute: float | None = None
        self.metronome_bpm: float | None = None
        self.starts: dict[str, Callable[[dict[str, str]], None]] = {
            "score-timewise": self._start_timewise,
            "score-part": lambda a: setattr(self, "score_part", a.get("id", "")),
            "score-instrument": self._start_score_instrument,
            "midi-instrument": lambda a: setattr(self, "midi_instrument", a.get("id", "")),
            "creator": lambda a: setattr(self, "creator", a.get("type", "")),
            "part": self._start_part,
            "measure": self._start_measure,
            "note": self._reset_note,
            "chord": lambda a: setattr(self, "chord", True),
            "grace": lambda a: setattr(self, "grace", True),
            "cue": lambda a: setattr(self, "cue", True),
            "rest": lambda a: setattr(self, "rest", True),
            "unpitched": lambda a: setattr(self, "unpitched", True),
            "instrument": self._start_instrument,
            "tie": self._start_tie,
            "tied": self._start_tie,
            "backup": self._start_duration_holder,
            "forward": self._start_duration_holder,
            "direction": self._start_direction,
            "dynamics": self._start_dynamics,
            "sound": self._start_sound,
            "metronome": self._start_metronome,
            "beat-unit-dot": self._start_beat_unit_dot,
            "time": self._start_time,
            "transpose": lambda a: setattr(self, "transpose", [0.0, 0.0]),
            "key": lambda a: setattr(self, "key_mode", ""),
            "repeat": self._start_repeat,
            "ending": self._start_ending,
        }
        for mark in _DYNAMIC_MARKS:
            self.starts[mark] = self._mark_handler(mark)
        self.ends: dict[str, Callable[[str], None]] = {
            "work-title": lambda t: self.titles.setdefault("work", " ".join(t.split())),
            "movement-title": lambda t: self.titles.setdefault("movement", " ".join(t.split())),
            "creator": self._end_creator,
            "part-name": self._end_part_name,
            "instrument-name": self._end_instrument_name,
            "midi-program": self._end_midi_program,
            "midi-unpitched": self._end_midi_unpitched,
            "divisions": self._end_divisions,
            "fifths": self._end_fifths,
            "mode": lambda t: setattr(self, "key_mode", t.strip()),
            "key": self._end_key,
            "beats": self.beats.append,
            "beat-type": self.beat_types.append,
            "time": self._end_time,
            "chromatic": lambda t: self._set_transpose(0, t),
            "octave-change": lambda t: self._set_transpose(1, t),
            "transpose": self._end_transpose,
            "step": lambda t: setattr(self, "step", t.strip()),
            "display-step": lambda t: setattr(self, "step", t.strip()),
            "alter": lambda t: setattr(self, "alter", _number(t, "alter")),
            "octave": lambda t: setattr(self, "octave", _number(t, "octave")),
            "display-octave": lambda t: setattr(self, "octave", _number(t, "octave")),
            "duration": self._end_duration,
            "staff": self._end_staff,
            "note": self._end_note,
            "backup": self._end_backup,
            "forward": self._end_forward,
            "other-dynamics": lambda t: self.marks.append(t.strip()),
            "dynamics": lambda t: setattr(self, "in_dynamics", False),
            "beat-unit": lambda t: setattr(self, "beat_unit", t.strip()),
            "per-minute": self._end_per_minute,
            "metronome": self._end_metronome,
            "direction": self._end_direction,
        }

    # expat callbacks

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self.text.clear()
        handler = self.starts.get(tag)
        if handler is not None:
            handler(attrs)

    def end(self, tag: str) -> None:
        handler = self.ends.get(tag)
        if handler is not None:
            handler("".join(self.text))

    # header: part list, titles

    def _start_timewise(self, attrs: dict[str, str]) -> None:
        self.timewise = True

    def _start_score_instrument(self, attrs: dict[str, str]) -> None:
        ident = attrs.get("id", "")
        self.midi_instrument = ident
        self.instruments.setdefault(self.score_part, []).append(ident)

    def _end_creator(self, text: str) -> None:
        if self.creator == "composer" and not self.composer:
            self.composer = " ".join(text.split())

    def _end_part_name(self, text: str) -> None:
        if self.score_part and self.score_part not in self.part_names:
            self.part_names[self.score_part] = " ".join(text.split())
            if self.score_part not in self.part_ids:
                self.part_ids.append(self.score_part)

    def _end_instrument_name(self, text: str) -> None:
        self.instrument_names[self.midi_instrument] = " ".join(text.split())

    def _end_midi_program(self, text: str) -> None:
        program = int(_number(text, "midi-program")) - 1
        if 0 <= program <= 127:
            self.programs.setdefault(self.score_part, program)

    def _end_midi_unpitched(self, text: str) -> None:
        key = int(_number(text, "midi-unpitched")) - 1
        if 0 <= key <= 127:
            self.unpitched_keys[self.midi_instrument] = key

    # parts and measures

    def _start_part(self, attrs: dict[str, str]) -> None:
        ident = attrs.get("id", "")
        state = self.states.get(ident)
        if state is None:
            if ident not in self.part_ids:
                self.part_ids.append(ident)
            state = self.states[ident] = _PartState(self.part_ids.index(ident))
        self.state = state
        if self.timewise:
            self._enter_measure(state, self.timewise_measure)

    def _start_measure(self, attrs: dict[str, str]) -> None:
        if self.timewise:
            self.timewise_measure += 1
            self.state = None
        elif self.state is not None:
            self._enter_measure(self.state, self.state.measure + 1)

    def _enter_measure(self, state: _PartState, index: int) -> None:
        if index < 0:
            raise ScoreError(f"{self.name}: a part outside any measure")
        while len(self.measures) <= index:
            self.measures.append(_Measure())
        state.measure = index
        state.cursor = state.onset = 0.0
        self.measure = self.measures[index]

    def _current(self) -> tuple[_PartState, _Measure]:
        if self.state is None or self.state.measure < 0 or self.measure is None:
            raise ScoreError(f"{self.name}: music outside a part's measure")
        return self.state, self.measure

    # attributes

    def _end_divisions(self, text: str) -> None:
        divisions = _number(text, "divisions")
        if not divisions > 0:
            raise ScoreError(f"{self.name}: divisions must be positive, got {text.strip()!r}")
        state = self._current()[0]
        # Keep the cursor where it is in quarters when the unit changes mid-measure.
        scale = divisions / state.divisions
        state.cursor *= scale
        state.onset *= scale
        state.divisions = divisions

    def _end_fifths(self, text: str) -> None:
        if self.key_fifths is None:
            fifths = int(_number(text, "fifths"))
            if -7 <= fifths <= 7:
                self.key_fifths = fifths

    def _end_key(self, text: str) -> None:
        if self.key_fifths is not None and self.minor is None and self.key_mode:
            self.minor = self.key_mode == "minor"

    def _start_time(self, attrs: dict[str, str]) -> None:
        self.beats.clear()
        self.beat_types.clear()

    def _end_time(self, text: str) -> None:
        _, measure = self._current()
        if measure.meter is not None or not self.beats or len(self.beats) != len(self.beat_types):
            return
        try:
            pairs = [
                (sum(int(b) for b in beats.split("+")), int(beat_type))
                for beats, beat_type in zip(self.beats, self.beat_types, strict=True)
            ]
        except ValueError:
            return  # a time signature such as "3+2/8+3" or "common" spelled out: keep the meter
        if any(d not in _BEAT_TYPES for _, d in pairs):
            return
        denominator = max(d for _, d in pairs)
        numerator = sum(n * denominator // d for n, d in pairs)
        if 1 <= numerator <= 64:
            measure.meter = (numerator, denominator)

    def _set_transpose(self, index: int, text: str) -> None:
        self.transpose[index] = _number(text, "transpose")

    def _end_transpose(self, text: str) -> None:
        state, _ = self._current()
        chromatic, octaves = self.transpose
        if abs(chromatic) <= 24 and abs(octaves) <= 4:
            state.transpose = round(chromatic + 12 * octaves)

    # notes, backup, forward

    def _reset_note(self, attrs: dict[str, str]) -> None:
        self.in_note = True
        self.chord = self.grace = self.cue = self.rest = self.unpitched = False
        self.tie_start = self.tie_stop = False
        self.step = ""
        self.alter = 0.0
        self.octave: float | None = None
        self.duration = 0.0
        self.staff = 1
        self.instrument = ""
        self.note_velocity = 0
        self.marks = []
        if "dynamics" in attrs:
            self.note_velocity = _velocity_from_percent(_number(attrs["dynamics"], "dynamics"))

    def _start_instrument(self, attrs: dict[str, str]) -> None:
        if self.in_note:
            self.instrument = attrs.get("id", "")

    def _start_tie(self, attrs: dict[str, str]) -> None:
        kind = attrs.get("type", "")
        if kind == "start":
            self.tie_start = True
        elif kind == "stop":
            self.tie_stop = True
        elif kind == "continue":
            self.tie_start = self.tie_stop = True

    def _start_duration_holder(self, attrs: dict[str, str]) -> None:
        self.duration = 0.0

    def _end_duration(self, text: str) -> None:
        duration = _number(text, "duration")
        if duration < 0:
            raise ScoreError(f"{self.name}: negative duration {text.strip()!r}")
        self.duration = duration

    def _end_staff(self, text: str) -> None:
        staff = int(_number(text, "staff"))
        if not 1 <= staff <= 16:
            raise ScoreError(f"{self.name}: staff number {staff} out of range")
        if self.in_note:
            self.staff = staff

    def _end_note(self, text: str) -> None:
        self.in_note = False
        if self.grace:
            return
        state, measure = self._current()
        length = self.duration / state.divisions
        if not self.chord:
            state.onset = state.cursor
            state.advance(measure, self.duration)
        onset = state.onset / state.divisions
        if self.marks:
            self._add_dynamics(state, measure, onset)
        if self.rest or self.cue or length <= 0:
            return
        pitch = self._pitch(state)
        if pitch is None:
            return
        self.notes += 1
        if self.notes > MAX_NOTES:
            raise ScoreError(f"{self.name}: more than {MAX_NOTES} notes", "too_large")
        instrument = 0
        if self.instrument:
            ids = self.instruments.get(self.part_ids[state.ordinal], [])
            if self.instrument in ids:
                instrument = ids.index(self.instrument)
        measure.events.append(
            (
                onset,
                1,
                state.ordinal,
                self.staff,
                length,
                pitch,
                self.tie_start,
                self.tie_stop,
                self.note_velocity,
                instrument,
            )
        )

    def _pitch(self, state: _PartState) -> int | None:
        if self.unpitched:
            self.drum_staves.add((state.ordinal, self.staff))
            instrument = self.instrument
            if not instrument:
                ids = self.instruments.get(self.part_ids[state.ordinal], [])
                instrument = ids[0] if len(ids) == 1 else ""
            key = self.unpitched_keys.get(instrument)
            if key is None:
                key = drum_key_for_name(self.instrument_names.get(instrument, ""))
            if key is not None:
                return key
        if self.step not in _STEP_SEMITONES or self.octave is None:
            if self.unpitched:
                return 38  # an unnamed drum on the staff: a snare is the commonest
            raise ScoreError(f"{self.name}: a note without a valid pitch")
        pitch = int(12 * (self.octave + 1) + _STEP_SEMITONES[self.step] + round(self.alter))
        if not self.unpitched:
            pitch += state.transpose
        return pitch if 0 <= pitch <= 127 else None

    def _end_backup(self, text: str) -> None:
        state, _ = self._current()
        state.cursor = max(0.0, state.cursor - self.duration)

    def _end_forward(self, text: str) -> None:
        state, measure = self._current()
        state.advance(measure, self.duration)

    # directions: dynamics and tempo

    def _start_direction(self, attrs: dict[str, str]) -> None:
        self.in_direction = True
        self.marks = []
        self.sound_tempo = self.sound_dynamics = self.metronome_bpm = None

    def _start_dynamics(self, attrs: dict[str, str]) -> None:
        self.in_dynamics = True

    def _mark_handler(self, mark: str) -> Callable[[dict[str, str]], None]:
        def start(attrs: dict[str, str]) -> None:
            if self.in_dynamics:
                self.marks.append(mark)

        return start

    def _start_sound(self, attrs: dict[str, str]) -> None:
        tempo = attrs.get("tempo")
        dynamics = attrs.get("dynamics")
        tempo_value = _number(tempo, "sound tempo") if tempo else None
        dynamics_value = _number(dynamics, "sound dynamics") if dynamics else None
        if self.in_direction:
            self.sound_tempo = tempo_value
            self.sound_dynamics = dynamics_value
            return
        state, measure = self._current()
        if tempo_value is not None:
            _add_tempo(measure, state.position, tempo_value)
        if dynamics_value is not None:
            measure.events.append(
                (state.position, 0, state.ordinal, _velocity_from_percent(dynamics_value), 0)
            )

    def _start_metronome(self, attrs: dict[str, str]) -> None:
        self.beat_unit = ""
        self.beat_dots = 0
        self.per_minute = None

    def _start_beat_unit_dot(self, attrs: dict[str, str]) -> None:
        self.beat_dots += 1

    def _end_per_minute(self, text: str) -> None:
        match = _NUMBER.search(text)
        self.per_minute = float(match.group()) if match else None

    def _end_metronome(self, text: str) -> None:
        unit = _TYPE_QUARTERS.get(self.beat_unit)
        if unit is None or self.per_minute is None:
            return
        self.metronome_bpm = self.per_minute * unit * (2.0 - 0.5**self.beat_dots)

    def _end_direction(self, text: str) -> None:
        self.in_direction = False
        state, measure = self._current()
        tempo = self.sound_tempo if self.sound_tempo is not None else self.metronome_bpm
        if tempo is not None:
            _add_tempo(measure, state.position, tempo)
        # A written mark wins over <sound dynamics>: notation programs disagree on the
        # percentages (MuseScore writes 77.78 for f), the marks mean the same everywhere.
        if not self._add_dynamics(state, measure, state.position):
            if self.sound_dynamics is not None:
                velocity = _velocity_from_percent(self.sound_dynamics)
                measure.events.append((state.position, 0, state.ordinal, velocity, 0))

    def _add_dynamics(self, state: _PartState, measure: _Measure, at: float) -> bool:
        """Turn the dynamic marks just read into a level change or accent at ``at``; False
        when there were no marks this reader knows."""
        level, accent = 0, 0
        for mark in self.marks:
            if mark in DYNAMIC_VELOCITY:
                level = DYNAMIC_VELOCITY[mark]
            elif mark in ACCENT_DYNAMICS:
                accent, after = ACCENT_DYNAMICS[mark]
                level = after or level
        self.marks = []
        if level or accent:
            measure.events.append((at, 0, state.ordinal, level, accent))
            return True
        return False

    # barlines

    def _start_repeat(self, attrs: dict[str, str]) -> None:
        _, measure = self._current()
        direction = attrs.get("direction")
        if direction == "forward":
            measure.forward = True
        elif direction == "backward":
            times = attrs.get("times")
            count = int(_number(times, "repeat times")) if times else 2
            measure.backward = max(measure.backward, min(max(count, 1), MAX_REPEAT_GROWTH))

    def _start_ending(self, attrs: dict[str, str]) -> None:
        _, measure = self._current()
        kind = attrs.get("type")
        if kind == "start":
            numbers = _numbers(attrs.get("number", ""))
            if numbers:
                measure.ending = (measure.ending or set()) | numbers
        elif kind in ("stop", "discontinue"):
            measure.stop = True

    # layout

    def score(self) -> Score:
        if not self.measures:
            raise ScoreError(f"{self.name}: no measures (not a MusicXML score?)", "empty")
        keys = sorted({(e[2], e[3]) for m in self.measures for e in m.events if e[1] == 1})
        if not keys:
            raise ScoreError(f"{self.name}: no notes", "empty")
        part_index = {key: i for i, key in enumerate(keys)}
        staves: dict[int, int] = {}
        for ordinal, _ in keys:
            staves[ordinal] = staves.get(ordinal, 0) + 1
        parts = []
        for ordinal, staff in keys:
            ident = self.part_ids[ordinal]
            name = self.part_names.get(ident) or ident or f"Part {ordinal + 1}"
            if staves[ordinal] > 1:
                name = f"{name} (staff {staff})"
            parts.append(
                Part(
                    name=name,
                    drums=(ordinal, staff) in self.drum_staves,
                    program=self.programs.get(ident),
                )
            )

        order = play_order(self.measures)
        notes: list[list] = []
        tempos: list[TempoChange] = []
        meters: list[MeterChange] = []
        levels: dict[int, int] = {}
        accents: dict[int, tuple[float, int]] = {}
        open_ties: dict[tuple[int, int], list] = {}
        meter = (4, 4)
        at = 0.0
        sort_key = itemgetter(0, 1)
        for measure in self.measures:
            measure.events.sort(key=sort_key)
        for index in order:
            measure = self.measures[index]
            if measure.meter is not None:
                meter = measure.meter
            if not meters or (meters[-1].numerator, meters[-1].denominator) != meter:
                meters.append(MeterChange(at, meter[0], meter[1]))
            for offset, bpm in measure.tempos:
                if not tempos or tempos[-1].bpm != bpm:
                    tempos.append(TempoChange(at + offset, bpm))
            for event in measure.events:
                start = at + event[0]
                ordinal = event[2]
                if event[1] == 0:
                    if event[3]:
                        levels[ordinal] = event[3]
                    if event[4]:
                        accents[ordinal] = (start, event[4])
                    continue
                _, _, _, staff, length, pitch, tie_start, tie_stop, velocity, instrument = event
                part = part_index[(ordinal, staff)]
                if tie_stop:
                    held = open_ties.get((part, pitch))
                    if held is not None and abs(held[0] + held[1] - start) < _EPS:
                        held[1] += length
                        if not tie_start:
                            del open_ties[(part, pitch)]
                        continue
                if not velocity:
                    velocity = levels.get(ordinal, DEFAULT_VELOCITY)
                    accent = accents.get(ordinal)
                    if accent is not None and abs(accent[0] - start) < _EPS:
                        velocity = max(velocity, accent[1])
                note = [start, length, pitch, velocity, part, instrument]
                notes.append(note)
                if len(notes) > MAX_NOTES:
                    raise ScoreError(f"{self.name}: more than {MAX_NOTES} notes", "too_large")
                if tie_start:
                    open_ties[(part, pitch)] = note
            length = measure.length
            if length <= _EPS:
                length = meter[0] * 4.0 / meter[1]
            at += length

        title = (
            self.titles.get("movement") or self.titles.get("work") or PurePosixPath(self.name).stem
        )
        return Score(
            title=title,
            kind="musicxml",
            parts=parts,
            notes=[Note(s, n, p, v, part, i) for s, n, p, v, part, i in notes],
            tempos=tempos,
            meters=meters,
            key_fifths=self.key_fifths,
            minor=self.minor,
            composer=self.composer,
        ).check()


def _velocity_from_percent(percent: float) -> int:
    # MusicXML dynamics are a percentage of forte, and forte is MIDI velocity 90.
    return max(1, min(127, round(percent * 0.9)))


def _add_tempo(measure: _Measure, offset: float, bpm: float) -> None:
    if not 10.0 <= bpm <= 1000.0:
        return  # a tempo of 0 or 50,000 is a typo, not music
    for at, _ in measure.tempos:
        if abs(at - offset) < _EPS:
            return  # several parts repeat the same mark: the first part's wins
    measure.tempos.append((offset, bpm))
    measure.tempos.sort()


def play_order(measures: list[_Measure]) -> list[int]:
    """Measure indices in playing order: simple repeats (``times`` honoured) and numbered
    endings expanded. Falls back to the written order when the barlines would make the piece
    more than ``MAX_REPEAT_GROWTH`` times longer (broken or contradictory repeats)."""
    count = len(measures)
    endings: list[set[int] | None] = []
    current: set[int] | None = None
    for measure in measures:
        if measure.ending is not None:
            current = measure.ending
        endings.append(current)
        if measure.stop:
            current = None
    # The highest ending number of the run of ending measures each measure belongs to, so a
    # backward repeat inside a 2nd ending repeats again when a 3rd ending follows.
    chain_max = [0] * count
    i = 0
    while i < count:
        if endings[i] is None:
            i += 1
            continue
        j = i
        while j < count and endings[j] is not None:
            j += 1
        top = max(max(e) for e in endings[i:j] if e)
        for k in range(i, j):
            chain_max[k] = top
        i = j

    order: list[int] = []
    limit = MAX_REPEAT_GROWTH * count + 64
    start, passes, index, was_in_ending = 0, 1, 0, False
    while index < count:
        measure = measures[index]
        if measure.forward and index != start:
            start, passes = index, 1
        ending = endings[index]
        if ending is None and was_in_ending:
            # Past the last ending: a new section begins.
            start, passes = index, 1
        was_in_ending = ending is not None
        if ending is not None and passes not in ending:
            index += 1
            continue
        order.append(index)
        if len(order) > limit:
            return list(range(count))
        if measure.backward:
            times = max(measure.backward, chain_max[index]) if ending else measure.backward
            if passes < times:
                passes += 1
                index = start
                was_in_ending = False
                continue
            start, passes = index + 1, 1
            was_in_ending = False
        index += 1
    return order
