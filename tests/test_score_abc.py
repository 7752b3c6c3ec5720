"""ABC reader: each supported construct on a small tune, checked note by note."""

from __future__ import annotations

import pytest

from gbsynth.music.abc import count_abc_tunes, parse_key, read_abc
from gbsynth.music.score import ScoreError
from gbsynth.music.score_formats import read_score, sniff_score


def abc(body: str, header: str = "M:4/4\nL:1/8\nK:C") -> bytes:
    return f"X:1\nT:Test\n{header}\n{body}\n".encode()


def rounded(triples):
    return [(round(start, 6), round(length, 6), pitch) for start, length, pitch in triples]


def notes(score, part=None):
    return rounded(
        (n.start, n.length, n.pitch) for n in score.notes if part is None or n.part == part
    )


def test_notes_octaves_lengths_and_rests():
    score = read_abc(abc("C,C c c' | D2 E/ F/ z G3/2 A// B// z/ | z4 c4"), "t.abc")
    assert notes(score) == [
        (0.0, 0.5, 48),
        (0.5, 0.5, 60),
        (1.0, 0.5, 72),
        (1.5, 0.5, 84),
        (2.0, 1.0, 62),
        (3.0, 0.25, 64),
        (3.25, 0.25, 65),
        (4.0, 0.75, 67),
        (4.75, 0.125, 69),
        (4.875, 0.125, 71),
        (7.25, 2.0, 72),
    ]
    assert score.kind == "abc" and score.title == "Test" and score.parts[0].name == "Melody"


def test_key_signature_and_accidentals_through_the_bar():
    score = read_abc(abc("F c ^F F | F =F f _B | B", header="L:1/4\nK:D"), "t.abc")
    # D major: F and C sharp; ^F holds for the bar, =F too; f (other octave) keeps the key.
    assert [p for _, _, p in notes(score)] == [66, 73, 66, 66, 66, 65, 78, 70, 71]
    assert (score.key_fifths, score.minor) == (2, False)


@pytest.mark.parametrize(
    ("key", "fifths", "minor"),
    [
        ("G", 1, False),
        ("Em", 1, True),
        ("Bb", -2, False),
        ("F#m", 3, True),
        ("D dor", 0, None),
        ("A mix", 2, None),
        ("E phrygian", 0, None),
        ("Ab", -4, False),
        ("none", None, None),
    ],
)
def test_keys_and_modes(key, fifths, minor):
    found, is_minor, _ = parse_key(key)
    assert (found, is_minor) == (fifths, minor)
    assert parse_key("D ^g")[2]["G"] == 1


def test_chords_ties_broken_rhythm_and_triplets():
    score = read_abc(abc("[CEG]2 [c2e2] A- | A2 B>c d<e (3fga g>>a"), "t.abc")
    assert notes(score) == rounded(
        [
            (0.0, 1.0, 60),
            (0.0, 1.0, 64),
            (0.0, 1.0, 67),
            (1.0, 1.0, 72),
            (1.0, 1.0, 76),
            (2.0, 1.5, 69),  # A tied over the bar line into A2
            (3.5, 0.75, 71),
            (4.25, 0.25, 72),
            (4.5, 0.25, 74),
            (4.75, 0.75, 76),
            (5.5, 1 / 3, 77),
            (5.5 + 1 / 3, 1 / 3, 79),
            (5.5 + 2 / 3, 1 / 3, 81),
            (6.5, 0.875, 79),
            (7.375, 0.125, 81),
        ]
    )


def test_repeats_and_endings():
    score = read_abc(abc("|: C2 D2 E2 F2 |1 G8 :|2 A8 || B8 |]\n|: c8 :|"), "t.abc")
    bars = [p for _, _, p in notes(score)]
    assert bars == [60, 62, 64, 65, 67, 60, 62, 64, 65, 69, 71, 72, 72]
    assert notes(score)[-1][0] == 24.0


def test_tempo_meter_and_unit_defaults():
    score = read_abc(abc("C D E | [M:2/4] F G |", header="M:3/4\nQ:3/8=80\nK:C"), "t.abc")
    # M:3/4 makes the unit 1/8; Q:3/8=80 is 120 quarters a minute.
    assert notes(score)[:2] == [(0.0, 0.5, 60), (0.5, 0.5, 62)]
    assert [(t.at, t.bpm) for t in score.tempos] == [(0.0, 120.0)]
    assert [(m.at, m.numerator, m.denominator) for m in score.meters] == [(0.0, 3, 4), (1.5, 2, 4)]
    short = read_abc(abc("C D", header="M:2/4\nQ:120\nK:C"), "t.abc")
    # Below 3/4 the default unit is a 16th, and a bare Q: counts units.
    assert notes(short) == [(0.0, 0.25, 60), (0.25, 0.25, 62)]
    assert short.tempos[0].bpm == 30.0


def test_voices_dynamics_and_ignored_decorations():
    text = (
        b'X:1\nT:Duet\nM:2/4\nL:1/4\nV:1 name="Flute"\nV:2 name="Cello"\nK:C\n'
        b'V:1\n!p! "Am"c ~d | {g}e .f |\nV:2\nC, !ff! D, | E, F, |\n'
        b"w: some lyrics here\n"
    )
    score = read_abc(text, "duet.abc")
    assert [p.name for p in score.parts] == ["Flute", "Cello"]
    assert [(s, p) for s, _, p in notes(score, 0)] == [(0.0, 72), (1.0, 74), (2.0, 76), (3.0, 77)]
    assert [(s, p) for s, _, p in notes(score, 1)] == [(0.0, 48), (1.0, 50), (2.0, 52), (3.0, 53)]
    assert [n.velocity for n in score.notes if n.part == 0] == [49] * 4
    assert [n.velocity for n in score.notes if n.part == 1] == [80, 112, 112, 112]


def test_many_tunes_in_one_file_and_sniffing():
    text = b"% a collection\nL:1/4\n\nX:1\nT:One\nK:G\nG A B c|\n\nX:2\nT:Two\nK:F\nB c|\n"
    assert sniff_score(text[:1084], "") == "abc" and count_abc_tunes(text) == 2
    first = read_score(text, "book.abc")
    assert first.title == "One" and notes(first)[0] == (0.0, 1.0, 67)
    second = read_abc(text, "book.abc", tune=1)
    assert second.title == "Two" and [p for _, _, p in notes(second)] == [70, 72]
    with pytest.raises(ScoreError):
        read_abc(text, "book.abc", tune=2)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"X:1\nT:No key\nABC\n", "empty"),
        (b"X:1\nK:C\nz4 |\n", "empty"),
        (b"X:1\nL:1/0\nK:C\nC\n", "invalid_file"),
        (b"X:1\nK:C\nC99999\n", "invalid_file"),
    ],
)
def test_broken_tunes(text, reason):
    with pytest.raises(ScoreError) as caught:
        read_abc(text, "bad.abc")
    assert caught.value.reason == reason
