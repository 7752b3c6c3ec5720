"""OAM DMA: 160 bytes from XX00-XX9F to OAM, one per M-cycle, after a one M-cycle set-up.

While it runs the DMA owns the bus it reads from: the CPU sees OAM (and the
unusable area after it) as 0xFF, and a CPU read from the same bus as the
source (external bus: ROM, cartridge RAM, WRAM; or the VRAM bus) returns the
byte the DMA is moving instead. HRAM and I/O stay reachable, which is why
programs wait for it in HRAM. Bytes are copied lazily, when OAM or the DMA
state is looked at, or when the DMA ends.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gbsynth.emulator.core.cartridge import cart_ram_read, map_pages
from gbsynth.emulator.core.state import (
    DMA_ACTIVE,
    DMA_BLOCK_FROM,
    DMA_COPIED,
    DMA_REG,
    DMA_SOURCE,
    DMA_START,
    NEVER,
    ROM0_BANK,
    ROM_BASE,
    ROMX_BANK,
    SPRITE_TABLE_VALID,
)

DMA_LENGTH = 160
DMA_SETUP = 4
"""Cycles between the DMA register write and the M-cycle before the first byte moves."""


@njit(cache=True)
def dma_source_byte(st: np.ndarray, mem: np.ndarray, addr: int) -> int:
    """What the DMA reads at `addr` (no PPU blocking applies to it)."""
    if addr < 0x4000:
        return int(mem[ROM_BASE + st[ROM0_BANK] * 0x4000 + addr])
    if addr < 0x8000:
        return int(mem[ROM_BASE + st[ROMX_BANK] * 0x4000 + addr - 0x4000])
    if addr < 0xA000:
        return int(mem[addr])
    if addr < 0xC000:
        return cart_ram_read(st, mem, addr)
    if addr < 0xE000:
        return int(mem[addr])
    return int(mem[addr - 0x2000])  # E000-FFFF sources read the WRAM behind the echo


@njit(cache=True, inline="always")
def dma_running(st: np.ndarray) -> bool:
    return st[DMA_ACTIVE] != 0


@njit(cache=True)
def dma_sync(st: np.ndarray, mem: np.ndarray, now: int) -> None:
    """Copy every byte due by `now`; after the last one's M-cycle give the buses back."""
    if st[DMA_ACTIVE] == 0:
        return
    copied = st[DMA_COPIED]
    due = (now - st[DMA_START]) // 4
    if due > DMA_LENGTH:
        due = DMA_LENGTH
    if due > copied:
        source = st[DMA_SOURCE]
        for i in range(copied, due):
            mem[0xFE00 + i] = dma_source_byte(st, mem, source + i)
        st[DMA_COPIED] = due
        st[SPRITE_TABLE_VALID] = 0  # OAM changed: sprite penalties need a new scan
    if now > st[DMA_START] + 4 * DMA_LENGTH:
        st[DMA_ACTIVE] = 0
        map_pages(st)


@njit(cache=True)
def dma_end(st: np.ndarray) -> int:
    """The first cycle at which the buses are free again (an event for the run loop)."""
    if st[DMA_ACTIVE] == 0:
        return NEVER
    return st[DMA_START] + 4 * DMA_LENGTH + 4


@njit(cache=True)
def dma_write(st: np.ndarray, mem: np.ndarray, value: int, now: int) -> None:
    """FF46: start (or restart) a transfer from value * 0x100."""
    dma_sync(st, mem, now)
    if st[DMA_ACTIVE] and now > st[DMA_START]:
        block_from = st[DMA_BLOCK_FROM]  # a restart keeps OAM blocked
    else:
        block_from = now + DMA_SETUP
    st[DMA_REG] = value
    st[DMA_SOURCE] = value << 8
    st[DMA_START] = now + DMA_SETUP
    st[DMA_BLOCK_FROM] = block_from
    st[DMA_COPIED] = 0
    st[DMA_ACTIVE] = 1
    map_pages(st)


@njit(cache=True, inline="always")
def dma_oam_blocked(st: np.ndarray, now: int) -> bool:
    return st[DMA_ACTIVE] != 0 and now > st[DMA_BLOCK_FROM]


@njit(cache=True)
def dma_conflict_byte(st: np.ndarray, mem: np.ndarray, addr: int, now: int) -> int:
    """A CPU read below FE00 during a transfer: the DMA's byte if it uses the same bus, else -1."""
    if st[DMA_ACTIVE] == 0 or now <= st[DMA_START]:
        return -1
    source = st[DMA_SOURCE]
    source_vram = 0x8000 <= source < 0xA000
    addr_vram = 0x8000 <= addr < 0xA000
    if source_vram != addr_vram:
        return -1
    index = (now - st[DMA_START]) // 4 - 1
    if index < 0:
        index = 0
    if index >= DMA_LENGTH:
        index = DMA_LENGTH - 1
    return dma_source_byte(st, mem, source + index)
