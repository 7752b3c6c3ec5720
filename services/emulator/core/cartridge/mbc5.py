"""MBC5: 9-bit ROM bank register (bank 0 allowed at 4000-7FFF), 4-bit RAM bank (19-1E).

On rumble cartridges (1C-1E) bit 3 of the RAM bank register drives the motor
instead of a RAM address line.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gbsynth.emulator.core.state import (
    CRAM_SIZE,
    MBC_BANK2,
    MBC_HAS_RTC,
    MBC_RAM_ENABLED,
    MBC_ROM_BANK,
    RAM_OFFSET,
    ROM0_BANK,
    ROM_SIZE,
    ROMX_BANK,
)

# MBC_HAS_RTC doubles as "has rumble" for MBC5 (no MBC5 has a clock).
MBC5_RUMBLE = MBC_HAS_RTC


@njit(cache=True)
def mbc5_update(st: np.ndarray) -> None:
    banks = st[ROM_SIZE] >> 14
    st[ROM0_BANK] = 0
    st[ROMX_BANK] = st[MBC_ROM_BANK] & (banks - 1)
    ram_size = st[CRAM_SIZE]
    if st[MBC_RAM_ENABLED] and ram_size:
        bank = st[MBC_BANK2] & (0x07 if st[MBC5_RUMBLE] else 0x0F)
        st[RAM_OFFSET] = (bank * 0x2000) & (ram_size - 1) if ram_size > 0x2000 else 0
    else:
        st[RAM_OFFSET] = -1


@njit(cache=True)
def mbc5_reset(st: np.ndarray) -> None:
    st[MBC_ROM_BANK] = 1
    st[MBC_BANK2] = 0
    st[MBC_RAM_ENABLED] = 0
    mbc5_update(st)


@njit(cache=True)
def mbc5_write(st: np.ndarray, addr: int, value: int) -> None:
    if addr < 0x2000:
        st[MBC_RAM_ENABLED] = 1 if (value & 0x0F) == 0x0A else 0
    elif addr < 0x3000:
        st[MBC_ROM_BANK] = (st[MBC_ROM_BANK] & 0x100) | value
    elif addr < 0x4000:
        st[MBC_ROM_BANK] = (st[MBC_ROM_BANK] & 0xFF) | ((value & 1) << 8)
    elif addr < 0x6000:
        st[MBC_BANK2] = value & 0x0F
    else:
        return
    mbc5_update(st)
