"""MusicXML reader: hand-written snippets for each feature, real OpenScore files checked note
by note against their XML, and broken inputs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from gbsynth.music import musicxml
from gbsynth.music.musicxml import read_musicxml
from gbsynth.music.score import ScoreError
from gbsynth.music.score_formats import read_score, sniff_score


def pitch(step: str, octave: int, alter: int = 0) -> str:
    alter_xml = f"<alter>{alter}</alter>" if alter else ""
    return f"<pitch><step>{step}</step>{alter_xml}<octave>{octave}</octave></pitch>"


def note(step: str, octave: int, duration: int, *extra: str, alter: int = 0) -> str:
    inner = "".join(e for e in extra if not e.startswith("<notations"))
    notations = "".join(e for e in extra if e.startswith("<notations"))
    chord = "<chord/>" if "<chord/>" in inner else ""
    inner = inner.replace("<chord/>", "")
    return (
        f"<note>{chord}{pitch(step, octave, alter)}<duration>{duration}</duration>"
        f"{inner}{notations}</note>"
    )


def rest(duration: int) -> str:
    return f"<note><rest/><duration>{duration}</duration></note>"


def partwise(*parts: list[str], names: tuple[str, ...] = (), header: str = "") -> bytes:
    """A score-partwise document: each part is a list of measure bodies."""
    part_list = "".join(
        f"<score-part id='P{i + 1}'><part-name>{names[i] if i < len(names) else f'P{i + 1}'}"
        f"</part-name></score-part>"
        for i in range(len(parts))
    )
    body = "".join(
        f"<part id='P{i + 1}'>"
        + "".join(f"<measure number='{m + 1}'>{bar}</measure>" for m, bar in enumerate(measures))
        + "</part>"
        for i, measures in enumerate(parts)
    )
    return (
        f"<?xml version='1.0' encoding='UTF-8'?><score-partwise version='4.0'>{header}"
        f"<part-list>{part_list}</part-list>{body}</score-partwise>"
    ).encode()


ATTRS = (
    "<attributes><divisions>2</divisions>"
    "<time><beats>4</beats><beat-type>4</beat-type></time></attributes>"
)


def notes_of(score, part=None):
    return [(n.start, n.length, n.pitch) for n in score.notes if part is None or n.part == part]


def test_chords_and_rests():
    xml = partwise(
        [
            ATTRS
            + note("C", 4, 2)
            + note("E", 4, 2, "<chord/>")
            + note("G", 4, 2, "<chord/>")
            + rest(2)
            + note("D", 4, 4)
        ]
    )
    score = read_musicxml(xml, "chords.musicxml")
    assert notes_of(score) == [(0.0, 1.0, 60), (0.0, 1.0, 64), (0.0, 1.0, 67), (2.0, 2.0, 62)]
    assert score.kind == "musicxml" and score.parts[0].name == "P1"


def test_alter_octave_and_ties_across_barline():
    tie_start = "<tie type='start'/>"
    tie_stop = "<tie type='stop'/>"
    xml = partwise(
        [
            ATTRS + note("F", 4, 4, alter=1) + note("B", 3, 4, tie_start, alter=-1),
            note("B", 3, 2, tie_stop, tie_start, alter=-1)
            + note("B", 3, 2, tie_stop, alter=-1)
            + note("C", 5, 4),
        ]
    )
    score = read_musicxml(xml, "ties.musicxml")
    assert notes_of(score) == [(0.0, 2.0, 66), (2.0, 4.0, 58), (6.0, 2.0, 72)]


def test_tie_to_a_different_pitch_is_not_merged():
    xml = partwise(
        [ATTRS + note("C", 4, 4, "<tie type='start'/>") + note("D", 4, 4, "<tie type='stop'/>")]
    )
    assert notes_of(read_musicxml(xml, "x")) == [(0.0, 2.0, 60), (2.0, 2.0, 62)]


def test_backup_and_forward_voices():
    xml = partwise(
        [
            ATTRS
            + note("C", 5, 8, "<voice>1</voice>")
            + "<backup><duration>8</duration></backup>"
            + "<forward><duration>2</duration></forward>"
            + note("E", 4, 2, "<voice>2</voice>")
            + note("F", 4, 4, "<voice>2</voice>")
        ]
    )
    assert notes_of(read_musicxml(xml, "x")) == [(0.0, 4.0, 72), (1.0, 1.0, 64), (2.0, 2.0, 65)]


def test_transposing_instrument_sounds_at_concert_pitch():
    clarinet = (
        "<attributes><divisions>1</divisions><transpose><diatonic>-1</diatonic>"
        "<chromatic>-2</chromatic></transpose></attributes>"
    )
    horn_octave = (
        "<attributes><divisions>1</divisions><transpose><chromatic>0</chromatic>"
        "<octave-change>-1</octave-change></transpose></attributes>"
    )
    xml = partwise([clarinet + note("D", 5, 4)], [horn_octave + note("D", 5, 4)])
    score = read_musicxml(xml, "x")
    assert notes_of(score, 0) == [(0.0, 4.0, 72)]
    assert notes_of(score, 1) == [(0.0, 4.0, 62)]


def test_tempo_and_time_signature_changes():
    m1 = (
        "<attributes><divisions>1</divisions><time><beats>3</beats><beat-type>4</beat-type>"
        "</time></attributes><direction><direction-type><words>Allegro</words></direction-type>"
        "<sound tempo='120'/></direction>" + note("C", 4, 3)
    )
    # A dotted quarter = 60 metronome mark is 90 quarters a minute.
    m2 = (
        "<attributes><time><beats>6</beats><beat-type>8</beat-type></time></attributes>"
        "<direction><direction-type><metronome><beat-unit>quarter</beat-unit><beat-unit-dot/>"
        "<per-minute>60</per-minute></metronome></direction-type></direction>" + note("D", 4, 3)
    )
    m3 = "<attributes><time><beats>3+2</beats><beat-type>8</beat-type></time></attributes>" + (
        note("E", 4, 1) + "<note><rest/><duration>3</duration><type>eighth</type></note>"
    )
    score = read_musicxml(partwise([m1, m2, m3.replace("<duration>3<", "<duration>1.5<")]), "x")
    assert [(t.at, t.bpm) for t in score.tempos] == [(0.0, 120.0), (3.0, 90.0)]
    assert [(m.at, m.numerator, m.denominator) for m in score.meters] == [
        (0.0, 3, 4),
        (3.0, 6, 8),
        (6.0, 5, 8),
    ]
    assert score.seconds == pytest.approx(3 * 0.5 + 4 * 60 / 90)


def test_dynamics_marks_sound_and_accents():
    def dyn(mark: str, sound: str = "") -> str:
        return (
            f"<direction><direction-type><dynamics><{mark}/></dynamics></direction-type>{sound}"
            "</direction>"
        )

    xml = partwise(
        [
            ATTRS
            + note("C", 4, 2)
            + dyn("p")
            + note("D", 4, 2)
            + dyn("sfz")
            + note("E", 4, 2)
            + note("F", 4, 2),
            # A mark wins over its <sound dynamics>; a bare <sound dynamics> sets the level.
            dyn("f", "<sound dynamics='50'/>")
            + note("G", 4, 2)
            + "<direction><direction-type><words>x</words></direction-type>"
            "<sound dynamics='50'/></direction>"
            + note("A", 4, 2)
            + "<note dynamics='120'>"
            + pitch("B", 4)
            + "<duration>4</duration></note>",
        ]
    )
    velocities = [n.velocity for n in read_musicxml(xml, "x").notes]
    assert velocities == [80, 49, 108, 49, 96, 45, 108]


def test_simple_repeat_is_played_twice():
    repeat_end = "<barline location='right'><repeat direction='backward'/></barline>"
    xml = partwise([ATTRS + note("C", 4, 8), note("D", 4, 8) + repeat_end, note("E", 4, 8)])
    assert [p for _, _, p in notes_of(read_musicxml(xml, "x"))] == [60, 62, 60, 62, 64]


def test_repeat_with_first_and_second_endings():
    forward = "<barline location='left'><repeat direction='forward'/></barline>"
    first = (
        "<barline location='left'><ending number='1' type='start'/></barline>"
        + note("E", 4, 8)
        + "<barline location='right'><ending number='1' type='stop'/>"
        "<repeat direction='backward'/></barline>"
    )
    second = (
        "<barline location='left'><ending number='2' type='start'/></barline>"
        + note("F", 4, 8)
        + "<barline location='right'><ending number='2' type='discontinue'/></barline>"
    )
    xml = partwise(
        [ATTRS + note("C", 4, 8), forward + note("D", 4, 8), first, second, note("G", 4, 8)]
    )
    score = read_musicxml(xml, "x")
    assert [p for _, _, p in notes_of(score)] == [60, 62, 64, 62, 65, 67]
    assert [s for s, _, _ in notes_of(score)] == [0, 4, 8, 12, 16, 20]


def test_repeat_times_and_runaway_repeats():
    times3 = "<barline location='right'><repeat direction='backward' times='3'/></barline>"
    xml = partwise([ATTRS + note("C", 4, 8) + times3])
    assert len(read_musicxml(xml, "x").notes) == 3
    # An absurd count is capped rather than played a million times.
    huge = times3.replace("'3'", "'1000000'")
    assert len(read_musicxml(partwise([ATTRS + note("C", 4, 8) + huge]), "x").notes) == (
        musicxml.MAX_REPEAT_GROWTH
    )


def test_piano_staves_become_parts_and_grace_notes_are_skipped():
    piano = (
        "<attributes><divisions>1</divisions><staves>2</staves></attributes>"
        "<note><grace/>"
        + pitch("B", 4)
        + "<staff>1</staff></note>"
        + note("C", 5, 4, "<staff>1</staff>")
        + "<backup><duration>4</duration></backup>"
        + note("C", 3, 4, "<staff>2</staff>")
    )
    cue = "<note><cue/>" + pitch("A", 4) + "<duration>4</duration></note>"
    score = read_musicxml(
        partwise(
            ["<attributes><divisions>1</divisions></attributes>" + cue + note("G", 4, 4)],
            [piano],
            names=("Voice", "Piano"),
        ),
        "x",
    )
    assert [p.name for p in score.parts] == ["Voice", "Piano (staff 1)", "Piano (staff 2)"]
    # The cue note takes its time in the voice but is not played.
    assert notes_of(score) == [(0.0, 4.0, 72), (0.0, 4.0, 48), (4.0, 4.0, 67)]


def test_unpitched_percussion_uses_midi_unpitched_keys():
    part_list = (
        "<part-list><score-part id='P1'><part-name>Drumset</part-name>"
        "<score-instrument id='P1-I36'><instrument-name>Bass Drum 1</instrument-name>"
        "</score-instrument><score-instrument id='P1-I39'><instrument-name>Snare</instrument-name>"
        "</score-instrument><midi-instrument id='P1-I36'><midi-channel>10</midi-channel>"
        "<midi-unpitched>37</midi-unpitched></midi-instrument></score-part></part-list>"
    )

    def hit(instrument: str) -> str:
        return (
            "<note><unpitched><display-step>F</display-step><display-octave>4</display-octave>"
            f"</unpitched><duration>1</duration><instrument id='{instrument}'/></note>"
        )

    xml = (
        "<score-partwise>" + part_list + "<part id='P1'><measure>"
        "<attributes><divisions>1</divisions></attributes>"
        + hit("P1-I36")
        + hit("P1-I39")
        + "</measure></part></score-partwise>"
    ).encode()
    score = read_musicxml(xml, "drums.musicxml")
    assert score.parts[0].drums
    # midi-unpitched is 1-based; without it the instrument name decides.
    assert [(n.pitch, n.instrument) for n in score.notes] == [(36, 0), (38, 1)]


def test_score_timewise_and_header():
    xml = (
        "<score-timewise><work><work-title>Suite</work-title></work>"
        "<movement-title>Air</movement-title><identification>"
        "<creator type='composer'>Bach, J.S.</creator></identification>"
        "<part-list><score-part id='A'><part-name>Flute</part-name><midi-instrument id='A1'>"
        "<midi-program>74</midi-program></midi-instrument></score-part>"
        "<score-part id='B'><part-name>Cello</part-name></score-part></part-list>"
        "<measure number='1'><part id='A'><attributes><divisions>1</divisions><key><fifths>-3"
        "</fifths><mode>minor</mode></key></attributes>" + note("C", 5, 4) + "</part>"
        "<part id='B'><attributes><divisions>1</divisions></attributes>"
        + note("C", 3, 4)
        + "</part>"
        "</measure><measure number='2'><part id='A'>" + note("D", 5, 4) + "</part>"
        "<part id='B'>" + note("D", 3, 4) + "</part></measure></score-timewise>"
    ).encode()
    score = read_musicxml(xml, "x")
    assert (score.title, score.composer, score.key_fifths, score.minor) == (
        "Air",
        "Bach, J.S.",
        -3,
        True,
    )
    assert [(p.name, p.program) for p in score.parts] == [("Flute", 73), ("Cello", None)]
    assert notes_of(score, 0) == [(0.0, 4.0, 72), (4.0, 4.0, 74)]
    assert notes_of(score, 1) == [(0.0, 4.0, 48), (4.0, 4.0, 50)]


def mxl(xml: bytes, root: str = "score.xml") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "META-INF/container.xml",
            f"<container><rootfiles><rootfile full-path='{root}'/></rootfiles></container>",
        )
        archive.writestr(root, xml)
    return buffer.getvalue()


def test_compressed_mxl_and_sniffing():
    data = mxl(partwise([ATTRS + note("A", 4, 8)]), root="inner/piece.musicxml")
    assert sniff_score(data[:1084], ".mxl") == "musicxml"
    assert sniff_score(partwise([ATTRS])[:1084], ".xml") == "musicxml"
    score = read_score(data, "piece.mxl")
    assert notes_of(score) == [(0.0, 4.0, 69)]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<score-partwise><part-list>", "invalid_file"),
        (b"PK\x03\x04" + b"\x00" * 100, "invalid_file"),
        (partwise([ATTRS + rest(8)]), "empty"),
        (b"<score-partwise/>", "empty"),
        (
            b"<?xml version='1.0'?><!DOCTYPE s [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;'>]>"
            b"<score-partwise>&b;</score-partwise>",
            "invalid_file",
        ),
        (partwise([ATTRS.replace(">2<", ">0<") + note("C", 4, 2)]), "invalid_file"),
        (partwise([ATTRS + note("C", 4, 2).replace(">2<", ">x<")]), "invalid_file"),
    ],
)
def test_broken_files_give_score_errors(data: bytes, reason: str):
    with pytest.raises(ScoreError) as caught:
        read_musicxml(data, "bad.musicxml")
    assert caught.value.reason == reason


def test_zip_bomb_is_cut_at_the_limit(monkeypatch):
    monkeypatch.setattr(musicxml, "MAX_XML_BYTES", 10_000)
    big = partwise([ATTRS + note("C", 4, 2) * 2000])
    with pytest.raises(ScoreError) as caught:
        read_musicxml(mxl(big), "bomb.mxl")
    assert caught.value.reason == "too_large"


def test_truncated_mxl():
    data = mxl(partwise([ATTRS + note("C", 4, 2)]))
    with pytest.raises(ScoreError):
        read_musicxml(data[: len(data) // 2], "cut.mxl")


LIED = (
    "openscore-lieder/scores/Strauss_Richard/4_Lieder_Op.27/3_Heimliche_Aufforderung/lc6199576.mxl"
)
QUARTET = (
    "openscore-quartets/scores/Arriaga_Juan_Crisostomo_de/String_Quartet_No.1_in_D_minor/"
    "sq13744399.mxl"
)


@pytest.fixture
def real(shared_dir: Path):
    def read(path: str) -> bytes:
        full = shared_dir / "pretrain" / path
        if not full.is_file():
            pytest.skip(f"{full} not present")
        return full.read_bytes()

    return read


def test_real_lied_first_bar_note_by_note(real):
    score = read_score(real(LIED), "lc6199576.mxl")
    assert score.title == "Heimliche Aufforderung" and score.composer == "Strauss, Richard"
    assert [p.name for p in score.parts] == ["Gesang Voice", "Piano (staff 1)", "Piano (staff 2)"]
    assert (score.key_fifths, score.meters[0].numerator, score.meters[0].denominator) == (-2, 6, 8)
    assert score.tempos[0].bpm == 100.0
    # Bar 1 (6/8, divisions 28): the voice rests; the piano plays 14 sextuplet 16ths
    # (duration 6) under an f: Bb2 F3 Bb3 (staff 2), D4 F4 Bb4 C5 D5 C5 Bb4 F4 D4 (staff 1),
    # Bb3 F3 (staff 2).
    bar1 = [n for n in score.notes if n.start < 3.0]
    assert [n.pitch for n in bar1] == [46, 53, 58, 62, 65, 70, 72, 74, 72, 70, 65, 62, 58, 53]
    assert [n.part for n in bar1] == [2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2]
    assert all(n.length == pytest.approx(6 / 28) for n in bar1)
    assert [n.start for n in bar1] == pytest.approx([i * 6 / 28 for i in range(14)])
    assert {n.velocity for n in bar1} == {96}
    # Bar 2 of the voice: D5 quarter, eighth rest, Bb4 dotted eighth, C5 16th, D5 eighth.
    voice = [(n.start, n.length, n.pitch) for n in score.notes if n.part == 0][:4]
    assert voice == [(3.0, 1.0, 74), (4.5, 0.75, 70), (5.25, 0.25, 72), (5.5, 0.5, 74)]
    assert 1500 < len(score.notes) < 2000


def test_real_quartet_parses_with_four_parts(real):
    score = read_score(real(QUARTET), "sq13744399.mxl")
    assert len(score.parts) == 4 and not any(p.drums for p in score.parts)
    assert len(score.notes) > 5000
    assert 10 * 60 < score.seconds < 60 * 60
