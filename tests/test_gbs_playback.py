"""GBS playback against gbsplay, a GBS player we did not write (Debian package)."""

import shutil
import subprocess

import numpy as np
import pytest

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES
from gbsynth.common.formats import parse_iodump
from gbsynth.emulator.sources import GbsSession, SourceError

pytestmark = pytest.mark.skipif(shutil.which("gbsplay") is None, reason="gbsplay not installed")


def gbsplay_sections(path, seconds):
    out = subprocess.run(
        ["gbsplay", "-o", "iodumper", "-t", str(seconds), "-f", "0", "-T", "0", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    return {section.subsong: section for section in parse_iodump(out)}


def assert_same_writes(ours, theirs, seconds):
    # gbsplay stops on its own clock; compare the writes both made in the span.
    end = seconds * CPU_HZ - FRAME_CYCLES
    ours, theirs = ours.between(0, end), theirs.between(0, end)
    n = min(len(ours), len(theirs))
    assert abs(len(ours) - len(theirs)) <= 64, (len(ours), len(theirs))
    assert n > 100
    assert np.array_equal(ours.registers[:n], theirs.registers[:n])
    assert np.array_equal(ours.values[:n], theirs.values[:n])
    drift = np.abs(ours.cycles[:n] - theirs.cycles[:n])
    assert drift.max() < FRAME_CYCLES, drift.max()


def test_nightmode_matches_gbsplay(shared_dir):
    path = shared_dir / "corpus/nightmode.gbs"
    theirs = gbsplay_sections(path, 60)[0]
    recording = GbsSession(path.read_bytes(), path.name).record(60)
    assert recording.source.title == "Nightmode" and recording.source.subsong == 1
    assert_same_writes(recording.writes, theirs.writes, 60)


def test_devsound_subsongs_match_gbsplay(shared_dir):
    path = shared_dir / "corpus/DevSound_demo.gbs"
    sections = gbsplay_sections(path, 20)
    assert sorted(sections) == list(range(6))
    data = path.read_bytes()
    for number, section in sections.items():
        recording = GbsSession(data, path.name, subsong=number + 1).record(20)
        assert_same_writes(recording.writes, section.writes, 20)


def test_pieces_tile_the_recording(shared_dir):
    data = (shared_dir / "corpus/nightmode.gbs").read_bytes()
    whole = GbsSession(data, "n.gbs").record(5)
    pieces = list(GbsSession(data, "n.gbs").pieces(5, piece_seconds=0.25))
    assert [p.start_cycle for p in pieces[1:]] == [p.end_cycle for p in pieces[:-1]]
    from gbsynth.common.events import ApuWrites

    assert ApuWrites.concat([p.writes for p in pieces]) == whole.writes


def test_bad_gbs_is_a_clear_error(shared_dir):
    data = bytearray((shared_dir / "corpus/nightmode.gbs").read_bytes())
    with pytest.raises(SourceError, match="subsong 3 is outside"):
        GbsSession(bytes(data), "n.gbs", subsong=3)
    # an init routine that never returns: JR -2 at the init address
    init = 0x3800 - 0x3000 + 0x70
    data[init : init + 2] = b"\x18\xfe"
    with pytest.raises(SourceError, match="init"):
        GbsSession(bytes(data), "n.gbs")
