"""Arrangements checked note by note against their source, from the recorded writes.

Each piece is read, arranged, played by our driver on our emulator (``ScoreSession``) and
its notes decoded from the APU writes (``notes.decode_notes``). The test works out from the
source alone which note each channel must play (melody: the first part; bass: each chord's
lowest note; second line: the chord's other notes as an arpeggio; drums: the kit's drum),
its pitch (folded by octaves into the channel's range) and the frame it starts on (row r
starts on the frame where the driver's tempo accumulator carries for the r-th time).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from midi_files import CHORDS, DRUMS, MELODY, example_piece

from gbsynth.common.events import FRAME_CYCLES, SourceKind, sha256_hex
from gbsynth.emulator.score_source import ScoreSession, arrangement_seed
from gbsynth.music.arrange import DRUM_OF_KEY, DRUM_PRIORITY, RANGES, arrange_parts
from gbsynth.music.composer import sound_set
from gbsynth.music.notes import TRIGGER, decode_notes
from gbsynth.music.score_formats import read_score

FIRST_PLAY_CYCLE = 144 * 456
"""The GBS player's first play call: the first VBlank after init at cycle 0."""


def fold(pitch: int, low: int, high: int) -> int:
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


def played(data: bytes, name: str, kind: SourceKind, seconds: float | None = None):
    session = ScoreSession(data, name, kind)
    recording = session.record(seconds or session.seconds)
    notes = decode_notes(recording.writes, recording.duration_cycles)
    return session, notes.select(notes.kind == TRIGGER)


def start_frame(quarters: float, session: ScoreSession) -> int:
    """The frame a note at ``quarters`` must start on (one tempo, so rows are exact)."""
    row = round(quarters * session.part.rows_per_quarter)
    return math.ceil(row * 65536 / session.part.song.tempo)


def check_channel(notes, channel: int, expected: list[tuple[float, float]], session) -> None:
    """``expected``: (onset in quarters, MIDI pitch or noise NR43 value) in order."""
    got = notes.select(notes.channel == channel)
    frames = (np.asarray(got.start) - FIRST_PLAY_CYCLE) // FRAME_CYCLES
    assert len(got) == len(expected), (channel, len(got), len(expected))
    assert frames.tolist() == [start_frame(q, session) for q, _ in expected], channel
    assert np.allclose(got.pitch, [p for _, p in expected], atol=0.1), (channel, got.pitch)


def chords_by_onset(notes):
    groups: dict[float, list[int]] = {}
    for start, _, key, _ in notes:
        groups.setdefault(start, []).append(key)
    return {start: sorted(keys) for start, keys in sorted(groups.items())}


def test_midi_arrangement_note_by_note():
    data = example_piece()
    session, notes = played(data, "piece.mid", SourceKind.MIDI)
    # melody: the first part, on pulse 1, pitches as written (all inside the lead's range)
    check_channel(notes, 0, [(s, fold(k, *RANGES[0])) for s, _, k, _ in MELODY], session)
    # and its velocities as envelope volumes
    melody = notes.select(notes.channel == 0)
    assert melody.volume.tolist() == [round(2 + 13 * v / 127) for *_, v in MELODY]
    chords = chords_by_onset(CHORDS)
    # bass: each chord's lowest note on the wave channel
    check_channel(notes, 2, [(s, fold(k[0], *RANGES[2])) for s, k in chords.items()], session)
    # second line: the chord's next note up on pulse 2, the rest as its arpeggio
    second = [(s, fold(k[1], *RANGES[1])) for s, k in chords.items()]
    check_channel(notes, 1, second, session)
    for start, keys in chords.items():
        steps = [k - keys[1] for k in keys[2:]]
        arpeggios = [e.arpeggio for e in session.part.song.channels[1] if e.note is not None]
        assert steps[0] << 4 in arpeggios, (start, steps)
    # drums: one hit per onset, the kit's drum of the highest-priority General MIDI key
    kit = sound_set(arrangement_seed(sha256_hex(data), 0))
    hits: dict[float, int] = {}
    for start, _, key, _ in DRUMS:
        rank = DRUM_PRIORITY.index(DRUM_OF_KEY[key])
        hits[start] = min(hits.get(start, rank), rank)
    expected = [(s, kit.drums[kit.kit[DRUM_PRIORITY[r]]].poly) for s, r in sorted(hits.items())]
    check_channel(notes, 3, expected, session)


