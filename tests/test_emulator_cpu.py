"""Every opcode takes the M-cycles the timing tables state (the tables are the reference)."""

from __future__ import annotations

import pytest

from gbsynth.emulator.core import state as S
from gbsynth.emulator.core.cartridge.header import build_rom
from gbsynth.emulator.core.machine import GameBoy
from gbsynth.emulator.core.opcodes import (
    CB_CYCLES,
    CONDITIONAL_OPCODES,
    ILLEGAL_OPCODES,
    OPCODE_CYCLES,
    OPCODE_CYCLES_TAKEN,
)

TARGET = 0x0200  # jumps, calls, returns and RSTs all land on an LD B,B breakpoint
LD_B_B = 0x40
ENTRY = bytes([0x00, 0xC3, 0x50, 0x01])  # nop; jp 0x0150 (the header follows at 0x0104)

# Immediate operands per opcode (default: one byte 0x00 if the opcode takes one).
ADDRESS_OPERANDS = {op: bytes([0x00, 0x02]) for op in (0xC2, 0xC3, 0xC4, 0xCA, 0xCC, 0xCD)}
ADDRESS_OPERANDS.update({op: bytes([0x00, 0x02]) for op in (0xD2, 0xD4, 0xDA, 0xDC)})
ADDRESS_OPERANDS.update({op: bytes([0x00, 0xC0]) for op in (0x01, 0x11, 0x21, 0x31, 0x08)})
ADDRESS_OPERANDS.update({0xEA: bytes([0x00, 0xC0]), 0xFA: bytes([0x00, 0xC0])})
BYTE_OPERAND = {0x06, 0x0E, 0x16, 0x1E, 0x26, 0x2E, 0x36, 0x3E, 0x18, 0x20, 0x28, 0x30, 0x38}
BYTE_OPERAND |= {0xC6, 0xCE, 0xD6, 0xDE, 0xE6, 0xEE, 0xF6, 0xFE, 0xE8, 0xF8}
HRAM_OPERAND = {0xE0: bytes([0x80]), 0xF0: bytes([0x80])}
SKIPPED = {0x10, 0x40, 0x76, 0xCB}  # STOP, HALT wait; LD B,B is the probe; CB: own table


def instruction_bytes(op: int) -> bytes:
    if op in ADDRESS_OPERANDS:
        return bytes([op]) + ADDRESS_OPERANDS[op]
    if op in HRAM_OPERAND:
        return bytes([op]) + HRAM_OPERAND[op]
    if op in BYTE_OPERAND:
        return bytes([op, 0x00])
    return bytes([op])


def m_cycles(code: bytes, flags: int) -> int:
    """M-cycles of the instruction `code`, run at 0x0100 with IE=0 and known registers."""
    vectors = {vector: bytes([LD_B_B]) for vector in range(0x00, 0x40, 8)}
    rom = build_rom({**vectors, 0x100: code + bytes([LD_B_B]), TARGET: bytes([LD_B_B])})
    gb = GameBoy(rom)
    gb.break_on_ld_b_b(True)
    gb.poke(0xFFFF, 0x00)
    gb.f = flags
    gb.b, gb.c, gb.d, gb.e, gb.h, gb.l = 0xC0, 0x10, 0xC0, 0x20, TARGET >> 8, TARGET & 0xFF
    gb.sp = 0xDFF0
    gb.poke(0xDFF0, TARGET & 0xFF)
    gb.poke(0xDFF1, TARGET >> 8)
    start = gb.cycle
    assert gb.run_cycles(1000) == S.EXIT_BREAKPOINT
    return (gb.cycle - start) // 4 - 1  # minus the LD B,B


def condition_holds(op: int, flags: int) -> bool:
    cc = (op >> 3) & 3
    flag = (flags >> 7) & 1 if cc < 2 else (flags >> 4) & 1
    return flag == (cc & 1)


@pytest.mark.parametrize("op", [op for op in range(256) if not ILLEGAL_OPCODES[op]])
def test_opcode_timing_matches_table(op):
    if op in SKIPPED:
        pytest.skip("not measurable this way (covered by blargg instr_timing)")
    code = instruction_bytes(op)
    for flags in (0x00, 0xF0):
        expected = OPCODE_CYCLES[op]
        if op in CONDITIONAL_OPCODES and condition_holds(op, flags):
            expected = OPCODE_CYCLES_TAKEN[op]
        assert m_cycles(code, flags) == expected, f"opcode {op:02X} with F={flags:02X}"


@pytest.mark.parametrize("cb", range(256))
def test_cb_opcode_timing_matches_table(cb):
    assert m_cycles(bytes([0xCB, cb]), 0x00) == CB_CYCLES[cb]


def test_illegal_opcodes_are_the_eleven_holes():
    assert sorted(int(op) for op in ILLEGAL_OPCODES.nonzero()[0]) == [
        0xD3,
        0xDB,
        0xDD,
        0xE3,
        0xE4,
        0xEB,
        0xEC,
        0xED,
        0xF4,
        0xFC,
        0xFD,
    ]


def test_halt_bug_reads_the_next_byte_twice():
    # di; ld a,1; ldh (IE),a; ldh (IF),a; halt; inc b; ld b,b  -> inc b runs twice
    gb = GameBoy(
        build_rom(
            {
                0x100: ENTRY,
                0x150: bytes([0xF3, 0x3E, 0x01, 0xE0, 0xFF, 0xE0, 0x0F, 0x76, 0x04, 0x40]),
            }
        )
    )
    gb.break_on_ld_b_b(True)
    gb.b = 0
    assert gb.run_cycles(1000) == S.EXIT_BREAKPOINT
    assert gb.b == 2


def test_ei_takes_effect_after_the_next_instruction():
    # Request VBlank through IF, then: ei; inc b; inc b; ld b,b. The handler at 0x40 is
    # ld b,b, so the run stops there with B counting the instructions run after EI.
    program = bytes([0xF3, 0x3E, 0x01, 0xE0, 0xFF, 0xE0, 0x0F, 0xFB, 0x04, 0x04, 0x40])
    gb = GameBoy(build_rom({0x100: ENTRY, 0x150: program, 0x40: bytes([0x40])}))
    gb.break_on_ld_b_b(True)
    gb.b = 0
    assert gb.run_cycles(1000) == S.EXIT_BREAKPOINT
    assert gb.pc == 0x41  # stopped in the handler
    assert gb.b == 1  # exactly one instruction ran after EI
