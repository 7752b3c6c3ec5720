"""MBC5: 9-bit ROM bank register (bank 0 allowed at 4000-7FFF), 4-bit RAM bank (19-1E).

On rumble cartridges (1C-1E) bit 3 of the RAM bank register drives the motor
instead of a RAM address line.
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
    MBC_HAS_RTC,
    MBC_ROM_BANK,
    ROM0_BANK,
)

# MBC_HAS_RTC doubles as "has rumble" for MBC5 (no MBC5 has a clock).
MBC5_RUMBLE = MBC_HAS_RTC


@njit(cache=True)
def mbc5_update(st: np.ndarray) -> None:
    st[ROM0_BANK] = 0
    map_romx_bank(st, st[MBC_ROM_BANK])
    map_ram_bank(st, st[MBC_BANK2] & (0x07 if st[MBC5_RUMBLE] else 0x0F))


@njit(cache=True)
def mbc5_reset(st: np.ndarray) -> None:
    reset_bank_registers(st)
    mbc5_update(st)


@njit(cache=True)
def mbc5_write(st: np.ndarray, addr: int, value: int) -> None:
    if addr < 0x2000:
        write_ram_enable(st, value)
    elif addr < 0x3000:
        st[MBC_ROM_BANK] = (st[MBC_ROM_BANK] & 0x100) | value
    elif addr < 0x4000:
        st[MBC_ROM_BANK] = (st[MBC_ROM_BANK] & 0xFF) | ((value & 1) << 8)
    elif addr < 0x6000:
        st[MBC_BANK2] = value & 0x0F
    else:
        return
    mbc5_update(st)
