"""The memory bus: address decoding, I/O registers, the capture of APU writes, scheduling.

``read8``/``write8`` first try the page table (ROM banks, WRAM, plain cartridge
RAM: one load and a compare); everything else goes to the slow path, which
decodes the address and brings the lazily-synced block it touches up to date
(`now` is the T-cycle of the access: the end of the M-cycle it happens in).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gbsynth.emulator.core.apu import apu_read, apu_write
from gbsynth.emulator.core.cartridge import cart_ram_read, cart_ram_write, cart_write
from gbsynth.emulator.core.dma import (
    dma_conflict_byte,
    dma_end,
    dma_oam_blocked,
    dma_running,
    dma_sync,
    dma_write,
)
from gbsynth.emulator.core.io import (
    joypad_read,
    joypad_write,
    serial_div_reset,
    serial_read,
    serial_sync,
    serial_write,
)
from gbsynth.emulator.core.ppu import (
    oam_blocked,
    oam_write_blocked,
    ppu_read,
    ppu_schedule,
    ppu_sync,
    ppu_write,
    vram_blocked,
    vram_write_blocked,
)
from gbsynth.emulator.core.state import (
    CAPTURE_COUNT,
    CAPTURE_LIMIT,
    DMA_REG,
    END_CYCLE,
    EXIT_REQUEST,
    LAST_IO_WRITE,
    LY_CACHE_UNTIL,
    LY_CACHE_VALUE,
    NEXT_EVENT,
    PPU_NEXT,
    ROM0_BANK,
    ROM_BASE,
    ROMX_BANK,
    RPAGE,
    SERIAL_DONE,
    SPRITE_TABLE_VALID,
    WATCHDOG_SPAN,
    WPAGE,
)
from gbsynth.emulator.core.timer import (
    apu_sync,
    div_reset,
    timer_next_event,
    timer_read,
    timer_sync,
    timer_write,
)

IF_ADDR = 0xFF0F
IE_ADDR = 0xFFFF

# Bits that read back as 1 in FF00-FF7F where no register logic applies (data,
# not branches): unmapped DMG I/O reads 0xFF, mapped plain registers read as stored.
IO_READ_OR = np.full(0x80, 0xFF, dtype=np.int64)
IO_READ_OR[0x47:0x4C] = 0x00  # BGP OBP0 OBP1 WY WX


@njit(cache=True)
def sync_all(st: np.ndarray, mem: np.ndarray, now: int) -> None:
    """Bring every lazily-updated block up to `now` (their IF requests included)."""
    timer_sync(st, mem, now)
    ppu_sync(st, mem, now)
    if st[PPU_NEXT] <= now:
        ppu_schedule(st, mem)
    serial_sync(st, mem, now)
    dma_sync(st, mem, now)


@njit(cache=True)
def schedule(st: np.ndarray, now: int) -> None:
    """Recompute NEXT_EVENT: the earliest cycle the run loop must look at the blocks again."""
    nxt = st[END_CYCLE]
    t = timer_next_event(st)
    if t < nxt:
        nxt = t
    if st[PPU_NEXT] < nxt:
        nxt = st[PPU_NEXT]
    if st[SERIAL_DONE] < nxt:
        nxt = st[SERIAL_DONE]
    t = dma_end(st)
    if t < nxt:
        nxt = t
    span = st[WATCHDOG_SPAN]
    if span > 0:
        t = st[LAST_IO_WRITE] + span
        if t < nxt:
            nxt = t
    if st[EXIT_REQUEST]:
        nxt = now
    st[NEXT_EVENT] = nxt


@njit(cache=True, inline="always")
def io_read(st: np.ndarray, mem: np.ndarray, apu: np.ndarray, addr: int, now: int) -> int:
    low = addr & 0xFF
    if low < 0x10:
        if low == 0x00:
            return joypad_read(st)
        if low == 0x01 or low == 0x02:
            return serial_read(st, mem, addr, now)
        if 0x04 <= low <= 0x07:
            return timer_read(st, mem, addr, now)
        if low == 0x0F:
            sync_all(st, mem, now)
            return 0xE0 | int(mem[IF_ADDR])
        return 0xFF
    if low < 0x40:
        apu_sync(st, apu, now)
        return apu_read(apu, addr, now)
    if low < 0x46:
        return ppu_read(st, mem, addr, now)
    if low == 0x46:
        return int(st[DMA_REG])
    if low < 0x80:
        return int(mem[addr]) | int(IO_READ_OR[low])
    return int(mem[addr])  # HRAM, IE


@njit(cache=True)
def read_slow(st: np.ndarray, mem: np.ndarray, apu: np.ndarray, addr: int, now: int) -> int:
    if addr >= 0xFF00:
        return io_read(st, mem, apu, addr, now)  # I/O first: the most frequent slow read
    if dma_running(st):
        dma_sync(st, mem, now)
        if addr < 0xFE00:
            conflict = dma_conflict_byte(st, mem, addr, now)
            if conflict >= 0:
                return conflict
        elif dma_oam_blocked(st, now):
            return 0xFF
    if addr < 0x8000:
        if addr < 0x4000:
            return int(mem[ROM_BASE + st[ROM0_BANK] * 0x4000 + addr])
        return int(mem[ROM_BASE + st[ROMX_BANK] * 0x4000 + addr - 0x4000])
    if addr < 0xA000:
        if vram_blocked(st, mem, now):
            return 0xFF
        return int(mem[addr])
    if addr < 0xC000:
        return cart_ram_read(st, mem, addr)
    if addr < 0xE000:
        return int(mem[addr])
    if addr < 0xFE00:
        return int(mem[addr - 0x2000])
    if oam_blocked(st, mem, now):
        return 0xFF
    if addr < 0xFEA0:
        return int(mem[addr])
    return 0x00  # unusable area on a DMG


@njit(cache=True, inline="always")
def read8(st: np.ndarray, mem: np.ndarray, apu: np.ndarray, addr: int, now: int) -> int:
    offset = st[RPAGE + (addr >> 12)]
    if offset >= 0:
        return int(mem[offset + addr])
    if addr >= 0xFF80:
        return int(mem[addr])  # HRAM and IE: plain memory, reachable even during OAM DMA
    if addr == 0xFF44 and now < st[LY_CACHE_UNTIL]:
        return int(st[LY_CACHE_VALUE])  # LY polled within a line
    return read_slow(st, mem, apu, addr, now)


@njit(cache=True)
def io_write(
    st: np.ndarray,
    mem: np.ndarray,
    apu: np.ndarray,
    cap_cycles: np.ndarray,
    cap_regs: np.ndarray,
    cap_values: np.ndarray,
    serial_out: np.ndarray,
    addr: int,
    value: int,
    now: int,
) -> None:
    low = addr & 0xFF
    if 0x80 <= low < 0xFF:
        mem[addr] = value  # HRAM: not I/O for the watchdog
        return
    st[LAST_IO_WRITE] = now
    if low == 0xFF:
        mem[IE_ADDR] = value
        return
    if 0x10 <= low < 0x40:
        n = st[CAPTURE_COUNT]
        if n < cap_cycles.shape[0]:
            cap_cycles[n] = now
            cap_regs[n] = addr
            cap_values[n] = value
            st[CAPTURE_COUNT] = n + 1
            if n + 1 >= st[CAPTURE_LIMIT]:
                st[EXIT_REQUEST] = 1
                st[NEXT_EVENT] = now
        apu_sync(st, apu, now)
        apu_write(apu, addr, value, now)
        return
    if low == 0x00:
        joypad_write(st, mem, value)
    elif low == 0x01 or low == 0x02:
        serial_write(st, mem, serial_out, addr, value, now)
        schedule(st, now)
    elif low == 0x04:
        apu_sync(st, apu, now)
        serial_div_reset(st, now)
        div_reset(st, mem, apu, now)
        schedule(st, now)
    elif 0x05 <= low <= 0x07:
        timer_write(st, mem, addr, value, now)
        schedule(st, now)
    elif low == 0x0F:
        sync_all(st, mem, now)
        mem[IF_ADDR] = value & 0x1F
    elif low == 0x46:
        dma_write(st, mem, value, now)
        schedule(st, now)
    elif 0x40 <= low < 0x4C:
        ppu_write(st, mem, addr, value, now)
        schedule(st, now)
    # FF50 (boot ROM off) and the unmapped registers take nothing.


@njit(cache=True)
def write_slow(
    st: np.ndarray,
    mem: np.ndarray,
    apu: np.ndarray,
    cap_cycles: np.ndarray,
    cap_regs: np.ndarray,
    cap_values: np.ndarray,
    serial_out: np.ndarray,
    addr: int,
    value: int,
    now: int,
) -> None:
    if dma_running(st):
        dma_sync(st, mem, now)
        if 0xFE00 <= addr < 0xFF00 and dma_oam_blocked(st, now):
            return
    if addr < 0x8000:
        cart_write(st, addr, value, now)
        return
    if addr < 0xA000:
        if not vram_write_blocked(st, mem, now):
            mem[addr] = value
        return
    if addr < 0xC000:
        cart_ram_write(st, mem, addr, value, now)
        return
    if addr < 0xE000:
        mem[addr] = value
        return
    if addr < 0xFE00:
        mem[addr - 0x2000] = value
        return
    if addr < 0xFF00:
        if addr < 0xFEA0 and not oam_write_blocked(st, mem, now):
            ppu_sync(st, mem, now)  # lines so far saw the old sprites
            mem[addr] = value
            st[SPRITE_TABLE_VALID] = 0
        return
    io_write(st, mem, apu, cap_cycles, cap_regs, cap_values, serial_out, addr, value, now)


@njit(cache=True, inline="always")
def write8(
    st: np.ndarray,
    mem: np.ndarray,
    apu: np.ndarray,
    cap_cycles: np.ndarray,
    cap_regs: np.ndarray,
    cap_values: np.ndarray,
    serial_out: np.ndarray,
    addr: int,
    value: int,
    now: int,
) -> None:
    offset = st[WPAGE + (addr >> 12)]
    if offset >= 0:
        mem[offset + addr] = value
        return
    if 0xFF80 <= addr < 0xFFFF:
        mem[addr] = value  # HRAM (IE writes count as I/O for the watchdog: slow path)
        return
    write_slow(st, mem, apu, cap_cycles, cap_regs, cap_values, serial_out, addr, value, now)
