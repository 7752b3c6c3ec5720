"""The SM83 assembler: encodings against the documented opcode map, expressions, errors, and
assembled routines run in our emulator."""

from __future__ import annotations

import pytest

from gbsynth.emulator.core.opcodes import ILLEGAL_OPCODES
from gbsynth.emulator.core.state import EXIT_RETURNED
from gbsynth.music.asm import OPCODES, AsmError, assemble
from gbsynth.music.rom import CART_ROM_ONLY, finish_rom

# Instruction lengths in bytes of the unprefixed opcodes, from the SM83 opcode map
# (0: illegal; 0xCB is the prefix, 2 bytes with its second byte).
LENGTHS = (
    """
    1 3 1 1 1 1 2 1 3 1 1 1 1 1 2 1   2 3 1 1 1 1 2 1 2 1 1 1 1 1 2 1
    2 3 1 1 1 1 2 1 2 1 1 1 1 1 2 1   2 3 1 1 1 1 2 1 2 1 1 1 1 1 2 1
"""
    + " 1" * 128
    + """
    1 1 3 3 3 1 2 1 1 1 3 2 3 3 2 1   1 1 3 0 3 1 2 1 1 1 3 0 3 0 2 1
    2 1 1 0 0 1 2 1 2 1 3 0 0 0 2 1   2 1 1 1 0 1 2 1 2 1 3 1 0 0 2 1
"""
)
OPCODE_LENGTHS = [int(x) for x in LENGTHS.split()]


def encode(line: str) -> bytes:
    return assemble(f"  {line}").image()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("nop", "00"), ("stop", "10 00"), ("halt", "76"), ("di", "F3"), ("ei", "FB"),
        ("ld bc, $1234", "01 34 12"), ("ld sp, $FFFE", "31 FE FF"),
        ("ld [bc], a", "02"), ("ld a, [de]", "1A"), ("ld [hl+], a", "22"), ("ld a, [hld]", "3A"),
        ("ldi a, [hl]", "2A"), ("ldd [hl], a", "32"),
        ("ld b, c", "41"), ("ld [hl], a", "77"), ("ld a, [hl]", "7E"), ("ld h, [hl]", "66"),
        ("ld [hl], $42", "36 42"), ("ld e, -1", "1E FF"),
        ("ld [$C000], a", "EA 00 C0"), ("ld a, [$FF44]", "FA 44 FF"),
        ("ld [$D000], sp", "08 00 D0"),
        ("ldh [$FF26], a", "E0 26"), ("ldh a, [$44]", "F0 44"),
        ("ldh [c], a", "E2"), ("ld [$FF00+c], a", "E2"), ("ld a, [c]", "F2"),
        ("ld hl, sp+5", "F8 05"), ("ld hl, sp-2", "F8 FE"), ("add sp, -16", "E8 F0"),
        ("ld sp, hl", "F9"), ("jp hl", "E9"), ("jp [hl]", "E9"),
        ("inc de", "13"), ("dec sp", "3B"), ("inc [hl]", "34"), ("dec a", "3D"),
        ("add hl, sp", "39"), ("add a, b", "80"), ("add b", "80"), ("adc a, [hl]", "8E"),
        ("sub a, c", "91"), ("sub 3", "D6 03"), ("sbc a, $10", "DE 10"), ("and $0F", "E6 0F"),
        ("xor a", "AF"), ("or [hl]", "B6"), ("cp a, 'A'", "FE 41"),
        ("push af", "F5"), ("pop hl", "E1"), ("ret", "C9"), ("reti", "D9"), ("ret nc", "D0"),
        ("call $1234", "CD 34 12"), ("call z, $4000", "CC 00 40"), ("jp c, $0150", "DA 50 01"),
        ("rst $38", "FF"), ("rst 8", "CF"),
        ("rlca", "07"), ("rra", "1F"), ("daa", "27"), ("cpl", "2F"), ("scf", "37"), ("ccf", "3F"),
        ("rlc b", "CB 00"), ("swap a", "CB 37"), ("srl [hl]", "CB 3E"), ("sra d", "CB 2A"),
        ("bit 7, h", "CB 7C"), ("bit 0, [hl]", "CB 46"), ("res 3, a", "CB 9F"),
        ("set 6, [hl]", "CB F6"),
    ],
)  # fmt: skip
def test_encodings_match_the_opcode_map(source, expected):
    assert encode(source).hex(" ").upper() == expected


