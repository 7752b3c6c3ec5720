"""The bank-register steps the memory bank controllers share (MBC1, MBC2, MBC3, MBC5).

Inlined into each controller (``inline="always"``): some drivers switch banks every frame,
and as plain calls they cost instr_test.gb (MBC1) about 6% of its emulation speed."""

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
    ROM_SIZE,
    ROMX_BANK,
)


@njit(cache=True, inline="always")
def reset_bank_registers(st: np.ndarray) -> None:
    """Power-on registers: ROM bank 1 at 4000-7FFF, RAM bank 0, mode 0, RAM disabled."""
    st[MBC_ROM_BANK] = 1
    st[MBC_BANK2] = 0
    st[MBC_MODE] = 0
    st[MBC_RAM_ENABLED] = 0


@njit(cache=True, inline="always")
def write_ram_enable(st: np.ndarray, value: int) -> None:
    """0A in the low nibble enables the cartridge RAM, anything else disables it."""
    st[MBC_RAM_ENABLED] = 1 if (value & 0x0F) == 0x0A else 0


@njit(cache=True, inline="always")
def map_romx_bank(st: np.ndarray, bank: int) -> None:
    """ROM bank ``bank`` at 4000-7FFF, wrapped to the ROM's size (a power of two of banks)."""
    st[ROMX_BANK] = bank & ((st[ROM_SIZE] >> 14) - 1)


@njit(cache=True, inline="always")
def map_ram_bank(st: np.ndarray, bank: int) -> None:
    """RAM bank ``bank`` at A000-BFFF, wrapped to the RAM's size; with the RAM disabled or
    absent, or ``bank`` < 0 (not RAM, e.g. a clock register), the slow path (-1) reads it."""
    ram_size = st[CRAM_SIZE]
    if bank >= 0 and st[MBC_RAM_ENABLED] and ram_size:
        st[RAM_OFFSET] = (bank * 0x2000) & (ram_size - 1) if ram_size > 0x2000 else 0
    else:
        st[RAM_OFFSET] = -1
