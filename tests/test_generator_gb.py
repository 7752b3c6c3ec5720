"""``format=gb``: a song as a Game Boy ROM (``gbsynth export-gb``). Our emulator runs the ROM
and it makes the song's writes, in order, each within one frame of its time in the song (the
export's tolerance: writes are replayed from the VBlank handler, one LCD frame per tick)."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES
from gbsynth.emulator.core.cartridge.header import parse_header
from gbsynth.emulator.core.machine import GameBoy
from gbsynth.generator.app import create_app
from gbsynth.generator.models import ModelHolder, load_model
from gbsynth.generator.service import Limits
from gbsynth.generator.songs import SongParams, generate
from gbsynth.trainer.testing import make_tiny_checkpoint

NR52 = 0xFF26
SECONDS = 3


def test_a_song_as_a_rom_replays_its_writes_within_a_frame(tmp_path):
    checkpoint = make_tiny_checkpoint(tmp_path, step=4)
    holder = ModelHolder(tmp_path)
    assert holder.refresh()
    with TestClient(create_app(holder, Limits(max_seconds=20))) as client:
        response = client.get("/v1/songs/77.gb", params={"seconds": SECONDS})
        again = client.post("/v1/songs", json={"seconds": SECONDS, "seed": 77, "format": "gb"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-gameboy-rom"
    assert 'filename="gbsynth-seed77-3s.gb"' in response.headers["content-disposition"]
    rom = response.content
    assert again.content == rom  # same seed, same bytes
    header = parse_header(rom)
    assert header.checksum_ok and header.type_name == "MBC5" and header.title == "GBSYNTH 77"

    song = generate(load_model(checkpoint), SongParams(seconds=SECONDS, seed=77))
    original = song.writes
    assert len(original) > 50  # the tiny model writes plenty of registers
    gb = GameBoy(rom)
    gb.start_recording()
    gb.run_seconds(SECONDS + 0.5)
    replayed = gb.take_writes()
    n = len(original)
    assert np.array_equal(replayed.registers[:n], original.registers)
    assert np.array_equal(replayed.values[:n], original.values)
    # Then the player switches the sound off, and nothing else.
    assert replayed.registers[n:].tolist() == [NR52] and replayed.values[n:].tolist() == [0]
    # One constant delay (start-up, then the tick's phase), give or take less than a frame.
    delay = replayed.cycles[:n] - original.cycles
    assert delay.max() - delay.min() < FRAME_CYCLES, (delay.min(), delay.max())
    assert delay.min() >= 0 and delay.max() < CPU_HZ // 2  # starts within half a second