def test_the_table_covers_every_opcode_with_its_length():
    unprefixed: dict[int, int] = {}
    prefixed: set[int] = set()
    for (mnemonic, operands), encoding in OPCODES.items():
        variants = [encoding.opcode]
        if encoding.operand == "u3":
            variants = [
                encoding.opcode[:-1] + bytes([encoding.opcode[-1] | b << 3]) for b in range(8)
            ]
        elif encoding.operand == "vec":
            variants = [bytes([encoding.opcode[0] | v]) for v in range(0, 0x40, 8)]
        for code in variants:
            if code[0] == 0xCB:
                prefixed.add(code[1])
                assert encoding.size == 2
            else:
                size = encoding.size if encoding.operand != "vec" else 1
                assert unprefixed.setdefault(code[0], size) == size, (mnemonic, operands)
    legal = {op for op in range(256) if not ILLEGAL_OPCODES[op] and op != 0xCB}
    assert set(unprefixed) == legal
    assert prefixed == set(range(256))
    for op, size in unprefixed.items():
        assert size == OPCODE_LENGTHS[op], f"opcode {op:02X}"


def test_expressions_labels_and_directives():
    program = assemble(
        """
SIZE    equ END - START          ; constants may use later labels
BASE    = $C000
        section "main", $0150
START:  ld hl, TABLE + 2 * 3
        ld a, LOW(START) | HIGH(START) << 4
        ld b, (1 + 2) * 3 - 10 / 3 % 2
        ld c, %0101 + 0b10 + 0x10 + 7 % 4
        jr .skip
.skip:  jr START.skip
TABLE:  db 1, 'z', "a;b\\n", -1
        dw START, .here, @
.here:  ds 3, $EE
        align 4
END:
        assert SIZE == END - START && BASE == $C000, "sizes"
"""
    )
    s = program.symbols
    assert s["START"] == 0x150 and s["SIZE"] == s["END"] - 0x150 and s["END"] % 4 == 0
    image = program.image(0x150, s["END"], fill=0x00)
    table = s["TABLE"] - 0x150
    assert image[:3] == bytes([0x21, (s["TABLE"] + 6) & 0xFF, (s["TABLE"] + 6) >> 8])
    assert image[3:5] == bytes([0x3E, (0x50 | 0x01 << 4) & 0xFF])
    assert image[5:7] == bytes([0x06, 9 - 3 % 2])
    assert image[7:9] == bytes([0x0E, 5 + 2 + 16 + 3])
    assert image[9:13] == bytes([0x18, 0x00, 0x18, 0xFE])
    assert image[table : table + 7] == b"\x01za;b\n\xff"
    words = image[table + 7 : table + 13]
    assert int.from_bytes(words[4:6], "little") == s["TABLE"] + 7  # @: where this dw starts
    assert s["TABLE.here"] == s["TABLE"] + 13
    assert image[s["TABLE.here"] - 0x150 :][:3] == b"\xee\xee\xee"
    assert program.sections["main"] == (0x150, s["END"])


def test_listing_names_addresses_and_lines():
    program = assemble("  org $200\nStart: ld a, 1\n  ret\n")
    listing = program.format_listing().splitlines()
    assert listing[0].startswith("0200  3E 01") and "Start: ld a, 1" in listing[0]
    assert listing[1].startswith("0202  C9")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("  nope a", "t.asm:1: unknown instruction or directive 'nope'"),
        ("  ld a, [de+]", "[de+] is not a memory operand"),
        ("  ld a, [hl + 1]", "[hl + 1] is not a memory operand"),
        ("  ld b, [de]", "no form of 'ld' takes operands (b, [de])"),
        ("  ld [bc], b", "no form of 'ld'"),
        ("x: jr far\n  ds 200\nfar: nop", "jr target is 200 bytes away"),
        ("  ld a, missing", "undefined symbol 'missing'"),
        ("a1: nop\na1: nop", "t.asm:2: symbol 'a1' is defined twice"),
        ("  ld a, 300", "value 300 does not fit in 8 bits"),
        ("  bit 8, a", "bit number 8 is outside 0..7"),
        ("  rst $39", "rst vector $39"),
        ("  ldh a, [$1234]", "not in $FF00-$FFFF"),
        ("  ds later\nlater: nop", "'later' must be defined before it is used here"),
        ("  .loop: nop", "local label .loop has no global label before it"),
        ("  ld a, (1 + 2", "expression ends too early"),
        ("  ld a, 1 +* 2", "unexpected '*'"),
        ("X equ Y\nY equ X\n  ld a, X", "defined in terms of itself"),
        ('  assert 1 == 2, "no"', "assertion failed: no"),
        ("  org $300\n  db 1\n  org $300\n  db 2", "overlaps"),
        ("c: nop", "'c' is a register name"),
    ],
)
def test_errors_name_the_line_and_reason(source, message):
    with pytest.raises(AsmError) as info:
        assemble(source, name="t.asm")
    assert message in str(info.value)
    if info.value.line is not None:
        assert str(info.value).startswith(f"t.asm:{info.value.line}: ")


