"""The lazily-synced timer equals a timer stepped every M-cycle, whatever the register writes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gbsynth.emulator.core import state as S
from gbsynth.emulator.core.apu import new_apu_state
from gbsynth.emulator.core.timer import div_reset, timer_read, timer_sync, timer_write

IF_ADDR = 0xFF0F

writes = st.lists(
    st.tuples(
        st.integers(1, 400),  # M-cycles since the previous write
        st.sampled_from([0xFF04, 0xFF05, 0xFF06, 0xFF07]),
        st.integers(0, 255),
    ),
    max_size=40,
)


def fresh() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    state = S.new_state()
    state[S.DIV_BASE] = -0xABC8
    state[S.TIMA_OVERFLOW] = -1
    state[S.TIMA_RELOADED] = -1
    return state, np.zeros(0x10000, dtype=np.uint8), new_apu_state()


def replay(program, step: bool) -> list[tuple[int, int, int]]:
    state, mem, apu = fresh()
    now = 0
    seen = []
    for gap, addr, value in program:
        target = now + 4 * gap
        if step:
            while now < target:
                now += 4
                timer_sync(state, mem, now)
        now = target
        if addr == 0xFF04:
            div_reset(state, mem, apu, now)
        else:
            timer_write(state, mem, addr, value, now)
        seen.append((timer_read(state, mem, 0xFF05, now), int(mem[IF_ADDR]), now))
        mem[IF_ADDR] = 0
    end = now + 4 * 2000
    if step:
        while now < end:
            now += 4
            timer_sync(state, mem, now)
    seen.append((timer_read(state, mem, 0xFF05, end), int(mem[IF_ADDR]), end))
    return seen


@settings(max_examples=200, deadline=None)
@given(program=writes)
def test_lazy_timer_matches_stepped_timer(program):
    assert replay(program, step=False) == replay(program, step=True)


def test_tima_overflow_reads_zero_then_tma():
    state, mem, apu = fresh()
    div_reset(state, mem, apu, 0)
    timer_write(state, mem, 0xFF06, 0x42, 0)
    timer_write(state, mem, 0xFF05, 0xFF, 0)
    timer_write(state, mem, 0xFF07, 0x05, 0)  # 262144 Hz: an increment every 16 cycles
    assert timer_read(state, mem, 0xFF05, 12) == 0xFF
    assert timer_read(state, mem, 0xFF05, 16) == 0x00  # overflowed: reads 0 for an M-cycle
    assert mem[IF_ADDR] == 0
    assert timer_read(state, mem, 0xFF05, 20) == 0x42  # then TMA, and the interrupt
    assert mem[IF_ADDR] == 0x04
