"""`gbsynth emulate` on all three kinds of file, as a user runs it."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from gbsynth.common.events import CPU_HZ
from gbsynth.common.formats import parse_iodump, read_recordings
from gbsynth.common.vgm import VGM_RATE, write_vgm
from gbsynth.emulator.sources import GbsSession


def gbsynth(*args, check=True):
    return subprocess.run(
        [sys.executable, "-m", "gbsynth", *map(str, args)],
        capture_output=True,
        text=True,
        check=check,
        timeout=600,
    )


@pytest.mark.skipif(shutil.which("gbsplay") is None, reason="gbsplay not installed")
def test_iodump_of_nightmode_matches_gbsplay(shared_dir):
    path = shared_dir / "corpus/nightmode.gbs"
    ours = parse_iodump(gbsynth("emulate", path, "--seconds", 60, "--format", "iodump").stdout)
    theirs = parse_iodump(
        subprocess.run(
            ["gbsplay", "-o", "iodumper", "-t", "60", "-f", "0", "-T", "0", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert [s.subsong for s in ours] == [0] == [s.subsong for s in theirs]
    a, b = ours[0].writes, theirs[0].writes.between(0, 60 * CPU_HZ - 70_224)
    n = len(b)
    assert np.array_equal(a.registers[:n], b.registers) and np.array_equal(a.values[:n], b.values)
    assert np.abs(a.cycles[:n] - b.cycles).max() < 70_224


def test_avro_out_and_subsong(shared_dir, tmp_path):
    out = tmp_path / "rec.avro"
    gbsynth(
        "emulate",
        shared_dir / "corpus/DevSound_demo.gbs",
        "--subsong",
        3,
        "--seconds",
        5,
        "--out",
        out,
    )
    [recording] = read_recordings(out)
    assert recording.source.subsong == 3 and recording.source.kind.value == "gbs"
    data = (shared_dir / "corpus/DevSound_demo.gbs").read_bytes()
    assert recording.writes == GbsSession(data, "DevSound_demo.gbs", 3).record(5).writes


def test_vgm_file(shared_dir, tmp_path):
    data = (shared_dir / "corpus/nightmode.gbs").read_bytes()
    original = GbsSession(data, "n.gbs").record(10)
    vgm = tmp_path / "n.vgm"
    vgm.write_bytes(write_vgm(original.writes, original.duration_cycles, title="Nightmode"))
    out = tmp_path / "n.avro"
    gbsynth("emulate", vgm, "--seconds", 10, "--out", out)
    [recording] = read_recordings(out)
    assert recording.source.kind.value == "vgm" and recording.source.title == "Nightmode"
    assert np.array_equal(recording.writes.values, original.writes.values)
    assert np.abs(recording.writes.cycles - original.writes.cycles).max() <= CPU_HZ / VGM_RATE


def test_rom_exploration_to_avro(shared_dir, tmp_path):
    out = tmp_path / "rom.avro"
    gbsynth(
        "emulate",
        shared_dir / "roms/music/gbt-player/effects_test.gb",
        "--seconds",
        20,
        "--seed",
        4,
        "--boot-seconds",
        1,
        "--observe-seconds",
        5,
        "--out",
        out,
    )
    [recording] = read_recordings(out)
    assert recording.seed == 4 and recording.phases and len(recording.writes)


@pytest.mark.parametrize(
    "content,args,message",
    [
        (b"not a game", [], "not a Game Boy ROM, GBS or VGM"),
        (b"GBS\x01\x02\x01" + bytes(200), ["--subsong", 5], "outside"),
        (None, ["--seconds", 0], "positive"),
        (None, ["--format", "avro"], "needs --out"),
    ],
)
def test_bad_input_is_one_clear_line(shared_dir, tmp_path, content, args, message):
    path = tmp_path / "x.gbs"
    if content is None:
        path = shared_dir / "corpus/nightmode.gbs"
    else:
        path.write_bytes(content)
    result = gbsynth("emulate", path, *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
