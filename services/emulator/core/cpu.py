"""The SM83 CPU and the run loop that drives the whole machine.

One jitted function runs instructions until something makes it return: the
requested number of cycles is done, a capture buffer is almost full, a
breakpoint or a sentinel return address is reached, or the watchdog sees a
hang. Registers live in local variables while it runs.

Timing: ``now`` (T-cycles) advances by 4 before each memory access of an
instruction and by 4 for each internal M-cycle, so every access happens at the
exact M-cycle the hardware performs it in (blargg's mem_timing and mooneye's
*_timing tests check this). The timer, PPU, serial port and OAM DMA are not
ticked: they are synced to ``now`` when their registers are touched, and the
loop looks at them again only when ``now`` reaches ``NEXT_EVENT``, the earliest
cycle at which one of them can request an interrupt. While the CPU is halted
the loop jumps straight to that cycle.

Interrupts are sampled once per instruction, at the end of its opcode fetch
M-cycle (which then becomes the first of the dispatch's 5 M-cycles); the
dispatch re-reads IE after pushing the high byte of PC, so a push that
overwrites IE can cancel it, which jumps to 0x0000. The NRT (reference
counting) is off in the run loop: it passes the same arrays to every access,
and counting references there cost 8x in speed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gbsynth.emulator.core.bus import read8, schedule, sync_all, write8
from gbsynth.emulator.core.opcodes import ILLEGAL_OPCODES, INTERRUPT_VECTORS
from gbsynth.emulator.core.ppu import lcd_on
from gbsynth.emulator.core.state import (
    BREAK_ON_LD_B_B,
    CAPTURE_COUNT,
    CAPTURE_LIMIT,
    EI_PENDING,
    END_CYCLE,
    EXIT_BREAKPOINT,
    EXIT_CAPTURE_FULL,
    EXIT_END,
    EXIT_HANG_HALT,
    EXIT_HANG_LOCKED,
    EXIT_HANG_NO_IO,
    EXIT_HANG_STOP,
    EXIT_REQUEST,
    EXIT_RETURNED,
    EXIT_SERIAL_FULL,
    HALT_BUG,
    HALTED,
    IDLE_SKIP,
    IME,
    LAST_IO_WRITE,
    LOCKED,
    NEVER,
    NEXT_EVENT,
    NOW,
    PC,
    R_A,
    R_B,
    R_C,
    R_D,
    R_E,
    R_F,
    R_H,
    R_L,
    SENTINEL_PC,
    SERIAL_DONE,
    SP,
    STAT_ENABLE,
    STOPPED,
    TAC,
    TIMA_OVERFLOW,
    WATCHDOG_SPAN,
)
from gbsynth.emulator.core.timer import div_reset

IF_ADDR = 0xFF0F
IE_ADDR = 0xFFFF
FZ = 0x80
FN = 0x40
FH = 0x20
FC = 0x10


@njit(cache=True)
def handle_events(st: np.ndarray, mem: np.ndarray, now: int) -> int:
    """At NEXT_EVENT: sync every block, decide whether the run must stop, reschedule."""
    sync_all(st, mem, now)
    reason = 0
    if st[EXIT_REQUEST]:
        st[EXIT_REQUEST] = 0
        if st[CAPTURE_COUNT] >= st[CAPTURE_LIMIT]:
            reason = EXIT_CAPTURE_FULL
        else:
            reason = EXIT_SERIAL_FULL
    elif now >= st[END_CYCLE]:
        reason = EXIT_END
    elif st[WATCHDOG_SPAN] > 0 and now - st[LAST_IO_WRITE] >= st[WATCHDOG_SPAN]:
        reason = EXIT_HANG_STOP if st[STOPPED] else EXIT_HANG_NO_IO
    schedule(st, now)
    return reason


@njit(cache=True)
def can_wake(st: np.ndarray, mem: np.ndarray) -> bool:
    """Can any interrupt enabled in IE still be requested while the CPU sleeps?

    A program waiting for the joypad interrupt is waiting for input, not hung: the
    caller may press a button between runs (the no-I/O watchdog still applies).
    """
    enabled = mem[IE_ADDR] & 0x1F
    if enabled & 0x10:
        return True
    if lcd_on(st):
        if enabled & 0x01:
            return True
        if (enabled & 0x02) and st[STAT_ENABLE]:
            return True
    if (enabled & 0x04) and ((st[TAC] & 4) or st[TIMA_OVERFLOW] >= 0):
        return True
    if (enabled & 0x08) and st[SERIAL_DONE] < NEVER:
        return True
    return False


@njit(cache=True, inline="always")
def alu(a: int, f: int, op: int, v: int) -> tuple[int, int]:
    """The eight 8-bit ALU operations on A (ADD ADC SUB SBC AND XOR OR CP)."""
    if op == 0:
        res = a + v
        f = (FH if (a & 0xF) + (v & 0xF) > 0xF else 0) | (FC if res > 0xFF else 0)
        a = res & 0xFF
    elif op == 1:
        cy = (f >> 4) & 1
        res = a + v + cy
        f = (FH if (a & 0xF) + (v & 0xF) + cy > 0xF else 0) | (FC if res > 0xFF else 0)
        a = res & 0xFF
    elif op == 2:
        res = a - v
        f = FN | (FH if (a & 0xF) < (v & 0xF) else 0) | (FC if res < 0 else 0)
        a = res & 0xFF
    elif op == 3:
        cy = (f >> 4) & 1
        res = a - v - cy
        f = FN | (FH if (a & 0xF) < (v & 0xF) + cy else 0) | (FC if res < 0 else 0)
        a = res & 0xFF
    elif op == 4:
        a &= v
        f = FH
    elif op == 5:
        a ^= v
        f = 0
    elif op == 6:
        a |= v
        f = 0
    else:
        res = a - v
        f = FN | (FH if (a & 0xF) < (v & 0xF) else 0) | (FC if res < 0 else 0)
        return a, f | (FZ if (res & 0xFF) == 0 else 0)
    return a, f | (FZ if a == 0 else 0)


@njit(cache=True, inline="always")
def rotate(kind: int, v: int, f: int) -> tuple[int, int]:
    """CB-prefixed shifts: RLC RRC RL RR SLA SRA SWAP SRL; returns (value, flags)."""
    if kind == 0:
        c = v >> 7
        v = ((v << 1) | c) & 0xFF
    elif kind == 1:
        c = v & 1
        v = (v >> 1) | (c << 7)
    elif kind == 2:
        c = v >> 7
        v = ((v << 1) | ((f >> 4) & 1)) & 0xFF
    elif kind == 3:
        c = v & 1
        v = (v >> 1) | (((f >> 4) & 1) << 7)
    elif kind == 4:
        c = v >> 7
        v = (v << 1) & 0xFF
    elif kind == 5:
        c = v & 1
        v = (v >> 1) | (v & 0x80)
    elif kind == 6:
        c = 0
        v = ((v << 4) | (v >> 4)) & 0xFF
    else:
        c = v & 1
        v = v >> 1
    return v, (FZ if v == 0 else 0) | (c << 4)


@njit(cache=True, _nrt=False, nogil=True)  # Kafka client threads run meanwhile
def run(
    st: np.ndarray,
    mem: np.ndarray,
    apu: np.ndarray,
    cap_cycles: np.ndarray,
    cap_regs: np.ndarray,
    cap_values: np.ndarray,
    serial_out: np.ndarray,
) -> int:
    """Run until END_CYCLE or another exit reason; returns the reason (state.EXIT_*)."""
    if st[LOCKED]:
        return EXIT_HANG_LOCKED
    b = st[R_B]
    c = st[R_C]
    d = st[R_D]
    e = st[R_E]
    h = st[R_H]
    l = st[R_L]
    f = st[R_F]
    a = st[R_A]
    sp = st[SP]
    pc = st[PC]
    ime = st[IME]
    ei_pending = st[EI_PENDING]
    halted = st[HALTED]
    halt_bug = st[HALT_BUG]
    now = st[NOW]
    break_on_ld_b_b = st[BREAK_ON_LD_B_B]
    sentinel = st[SENTINEL_PC]
    reason = 0
    schedule(st, now)

    while True:
        next_event = st[NEXT_EVENT]
        if now + 4 >= next_event:
            if now >= next_event:
                reason = handle_events(st, mem, now)
                if reason:
                    break
            if now + 4 >= st[NEXT_EVENT]:
                # Interrupts are sampled at the end of the next opcode fetch's M-cycle.
                sync_all(st, mem, now + 4)
        pending = mem[IF_ADDR] & mem[IE_ADDR] & 0x1F
        if pending | halted | ei_pending:
            # The rare path: HALT, the EI delay, interrupt requests.
            if halted:
                stopped = st[STOPPED]
                if pending == 0 or stopped:
                    # STOP ignores interrupts: only a button press (set_buttons) resumes it,
                    # so it waits like a HALT until the run ends or the watchdog fires.
                    if not stopped and not can_wake(st, mem):
                        reason = EXIT_HANG_HALT
                        break
                    # Sleep until the M-cycle whose end sees the next event.
                    target = st[NEXT_EVENT] - 4
                    if target > now and st[IDLE_SKIP]:
                        now += (target - now + 3) & ~3
                    else:
                        now += 4
                    continue
                halted = 0
            ime_now = ime
            if ei_pending:
                ei_pending = 0
                ime = 1
            if pending and ime_now:
                # Interrupt dispatch: 2 idle M-cycles, push PC (IE re-read in between), jump.
                ime = 0
                now += 8
                sp = (sp - 1) & 0xFFFF
                now += 4
                write8(st, mem, apu, cap_cycles, cap_regs, cap_values, serial_out, sp, pc >> 8, now)
                pending = mem[IF_ADDR] & mem[IE_ADDR] & 0x1F
                sp = (sp - 1) & 0xFFFF
                now += 4
                write8(
                    st, mem, apu, cap_cycles, cap_regs, cap_values, serial_out, sp, pc & 0xFF, now
                )
                if pending == 0:
                    pc = 0
                else:
                    bit = 0
                    while not (pending >> bit) & 1:
                        bit += 1
                    mem[IF_ADDR] &= ~(1 << bit) & 0xFF
                    pc = INTERRUPT_VECTORS[bit]
                now += 4
                continue
        else:
            ime_now = ime

        # ---- fetch (after HALT with IME=0 and a pending interrupt, PC does not advance) ----
        now += 4
        op = read8(st, mem, apu, pc, now)
        pc = (pc + 1 - halt_bug) & 0xFFFF
        halt_bug = 0

        quadrant = op >> 6
        if quadrant == 1:
            # LD r,r' (and HALT at 0x76)
            if op == 0x76:
                if now >= st[NEXT_EVENT]:
                    sync_all(st, mem, now)
                pending = mem[IF_ADDR] & mem[IE_ADDR] & 0x1F
                if pending:
                    if ime == 0:
                        halt_bug = 1  # the next opcode byte is read twice
                    elif ime_now == 0:
                        pc = (pc - 1) & 0xFFFF  # EI; HALT with a pending interrupt: HALT again
                else:
                    halted = 1
                continue
            src = op & 7
            if src == 0:
                v = b
            elif src == 1:
                v = c
            elif src == 2:
                v = d
            elif src == 3:
                v = e
            elif src == 4:
                v = h
            elif src == 5:
                v = l
            elif src == 6:
                now += 4
                v = read8(st, mem, apu, (h << 8) | l, now)
            else:
                v = a
            dst = (op >> 3) & 7
            if dst == 0:
                b = v
                if op == 0x40 and break_on_ld_b_b:
                    reason = EXIT_BREAKPOINT
                    break
            elif dst == 1:
                c = v
            elif dst == 2:
                d = v
            elif dst == 3:
                e = v
            elif dst == 4:
                h = v
            elif dst == 5:
                l = v
            elif dst == 6:
                now += 4
                write8(
                    st,
                    mem,
                    apu,
                    cap_cycles,
                    cap_regs,
                    cap_values,
                    serial_out,
                    (h << 8) | l,
                    v,
                    now,
                )
            else:
                a = v
            continue

        if quadrant == 2:
            # ALU A,r
            src = op & 7
            if src == 0:
                v = b
            elif src == 1:
                v = c
            elif src == 2:
                v = d
            elif src == 3:
                v = e
            elif src == 4:
                v = h
            elif src == 5:
                v = l
            elif src == 6:
                now += 4
                v = read8(st, mem, apu, (h << 8) | l, now)
            else:
                v = a
            a, f = alu(a, f, (op >> 3) & 7, v)
            continue

        if quadrant == 0:
            low = op & 7
            y = (op >> 3) & 7
            if low == 4 or low == 5 or low == 6:
                # INC r / DEC r / LD r,n
                if low == 6:
                    now += 4
                    v = read8(st, mem, apu, pc, now)
                    pc = (pc + 1) & 0xFFFF
                else:
                    if y == 0:
                        v = b
                    elif y == 1:
                        v = c
                    elif y == 2:
                        v = d
                    elif y == 3:
                        v = e
                    elif y == 4:
                        v = h
                    elif y == 5:
                        v = l
                    elif y == 6:
                        now += 4
                        v = read8(st, mem, apu, (h << 8) | l, now)
                    else:
                        v = a
                    if low == 4:
                        res = (v + 1) & 0xFF
                        f = (f & FC) | (FZ if res == 0 else 0) | (FH if (v & 0xF) == 0xF else 0)
                    else:
                        res = (v - 1) & 0xFF
                        f = (f & FC) | FN | (FZ if res == 0 else 0) | (FH if (v & 0xF) == 0 else 0)
                    v = res
                if y == 0:
                    b = v
                elif y == 1:
                    c = v
                elif y == 2:
                    d = v
                elif y == 3:
                    e = v
                elif y == 4:
                    h = v
                elif y == 5:
                    l = v
                elif y == 6:
                    now += 4
                    write8(
                        st,
                        mem,
                        apu,
                        cap_cycles,
                        cap_regs,
                        cap_values,
                        serial_out,
                        (h << 8) | l,
                        v,
                        now,
                    )
                else:
                    a = v
                continue
            if low == 3:
                # INC rr / DEC rr
                pair = y >> 1
                if pair == 0:
                    rr = (b << 8) | c
                elif pair == 1:
                    rr = (d << 8) | e
                elif pair == 2:
                    rr = (h << 8) | l
                else:
                    rr = sp
                rr = (rr + (1 if (y & 1) == 0 else -1)) & 0xFFFF
                now += 4
                if pair == 0:
                    b = rr >> 8
                    c = rr & 0xFF
                elif pair == 1:
                    d = rr >> 8
                    e = rr & 0xFF
                elif pair == 2:
                    h = rr >> 8
                    l = rr & 0xFF
                else:
                    sp = rr
                continue
            if low == 1:
                pair = y >> 1
                if (y & 1) == 0:
                    # LD rr,nn
                    now += 4
                    lo = read8(st, mem, apu, pc, now)
                    now += 4
                    hi = read8(st, mem, apu, (pc + 1) & 0xFFFF, now)
                    pc = (pc + 2) & 0xFFFF
                    if pair == 0:
                        b = hi
                        c = lo
                    elif pair == 1:
                        d = hi
                        e = lo
                    elif pair == 2:
                        h = hi
                        l = lo
                    else:
                        sp = (hi << 8) | lo
                else:
                    # ADD HL,rr
                    if pair == 0:
                        rr = (b << 8) | c
                    elif pair == 1:
                        rr = (d << 8) | e
                    elif pair == 2:
                        rr = (h << 8) | l
                    else:
                        rr = sp
                    hl = (h << 8) | l
                    res = hl + rr
                    f = (
                        (f & FZ)
                        | (FH if (hl & 0xFFF) + (rr & 0xFFF) > 0xFFF else 0)
                        | (FC if res > 0xFFFF else 0)
                    )
                    res &= 0xFFFF
                    h = res >> 8
                    l = res & 0xFF
                    now += 4
                continue
            if low == 2:
                # LD (BC)/(DE)/(HL+)/(HL-),A and LD A,(...)
                pair = y >> 1
                if pair == 0:
                    addr = (b << 8) | c
                elif pair == 1:
                    addr = (d << 8) | e
                else:
                    addr = (h << 8) | l
                    hl = (addr + (1 if pair == 2 else -1)) & 0xFFFF
                    h = hl >> 8
                    l = hl & 0xFF
                now += 4
                if (y & 1) == 0:
                    write8(st, mem, apu, cap_cycles, cap_regs, cap_values, serial_out, addr, a, now)
                else:
                    a = read8(st, mem, apu, addr, now)
                continue
            if low == 7:
                if y == 0:  # RLCA
                    cy = a >> 7
                    a = ((a << 1) | cy) & 0xFF
                    f = cy << 4
                elif y == 1:  # RRCA
                    cy = a & 1
                    a = (a >> 1) | (cy << 7)
                    f = cy << 4
                elif y == 2:  # RLA
                    cy = a >> 7
                    a = ((a << 1) | ((f >> 4) & 1)) & 0xFF
                    f = cy << 4
                elif y == 3:  # RRA
                    cy = a & 1
                    a = (a >> 1) | (((f >> 4) & 1) << 7)
                    f = cy << 4
                elif y == 4:  # DAA
                    cy = f & FC
                    if (f & FN) == 0:
                        if cy or a > 0x99:
                            a += 0x60
                            cy = FC
                        if (f & FH) or (a & 0x0F) > 0x09:
                            a += 0x06
                    else:
                        if cy:
                            a -= 0x60
                        if f & FH:
                            a -= 0x06
                    a &= 0xFF
                    f = (FZ if a == 0 else 0) | (f & FN) | cy
                elif y == 5:  # CPL
                    a ^= 0xFF
                    f |= FN | FH
                elif y == 6:  # SCF
                    f = (f & FZ) | FC
                else:  # CCF
                    f = (f & FZ) | ((f & FC) ^ FC)
                continue
            # low == 0: NOP, LD (nn),SP, STOP, JR, JR cc
            if y == 0:
                continue
            if y == 1:
                now += 4
                lo = read8(st, mem, apu, pc, now)
                now += 4
                hi = read8(st, mem, apu, (pc + 1) & 0xFFFF, now)
                pc = (pc + 2) & 0xFFFF
                addr = (hi << 8) | lo
                now += 4
                write8(
                    st, mem, apu, cap_cycles, cap_regs, cap_values, serial_out, addr, sp & 0xFF, now
                )
                now += 4
                write8(
                    st,
                    mem,
                    apu,
                    cap_cycles,
                    cap_regs,
                    cap_values,
                    serial_out,
                    (addr + 1) & 0xFFFF,
                    sp >> 8,
                    now,
                )
                continue
            if y == 2:
                # STOP: the DMG stops its clocks (DIV is cleared) until a button is pressed.
                pc = (pc + 1) & 0xFFFF
                div_reset(st, mem, apu, now)
                schedule(st, now)
                st[STOPPED] = 1
                halted = 1
                continue
            now += 4
            offset = read8(st, mem, apu, pc, now)
            pc = (pc + 1) & 0xFFFF
            if y == 3:
                taken = True
            else:
                cc = y - 4
                flag = (f >> 7) & 1 if cc < 2 else (f >> 4) & 1
                taken = flag == (cc & 1)
            if taken:
                now += 4
                pc = (pc + offset - (offset & 0x80) * 2) & 0xFFFF
            continue

        # ---- quadrant 3: 0xC0-0xFF, decoded by the low 3 bits, then y ----
        low = op & 7
        y = (op >> 3) & 7
        if low == 0:
            if y < 4:
                # RET cc: the condition is checked in an internal M-cycle
                flag = (f >> 7) & 1 if y < 2 else (f >> 4) & 1
                now += 4
                if flag == (y & 1):
                    now += 4
                    lo = read8(st, mem, apu, sp, now)
                    now += 4
                    hi = read8(st, mem, apu, (sp + 1) & 0xFFFF, now)
                    sp = (sp + 2) & 0xFFFF
                    pc = (hi << 8) | lo
                    now += 4
                    if pc == sentinel:
                        reason = EXIT_RETURNED
                        break
            elif y == 4 or y == 6:
                # LDH (n),A / LDH A,(n)
                now += 4
                n = read8(st, mem, apu, pc, now)
                pc = (pc + 1) & 0xFFFF
                now += 4
                if y == 4:
                    write8(
                        st,
                        mem,
                        apu,
                        cap_cycles,
                        cap_regs,
                        cap_values,
                        serial_out,
                        0xFF00 | n,
                        a,
                        now,
                    )
                else:
                    a = read8(st, mem, apu, 0xFF00 | n, now)
            else:
                # ADD SP,e (y=5) / LD HL,SP+e (y=7)
                now += 4
                offset = read8(st, mem, apu, pc, now)
                pc = (pc + 1) & 0xFFFF
                res = (sp + offset - (offset & 0x80) * 2) & 0xFFFF
                f = (FH if (sp & 0xF) + (offset & 0xF) > 0xF else 0) | (
                    FC if (sp & 0xFF) + offset > 0xFF else 0
                )
                now += 4
                if y == 5:
                    now += 4
                    sp = res
                else:
                    h = res >> 8
                    l = res & 0xFF
            continue
        if low == 1:
            if (y & 1) == 0:
                # POP rr
                now += 4
                lo = read8(st, mem, apu, sp, now)
                now += 4
                hi = read8(st, mem, apu, (sp + 1) & 0xFFFF, now)
                sp = (sp + 2) & 0xFFFF
                pair = y >> 1
                if pair == 0:
                    b = hi
                    c = lo
                elif pair == 1:
                    d = hi
                    e = lo
                elif pair == 2:
                    h = hi
                    l = lo
                else:
                    a = hi
                    f = lo & 0xF0
            elif y <= 3:
                # RET / RETI
                now += 4
                lo = read8(st, mem, apu, sp, now)
                now += 4
                hi = read8(st, mem, apu, (sp + 1) & 0xFFFF, now)
                sp = (sp + 2) & 0xFFFF
                pc = (hi << 8) | lo
                now += 4
                if y == 3:
                    ime = 1
                    ei_pending = 0
                if pc == sentinel:
                    reason = EXIT_RETURNED
                    break
            elif y == 5:
                pc = (h << 8) | l  # JP HL
            else:
                now += 4  # LD SP,HL
                sp = (h << 8) | l
            continue
        if low == 2:
            if y < 4:
                # JP cc,nn
                now += 4
                lo = read8(st, mem, apu, pc, now)
                now += 4
                hi = read8(st, mem, apu, (pc + 1) & 0xFFFF, now)
                pc = (pc + 2) & 0xFFFF
                flag = (f >> 7) & 1 if y < 2 else (f >> 4) & 1
                if flag == (y & 1):
                    now += 4
                    pc = (hi << 8) | lo
            elif y == 4 or y == 6:
                # LD (C),A / LD A,(C)
                now += 4
                if y == 4:
                    write8(
                        st,
                        mem,
                        apu,
                        cap_cycles,
                        cap_regs,
                        cap_values,
                        serial_out,
                        0xFF00 | c,
                        a,
                        now,
                    )
                else:
                    a = read8(st, mem, apu, 0xFF00 | c, now)
            else:
                # LD (nn),A / LD A,(nn)
                now += 4
                lo = read8(st, mem, apu, pc, now)
                now += 4
                hi = read8(st, mem, apu, (pc + 1) & 0xFFFF, now)
                pc = (pc + 2) & 0xFFFF
                now += 4
                if y == 5:
                    write8(
                        st,
                        mem,
                        apu,
                        cap_cycles,
                        cap_regs,
                        cap_values,
                        serial_out,
                        (hi << 8) | lo,
                        a,
                        now,
                    )
                else:
                    a = read8(st, mem, apu, (hi << 8) | lo, now)
            continue
        if low == 6:
            # ALU A,n
            now += 4
            v = read8(st, mem, apu, pc, now)
            pc = (pc + 1) & 0xFFFF
            a, f = alu(a, f, y, v)
            continue
        if low == 7:
            # RST
            now += 4
            sp = (sp - 1) & 0xFFFF
            now += 4
            write8(st, mem, apu, cap_cycles, cap_regs, cap_values, serial_out, sp, pc >> 8, now)
            sp = (sp - 1) & 0xFFFF
            now += 4
            write8(st, mem, apu, cap_cycles, cap_regs, cap_values, serial_out, sp, pc & 0xFF, now)
            pc = op & 0x38
            continue
        if ILLEGAL_OPCODES[op]:
            st[LOCKED] = 1
            pc = (pc - 1) & 0xFFFF
            reason = EXIT_HANG_LOCKED
            break
        if low == 5 and (y & 1) == 0:
            # PUSH rr
            pair = y >> 1
            if pair == 0:
                hi = b
                lo = c
            elif pair == 1:
                hi = d
                lo = e
            elif pair == 2:
                hi = h
                lo = l
            else:
                hi = a
                lo = f
            now += 4
            sp = (sp - 1) & 0xFFFF
            now += 4
            write8(st, mem, apu, cap_cycles, cap_regs, cap_values, serial_out, sp, hi, now)
            sp = (sp - 1) & 0xFFFF
            now += 4
            write8(st, mem, apu, cap_cycles, cap_regs, cap_values, serial_out, sp, lo, now)
            continue
        if low == 4 or low == 5 or y == 0:
            # CALL cc,nn (low 4) / CALL nn (CD) / JP nn (C3)
            now += 4
            lo = read8(st, mem, apu, pc, now)
            now += 4
            hi = read8(st, mem, apu, (pc + 1) & 0xFFFF, now)
            pc = (pc + 2) & 0xFFFF
            if low == 4:
                flag = (f >> 7) & 1 if y < 2 else (f >> 4) & 1
                taken = flag == (y & 1)
            else:
                taken = True
            if taken:
                now += 4
                if low != 3:
                    sp = (sp - 1) & 0xFFFF
                    now += 4
                    write8(
                        st,
                        mem,
                        apu,
                        cap_cycles,
                        cap_regs,
                        cap_values,
                        serial_out,
                        sp,
                        pc >> 8,
                        now,
                    )
                    sp = (sp - 1) & 0xFFFF
                    now += 4
                    write8(
                        st,
                        mem,
                        apu,
                        cap_cycles,
                        cap_regs,
                        cap_values,
                        serial_out,
                        sp,
                        pc & 0xFF,
                        now,
                    )
                pc = (hi << 8) | lo
            continue
        if op == 0xCB:
            now += 4
            cb = read8(st, mem, apu, pc, now)
            pc = (pc + 1) & 0xFFFF
            z = cb & 7
            if z == 0:
                v = b
            elif z == 1:
                v = c
            elif z == 2:
                v = d
            elif z == 3:
                v = e
            elif z == 4:
                v = h
            elif z == 5:
                v = l
            elif z == 6:
                now += 4
                v = read8(st, mem, apu, (h << 8) | l, now)
            else:
                v = a
            kind = cb >> 6
            bit = (cb >> 3) & 7
            if kind == 0:
                v, f = rotate(bit, v, f)
            elif kind == 1:
                f = (f & FC) | FH | (0 if (v >> bit) & 1 else FZ)
                continue
            elif kind == 2:
                v &= ~(1 << bit) & 0xFF
            else:
                v |= 1 << bit
            if z == 0:
                b = v
            elif z == 1:
                c = v
            elif z == 2:
                d = v
            elif z == 3:
                e = v
            elif z == 4:
                h = v
            elif z == 5:
                l = v
            elif z == 6:
                now += 4
                write8(
                    st,
                    mem,
                    apu,
                    cap_cycles,
                    cap_regs,
                    cap_values,
                    serial_out,
                    (h << 8) | l,
                    v,
                    now,
                )
            else:
                a = v
            continue
        if op == 0xF3:
            ime = 0
            ei_pending = 0
        elif ime == 0:  # EI (0xFB)
            ei_pending = 1

    st[R_B] = b
    st[R_C] = c
    st[R_D] = d
    st[R_E] = e
    st[R_H] = h
    st[R_L] = l
    st[R_F] = f
    st[R_A] = a
    st[SP] = sp
    st[PC] = pc
    st[IME] = ime
    st[EI_PENDING] = ei_pending
    st[HALTED] = halted
    st[HALT_BUG] = halt_bug
    st[NOW] = now
    return reason
