"""Joypad (P1) and serial port (SB, SC).

Joypad: the caller sets the pressed buttons (``BUTTONS``, bit set = pressed,
A B Select Start Right Left Up Down from bit 0); the program selects the
button or direction row through P1 bits 5 and 4 and reads the row low-active.
A selected line going low requests the joypad interrupt.

Serial: every byte whose transfer is started (SC bit 7) is captured, which is
how test ROMs print their results. With the internal clock a transfer shifts
one bit per falling edge of system counter bit 8 (8192 Hz), so it completes on
the 8th edge; with no partner connected the received byte is 0xFF. With the
external clock it waits forever, as a DMG with no cable does.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gbsynth.emulator.core.state import (
    BUTTONS,
    DIV_BASE,
    EXIT_REQUEST,
    HALTED,
    NEVER,
    P1_SELECT,
    SB,
    SC,
    SERIAL_COUNT,
    SERIAL_DONE,
    SERIAL_LIMIT,
    STOPPED,
)

IF_ADDR = 0xFF0F
INT_SERIAL = 0x08
INT_JOYPAD = 0x10
SERIAL_BIT_PERIOD = 512


@njit(cache=True)
def joypad_lines(st: np.ndarray) -> int:
    """P1 bits 0-3 as the CPU reads them (0 = pressed on a selected row)."""
    select = st[P1_SELECT]
    buttons = st[BUTTONS]
    lines = 0x0F
    if (select & 0x10) == 0:
        lines &= ~(buttons >> 4) & 0x0F
    if (select & 0x20) == 0:
        lines &= ~buttons & 0x0F
    return lines


@njit(cache=True)
def joypad_read(st: np.ndarray) -> int:
    return 0xC0 | st[P1_SELECT] | joypad_lines(st)


@njit(cache=True)
def joypad_write(st: np.ndarray, mem: np.ndarray, value: int) -> None:
    before = joypad_lines(st)
    st[P1_SELECT] = value & 0x30
    if before & ~joypad_lines(st):
        mem[IF_ADDR] |= INT_JOYPAD


@njit(cache=True)
def joypad_set_buttons(st: np.ndarray, mem: np.ndarray, buttons: int) -> None:
    """Called between runs: new button state; a press wakes STOP and may request an interrupt."""
    before = joypad_lines(st)
    newly_pressed = buttons & ~st[BUTTONS]
    st[BUTTONS] = buttons & 0xFF
    if before & ~joypad_lines(st):
        mem[IF_ADDR] |= INT_JOYPAD
    if newly_pressed and st[STOPPED]:
        st[STOPPED] = 0
        st[HALTED] = 0


@njit(cache=True)
def serial_sync(st: np.ndarray, mem: np.ndarray, now: int) -> None:
    if st[SERIAL_DONE] <= now:
        st[SB] = 0xFF
        st[SC] &= 0x7F
        st[SERIAL_DONE] = NEVER
        mem[IF_ADDR] |= INT_SERIAL


@njit(cache=True)
def serial_read(st: np.ndarray, mem: np.ndarray, addr: int, now: int) -> int:
    serial_sync(st, mem, now)
    if addr == 0xFF01:
        return int(st[SB])
    return int(st[SC]) | 0x7E


@njit(cache=True)
def serial_write(
    st: np.ndarray, mem: np.ndarray, serial_out: np.ndarray, addr: int, value: int, now: int
) -> None:
    serial_sync(st, mem, now)
    if addr == 0xFF01:
        st[SB] = value
        return
    st[SC] = value & 0x81
    if (value & 0x80) == 0:
        st[SERIAL_DONE] = NEVER
        return
    count = st[SERIAL_COUNT]
    if count < serial_out.shape[0]:
        serial_out[count] = st[SB]
        st[SERIAL_COUNT] = count + 1
        if count + 1 >= st[SERIAL_LIMIT]:
            st[EXIT_REQUEST] = 1
    if value & 0x01:
        base = st[DIV_BASE]
        edges = (now - base) // SERIAL_BIT_PERIOD + 8
        st[SERIAL_DONE] = base + edges * SERIAL_BIT_PERIOD
    else:
        st[SERIAL_DONE] = NEVER


@njit(cache=True)
def serial_div_reset(st: np.ndarray, now: int) -> None:
    """Before a DIV write: re-anchor a running transfer's remaining bits to the cleared counter."""
    done = st[SERIAL_DONE]
    if done >= NEVER:
        return
    base = st[DIV_BASE]
    left = (done - base) // SERIAL_BIT_PERIOD - (now - base) // SERIAL_BIT_PERIOD
    if (now - base) & (SERIAL_BIT_PERIOD >> 1):
        left -= 1  # the clear makes bit 8 fall: one more shift
    st[SERIAL_DONE] = now + max(left, 0) * SERIAL_BIT_PERIOD