MUSICXML = """<?xml version="1.0" encoding="UTF-8"?>
<score-partwise version="3.1">
  <work><work-title>Two staves</work-title></work>
  <part-list>
    <score-part id="P1"><part-name>Voice</part-name></score-part>
    <score-part id="P2"><part-name>Piano</part-name></score-part>
  </part-list>
  <part id="P1">
    <measure number="1">
      <attributes><divisions>2</divisions><key><fifths>1</fifths></key>
        <time><beats>3</beats><beat-type>4</beat-type></time></attributes>
      <direction><sound tempo="96"/></direction>
      <note><pitch><step>G</step><octave>4</octave></pitch><duration>2</duration></note>
      <note><pitch><step>A</step><octave>4</octave></pitch><duration>1</duration></note>
      <note><pitch><step>B</step><octave>4</octave></pitch><duration>1</duration></note>
      <note><pitch><step>D</step><octave>5</octave></pitch><duration>2</duration></note>
    </measure>
    <measure number="2">
      <note><pitch><step>C</step><octave>5</octave></pitch><duration>4</duration></note>
      <note><rest/><duration>2</duration></note>
    </measure>
  </part>
  <part id="P2">
    <measure number="1">
      <attributes><divisions>2</divisions><key><fifths>1</fifths></key>
        <time><beats>3</beats><beat-type>4</beat-type></time></attributes>
      <note><pitch><step>G</step><octave>2</octave></pitch><duration>6</duration></note>
      <note><chord/><pitch><step>D</step><octave>3</octave></pitch><duration>6</duration></note>
      <note><chord/><pitch><step>B</step><octave>3</octave></pitch><duration>6</duration></note>
    </measure>
    <measure number="2">
      <note><pitch><step>C</step><octave>3</octave></pitch><duration>4</duration></note>
      <note><chord/><pitch><step>E</step><octave>3</octave></pitch><duration>4</duration></note>
      <note><chord/><pitch><step>G</step><octave>3</octave></pitch><duration>4</duration></note>
      <note><pitch><step>G</step><octave>4</octave></pitch><duration>2</duration></note>
    </measure>
  </part>
</score-partwise>
"""


def test_musicxml_arrangement_note_by_note():
    data = MUSICXML.encode()
    session, notes = played(data, "two.musicxml", SourceKind.MUSICXML)
    assert session.score.tempos[0].bpm == pytest.approx(96)
    melody = [(0, 67), (1, 69), (1.5, 71), (2, 74), (3, 72)]
    check_channel(notes, 0, melody, session)
    # one accompaniment part: each chord's lowest note is the bass, the others the second
    # line; a lone note from G3 up belongs to the second line
    check_channel(notes, 2, [(0, 43), (3, 48)], session)
    check_channel(notes, 1, [(0, fold(50, *RANGES[1])), (3, 52), (5, 67)], session)


def test_mod_arrangement_note_by_note(shared_dir):
    """A GB Studio module keeps its layout: channel n of the module plays on channel n."""
    path = shared_dir / "pretrain/gbstudio-mods/Music/Action/Boss_fight1.mod"
    data = path.read_bytes()
    score = read_score(data, path.name, "mod")
    assert len(score.tempos) == 1 and [p.drums for p in score.parts] == [False] * 3 + [True]
    seconds = 20.0
    session, notes = played(data, path.name, SourceKind.MOD, seconds)
    horizon = (seconds - 0.1) * 4_194_304
    notes = notes.select(notes.start < horizon)
    kit = sound_set(arrangement_seed(sha256_hex(data), 0))
    for channel in range(4):
        source = [n for n in score.notes if n.part == channel]
        source = [
            n
            for n in source
            if start_frame(n.start, session) * FRAME_CYCLES + FIRST_PLAY_CYCLE < horizon
        ]
        if channel == 3:
            expected = [
                (n.start, kit.drums[kit.kit[DRUM_OF_KEY.get(n.pitch, "snare")]].poly)
                for n in source
            ]
        else:
            expected = [(n.start, fold(n.pitch, *RANGES[channel])) for n in source]
        assert expected, channel
        check_channel(notes, channel, expected, session)


