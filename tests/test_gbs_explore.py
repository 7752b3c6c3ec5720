import numpy as np
import pytest

from gbsynth.common.events import FRAME_CYCLES, Phase
from gbsynth.emulator.core.cartridge.header import global_checksum, parse_header
from gbsynth.emulator.explore import (
    BUTTON_A,
    BUTTON_SELECT,
    BUTTON_START,
    ExploreSettings,
    phase_schedule,
    random_buttons,
)
from gbsynth.emulator.gbs import GbsError, build_player_rom, parse_gbs_header


def test_parse_nightmode_header(shared_dir):
    header = parse_gbs_header((shared_dir / "corpus/nightmode.gbs").read_bytes())
    assert (header.load_address, header.init_address, header.play_address) == (
        0x3000,
        0x3800,
        0x3290,
    )
    assert header.stack_pointer == 0xFFF4 and header.song_count == 1
    assert header.title == "Nightmode" and header.author == "Laxity"
    assert not header.uses_timer and abs(header.play_rate_hz - 59.7275) < 1e-3


def test_player_rom_layout(shared_dir):
    data = (shared_dir / "corpus/DevSound_demo.gbs").read_bytes()
    rom, header = build_player_rom(data, 3)
    assert header.song_count == 6
    assert rom[header.load_address : header.load_address + 16] == data[0x70 : 0x70 + 16]
    assert rom[0x40] == 0xCD and rom[0x41] | rom[0x42] << 8 == header.play_address
    assert rom[0x147] == 0x1A and len(rom) & (len(rom) - 1) == 0
    cart = parse_header(rom)
    assert cart.checksum_ok and cart.title == header.title[:15].strip()
    assert int.from_bytes(rom[0x14E:0x150], "big") == global_checksum(rom)
    with pytest.raises(GbsError, match="outside 1..6"):
        build_player_rom(data, 7)


def test_timer_rate():
    data = bytearray(0x80)
    data[:3] = b"GBS"
    data[3:6] = bytes([1, 1, 1])
    data[6:14] = bytes([0x00, 0x04, 0x00, 0x04, 0x00, 0x04, 0xFE, 0xFF])
    data[0x0E], data[0x0F] = 0xC0, 0x04 | 0x02  # 65536 Hz / 64
    header = parse_gbs_header(bytes(data))
    assert header.uses_timer and header.play_rate_hz == 1024.0


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: b"XYZ" + d[3:], "signature"),
        (lambda d: d[:3] + b"\x02" + d[4:], "version"),
        (lambda d: d[:4] + b"\x00" + d[5:], "no subsongs"),
        (lambda d: d[:0x70], "no code"),
        (lambda d: d[:6] + b"\x00\x01" + d[8:], "load address"),
    ],
)
def test_bad_gbs(shared_dir, mutate, message):
    data = (shared_dir / "corpus/nightmode.gbs").read_bytes()
    with pytest.raises(GbsError, match=message):
        parse_gbs_header(mutate(data))


def test_schedule_alternates_after_boot():
    settings = ExploreSettings(
        boot_seconds=1, observe_seconds=2, press_seconds=1, settle_seconds=0.5
    )
    spans = list(phase_schedule(settings, 10 * 4_194_304))
    assert [s.phase for s in spans[:5]] == [
        Phase.BOOT,
        Phase.OBSERVE,
        Phase.PRESS,
        Phase.SETTLE,
        Phase.OBSERVE,
    ]
    assert all(a.end_cycle == b.start_cycle for a, b in zip(spans, spans[1:], strict=False))
    assert spans[-1].end_cycle == 10 * 4_194_304
    assert all(s.start_cycle % FRAME_CYCLES == 0 for s in spans)


def test_buttons_are_seeded_and_weighted():
    a = random_buttons(np.random.default_rng(5), 20_000)
    assert np.array_equal(a, random_buttons(np.random.default_rng(5), 20_000))
    assert (a & BUTTON_A).astype(bool).mean() > 0.4
    assert (a & BUTTON_START).astype(bool).mean() > (a & BUTTON_SELECT).astype(bool).mean() * 5
    directions = a >> 4
    assert set(np.unique(directions)) <= {0, 1, 2, 4, 8}