# -- assembled code in the emulator ------------------------------------------------------------

ROUTINES = """
        section "entry", $0100
        nop
        jp Start
        section "code", $0150
Start:  ld sp, $FFFE
        ret

; Multiply: A x B -> HL (shift and add)
Multiply:
        ld hl, 0
        ld d, 0
        ld e, a
.loop:  srl b
        jr nc, .skip
        add hl, de
.skip:  sla e
        rl d
        ld a, b
        and a
        jr nz, .loop
        ret

; Fibonacci: the first C numbers (8-bit) to [HL]
Fibonacci:
        ld a, 0
        ld b, 1
.next:  ld [hl+], a
        ld d, a
        add b
        ld b, d
        dec c
        jr nz, .next
        ret

; Dispatch: A = index -> jumps through Table with the RET trick, result in A
Dispatch:
        add a
        ld e, a
        ld d, 0
        ld hl, Table
        add hl, de
        ld a, [hl+]
        ld h, [hl]
        ld l, a
        push hl
        ret
Table:  dw .one, .two, .three
.one:   ld a, 11
        ret
.two:   ld a, 22
        ret
.three: ld a, 33
        ret

; BcdAdd: A + B in BCD -> A
BcdAdd: add b
        daa
        ret

; Stack: HL = SP + 2 through ld hl, sp+e8; then add sp, -4 / +4
StackTricks:
        ld hl, sp+2
        add sp, -4
        add sp, 4
        ret

; Sound: writes NR52, NR50, NR51 with LDH and [C]
Sound:  ld a, $80
        ldh [$FF26], a
        ld c, $24
        ld a, $77
        ldh [c], a
        ld a, $F3
        ld [$FF25], a
        ret
"""


@pytest.fixture(scope="module")
def machine():
    from gbsynth.emulator.core.machine import GameBoy

    program = assemble(ROUTINES, name="routines.asm")
    image = bytearray(program.image(0, program.end, fill=0x00))
    rom = finish_rom(image, title="ASM TEST", cartridge_type=CART_ROM_ONLY)
    gb = GameBoy(rom)
    gb.call(program["Start"], 1000)
    return gb, program


def run(machine, routine, **registers):
    gb, program = machine
    for name, value in registers.items():
        setattr(gb, name, value)
    gb.sp = 0xFFF0
    assert gb.call(program[routine], 100_000) == EXIT_RETURNED
    return gb


@pytest.mark.parametrize(("a", "b"), [(0, 0), (3, 7), (255, 255), (16, 13), (1, 200)])
def test_multiply_routine(machine, a, b):
    gb = run(machine, "Multiply", a=a, b=b)
    assert (gb.h << 8 | gb.l) == a * b


def test_fibonacci_routine_writes_memory(machine):
    gb = run(machine, "Fibonacci", h=0xC1, l=0x00, c=13)
    values = [gb.peek(0xC100 + i) for i in range(13)]
    fib = [0, 1]
    while len(fib) < 13:
        fib.append(fib[-1] + fib[-2])
    assert values == [v & 0xFF for v in fib]


@pytest.mark.parametrize(("index", "result"), [(0, 11), (1, 22), (2, 33)])
def test_jump_table_through_ret(machine, index, result):
    assert run(machine, "Dispatch", a=index).a == result


@pytest.mark.parametrize(("a", "b", "result"), [(0x19, 0x28, 0x47), (0x45, 0x45, 0x90)])
def test_bcd_addition(machine, a, b, result):
    assert run(machine, "BcdAdd", a=a, b=b).a == result


def test_stack_relative_instructions(machine):
    gb = run(machine, "StackTricks")
    # the call pushed a return address: SP inside the routine is 0xFFEE
    assert (gb.h << 8 | gb.l) == 0xFFEE + 2
    assert gb.sp == 0xFFF0


def test_sound_register_writes_are_captured(machine):
    gb, program = machine
    gb.start_recording()
    run(machine, "Sound")
    writes = gb.take_writes()
    assert list(zip(writes.registers.tolist(), writes.values.tolist(), strict=True)) == [
        (0xFF26, 0x80),
        (0xFF24, 0x77),
        (0xFF25, 0xF3),
    ]
