"""PPU interrupt requests: the lazy sync (with its frame skipping) equals stepping every M-cycle."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gbsynth.emulator.core import state as S
from gbsynth.emulator.core.ppu import (
    FRAME_DOTS,
    ppu_read,
    ppu_schedule,
    ppu_sync,
    ppu_write,
)

IF_ADDR = 0xFF0F

register_writes = st.lists(
    st.tuples(
        st.one_of(st.integers(1, 600), st.integers(30_000, 60_000)),  # M-cycles between writes
        st.sampled_from([0xFF40, 0xFF41, 0xFF43, 0xFF45]),
        st.integers(0, 255),
    ),
    max_size=12,
)


def fresh() -> tuple[np.ndarray, np.ndarray]:
    state = S.new_state()
    state[S.LCDC] = 0x91
    state[S.LCD_BASE] = -(FRAME_DOTS + 1000)
    mem = np.zeros(0x10000, dtype=np.uint8)
    ppu_schedule(state, mem)
    return state, mem


def replay(program, step: bool) -> list[tuple[int, int]]:
    state, mem = fresh()
    now = 0
    seen = []
    for gap, addr, value in program:
        target = now + 4 * gap
        if step:
            while now < target:
                now += 4
                ppu_sync(state, mem, now)
        now = target
        if addr == 0xFF40:
            value = (value & 0x80) | 0x11  # toggle the LCD, keep the rest plain
        ppu_write(state, mem, addr, value, now)
        seen.append((int(mem[IF_ADDR]) & 0x03, ppu_read(state, mem, 0xFF41, now)))
        mem[IF_ADDR] = 0
    return seen


@settings(max_examples=60, deadline=None)
@given(program=register_writes)
def test_lazy_ppu_interrupts_match_stepped(program):
    assert replay(program, step=False) == replay(program, step=True)


def test_schedule_points_at_the_next_request():
    state, mem = fresh()
    ppu_write(state, mem, 0xFF41, 0x08, 0)  # mode 0 (HBlank) interrupt on
    mem[IF_ADDR] = 0
    nxt = int(state[S.PPU_NEXT])
    ppu_sync(state, mem, nxt - 1)
    assert mem[IF_ADDR] & 0x02 == 0
    ppu_sync(state, mem, nxt)
    assert mem[IF_ADDR] & 0x02
