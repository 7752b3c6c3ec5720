"""MBC2: 4-bit ROM bank register and 512 x 4 bits of built-in RAM (types 05, 06).

Address bit 8 of a write to 0000-3FFF picks the register: clear for RAM enable,
set for the ROM bank. The RAM appears at A000-A1FF and repeats up to BFFF; its
upper nibble reads as ones.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gbsynth.emulator.core.cartridge.banking import (
    map_romx_bank,
    reset_bank_registers,
    write_ram_enable,
)
from gbsynth.emulator.core.state import (
    CRAM_BASE,
    MBC_RAM_ENABLED,
    MBC_ROM_BANK,
    RAM_OFFSET,
    ROM0_BANK,
)


@njit(cache=True)
def mbc2_update(st: np.ndarray) -> None:
    st[ROM0_BANK] = 0
    map_romx_bank(st, st[MBC_ROM_BANK])
    st[RAM_OFFSET] = -1  # never direct-mapped: nibbles and mirroring need the slow path


@njit(cache=True)
def mbc2_reset(st: np.ndarray) -> None:
    reset_bank_registers(st)
    mbc2_update(st)


@njit(cache=True)
def mbc2_write(st: np.ndarray, addr: int, value: int) -> None:
    if addr >= 0x4000:
        return
    if addr & 0x100:
        bank = value & 0x0F
        st[MBC_ROM_BANK] = bank if bank else 1
    else:
        write_ram_enable(st, value)
    mbc2_update(st)


@njit(cache=True)
def mbc2_ram_read(st: np.ndarray, mem: np.ndarray, addr: int) -> int:
    if st[MBC_RAM_ENABLED] == 0:
        return 0xFF
    return 0xF0 | (mem[st[CRAM_BASE] + (addr & 0x1FF)] & 0x0F)


@njit(cache=True)
def mbc2_ram_write(st: np.ndarray, mem: np.ndarray, addr: int, value: int) -> None:
    if st[MBC_RAM_ENABLED]:
        mem[st[CRAM_BASE] + (addr & 0x1FF)] = value & 0x0F
