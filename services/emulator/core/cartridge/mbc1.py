"""MBC1: 5-bit ROM bank register, 2-bit upper register, banking mode (types 01-03).

The upper register supplies ROM address bits 19-20 for 4000-7FFF, and in mode 1
also for 0000-3FFF and the RAM bank, which is how 1 MiB ROMs and 32 KiB RAM
share it. Bank register 0 selects bank 1 (the check is on the 5 written bits,
so 0x20, 0x40, 0x60 cannot be mapped at 4000-7FFF).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gbsynth.emulator.core.cartridge.banking import (
    map_ram_bank,
    map_romx_bank,
    reset_bank_registers,
    write_ram_enable,
)
from gbsynth.emulator.core.state import (
    MBC_BANK2,
    MBC_MODE,
    MBC_ROM_BANK,
    ROM0_BANK,
    ROM_SIZE,
)


@njit(cache=True)
def mbc1_update(st: np.ndarray) -> None:
    upper = st[MBC_BANK2] << 5
    map_romx_bank(st, upper | st[MBC_ROM_BANK])
    st[ROM0_BANK] = (upper & ((st[ROM_SIZE] >> 14) - 1)) if st[MBC_MODE] else 0
    map_ram_bank(st, st[MBC_BANK2] if st[MBC_MODE] else 0)


@njit(cache=True)
def mbc1_reset(st: np.ndarray) -> None:
    reset_bank_registers(st)
    mbc1_update(st)


@njit(cache=True)
def mbc1_write(st: np.ndarray, addr: int, value: int) -> None:
    region = addr >> 13
    if region == 0:
        write_ram_enable(st, value)
    elif region == 1:
        bank = value & 0x1F
        st[MBC_ROM_BANK] = bank if bank else 1
    elif region == 2:
        st[MBC_BANK2] = value & 0x03
    else:
        st[MBC_MODE] = value & 0x01
    mbc1_update(st)
