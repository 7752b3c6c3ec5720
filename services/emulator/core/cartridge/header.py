"""The cartridge header (0x0100-0x014F): title, type, ROM and RAM sizes, checksum."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

HEADER_END = 0x150
BANK_SIZE = 0x4000
RAM_BANK_SIZE = 0x2000

# Memory bank controller kinds (the values the run loop dispatches on).
KIND_ROM_ONLY = 0
KIND_MBC1 = 1
KIND_MBC2 = 2
KIND_MBC3 = 3
KIND_MBC5 = 5

# Cartridge type byte (0x147) -> (kind, has RAM, has battery, has RTC, name).
CARTRIDGE_TYPES: dict[int, tuple[int, bool, bool, bool, str]] = {
    0x00: (KIND_ROM_ONLY, False, False, False, "ROM ONLY"),
    0x01: (KIND_MBC1, False, False, False, "MBC1"),
    0x02: (KIND_MBC1, True, False, False, "MBC1+RAM"),
    0x03: (KIND_MBC1, True, True, False, "MBC1+RAM+BATTERY"),
    0x05: (KIND_MBC2, True, False, False, "MBC2"),
    0x06: (KIND_MBC2, True, True, False, "MBC2+BATTERY"),
    0x08: (KIND_ROM_ONLY, True, False, False, "ROM+RAM"),
    0x09: (KIND_ROM_ONLY, True, True, False, "ROM+RAM+BATTERY"),
    0x0F: (KIND_MBC3, False, True, True, "MBC3+TIMER+BATTERY"),
    0x10: (KIND_MBC3, True, True, True, "MBC3+TIMER+RAM+BATTERY"),
    0x11: (KIND_MBC3, False, False, False, "MBC3"),
    0x12: (KIND_MBC3, True, False, False, "MBC3+RAM"),
    0x13: (KIND_MBC3, True, True, False, "MBC3+RAM+BATTERY"),
    0x19: (KIND_MBC5, False, False, False, "MBC5"),
    0x1A: (KIND_MBC5, True, False, False, "MBC5+RAM"),
    0x1B: (KIND_MBC5, True, True, False, "MBC5+RAM+BATTERY"),
    0x1C: (KIND_MBC5, False, False, False, "MBC5+RUMBLE"),
    0x1D: (KIND_MBC5, True, False, False, "MBC5+RUMBLE+RAM"),
    0x1E: (KIND_MBC5, True, True, False, "MBC5+RUMBLE+RAM+BATTERY"),
}

# ROM size byte (0x148) -> bytes: 32 KiB << code, up to 8 MiB.
ROM_SIZES = {code: 0x8000 << code for code in range(9)}
# RAM size byte (0x149) -> bytes. Code 1 (2 KiB) is unofficial but seen in homebrew.
RAM_SIZES = {0x00: 0, 0x01: 0x800, 0x02: 0x2000, 0x03: 0x8000, 0x04: 0x20000, 0x05: 0x10000}
MBC2_RAM_SIZE = 512


class RomError(ValueError):
    """A file is not a ROM image this emulator can run (too short, truncated, unknown type)."""


@dataclass(frozen=True)
class CartridgeHeader:
    title: str
    cartridge_type: int
    type_name: str
    kind: int
    rom_size: int
    """Bytes of ROM the header declares."""
    ram_size: int
    """Bytes of cartridge RAM (MBC2: its 512 built-in nibbles)."""
    has_battery: bool
    has_rtc: bool
    header_checksum: int
    computed_checksum: int

    @property
    def checksum_ok(self) -> bool:
        """The boot ROM refuses to start a cartridge whose header checksum is wrong."""
        return self.header_checksum == self.computed_checksum

    @property
    def rom_banks(self) -> int:
        return self.rom_size // BANK_SIZE


def header_checksum(rom: bytes | bytearray) -> int:
    """The boot ROM's checksum of 0x134-0x14C (stored at 0x14D)."""
    x = 0
    for b in rom[0x134:0x14D]:
        x = (x - b - 1) & 0xFF
    return x


def _coded_byte(rom: bytes, offset: int, codes: Container[int], what: str) -> int:
    """The header byte at ``offset``, which must be one of ``codes`` (a table's keys)."""
    code = rom[offset]
    if code not in codes:
        raise RomError(f"{what} 0x{code:02X} at 0x{offset:03X}")
    return code


