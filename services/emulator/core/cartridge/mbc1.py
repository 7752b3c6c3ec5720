"""MBC1: 5-bit ROM bank register, 2-bit upper register, banking mode (types 01-03).

The upper register supplies ROM address bits 19-20 for 4000-7FFF, and in mode 1
also for 0000-3FFF and the RAM bank, which is how 1 MiB ROMs and 32 KiB RAM
share it. Bank register 0 selects bank 1 (the check is on the 5 written bits,
so 0x20, 0x40, 0x60 cannot be mapped at 4000-7FFF).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gbsynth.emulator.core.state import (
    CRAM_SIZE,
    MBC_BANK2,
    MBC_MODE,
    MBC_RAM_ENABLED,
    MBC_ROM_BANK,
    RAM_OFFSET,
    ROM0_BANK,
    ROM_SIZE,
    ROMX_BANK,
)


@njit(cache=True)
def mbc1_update(st: np.ndarray) -> None:
    banks = st[ROM_SIZE] >> 14
    upper = st[MBC_BANK2] << 5
    st[ROMX_BANK] = (upper | st[MBC_ROM_BANK]) & (banks - 1)
    st[ROM0_BANK] = (upper & (banks - 1)) if st[MBC_MODE] else 0
    ram_size = st[CRAM_SIZE]
    if st[MBC_RAM_ENABLED] and ram_size:
        bank = st[MBC_BANK2] if st[MBC_MODE] else 0
        st[RAM_OFFSET] = (bank * 0x2000) & (ram_size - 1) if ram_size > 0x2000 else 0
    else:
        st[RAM_OFFSET] = -1


@njit(cache=True)
def mbc1_reset(st: np.ndarray) -> None:
    st[MBC_ROM_BANK] = 1
    st[MBC_BANK2] = 0
    st[MBC_MODE] = 0
    st[MBC_RAM_ENABLED] = 0
    mbc1_update(st)


@njit(cache=True)
def mbc1_write(st: np.ndarray, addr: int, value: int) -> None:
    region = addr >> 13
    if region == 0:
        st[MBC_RAM_ENABLED] = 1 if (value & 0x0F) == 0x0A else 0
    elif region == 1:
        bank = value & 0x1F
        st[MBC_ROM_BANK] = bank if bank else 1
    elif region == 2:
        st[MBC_BANK2] = value & 0x03
    else:
        st[MBC_MODE] = value & 0x01
    mbc1_update(st)
