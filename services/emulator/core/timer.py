"""DIV, TIMA, TMA, TAC: the 16-bit system counter and the timer that counts its edges.

The system counter advances every T-cycle; DIV is its upper byte. TIMA counts
falling edges of one counter bit (picked by TAC) ANDed with the TAC enable bit,
so writes to DIV (which clear the counter) and to TAC can also produce an edge.
When TIMA overflows it reads 0 for one M-cycle, then TMA is loaded and the
timer interrupt requested; a TIMA write in that M-cycle cancels the reload, and
in the reload M-cycle TIMA writes are ignored while TMA writes go through.

Nothing here is ticked per cycle: TIMA is brought up to date ("synced") by
counting edges in closed form when a timer register is accessed or when the
run loop reaches the timer's next event (the next reload). The APU frame
sequencer (falling edges of counter bit 12) is stepped the same lazy way.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gbsynth.emulator.core.apu import apu_frame_sequencer_step
from gbsynth.emulator.core.state import (
    APU_SYNCED,
    DIV_BASE,
    NEVER,
    TAC,
    TIMA,
    TIMA_OVERFLOW,
    TIMA_RELOADED,
    TIMER_SYNCED,
    TMA,
)

IF_ADDR = 0xFF0F
INT_TIMER = 0x04

TIMER_PERIODS = np.array([1024, 16, 64, 256], dtype=np.int64)
"""Cycles between TIMA increments for TAC & 3 (counter bit 9, 3, 5, 7 falling edges)."""
FRAME_SEQUENCER_PERIOD = 8192
"""Falling edges of counter bit 12: 512 Hz."""


@njit(cache=True)
def timer_sync(st: np.ndarray, mem: np.ndarray, target: int) -> None:
    """Bring TIMA up to cycle `target`, applying overflows and reloads on the way."""
    t = st[TIMER_SYNCED]
    if target <= t:
        return
    while True:
        overflow = st[TIMA_OVERFLOW]
        if overflow >= 0:
            reload = overflow + 4
            if reload > target:
                break
            st[TIMA] = st[TMA]
            mem[IF_ADDR] |= INT_TIMER
            st[TIMA_OVERFLOW] = -1
            st[TIMA_RELOADED] = reload
            t = reload
            continue
        tac = st[TAC]
        if (tac & 4) == 0:
            break
        period = TIMER_PERIODS[tac & 3]
        base = st[DIV_BASE]
        edges_before = (t - base) // period
        edges = (target - base) // period - edges_before
        need = 256 - st[TIMA]
        if edges < need:
            st[TIMA] += edges
            break
        st[TIMA] = 0
        t = base + (edges_before + need) * period
        st[TIMA_OVERFLOW] = t
    st[TIMER_SYNCED] = target


@njit(cache=True)
def timer_next_event(st: np.ndarray) -> int:
    """Cycle of the next TMA reload (timer interrupt request); call right after a sync."""
    overflow = st[TIMA_OVERFLOW]
    if overflow >= 0:
        return overflow + 4
    tac = st[TAC]
    if (tac & 4) == 0:
        return NEVER
    period = TIMER_PERIODS[tac & 3]
    base = st[DIV_BASE]
    edges_before = (st[TIMER_SYNCED] - base) // period
    return base + (edges_before + 256 - st[TIMA]) * period + 4


@njit(cache=True)
def _timer_signal(st: np.ndarray, tac: int, now: int) -> bool:
    """The timer's edge detector input: the selected counter bit AND the enable bit."""
    if (tac & 4) == 0:
        return False
    return ((now - st[DIV_BASE]) & (TIMER_PERIODS[tac & 3] >> 1)) != 0


@njit(cache=True)
def _tima_increment(st: np.ndarray, now: int) -> None:
    if st[TIMA] == 0xFF:
        st[TIMA] = 0
        st[TIMA_OVERFLOW] = now
    else:
        st[TIMA] += 1


@njit(cache=True)
def apu_sync(st: np.ndarray, apu: np.ndarray, now: int) -> None:
    """Step the APU frame sequencer for every falling edge of counter bit 12 up to `now`."""
    last = st[APU_SYNCED]
    if now <= last:
        return
    base = st[DIV_BASE]
    steps = (now - base) // FRAME_SEQUENCER_PERIOD - (last - base) // FRAME_SEQUENCER_PERIOD
    for _ in range(steps):
        apu_frame_sequencer_step(apu)
    st[APU_SYNCED] = now


@njit(cache=True)
def timer_read(st: np.ndarray, mem: np.ndarray, addr: int, now: int) -> int:
    if addr == 0xFF04:
        return ((now - st[DIV_BASE]) >> 8) & 0xFF
    timer_sync(st, mem, now)
    if addr == 0xFF05:
        return int(st[TIMA])
    if addr == 0xFF06:
        return int(st[TMA])
    return int(st[TAC]) | 0xF8


@njit(cache=True)
def div_reset(st: np.ndarray, mem: np.ndarray, apu: np.ndarray, now: int) -> None:
    """A DIV write clears the system counter: any set bit falling to 0 is an edge."""
    timer_sync(st, mem, now)
    apu_sync(st, apu, now)
    if _timer_signal(st, st[TAC], now):
        _tima_increment(st, now)
    if (now - st[DIV_BASE]) & (FRAME_SEQUENCER_PERIOD >> 1):
        apu_frame_sequencer_step(apu)
    st[DIV_BASE] = now


@njit(cache=True)
def timer_write(st: np.ndarray, mem: np.ndarray, addr: int, value: int, now: int) -> None:
    """TIMA, TMA or TAC (DIV goes through ``div_reset``, which also concerns APU and serial)."""
    timer_sync(st, mem, now)
    if addr == 0xFF05:
        if st[TIMA_OVERFLOW] >= 0:
            st[TIMA_OVERFLOW] = -1  # written in the overflow M-cycle: no reload, no interrupt
            st[TIMA] = value
        elif st[TIMA_RELOADED] != now:
            st[TIMA] = value
    elif addr == 0xFF06:
        st[TMA] = value
        if st[TIMA_RELOADED] == now:
            st[TIMA] = value
    else:
        old_signal = _timer_signal(st, st[TAC], now)
        st[TAC] = value & 0x07
        if old_signal and not _timer_signal(st, st[TAC], now):
            _tima_increment(st, now)