def parse_header(rom: bytes) -> CartridgeHeader:
    """Parse and check the header of a ROM image; raises ``RomError`` with the reason."""
    if len(rom) < HEADER_END:
        raise RomError(
            f"file is {len(rom)} bytes, shorter than a cartridge header (0x{HEADER_END:X} bytes)"
        )
    cartridge_type = _coded_byte(rom, 0x147, CARTRIDGE_TYPES, "unsupported cartridge type")
    kind, has_ram, battery, rtc, type_name = CARTRIDGE_TYPES[cartridge_type]
    rom_size = ROM_SIZES[_coded_byte(rom, 0x148, ROM_SIZES, "invalid ROM size code")]
    if len(rom) < rom_size:
        raise RomError(
            f"ROM is truncated: the header declares {rom_size} bytes, the file has {len(rom)}"
        )
    ram_code = _coded_byte(rom, 0x149, RAM_SIZES, "invalid RAM size code")
    if kind == KIND_MBC2:
        ram_size = MBC2_RAM_SIZE
    else:
        ram_size = RAM_SIZES[ram_code] if has_ram or ram_code else 0
    title_raw = bytes(rom[0x134:0x144]).split(b"\x00", 1)[0]
    title = "".join(chr(b) if 0x20 <= b < 0x7F else "" for b in title_raw).strip()
    return CartridgeHeader(
        title=title,
        cartridge_type=cartridge_type,
        type_name=type_name,
        kind=kind,
        rom_size=rom_size,
        ram_size=ram_size,
        has_battery=battery,
        has_rtc=rtc,
        header_checksum=rom[0x14D],
        computed_checksum=header_checksum(rom),
    )


NINTENDO_LOGO = bytes.fromhex(
    "CEED6666CC0D000B03730083000C000D0008111F8889000EDCCC6EE6DDDDD999"
    "BBBB67636E0EECCCDDDC999FBBB9333E"
)
"""The 48 bytes at 0x104 the boot ROM compares before it starts a cartridge."""


def global_checksum(rom: bytes | bytearray) -> int:
    """Sum of every byte but the two that hold it (0x14E-0x14F), modulo 65536."""
    return (sum(rom) - rom[0x14E] - rom[0x14F]) & 0xFFFF


def rom_size_code(size: int) -> int:
    """Header byte 0x148 for a ROM of ``size`` bytes (32 KiB << code)."""
    code = 0
    while (0x8000 << code) < size:
        code += 1
    if code > 8:
        raise RomError(f"{size} bytes is more than the 8 MiB a cartridge header can declare")
    return code


def write_header(
    image: bytearray, *, title: str, cartridge_type: int, ram_size_code: int = 0
) -> None:
    """Fill in the header of a whole ROM image: logo, title, type, sizes and both checksums.

    ``title``: printable ASCII, up to 15 characters (0x143 stays 0: a DMG game).
    The ROM size byte follows ``len(image)``, so the image must already have its
    final size (a power of two of 32 KiB or more).
    """
    image[0x104:0x134] = NINTENDO_LOGO
    clean = "".join(ch if 0x20 <= ord(ch) < 0x7F else " " for ch in title).strip()
    image[0x134:0x144] = clean.encode("ascii")[:15].ljust(16, b"\x00")
    image[0x144:0x146] = b"00"  # new licensee code: none
    image[0x146] = 0x00  # no SGB functions
    image[0x147] = cartridge_type
    image[0x148] = rom_size_code(len(image))
    image[0x149] = ram_size_code
    image[0x14A] = 0x01  # destination: overseas
    image[0x14B] = 0x33  # licensee: see the new code
    image[0x14C] = 0x00  # version
    image[0x14D] = header_checksum(image)
    image[0x14E:0x150] = global_checksum(image).to_bytes(2, "big")


def build_rom(
    code: dict[int, bytes],
    *,
    cartridge_type: int = 0x00,
    rom_size_code: int = 0x00,
    ram_size_code: int = 0x00,
    title: str = "",
    fill: int = 0x00,
) -> bytes:
    """A ROM image with a valid header, `code` placed at its addresses (file offsets).

    For tests and tools that need a small cartridge around a few bytes of code.
    """
    size = 0x8000 << rom_size_code
    image = bytearray([fill & 0xFF]) * size
    for offset, data in code.items():
        if offset < 0 or offset + len(data) > size:
            raise ValueError(f"code at 0x{offset:X} does not fit in a {size}-byte ROM")
        image[offset : offset + len(data)] = data
    write_header(image, title=title, cartridge_type=cartridge_type, ram_size_code=ram_size_code)
    return bytes(image)