ABC_TUNE = b"""X:1
T:Scale
M:4/4
L:1/4
Q:1/4=120
K:C
C D E F | G2 c2 | [CEG]2 z2 |]
"""


def test_abc_arrangement_note_by_note():
    """One voice: its top note is the melody; the lower notes of a chord go to the bass
    (lowest) and the second line."""
    session, notes = played(ABC_TUNE, "scale.abc", SourceKind.ABC)
    assert session.score.tempos[0].bpm == pytest.approx(120)
    check_channel(
        notes, 0, [(0, 60), (1, 62), (2, 64), (3, 65), (4, 67), (6, 72), (8, 67)], session
    )
    check_channel(notes, 2, [(8, 60)], session)
    check_channel(notes, 1, [(8, 64)], session)


def test_augmented_variants_are_recordings_of_their_own():
    data = example_piece()
    plain = ScoreSession(data, "p.mid", SourceKind.MIDI)
    up = ScoreSession(data, "p.mid", SourceKind.MIDI, transpose=3, tempo_factor=1.25)
    assert plain.recording_id != up.recording_id
    assert (up.source.transpose, up.source.tempo_factor) == (3, 1.25)
    assert up.part.song.bpm == pytest.approx(150, rel=0.01)
    assert plain.part.song.bpm == pytest.approx(120, rel=0.01)
    notes = decode_notes(up.record(up.seconds).writes)
    lead = notes.select((notes.channel == 0) & (notes.kind == TRIGGER))
    assert lead.pitch[0] == pytest.approx(MELODY[0][2] + 3, abs=0.1)


def test_a_long_piece_is_cut_at_bar_lines():
    score = read_score(example_piece(), "p.mid", "midi")
    assert len(score.bar_starts()) == 2  # two bars of 2 s at 120 bpm
    assert len(arrange_parts(score, 5, seconds_limit=4.5)) == 1
    first, second = (part.song for part in arrange_parts(score, 5, seconds_limit=3.0))
    # each part holds its bar's notes, starting on its first row
    assert [e.note for e in first.channels[0] if e.note is not None] == [40, 38, 36]
    assert [e.start for e in second.channels[0] if e.note is not None] == [0, 1, 2, 4]


def test_double_stops_feed_the_second_line_and_unisons_are_left_out():
    from gbsynth.music.arrange import BASS, MELODY, SECOND
    from gbsynth.music.score import Note, Part, Score

    notes = [
        Note(0, 1, 72),
        Note(0, 1, 64),  # a double stop in the melody's part
        Note(0, 1, 72, part=1),
        Note(1, 1, 67, part=1),  # unison with the melody, then not
        Note(1, 1, 74),
        Note(0, 2, 48, part=2),
        Note(0, 2, 55, part=2),
    ]
    score = Score("t", "musicxml", [Part("a"), Part("b"), Part("c")], notes)
    (part,) = arrange_parts(score, 0)
    pitches = {
        role: [(c.row // part.rows_per_quarter, c.note + 36) for c in part.notes[role]]
        for role in (MELODY, SECOND, BASS)
    }
    assert pitches[MELODY] == [(0, 72), (1, 74)]
    assert pitches[BASS] == [(0, 48)]
    # row 0: the double stop's 64 (the part's 72 doubles the melody), with the bass part's
    # 55 as its arpeggio; row 1: the part's own 67
    assert pitches[SECOND] == [(0, 55), (1, 67)]
    assert part.notes[SECOND][0].arpeggio == (64 - 55) << 4
