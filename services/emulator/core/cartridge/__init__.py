"""Cartridges: header parsing and one module per memory bank controller.

Each controller keeps its registers in the machine state array and derives from
them the banks mapped at 0000-3FFF, 4000-7FFF and A000-BFFF; ``map_pages`` turns
those into the bus page table, so the run loop reads ROM and RAM without
knowing which controller is fitted.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gbsynth.emulator.core.cartridge.header import (
    KIND_MBC1,
    KIND_MBC2,
    KIND_MBC3,
    KIND_MBC5,
    CartridgeHeader,
    RomError,
    parse_header,
)
from gbsynth.emulator.core.cartridge.mbc1 import mbc1_reset, mbc1_write
from gbsynth.emulator.core.cartridge.mbc2 import (
    mbc2_ram_read,
    mbc2_ram_write,
    mbc2_reset,
    mbc2_write,
)
from gbsynth.emulator.core.cartridge.mbc3 import (
    mbc3_ram_read,
    mbc3_ram_write,
    mbc3_reset,
    mbc3_write,
)
from gbsynth.emulator.core.cartridge.mbc5 import mbc5_reset, mbc5_write
from gbsynth.emulator.core.cartridge.rom_only import rom_only_reset, rom_only_write
from gbsynth.emulator.core.state import (
    CRAM_BASE,
    CRAM_SIZE,
    DMA_ACTIVE,
    MBC_KIND,
    MBC_RAM_ENABLED,
    RAM_OFFSET,
    ROM0_BANK,
    ROM_BASE,
    ROMX_BANK,
    RPAGE,
    WPAGE,
)

__all__ = [
    "CartridgeHeader",
    "RomError",
    "parse_header",
    "cart_reset",
    "cart_write",
    "cart_ram_read",
    "cart_ram_write",
    "map_pages",
]


@njit(cache=True)
def map_pages(st: np.ndarray) -> None:
    """Rebuild the bus page table from the mapped banks (all slow while OAM DMA runs).

    A slot is the offset to add to an address to reach its byte in ``mem``, or -1
    for the slow path. VRAM (PPU access blocking) and page F (echo tail, OAM,
    I/O, HRAM) always take the slow path.
    """
    if st[DMA_ACTIVE]:
        # The DMA owns the buses: every access goes through the conflict logic.
        for page in range(16):
            st[RPAGE + page] = -1
            st[WPAGE + page] = -1
        return
    rom0 = ROM_BASE + st[ROM0_BANK] * 0x4000
    romx = ROM_BASE + st[ROMX_BANK] * 0x4000 - 0x4000
    for page in range(4):
        st[RPAGE + page] = rom0
        st[RPAGE + 4 + page] = romx
        st[WPAGE + page] = -1
        st[WPAGE + 4 + page] = -1
    for page in (8, 9, 15):
        st[RPAGE + page] = -1
        st[WPAGE + page] = -1
    # Cartridge RAM: direct only for whole 8 KiB banks of a plain RAM chip.
    ram = -1
    if st[RAM_OFFSET] >= 0 and st[CRAM_SIZE] >= 0x2000 and st[MBC_RAM_ENABLED]:
        ram = st[CRAM_BASE] + st[RAM_OFFSET] - 0xA000
    for page in (10, 11):
        st[RPAGE + page] = ram
        st[WPAGE + page] = ram
    for page in (12, 13):
        st[RPAGE + page] = 0
        st[WPAGE + page] = 0
    st[RPAGE + 14] = -0x2000  # echo of C000-CFFF
    st[WPAGE + 14] = -0x2000


@njit(cache=True)
def cart_reset(st: np.ndarray) -> None:
    kind = st[MBC_KIND]
    if kind == KIND_MBC1:
        mbc1_reset(st)
    elif kind == KIND_MBC2:
        mbc2_reset(st)
    elif kind == KIND_MBC3:
        mbc3_reset(st)
    elif kind == KIND_MBC5:
        mbc5_reset(st)
    else:
        rom_only_reset(st, st[CRAM_SIZE])
    map_pages(st)


@njit(cache=True)
def cart_write(st: np.ndarray, addr: int, value: int, now: int) -> None:
    """A CPU write to 0000-7FFF: a controller register."""
    kind = st[MBC_KIND]
    if kind == KIND_MBC1:
        mbc1_write(st, addr, value)
    elif kind == KIND_MBC2:
        mbc2_write(st, addr, value)
    elif kind == KIND_MBC3:
        mbc3_write(st, addr, value, now)
    elif kind == KIND_MBC5:
        mbc5_write(st, addr, value)
    else:
        rom_only_write(st, addr, value)
        return
    map_pages(st)


@njit(cache=True)
def cart_ram_read(st: np.ndarray, mem: np.ndarray, addr: int) -> int:
    """A000-BFFF when not direct-mapped: disabled RAM, MBC2 nibbles, RTC, small RAM."""
    kind = st[MBC_KIND]
    if kind == KIND_MBC2:
        return mbc2_ram_read(st, mem, addr)
    if kind == KIND_MBC3:
        return mbc3_ram_read(st, mem, addr)
    offset = st[RAM_OFFSET]
    size = st[CRAM_SIZE]
    if offset < 0 or size == 0 or st[MBC_RAM_ENABLED] == 0:
        return 0xFF
    return int(mem[st[CRAM_BASE] + ((offset + (addr & 0x1FFF)) & (size - 1))])


@njit(cache=True)
def cart_ram_write(st: np.ndarray, mem: np.ndarray, addr: int, value: int, now: int) -> None:
    kind = st[MBC_KIND]
    if kind == KIND_MBC2:
        mbc2_ram_write(st, mem, addr, value)
        return
    if kind == KIND_MBC3:
        mbc3_ram_write(st, mem, addr, value, now)
        return
    offset = st[RAM_OFFSET]
    size = st[CRAM_SIZE]
    if offset < 0 or size == 0 or st[MBC_RAM_ENABLED] == 0:
        return
    mem[st[CRAM_BASE] + ((offset + (addr & 0x1FFF)) & (size - 1))] = value
