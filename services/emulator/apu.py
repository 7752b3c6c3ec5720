"""DMG APU register model (interface first; exact semantics follow).

The state is one int64 numpy array; functions are numba-jitted and pure over it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Raw register bytes FF10-FF3F live at REG_BASE + (addr - 0xFF10).
REG_BASE = 0
REG_COUNT = 0x30
APU_STATE_SIZE = 128

# Bits that read back as 1 regardless of what was written (DMG).
READ_OR_MASK = np.array(
    [
        0x80, 0x3F, 0x00, 0xFF, 0xBF,  # NR10-NR14
        0xFF, 0x3F, 0x00, 0xFF, 0xBF,  # (FF15) NR21-NR24
        0x7F, 0xFF, 0x9F, 0xFF, 0xBF,  # NR30-NR34
        0xFF, 0xFF, 0x00, 0x00, 0xBF,  # (FF1F) NR41-NR44
        0x00, 0x00, 0x70,  # NR50-NR52
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,  # FF27-FF2F
    ]
    + [0x00] * 16,
    dtype=np.int64,
)


def new_apu_state() -> np.ndarray:
    """DMG APU state right after the boot ROM."""
    apu = np.zeros(APU_STATE_SIZE, dtype=np.int64)
    return apu


@njit(cache=True)
def apu_read(apu: np.ndarray, addr: int, now: int) -> int:
    i = addr - 0xFF10
    return int((apu[REG_BASE + i] | READ_OR_MASK[i]) & 0xFF)


@njit(cache=True)
def apu_write(apu: np.ndarray, addr: int, value: int, now: int) -> None:
    apu[REG_BASE + addr - 0xFF10] = value & 0xFF


@njit(cache=True)
def apu_frame_sequencer_step(apu: np.ndarray) -> None:
    pass
