"""The score sniffer and the read_score dispatcher."""

from __future__ import annotations

import importlib.util

import pytest

from gbsynth.music.score import ScoreError
from gbsynth.music.score_formats import SNIFF_BYTES, read_score, sniff_score


def mod_head(signature: bytes) -> bytes:
    return bytes(1080) + signature


@pytest.mark.parametrize(
    ("head", "suffix", "kind"),
    [
        (b"MThd\x00\x00\x00\x06\x00\x01", ".mid", "midi"),
        (b"MThd\x00\x00\x00\x06\x00\x01", "", "midi"),
        (b"RIFF\x00\x00\x00\x00RMIDdata", ".rmi", "midi"),
        (b"PK\x03\x04\x14\x00\x00\x08\x08\x00" + b"META-INF/container.xml", ".zip", "musicxml"),
        (b"PK\x03\x04\x14\x00", ".mxl", "musicxml"),
        (b"PK\x03\x04\x14\x00", ".zip", None),
        (b'<?xml version="1.0"?>\n<!DOCTYPE score-partwise>\n<score-partwise>', ".xml", "musicxml"),
        ('<?xml version="1.0"?><score-timewise>'.encode("utf-16"), ".xml", "musicxml"),
        (b'<?xml version="1.0"?><svg>', ".xml", None),
        (mod_head(b"M.K."), "", "mod"),
        (mod_head(b"FLT4"), ".bin", "mod"),
        (mod_head(b"8CHN"), ".mod", "mod"),  # recognised, so the reader can refuse it clearly
        (bytes(1084), ".mod", "mod"),  # Soundtracker: no signature
        (bytes(1084), ".bin", None),
        (b"X:1\nT:Tune\nK:G\nGAB", "", "abc"),
        (b"%abc-2.1\n%%pagewidth 21cm\n\nX: 12\n", ".txt", "abc"),
        (b"anything", ".abc", "abc"),
        (b"GBS\x01", ".gbs", None),
        (b"", "", None),
    ],
)
def test_sniff(head: bytes, suffix: str, kind: str | None):
    assert sniff_score(head[:SNIFF_BYTES], suffix) == kind


def test_read_score_errors():
    with pytest.raises(ScoreError) as caught:
        read_score(b"just text", "notes.txt")
    assert caught.value.reason == "unknown_format"
    with pytest.raises(ScoreError) as caught:
        read_score(b"", "x", kind="wav")
    assert caught.value.reason == "unknown_format"


@pytest.mark.skipif(
    importlib.util.find_spec("gbsynth.music.midi") is not None, reason="the MIDI reader is here"
)
def test_midi_without_its_reader():
    with pytest.raises(ScoreError) as caught:
        read_score(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60", "a.mid")
    assert (caught.value.reason, str(caught.value)) == ("unsupported", "midi reader not available")
