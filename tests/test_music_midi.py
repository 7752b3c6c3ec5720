"""The Standard MIDI reader: timing maps, note pairing, drums and programs, broken files."""

from __future__ import annotations

import random
import struct

import pytest
from midi_files import CHORDS, DRUMS, MELODY, example_piece, meter, smf, tempo, track

from gbsynth.music.arrange import arrange_parts
from gbsynth.music.midi import read_midi
from gbsynth.music.score import ScoreError


def test_example_piece_parts_notes_and_maps():
    score = read_midi(example_piece(), "piece.mid")
    assert score.kind == "midi"
    assert [p.drums for p in score.parts] == [False, False, True]
    assert [p.program for p in score.parts] == [73, 0, None]
    assert score.tempos[0].bpm == pytest.approx(120.0, abs=1e-3)
    assert (score.meters[0].numerator, score.meters[0].denominator) == (4, 4)
    assert score.key_fifths == 0 and score.minor is False
    for part, source in enumerate((MELODY, CHORDS, DRUMS)):
        got = sorted(
            (n.start, n.length, n.pitch, n.velocity) for n in score.notes if n.part == part
        )
        assert got == sorted((float(s), float(n), k, v) for s, n, k, v in source)


def test_running_status_velocity_zero_offs_and_overlapping_notes():
    events = [
        (0, tempo(90)),
        (0, meter(3, 4)),
        (0, b"\x90\x3c\x50"),  # C4 on
        (240, b"\x3c\x60"),  # running status: a second C4 over the first
        (240, b"\x3c\x00"),  # velocity 0: ends the first C4 (the earliest still sounding)
        (480, b"\x80\x3c\x40"),  # ends the second
        (0, b"\x3e\x40"),  # running status note-off of a D4 never on: ignored
        (0, b"\x90\x40\x30"),  # E4, never ended: runs to the end of the track
        (960, b"\xff\x01\x01x"),  # a text event, then the end
    ]
    score = read_midi(smf([track(events)], file_format=0), "run.mid")
    notes = [(n.start, n.length, n.pitch, n.velocity) for n in score.notes]
    assert notes == [(0.0, 1.0, 60, 80), (0.5, 1.5, 60, 96), (2.0, 2.0, 64, 48)]
    assert score.tempos[0].bpm == pytest.approx(90.0, abs=1e-3)
    assert score.meters[0].bar_quarters == 3.0


def test_tempo_changes_and_smpte_division():
    events = [
        (0, tempo(60)),
        (0, b"\x90\x3c\x40"),
        (480, b"\x3c\x00"),
        (0, tempo(120)),
        (0, b"\x90\x3e\x40"),
        (480, b"\x3e\x00"),
    ]
    score = read_midi(smf([track(events)]), "t.mid")
    assert [round(t.bpm) for t in score.tempos] == [60, 120]
    assert score.seconds_at(2.0) == pytest.approx(1.5)
    # 25 frames a second x 40 ticks a frame: a quarter of 500 ticks = 0.5 s at 120 bpm
    division = ((256 - 25) << 8) | 40
    smpte = read_midi(smf([track([(0, b"\x90\x3c\x40"), (500, b"\x3c\x00")])], division), "s")
    assert smpte.notes[0].length == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("data", "reason", "words"),
    [
        (b"RIFF\x00\x00\x00\x00WAVE", "invalid_file", "not a Standard MIDI"),
        (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\xff\xff\xff\xf0\x00", "invalid_file",
         "claims"),
        (smf([track([(0, b"\x90\x3c")], end=False)]), "invalid_file", "middle of an event"),
        (smf([track([(0, b"\x3c\x40\x40")])]), "invalid_file", "no status"),
        (smf([track([(0, b"\xff\x51\x20")], end=False)]), "invalid_file", "runs past"),
        (smf([track([(0, b"\xc0\x05")])]), "empty", "no notes"),
        (smf([track([(0, b"\x90\x3c\x40")])], file_format=2), "unsupported", "format 2"),
        (smf([track([(0x0FFFFFFF, b"\x90\x3c\x40")])]), "invalid_file", "quarter notes"),
        (smf([track([(0, b"\x90\x3c\xc0")])]), "invalid_file", "above 127"),
        (smf([], division=0) + track([(0, b"\x90\x3c\x40")]), "invalid_file", "no ticks"),
    ],
)  # fmt: skip
def test_broken_files_give_a_reason(data, reason, words):
    with pytest.raises(ScoreError) as err:
        read_midi(data, "bad.mid")
    assert err.value.reason == reason
    assert words in str(err.value)


def _data_byte_mutation(data: bytes, rng: random.Random) -> bytes:
    """``data`` with a few data bytes (0-127: pitches, velocities, delta times) changed."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(22, len(buf))
        if buf[at] < 0x80:
            buf[at] = rng.randrange(0x80)
    return bytes(buf)


def _mutations(data: bytes, rng: random.Random, count: int):
    """Byte flips, cuts, insertions, rewritten chunk lengths and changed data bytes."""
    for i in range(count):
        buf = bytearray(data)
        how = i % 5
        if how == 4:
            buf = bytearray(_data_byte_mutation(data, rng))
        elif how == 0:
            for _ in range(rng.randint(1, 8)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif how == 1:
            buf = buf[: rng.randrange(len(buf))]
        elif how == 2:
            at = rng.randrange(len(buf))
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        else:
            spots = [j for j in range(len(buf) - 4) if buf[j : j + 4] in (b"MTrk", b"MThd")]
            at = rng.choice(spots) + 4
            buf[at : at + 4] = struct.pack(
                ">I", rng.choice((0, 1, 7, 2**31, 2**32 - 1, rng.randrange(2**16)))
            )
        yield bytes(buf)


def test_fuzzed_files_give_a_score_or_a_score_error():
    """A few hundred mutated files: each reads and arranges, or fails with ScoreError."""
    rng = random.Random(13)
    outcomes = {"ok": 0, "error": 0}
    for data in _mutations(example_piece(), rng, 400):
        try:
            score = read_midi(data, "fuzz.mid")
            parts = arrange_parts(score, 1, seconds_limit=60.0)
            assert parts
            outcomes["ok"] += 1
        except ScoreError as exc:
            assert exc.reason and str(exc)
            outcomes["error"] += 1
    assert outcomes["ok"] >= 5 and outcomes["error"] >= 100, outcomes


def test_fuzzed_files_through_the_emulator_source_give_a_recording_or_a_source_error():
    """The emulator's path (read, arrange, assemble, play): a recording or a SourceError."""
    from gbsynth.common.events import SourceKind
    from gbsynth.emulator.score_source import ScoreSession
    from gbsynth.emulator.sources import SourceError

    rng = random.Random(7)
    recorded = failed = 0
    for i, data in enumerate(_mutations(example_piece(), rng, 40)):
        if i % 2:  # half of them files that still read, so they get played
            data = _data_byte_mutation(example_piece(), rng)
        try:
            session = ScoreSession(data, "fuzz.mid", SourceKind.MIDI)
            recording = session.record(min(session.seconds, 5.0))
            assert recording.duration_cycles > 0
            recorded += 1
        except SourceError as exc:
            assert exc.reason
            failed += 1
    assert recorded and failed
