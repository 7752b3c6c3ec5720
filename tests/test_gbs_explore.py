import pytest

from gbsynth.emulator.core.cartridge.header import global_checksum, parse_header
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
