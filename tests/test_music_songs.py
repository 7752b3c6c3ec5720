"""Composed songs as GBS files and ROMs: reproducible, valid, and played the same by gbsplay
(a GBS player we did not write) and our emulator; the make-demo-music command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES
from gbsynth.common.formats import parse_iodump
from gbsynth.emulator.core.cartridge.header import NINTENDO_LOGO, global_checksum, parse_header
from gbsynth.emulator.gbs import parse_gbs_header
from gbsynth.emulator.sources import GbsSession, RomSession
from gbsynth.music.composer import compose
from gbsynth.music.rom import song_files
from gbsynth.music.song import module_source

needs_gbsplay = pytest.mark.skipif(shutil.which("gbsplay") is None, reason="gbsplay not installed")
SEED = 2024
SAMPLE = (0, 1, 2)


@pytest.fixture(scope="module")
def files():
    return {i: song_files(compose(SEED, i)) for i in SAMPLE}


def gbsplay_writes(path, seconds):
    out = subprocess.run(
        ["gbsplay", "-o", "iodumper", "-t", str(seconds), "-f", "0", "-T", "0", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return parse_iodump(out)[0].writes


def assert_same_sequence(ours, theirs, seconds, max_drift=FRAME_CYCLES):
    end = seconds * CPU_HZ - FRAME_CYCLES  # gbsplay stops on its own clock
    ours, theirs = ours.between(0, end), theirs.between(0, end)
    assert abs(len(ours) - len(theirs)) <= 16, (len(ours), len(theirs))
    n = min(len(ours), len(theirs))
    assert n > 1000
    assert np.array_equal(ours.registers[:n], theirs.registers[:n])
    assert np.array_equal(ours.values[:n], theirs.values[:n])
    drift = np.abs(ours.cycles[:n] - theirs.cycles[:n])
    assert drift.max() < max_drift, drift.max()


def test_the_same_seed_gives_the_same_song():
    a, b = compose(7, 3), compose(7, 3)
    assert module_source([a]) == module_source([b])
    assert song_files(a) == song_files(b)
    others = {module_source([compose(7, i)]) for i in range(4)} | {module_source([compose(8, 3)])}
    assert len(others) == 5


def test_files_are_small_and_valid(files):
    for gbs, rom in files.values():
        header = parse_gbs_header(gbs)
        assert header.song_count == 1 and not header.uses_timer
        assert header.load_address == 0x0400 and header.stack_pointer == 0xFFFE
        assert len(gbs) < 6 * 1024
        assert len(rom) == 32 * 1024
        assert rom[0x104:0x134] == NINTENDO_LOGO
        cart = parse_header(rom)
        assert cart.checksum_ok and cart.type_name == "ROM ONLY" and cart.title
        assert int.from_bytes(rom[0x14E:0x150], "big") == global_checksum(rom)


@needs_gbsplay
@pytest.mark.parametrize("index", SAMPLE)
def test_gbsplay_and_our_emulator_write_the_same(files, tmp_path, index):
    gbs, _ = files[index]
    path = tmp_path / "song.gbs"
    path.write_bytes(gbs)
    theirs = gbsplay_writes(path, 30)
    ours = GbsSession(gbs, "song.gbs").record(30).writes
    assert_same_sequence(ours, theirs, 30)


@pytest.mark.parametrize("index", SAMPLE)
def test_the_rom_plays_what_the_gbs_plays(files, index):
    gbs, rom = files[index]
    from_gbs = GbsSession(gbs, "song.gbs").record(30).writes
    from_rom = RomSession(rom, "song.gb", explore=None).record(30).writes
    n = min(len(from_gbs), len(from_rom))
    assert n > 1000 and abs(len(from_gbs) - len(from_rom)) < 16
    assert np.array_equal(from_gbs.registers[:n], from_rom.registers[:n])
    assert np.array_equal(from_gbs.values[:n], from_rom.values[:n])
    # each ROM frame's play call runs at a fixed offset from the GBS one
    offset = from_rom.cycles[:n] - from_gbs.cycles[:n]
    assert offset.max() - offset.min() < FRAME_CYCLES


def test_the_rom_shows_the_title():
    from gbsynth.emulator.core.machine import GameBoy
    from gbsynth.music.rom import song_screen
    from gbsynth.music.screen import CHARACTERS, screen_text

    song = compose(SEED, 0)
    _, rom = song_files(song)
    gb = GameBoy(rom)
    gb.run_seconds(0.5)
    assert gb.peek(0xFF40) == 0x91 and gb.peek(0xFF47) == 0xE4
    gb.poke(0xFF40, 0x11)  # LCD off: VRAM can be read
    lines = screen_text(song_screen(song))
    assert lines[0][2] == song.title.upper()
    for row, column, text in lines:
        tiles = [gb.peek(0x9800 + 32 * row + column + i) for i in range(len(text))]
        assert tiles == [CHARACTERS.index(ch) for ch in text]
    a = CHARACTERS.index("A")
    assert [gb.peek(0x8000 + 16 * a + i) for i in range(4)] == [0x00, 0x00, 0x38, 0x38]


@needs_gbsplay
def test_gbsplay_plays_the_rom_too(files, tmp_path):
    gbs, rom = files[0]
    path = tmp_path / "song.gb"
    path.write_bytes(rom)
    theirs = gbsplay_writes(path, 20)
    ours = RomSession(rom, "song.gb", explore=None).record(20).writes
    offset = int(ours.cycles[0]) - int(theirs.cycles[0])
    assert_same_sequence(ours.shifted(-offset), theirs, 20)


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "gbsynth", *args], capture_output=True, text=True, timeout=120
    )


def test_make_demo_music_writes_songs_and_an_index(tmp_path):
    out = tmp_path / "roms"
    result = run_cli("make-demo-music", str(out), "--songs", "3", "--seed", "5")
    assert result.returncode == 0, result.stderr
    index = json.loads((out / "index.json").read_text())
    assert index["seed"] == 5 and len(index["songs"]) == 3
    for entry in index["songs"]:
        gbs, rom = (out / entry["gbs"]).read_bytes(), (out / entry["gb"]).read_bytes()
        assert (gbs, rom) == song_files(compose(5, entry["index"]))
        assert entry["mode"] and entry["key"] and 60 < entry["bpm"] < 200
        assert entry["seconds"] >= entry["loop_seconds"] > 10
    assert sorted(p.suffix for p in out.iterdir()) == [".gb"] * 3 + [".gbs"] * 3 + [".json"]
    again = tmp_path / "again"
    assert run_cli("make-demo-music", str(again), "--songs", "3", "--seed", "5").returncode == 0
    for path in out.iterdir():
        assert (again / path.name).read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--songs", "0"], "--songs must be"), (["--seed", "-1"], "--seed must be")],
)
def test_make_demo_music_refuses_bad_arguments(tmp_path, args, message):
    result = run_cli("make-demo-music", str(tmp_path / "x"), *args)
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr
    clash = tmp_path / "file"
    clash.write_text("")
    result = run_cli("make-demo-music", str(clash))
    assert result.returncode == 1 and "is not a folder" in result.stderr
