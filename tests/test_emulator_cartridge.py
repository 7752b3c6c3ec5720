"""Cartridge header parsing and the memory bank controllers (ROM only, MBC1, MBC2, MBC3, MBC5)."""

from __future__ import annotations

import pytest

from gbsynth.common.events import CPU_HZ
from gbsynth.emulator.core.cartridge.header import (
    KIND_MBC1,
    KIND_MBC3,
    RomError,
    build_rom,
    parse_header,
)
from gbsynth.emulator.core.machine import GameBoy

ENTRY = bytes([0x00, 0xC3, 0x50, 0x01])
IDLE = bytes([0x18, 0xFE])  # jr -2


def banked_rom(cartridge_type: int, rom_size_code: int, ram_size_code: int = 0) -> bytes:
    """A ROM whose every bank starts with its bank number (low byte, then high byte)."""
    banks = 2 << rom_size_code
    code = {0x100: ENTRY, 0x150: IDLE}
    for bank in range(1, banks):
        code[bank * 0x4000] = bytes([bank & 0xFF, bank >> 8])
    code[0x0000] = bytes([0x00, 0x00])
    return build_rom(
        code,
        cartridge_type=cartridge_type,
        rom_size_code=rom_size_code,
        ram_size_code=ram_size_code,
        title="BANKS",
    )


def bank_at(gb: GameBoy, addr: int) -> int:
    return gb.peek(addr) | (gb.peek(addr + 1) << 8)


def test_header_fields():
    rom = banked_rom(0x13, rom_size_code=2, ram_size_code=3)
    header = parse_header(rom)
    assert header.title == "BANKS"
    assert header.kind == KIND_MBC3
    assert header.type_name == "MBC3+RAM+BATTERY"
    assert header.rom_size == 128 * 1024 and header.rom_banks == 8
    assert header.ram_size == 32 * 1024
    assert header.has_battery and not header.has_rtc
    assert header.checksum_ok
    broken = bytearray(rom)
    broken[0x134] ^= 0xFF
    assert not parse_header(bytes(broken)).checksum_ok


def test_header_rejects_unknown_ram_size():
    rom = bytearray(banked_rom(0x01, 1))
    rom[0x149] = 0x09
    with pytest.raises(RomError, match="RAM size"):
        parse_header(bytes(rom))


def test_rom_only_ignores_bank_writes():
    gb = GameBoy(banked_rom(0x00, 0))
    gb.poke(0x2000, 0x05)
    assert bank_at(gb, 0x4000) == 1


def test_mbc1_rom_banks_and_bank_zero_quirk():
    gb = GameBoy(banked_rom(0x01, rom_size_code=4))  # 512 KiB, 32 banks
    assert parse_header(banked_rom(0x01, 4)).kind == KIND_MBC1
    for bank in (1, 2, 17, 31):
        gb.poke(0x2000, bank)
        assert bank_at(gb, 0x4000) == bank
    gb.poke(0x2000, 0)
    assert bank_at(gb, 0x4000) == 1  # bank 0 reads as bank 1
    gb.poke(0x2000, 0x21)  # only 5 bits are kept
    assert bank_at(gb, 0x4000) == 1


def test_mbc1_large_rom_upper_bits_and_mode_1():
    gb = GameBoy(banked_rom(0x01, rom_size_code=5))  # 1 MiB, 64 banks
    gb.poke(0x2000, 0x03)
    gb.poke(0x4000, 0x01)
    assert bank_at(gb, 0x4000) == 0x23
    assert bank_at(gb, 0x0000) == 0x00  # mode 0: bank 0 at 0000-3FFF
    gb.poke(0x6000, 0x01)
    assert bank_at(gb, 0x0000) == 0x20  # mode 1: the upper bits apply there too
    gb.poke(0x2000, 0x00)
    assert bank_at(gb, 0x4000) == 0x21  # 0x20 cannot be mapped at 4000-7FFF


def test_mbc1_ram_enable_and_banks():
    gb = GameBoy(banked_rom(0x03, rom_size_code=1, ram_size_code=3))
    assert gb.peek(0xA000) == 0xFF  # disabled
    gb.poke(0xA000, 0x12)
    gb.poke(0x0000, 0x0A)
    assert gb.peek(0xA000) == 0x00  # the write while disabled was dropped
    gb.poke(0xA000, 0x12)
    gb.poke(0x6000, 0x01)  # mode 1: the upper register picks the RAM bank
    gb.poke(0x4000, 0x02)
    gb.poke(0xA000, 0x34)
    assert gb.peek(0xA000) == 0x34
    gb.poke(0x4000, 0x00)
    assert gb.peek(0xA000) == 0x12
    gb.poke(0x0000, 0x00)
    assert gb.peek(0xA000) == 0xFF


def test_mbc2_nibble_ram_and_register_select():
    gb = GameBoy(banked_rom(0x06, rom_size_code=3))  # 256 KiB, 16 banks
    gb.poke(0x2100, 0x07)  # address bit 8 set: ROM bank
    assert bank_at(gb, 0x4000) == 7
    gb.poke(0x0000, 0x0A)  # bit 8 clear: RAM enable
    gb.poke(0xA000, 0xAB)
    assert gb.peek(0xA000) == 0xFB  # 4-bit cells, upper nibble reads 1s
    assert gb.peek(0xA200) == 0xFB  # 512 cells repeat through A000-BFFF
    gb.poke(0x2100, 0x00)
    assert bank_at(gb, 0x4000) == 1


def test_mbc3_banks_and_clock():
    gb = GameBoy(banked_rom(0x10, rom_size_code=6, ram_size_code=3))  # 2 MiB, 128 banks
    gb.poke(0x2000, 0x7F)
    assert bank_at(gb, 0x4000) == 0x7F
    gb.poke(0x0000, 0x0A)
    gb.poke(0x4000, 0x01)
    gb.poke(0xA000, 0x55)
    gb.poke(0x4000, 0x00)
    assert gb.peek(0xA000) != 0x55
    gb.poke(0x4000, 0x01)
    assert gb.peek(0xA000) == 0x55
    gb.run_cycles(3 * CPU_HZ + 100)  # the clock follows emulated time
    gb.poke(0x6000, 0x00)
    gb.poke(0x6000, 0x01)
    gb.poke(0x4000, 0x08)
    assert gb.peek(0xA000) == 3  # seconds
    gb.poke(0xA000, 59)  # set seconds; halt the clock
    gb.poke(0x4000, 0x0C)
    gb.poke(0xA000, 0x40)
    gb.run_cycles(2 * CPU_HZ)
    gb.poke(0x6000, 0x00)
    gb.poke(0x6000, 0x01)
    gb.poke(0x4000, 0x08)
    assert gb.peek(0xA000) == 59
    gb.poke(0x4000, 0x0C)
    assert gb.peek(0xA000) & 0x40


def test_mbc5_nine_bit_banks_and_bank_zero():
    gb = GameBoy(banked_rom(0x1B, rom_size_code=8, ram_size_code=4))  # 8 MiB, 512 banks
    gb.poke(0x2000, 0xFF)
    gb.poke(0x3000, 0x01)
    assert bank_at(gb, 0x4000) == 0x1FF
    gb.poke(0x3000, 0x00)
    gb.poke(0x2000, 0x00)
    assert bank_at(gb, 0x4000) == 0  # MBC5 can map bank 0 there
    gb.poke(0x0000, 0x0A)
    for bank in range(16):
        gb.poke(0x4000, bank)
        gb.poke(0xA000, bank + 1)
    for bank in range(16):
        gb.poke(0x4000, bank)
        assert gb.peek(0xA000) == bank + 1
