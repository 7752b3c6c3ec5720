"""ROM only (types 00, 08, 09): 32 KiB of ROM, optionally 8 KiB of RAM always enabled."""

from __future__ import annotations

import numpy as np
from numba import njit

from gbsynth.emulator.core.state import MBC_RAM_ENABLED, RAM_OFFSET, ROM0_BANK, ROMX_BANK


@njit(cache=True)
def rom_only_reset(st: np.ndarray, ram_size: int) -> None:
    st[ROM0_BANK] = 0
    st[ROMX_BANK] = 1
    st[MBC_RAM_ENABLED] = 1 if ram_size else 0
    st[RAM_OFFSET] = 0 if ram_size else -1


@njit(cache=True)
def rom_only_write(st: np.ndarray, addr: int, value: int) -> None:
    """Writes to 0000-7FFF reach nothing on a cartridge without a controller."""
    return
