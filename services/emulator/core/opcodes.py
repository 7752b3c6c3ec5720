"""SM83 opcode tables: timing, illegal opcodes, mnemonics. Data, not branches.

The run loop decodes operands from bit fields (``op & 7`` is the source
register B C D E H L (HL) A, ``(op >> 3) & 7`` the destination or ALU
operation, ``(op >> 4) & 3`` the register pair) and spends its M-cycles one
memory access or internal cycle at a time. These tables state how many
M-cycles each instruction takes in total; the test suite checks the run loop
against them instruction by instruction.
"""

from __future__ import annotations

import numpy as np

# M-cycles per opcode (conditional instructions: not taken). 0 = illegal (locks the CPU).
OPCODE_CYCLES = np.array(
    [
        # x0 x1 x2 x3 x4 x5 x6 x7 x8 x9 xA xB xC xD xE xF
        1, 3, 2, 2, 1, 1, 2, 1, 5, 2, 2, 2, 1, 1, 2, 1,  # 0x
        1, 3, 2, 2, 1, 1, 2, 1, 3, 2, 2, 2, 1, 1, 2, 1,  # 1x
        2, 3, 2, 2, 1, 1, 2, 1, 2, 2, 2, 2, 1, 1, 2, 1,  # 2x
        2, 3, 2, 2, 3, 3, 3, 1, 2, 2, 2, 2, 1, 1, 2, 1,  # 3x
        1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1,  # 4x
        1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1,  # 5x
        1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1,  # 6x
        2, 2, 2, 2, 2, 2, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1,  # 7x
        1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1,  # 8x
        1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1,  # 9x
        1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1,  # Ax
        1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1,  # Bx
        2, 3, 3, 4, 3, 4, 2, 4, 2, 4, 3, 1, 3, 6, 2, 4,  # Cx
        2, 3, 3, 0, 3, 4, 2, 4, 2, 4, 3, 0, 3, 0, 2, 4,  # Dx
        3, 3, 2, 0, 0, 4, 2, 4, 4, 1, 4, 0, 0, 0, 2, 4,  # Ex
        3, 3, 2, 1, 0, 4, 2, 4, 3, 2, 4, 1, 0, 0, 2, 4,  # Fx
    ],
    dtype=np.int64,
)  # fmt: skip

# M-cycles of conditional instructions when the condition holds (others: as above).
OPCODE_CYCLES_TAKEN = OPCODE_CYCLES.copy()
for _op, _cycles in {
    0x20: 3, 0x28: 3, 0x30: 3, 0x38: 3,  # JR cc
    0xC0: 5, 0xC8: 5, 0xD0: 5, 0xD8: 5,  # RET cc
    0xC2: 4, 0xCA: 4, 0xD2: 4, 0xDA: 4,  # JP cc
    0xC4: 6, 0xCC: 6, 0xD4: 6, 0xDC: 6,  # CALL cc
}.items():  # fmt: skip
    OPCODE_CYCLES_TAKEN[_op] = _cycles
CONDITIONAL_OPCODES = np.flatnonzero(OPCODE_CYCLES_TAKEN != OPCODE_CYCLES)

# CB-prefixed: 2 M-cycles on a register, 4 on (HL) (BIT n,(HL): 3), prefix fetch included.
CB_CYCLES = np.where(np.arange(256) % 8 == 6, 4, 2).astype(np.int64)
CB_CYCLES[0x40:0x80][np.arange(0x40) % 8 == 6] = 3

ILLEGAL_OPCODES = np.zeros(256, dtype=np.bool_)
ILLEGAL_OPCODES[[0xD3, 0xDB, 0xDD, 0xE3, 0xE4, 0xEB, 0xEC, 0xED, 0xF4, 0xFC, 0xFD]] = True

REGISTER_NAMES = ("B", "C", "D", "E", "H", "L", "(HL)", "A")
PAIR_NAMES = ("BC", "DE", "HL", "SP")
ALU_NAMES = ("ADD A,", "ADC A,", "SUB ", "SBC A,", "AND ", "XOR ", "OR ", "CP ")
ROTATE_NAMES = ("RLC", "RRC", "RL", "RR", "SLA", "SRA", "SWAP", "SRL")
CONDITION_NAMES = ("NZ", "Z", "NC", "C")

# Flag bits of F.
FLAG_Z = 0x80
FLAG_N = 0x40
FLAG_H = 0x20
FLAG_C = 0x10

# Interrupt sources by IF/IE bit: VBlank, STAT, Timer, Serial, Joypad; vector = 0x40 + 8 * bit.
INTERRUPT_VECTORS = np.array([0x40, 0x48, 0x50, 0x58, 0x60], dtype=np.int64)
