"""A small two-pass SM83 (Game Boy CPU) assembler.

The syntax is RGBDS-like::

    NR52    equ $FF26            ; constants (also: DEF NAME EQU expr, NAME = expr)
            section "driver", $0400
    Init:   ld a, $80            ; global label
            ldh [NR52 & $FF], a
    .loop:  dec b                ; local label, seen as Init.loop
            jr nz, .loop
            ld hl, Table + 2*3   ; expressions with labels, forward references allowed
            ret
    Table:  db 1, 2, "text", LOW(Init), HIGH(Init)
            dw Init, .loop
            ds 16, $FF           ; 16 bytes of $FF
            assert @ < $8000, "driver too large"

Memory operands use brackets (``[hl]``, ``[hl+]``/``[hli]``, ``[hl-]``/``[hld]``, ``[c]``/
``[$FF00+c]``, ``[expr]``); parentheses only group expressions. Numbers: ``$1F``, ``0x1F``,
``%1010``, ``0b1010``, ``31``, ``'A'``; ``@`` is the current address. Operators, loosest
first, as in C: ``||``, ``&&``, ``|``, ``^``, ``&``, ``== !=``, ``< <= > >=``, ``<< >>``,
``+ -``, ``* / %``, unary ``- + ~ !``; functions ``LOW(x)`` and ``HIGH(x)``. Mnemonics,
registers and directives are case-insensitive, symbols are not.

Every instruction of the SM83 is in ``OPCODES``, a table built from the regular
structure of the instruction set (register fields, ALU rows, the CB page), so an
instruction is looked up, never special-cased. Errors name the source, line and reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache

__all__ = ["AsmError", "Program", "assemble", "OPCODES"]


class AsmError(ValueError):
    """An assembly error, with the source name, line number and reason."""

    def __init__(
        self, reason: str, line: int | None = None, text: str = "", name: str = ""
    ) -> None:
        self.reason = reason
        self.line = line
        self.text = text
        where = f"{name or '<source>'}:{line}: " if line is not None else ""
        shown = f"\n    {text.strip()}" if text.strip() else ""
        super().__init__(f"{where}{reason}{shown}")


# -- the instruction table -------------------------------------------------------------------

R8 = ("b", "c", "d", "e", "h", "l", "[hl]", "a")
R16 = ("bc", "de", "hl", "sp")
R16_STACK = ("bc", "de", "hl", "af")
CONDITIONS = ("nz", "z", "nc", "c")
ALU_OPS = ("add", "adc", "sub", "sbc", "and", "xor", "or", "cp")
CB_ROTATES = ("rlc", "rrc", "rl", "rr", "sla", "sra", "swap", "srl")

# Operand placeholders: values that come from an expression.
#   n8 / n16   immediate byte / word after the opcode
#   e8         signed byte (jr: relative to the next instruction)
#   [n16]      absolute address; [n8] an address in $FF00-$FFFF (ldh)
#   sp+e8      SP plus a signed byte
#   u3 / vec   a bit number / RST vector folded into the opcode itself
PLACEHOLDERS = {
    "n8": "imm",
    "n16": "imm",
    "e8": "imm",
    "u3": "imm",
    "vec": "imm",
    "[n16]": "[imm]",
    "[n8]": "[imm]",
    "sp+e8": "sp+imm",
}


@dataclass(frozen=True)
class Encoding:
    """How one instruction form is encoded: fixed opcode bytes, then its value (if any)."""

    opcode: bytes
    operand: str | None = None
    """The placeholder whose value follows or is folded in (``n8``, ``e8``, ``u3``...)."""

    @property
    def size(self) -> int:
        extra = {"n8": 1, "e8": 1, "[n8]": 1, "sp+e8": 1, "n16": 2, "[n16]": 2}
        return len(self.opcode) + extra.get(self.operand or "", 0)


def _build_opcodes() -> dict[tuple[str, tuple[str, ...]], Encoding]:
    table: dict[tuple[str, tuple[str, ...]], Encoding] = {}

    def add(form: str, *code: int) -> None:
        mnemonic, _, rest = form.partition(" ")
        operands = tuple(o.strip() for o in rest.split(",")) if rest else ()
        values = [o for o in operands if o in PLACEHOLDERS]
        key = (mnemonic, operands)
        if key in table:
            raise AssertionError(f"duplicate opcode form {form}")  # pragma: no cover
        table[key] = Encoding(bytes(code), values[0] if values else None)

    for form, code in (
        ("nop", 0x00), ("rlca", 0x07), ("rrca", 0x0F), ("rla", 0x17), ("rra", 0x1F),
        ("daa", 0x27), ("cpl", 0x2F), ("scf", 0x37), ("ccf", 0x3F), ("halt", 0x76),
        ("di", 0xF3), ("ei", 0xFB), ("ret", 0xC9), ("reti", 0xD9),
        ("ld [n16],sp", 0x08), ("ld [n16],a", 0xEA), ("ld a,[n16]", 0xFA),
        ("ldh [n8],a", 0xE0), ("ldh a,[n8]", 0xF0),
        ("ldh [c],a", 0xE2), ("ldh a,[c]", 0xF2), ("ld [c],a", 0xE2), ("ld a,[c]", 0xF2),
        ("ld [bc],a", 0x02), ("ld [de],a", 0x12), ("ld [hl+],a", 0x22), ("ld [hl-],a", 0x32),
        ("ld a,[bc]", 0x0A), ("ld a,[de]", 0x1A), ("ld a,[hl+]", 0x2A), ("ld a,[hl-]", 0x3A),
        ("ld hl,sp+e8", 0xF8), ("ld sp,hl", 0xF9), ("add sp,e8", 0xE8),
        ("jp n16", 0xC3), ("jp hl", 0xE9), ("jp [hl]", 0xE9), ("jr e8", 0x18),
        ("call n16", 0xCD), ("rst vec", 0xC7),
    ):  # fmt: skip
        add(form, code)
    add("stop", 0x10, 0x00)
    # Opcode families: the operand's index in its list, times the stride, added to a base.
    for operands, stride, forms in (
        (R8, 8, (("ld {},n8", 0x06), ("inc {}", 0x04), ("dec {}", 0x05))),
        (R16, 16, (("ld {},n16", 0x01), ("inc {}", 0x03), ("dec {}", 0x0B), ("add hl,{}", 0x09))),
        (R16_STACK, 16, (("push {}", 0xC5), ("pop {}", 0xC1))),
        (CONDITIONS, 8, (("jr {},e8", 0x20), ("jp {},n16", 0xC2), ("call {},n16", 0xC4),
                         ("ret {}", 0xC0))),
    ):  # fmt: skip
        for index, operand in enumerate(operands):
            for form, base in forms:
                add(form.format(operand), base + stride * index)
    for d, dst in enumerate(R8):
        for s, src in enumerate(R8):
            if (dst, src) != ("[hl]", "[hl]"):  # that slot is HALT
                add(f"ld {dst},{src}", 0x40 + 8 * d + s)
    for o, alu in enumerate(ALU_OPS):
        # Both "sub b" and "sub a,b" are accepted for every ALU operation.
        for prefix in ("", "a,"):
            add(f"{alu} {prefix}n8", 0xC6 + 8 * o)
            for r, reg in enumerate(R8):
                add(f"{alu} {prefix}{reg}", 0x80 + 8 * o + r)
    for r, reg in enumerate(R8):
        for o, rot in enumerate(CB_ROTATES):
            add(f"{rot} {reg}", 0xCB, 8 * o + r)
        for base, op in ((0x40, "bit"), (0x80, "res"), (0xC0, "set")):
            add(f"{op} u3,{reg}", 0xCB, base + r)
    return table


OPCODES = _build_opcodes()
"""(mnemonic, operand forms) -> Encoding, for every SM83 instruction (and both ALU spellings)."""

MNEMONICS = frozenset(m for m, _ in OPCODES)

# Alternative spellings, rewritten before the table lookup.
_MNEMONIC_ALIASES = {"ldi": ("ld", "+"), "ldd": ("ld", "-")}
_MEMORY_FORMS = {
    "hl": "[hl]", "bc": "[bc]", "de": "[de]", "c": "[c]",
    "hl+": "[hl+]", "hli": "[hl+]", "hl-": "[hl-]", "hld": "[hl-]",
    "$ff00+c": "[c]", "0xff00+c": "[c]", "c+$ff00": "[c]",
}  # fmt: skip
_REGISTER_WORDS = frozenset(R8[:6] + ("a", "af", "bc", "de", "hl", "sp", "nz", "z", "nc"))
DIRECTIVES = frozenset({"db", "dw", "ds", "org", "section", "align", "assert", "equ"})


# -- expressions -----------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\$[0-9a-fA-F]+|0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)"
    r"|(?P<bin>%[01]+)"
    r"|(?P<char>'(?:\\.|[^'\\])')"
    r"|(?P<name>\.?[A-Za-z_][\w.]*|@)"
    r"|(?P<op><<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^~(),<>!]))"
)
_BINARY_PRECEDENCE = {"||": 1, "&&": 2, "|": 3, "^": 4, "&": 5, "==": 6, "!=": 6,
                      "<": 7, "<=": 7, ">": 7, ">=": 7, "<<": 8, ">>": 8, "+": 9, "-": 9,
                      "*": 10, "/": 10, "%": 10}  # fmt: skip
_FUNCTIONS = {"low": lambda v: v & 0xFF, "high": lambda v: (v >> 8) & 0xFF}
_CHAR_ESCAPES = {"n": 10, "t": 9, "0": 0, "\\": 92, "'": 39, '"': 34}


def _number(text: str) -> int:
    if text[0] == "$":
        return int(text[1:], 16)
    if text[0] == "%":
        return int(text[1:], 2)
    return int(text, 0) if not text.isdigit() else int(text, 10)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise AsmError(f"cannot read expression at {text[pos:].strip()!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        after_value = bool(tokens) and (tokens[-1][0] in ("num", "name") or tokens[-1][1] == ")")
        if kind == "bin" and after_value:
            # "x %101" after a value is the modulo operator followed by a number
            tokens.append(("op", "%"))
            tokens.append(("num", value[1:]))
        elif kind == "bin":
            tokens.append(("num", value))
        else:
            tokens.append((kind, value))
        pos = match.end()
    return tokens


@lru_cache(maxsize=65536)
def parse_expression(text: str) -> tuple:
    """Parse an expression into a small tree: ('num', v) | ('sym', name) | (op, a[, b])."""
    tokens = _tokenize(text)
    if not tokens:
        raise AsmError("missing expression")
    pos = 0

    def peek() -> tuple[str, str] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise AsmError(f"expression ends too early: {text.strip()!r}")
        pos += 1
        return tokens[pos - 1]

    def primary() -> tuple:
        kind, value = take()
        if kind == "num":
            return ("num", _number(value))
        if kind == "char":
            body = value[1:-1]
            if body.startswith("\\"):
                if body[1] not in _CHAR_ESCAPES:
                    raise AsmError(f"unknown escape {body!r}")
                return ("num", _CHAR_ESCAPES[body[1]])
            return ("num", ord(body))
        if kind == "name":
            nxt = peek()
            if value.lower() in _FUNCTIONS and nxt == ("op", "("):
                take()
                inner = binary(0)
                if take() != ("op", ")"):
                    raise AsmError(f"missing ')' after {value}(...")
                return ("fn", value.lower(), inner)
            return ("sym", value)
        if value == "(":
            inner = binary(0)
            if take() != ("op", ")"):
                raise AsmError(f"missing ')' in {text.strip()!r}")
            return inner
        if value in ("-", "+", "~", "!"):
            return ("unary", value, primary())
        raise AsmError(f"unexpected {value!r} in expression {text.strip()!r}")

    def binary(min_precedence: int) -> tuple:
        left = primary()
        while True:
            nxt = peek()
            if nxt is None or nxt[0] != "op" or nxt[1] not in _BINARY_PRECEDENCE:
                return left
            precedence = _BINARY_PRECEDENCE[nxt[1]]
            if precedence <= min_precedence:
                return left
            take()
            left = ("bin", nxt[1], left, binary(precedence))

    tree = binary(0)
    if pos != len(tokens):
        raise AsmError(f"unexpected {tokens[pos][1]!r} in expression {text.strip()!r}")
    return tree


def evaluate(tree: tuple, lookup: Callable[[str], int]) -> int:
    """The value of a parsed expression; ``lookup`` resolves symbol names (and ``@``)."""
    kind = tree[0]
    if kind == "num":
        return tree[1]
    if kind == "sym":
        return lookup(tree[1])
    if kind == "fn":
        return _FUNCTIONS[tree[1]](evaluate(tree[2], lookup))
    if kind == "unary":
        value = evaluate(tree[2], lookup)
        return {"-": -value, "+": value, "~": ~value, "!": int(not value)}[tree[1]]
    op, a, b = tree[1], evaluate(tree[2], lookup), evaluate(tree[3], lookup)
    if op in ("/", "%") and b == 0:
        raise AsmError("division by zero")
    if op == "/":
        return int(a / b)  # truncates toward zero, as C does
    if op == "%":
        return a - int(a / b) * b
    if op in ("<<", ">>") and b < 0:
        raise AsmError("negative shift count")
    return {
        "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
        "<<": lambda: a << b, ">>": lambda: a >> b,
        "&": lambda: a & b, "|": lambda: a | b, "^": lambda: a ^ b,
        "==": lambda: int(a == b), "!=": lambda: int(a != b), "<": lambda: int(a < b),
        "<=": lambda: int(a <= b), ">": lambda: int(a > b), ">=": lambda: int(a >= b),
        "&&": lambda: int(bool(a) and bool(b)), "||": lambda: int(bool(a) or bool(b)),
    }[op]()  # fmt: skip


# -- source lines ----------------------------------------------------------------------------

_LABEL = re.compile(r"\s*(\.?[A-Za-z_][\w.]*)\s*(::?)")
_CONSTANT = re.compile(r"\s*(?:def\s+)?([A-Za-z_][\w]*)\s*(?:\b(?:equ)\b|=)\s*(.+)$", re.IGNORECASE)
_SECTION = re.compile(r'\s*"([^"]*)"\s*(?:,\s*(.+))?$')


def _quoted_end(text: str, i: int) -> int | None:
    """If a string or character literal starts at ``text[i]``, the index just past it."""
    quote = text[i]
    if quote == "'":
        match = re.match(r"'(?:\\.|[^'\\])'", text[i:])
        return i + match.end() if match else None
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == quote:
            return j + 1
        j += 1
    return None


def _unquoted(text: str) -> Iterator[tuple[int, str]]:
    """``(index, character)`` of each character of ``text`` outside string and character
    literals (an unterminated quote counts as a plain character)."""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "\"'":
            end = _quoted_end(text, i)
            if end is not None:
                i = end
                continue
        yield i, ch
        i += 1


def _strip_comment(line: str) -> str:
    for i, ch in _unquoted(line):
        if ch == ";":
            return line[:i]
    return line


def split_operands(text: str) -> list[str]:
    """Split an operand list at top-level commas (not inside brackets, parentheses, quotes)."""
    parts, depth, start = [], 0, 0
    for i, ch in _unquoted(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    last = text[start:].strip()
    if last or parts:
        parts.append(last)
    if any(not p for p in parts):
        raise AsmError("empty operand")
    return parts


@dataclass
class _Statement:
    line: int
    text: str
    scope: str
    """The global label in force, for local label references."""
    kind: str  # "instr", "db", "dw", "ds", "org", "section", "align", "assert", "label"
    mnemonic: str = ""
    operands: list[str] = field(default_factory=list)
    encoding: Encoding | None = None
    value_text: str | None = None
    """The expression giving the instruction's value (None when it has none)."""
    address: int = 0
    size: int = 0


@dataclass
class Program:
    """The assembled bytes, as chunks at their addresses, and the symbol table."""

    chunks: list[tuple[int, bytes]]
    symbols: dict[str, int]
    sections: dict[str, tuple[int, int]]
    """Section name -> (start address, end address)."""
    listing: list[tuple[int, bytes, int, str]]
    """(address, bytes, line, source text) for every line that emitted bytes."""

    def __getitem__(self, name: str) -> int:
        return self.symbols[name]

    @property
    def start(self) -> int:
        return min((a for a, b in self.chunks if b), default=0)

    @property
    def end(self) -> int:
        return max((a + len(b) for a, b in self.chunks if b), default=0)

    def image(self, start: int | None = None, end: int | None = None, fill: int = 0xFF) -> bytes:
        """The bytes from ``start`` to ``end`` (default: all chunks), gaps filled."""
        start = self.start if start is None else start
        end = self.end if end is None else end
        out = bytearray([fill]) * max(0, end - start)
        for address, data in self.chunks:
            lo, hi = max(address, start), min(address + len(data), end)
            if lo < hi:
                out[lo - start : hi - start] = data[lo - address : hi - address]
        return bytes(out)

    def section(self, name: str) -> bytes:
        start, end = self.sections[name]
        return self.image(start, end)

    def format_listing(self) -> str:
        lines = []
        for address, data, line, text in self.listing:
            shown = " ".join(f"{b:02X}" for b in data[:8]) + (" .." if len(data) > 8 else "")
            lines.append(f"{address:04X}  {shown:<26} {line:5d}  {text.rstrip()}")
        return "\n".join(lines)


class _Assembler:
    def __init__(self, source: str, name: str, symbols: Mapping[str, int] | None) -> None:
        self.name = name
        self.constants: dict[str, tuple[str, int, str]] = {}  # name -> (expr, line, scope)
        self.labels: set[str] = set()
        self.predefined = dict(symbols or {})
        self.values: dict[str, int] = {}
        self._evaluating: set[str] = set()
        self.statements = self._parse(source)

    # ---- parsing
    def _error(
        self, reason: str, st: _Statement | None = None, line: int | None = None, text: str = ""
    ) -> AsmError:
        if st is not None:
            line, text = st.line, st.text
        return AsmError(reason, line, text, self.name)

    def _qualify(self, label: str, scope: str, line: int, text: str) -> str:
        if label.startswith("."):
            if not scope:
                raise self._error(
                    f"local label {label} has no global label before it", line=line, text=text
                )
            return scope + label
        return label

    def _defined_name(
        self, match: re.Match[str] | None, what: str, number: int, raw: str
    ) -> str | None:
        """The constant or label a line defines (``match``'s first group), or None when the
        line does not define one (no match, or the word is an instruction or directive)."""
        if not match or match.group(1).lower() in MNEMONICS | DIRECTIVES:
            return None
        name = match.group(1)
        if name.lower() in _REGISTER_WORDS:
            raise self._error(f"{name!r} is a register name, not a {what}", line=number, text=raw)
        return name

    def _parse(self, source: str) -> list[_Statement]:
        statements: list[_Statement] = []
        scope = ""
        for number, raw in enumerate(source.splitlines(), start=1):
            line = _strip_comment(raw).rstrip()
            if not line.strip():
                continue
            constant = _CONSTANT.match(line)
            name = self._defined_name(constant, "constant", number, raw)
            if constant and name:
                self._define(name, number, raw)
                self.constants[name] = (constant.group(2).strip(), number, scope)
                continue
            rest = line
            label_match = _LABEL.match(rest)
            label = self._defined_name(label_match, "label", number, raw)
            if label_match and label:
                if not label.startswith("."):
                    if "." in label:
                        raise self._error(
                            f"label {label!r} may not contain '.'", line=number, text=raw
                        )
                    scope = label
                full = self._qualify(label, scope, number, raw)
                self._define(full, number, raw)
                statements.append(_Statement(number, raw, scope, "label", mnemonic=full))
                rest = rest[label_match.end() :]
            if not rest.strip():
                continue
            head, _, tail = rest.strip().partition(" ")
            mnemonic = head.lower()
            try:
                operands = split_operands(tail.strip()) if tail.strip() else []
            except AsmError as exc:
                raise self._error(exc.reason, line=number, text=raw) from None
            kind = mnemonic if mnemonic in DIRECTIVES else "instr"
            if kind == "equ":
                raise self._error("equ needs a name: NAME equ VALUE", line=number, text=raw)
            if kind == "instr" and mnemonic not in MNEMONICS and mnemonic not in _MNEMONIC_ALIASES:
                raise self._error(
                    f"unknown instruction or directive {head!r}", line=number, text=raw
                )
            statements.append(_Statement(number, raw, scope, kind, mnemonic, operands))
        return statements

    def _define(self, name: str, line: int, text: str) -> None:
        if name in self.labels or name in self.constants:
            raise self._error(f"symbol {name!r} is defined twice", line=line, text=text)
        if not name.startswith(".") and name in self.predefined:
            raise self._error(
                f"symbol {name!r} is already given by the caller", line=line, text=text
            )
        self.labels.add(name)

    # ---- symbols
    def lookup(self, name: str, scope: str, address: int | None, final: bool) -> int:
        if name == "@":
            if address is None:
                raise AsmError("'@' is not allowed in a constant; use a label")
            return address
        full = scope + name if name.startswith(".") else name
        if full in self.values:
            return self.values[full]
        if full in self.constants:
            if full in self._evaluating:
                raise AsmError(f"constant {full!r} is defined in terms of itself")
            expr, _, const_scope = self.constants[full]
            self._evaluating.add(full)
            try:
                value = evaluate(
                    parse_expression(expr), lambda n: self.lookup(n, const_scope, None, final)
                )
            finally:
                self._evaluating.discard(full)
            self.values[full] = value  # labels never move between passes, so this is final
            return value
        if full in self.predefined:
            return self.predefined[full]
        if full in self.labels and not final:
            raise _Forward(full)
        raise AsmError(f"undefined symbol {full!r}")

    def value(self, text: str, st: _Statement, final: bool) -> int:
        try:
            return evaluate(
                parse_expression(text), lambda n: self.lookup(n, st.scope, st.address, final)
            )
        except _Forward as fwd:
            raise self._error(f"{fwd.name!r} must be defined before it is used here", st) from None
        except AsmError as exc:
            raise self._error(exc.reason, st) from None

    # ---- instruction matching
    def _classify(self, operand: str) -> tuple[str, str | None]:
        low = operand.lower().replace(" ", "")
        if low in _REGISTER_WORDS:
            return low, None
        if operand.startswith("[") and operand.endswith("]"):
            inner = operand[1:-1].strip()
            form = _MEMORY_FORMS.get(inner.lower().replace(" ", ""))
            if form:
                return form, None
            if re.match(r"(af|bc|de|hl|sp|[abcdehl])\b", inner, re.IGNORECASE):
                raise AsmError(
                    f"{operand} is not a memory operand: use [bc], [de], [hl], [hl+], [hl-], "
                    "[c] or [address]"
                )
            return "[imm]", inner
        if re.match(r"sp\s*[-+]", operand, re.IGNORECASE):
            return "sp+imm", operand.strip()[2:]
        return "imm", operand

    def _match(self, st: _Statement) -> None:
        mnemonic, operands = st.mnemonic, list(st.operands)
        if mnemonic in _MNEMONIC_ALIASES:  # ldi [hl],a -> ld [hl+],a
            mnemonic, sign = _MNEMONIC_ALIASES[mnemonic]
            operands = [
                f"[hl{sign}]" if o.lower().replace(" ", "") == "[hl]" else o for o in operands
            ]
        try:
            forms = [self._classify(o) for o in operands]
        except AsmError as exc:
            raise self._error(exc.reason, st) from None
        for (name, pattern), encoding in _candidates(mnemonic, len(operands)):
            value_text = None
            for (form, text), want in zip(forms, pattern, strict=True):
                if want in PLACEHOLDERS:
                    if PLACEHOLDERS[want] != form:
                        break
                    value_text = text
                elif want != form:
                    break
            else:
                st.mnemonic, st.encoding, st.value_text = name, encoding, value_text
                st.size = encoding.size
                return
        shown = ", ".join(st.operands)
        known = sorted({", ".join(p) for (_, p), _ in _candidates(mnemonic, None)})
        hint = f"; forms: {' | '.join(known[:12])}" if known else ""
        raise self._error(f"no form of {mnemonic!r} takes operands ({shown}){hint}", st)

    # ---- the two passes
    def pass1(self) -> None:
        address, section = 0, None
        self.section_bounds: dict[str, list[int]] = {}
        for st in self.statements:
            st.address = address
            if st.kind == "label":
                self.values[st.mnemonic] = address
                continue
            if st.kind == "instr":
                self._match(st)
            elif st.kind == "db":
                st.size = sum(self._string_len(o) or 1 for o in self._need(st, 1))
            elif st.kind == "dw":
                st.size = 2 * len(self._need(st, 1))
            elif st.kind == "ds":
                ops = self._need(st, 1, 2)
                st.size = self.value(ops[0], st, final=False)
                if st.size < 0:
                    raise self._error(f"ds count {st.size} is negative", st)
            elif st.kind == "org":
                address = self._address(self.value(self._need(st, 1, 1)[0], st, False), st)
                st.address = address
            elif st.kind == "align":
                n = self.value(self._need(st, 1, 1)[0], st, False)
                if n <= 0 or n & (n - 1):
                    raise self._error(f"align {n}: not a power of two", st)
                st.size = (-address) % n
            elif st.kind == "section":
                match = _SECTION.match(", ".join(st.operands) if st.operands else "")
                if not match:
                    raise self._error('section needs a quoted name: section "name", $ADDR', st)
                section = match.group(1)
                if section in self.section_bounds:
                    raise self._error(f"section {section!r} is defined twice", st)
                if match.group(2):
                    address = self._address(self.value(match.group(2), st, False), st)
                st.address = address
                st.mnemonic = section
                self.section_bounds[section] = [address, address]
            address += st.size
            if address > 0x10000:
                raise self._error(f"address ${address:X} is past $FFFF", st)
            if section is not None:
                bounds = self.section_bounds[section]
                bounds[1] = max(bounds[1], address)
                if st.kind == "org":
                    bounds[0] = min(bounds[0], address)

    def _address(self, value: int, st: _Statement) -> int:
        if not 0 <= value <= 0xFFFF:
            raise self._error(f"address {value} is outside $0000-$FFFF", st)
        return value

    def _need(self, st: _Statement, low: int, high: int | None = None) -> list[str]:
        n = len(st.operands)
        if n < low or (high is not None and n > high):
            want = f"{low}" if high == low else f"{low} to {high}" if high else f"at least {low}"
            raise self._error(f"{st.mnemonic} takes {want} operand(s), got {n}", st)
        return st.operands

    @staticmethod
    def _string_len(operand: str) -> int:
        if len(operand) >= 2 and operand[0] == '"' and operand[-1] == '"':
            return len(_unescape(operand[1:-1]))
        return 0

    def _byte(self, value: int, st: _Statement, what: str = "byte") -> int:
        if not -128 <= value <= 0xFF:
            raise self._error(f"{what} value {value} does not fit in 8 bits", st)
        return value & 0xFF

    def _word(self, value: int, st: _Statement) -> int:
        if not -0x8000 <= value <= 0xFFFF:
            raise self._error(f"word value {value} does not fit in 16 bits", st)
        return value & 0xFFFF

    def encode(self, st: _Statement) -> bytes:
        if st.kind == "db":
            out = bytearray()
            for operand in st.operands:
                if self._string_len(operand):
                    out += _unescape(operand[1:-1])
                else:
                    out.append(self._byte(self.value(operand, st, True), st))
            return bytes(out)
        if st.kind == "dw":
            out = bytearray()
            for operand in st.operands:
                out += self._word(self.value(operand, st, True), st).to_bytes(2, "little")
            return bytes(out)
        if st.kind in ("ds", "align"):
            fill = 0
            if st.kind == "ds" and len(st.operands) == 2:
                fill = self._byte(self.value(st.operands[1], st, True), st, "fill")
            return bytes([fill]) * st.size
        encoding = st.encoding
        assert encoding is not None
        if encoding.operand is None:
            return encoding.opcode
        value = self.value(st.value_text or "", st, True)
        kind = encoding.operand
        if kind in ("n8",):
            return encoding.opcode + bytes([self._byte(value, st)])
        if kind in ("n16", "[n16]"):
            return encoding.opcode + self._word(value, st).to_bytes(2, "little")
        if kind == "[n8]":
            if not (0 <= value <= 0xFF or 0xFF00 <= value <= 0xFFFF):
                raise self._error(f"ldh address ${value & 0xFFFF:X} is not in $FF00-$FFFF", st)
            return encoding.opcode + bytes([value & 0xFF])
        if kind == "e8" and st.mnemonic == "jr":
            offset = value - (st.address + st.size)
            if not -128 <= offset <= 127:
                raise self._error(f"jr target is {offset} bytes away (range -128..127)", st)
            return encoding.opcode + bytes([offset & 0xFF])
        if kind in ("e8", "sp+e8"):
            if not -128 <= value <= 127:
                raise self._error(f"signed offset {value} is outside -128..127", st)
            return encoding.opcode + bytes([value & 0xFF])
        if kind == "u3":
            if not 0 <= value <= 7:
                raise self._error(f"bit number {value} is outside 0..7", st)
            return encoding.opcode[:-1] + bytes([encoding.opcode[-1] | value << 3])
        if kind == "vec":
            if value not in range(0, 0x40, 8):
                raise self._error(f"rst vector ${value:X} is not one of $00, $08, ... $38", st)
            return bytes([encoding.opcode[0] | value])
        raise AssertionError(kind)  # pragma: no cover

    def pass2(self) -> Program:
        chunks: list[tuple[int, bytearray]] = []
        listing = []
        current: bytearray | None = None
        expected = -1
        for st in self.statements:
            if st.kind in ("label", "org", "section"):
                continue
            if st.kind == "assert":
                ops = self._need(st, 1, 2)
                if not self.value(ops[0], st, True):
                    message = _unescape(ops[1].strip('"')).decode() if len(ops) == 2 else ops[0]
                    raise self._error(f"assertion failed: {message}", st)
                continue
            data = self.encode(st)
            if len(data) != st.size:  # pragma: no cover - sizes are fixed in pass 1
                raise self._error("internal error: size changed between passes", st)
            if not data:
                continue
            if current is None or st.address != expected:
                current = bytearray()
                chunks.append((st.address, current))
            current += data
            expected = st.address + len(data)
            listing.append((st.address, data, st.line, st.text))
        merged = [(a, bytes(b)) for a, b in chunks if b]
        _check_overlaps(merged, self.name)
        symbols = {k: v for k, v in self.values.items()}
        for name in self.constants:
            symbols[name] = self.lookup(name, "", 0, True)
        bounds = {k: (v[0], v[1]) for k, v in self.section_bounds.items()}
        return Program(merged, symbols, bounds, listing)


class _Forward(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


@cache
def _by_mnemonic() -> dict[str, list[tuple[tuple[str, tuple[str, ...]], Encoding]]]:
    index: dict[str, list] = {}
    for key, encoding in OPCODES.items():
        index.setdefault(key[0], []).append((key, encoding))
    return index


def _candidates(mnemonic: str, count: int | None):
    return [
        (k, e) for k, e in _by_mnemonic().get(mnemonic, []) if count is None or len(k[1]) == count
    ]


def _unescape(text: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            esc = text[i + 1]
            if esc not in _CHAR_ESCAPES:
                raise AsmError(f"unknown escape \\{esc} in string")
            out.append(_CHAR_ESCAPES[esc])
            i += 2
            continue
        if ord(ch) > 0x7F:
            raise AsmError(f"non-ASCII character {ch!r} in string")
        out.append(ord(ch))
        i += 1
    return bytes(out)


def _check_overlaps(chunks: list[tuple[int, bytes]], name: str) -> None:
    spans = sorted((a, a + len(b)) for a, b in chunks)
    for (a0, a1), (b0, _) in zip(spans, spans[1:], strict=False):
        if b0 < a1:
            raise AsmError(
                f"{name or '<source>'}: code at ${b0:04X} overlaps code ${a0:04X}-${a1 - 1:04X}"
            )


def assemble(source: str, *, name: str = "", symbols: Mapping[str, int] | None = None) -> Program:
    """Assemble SM83 source text; ``symbols`` are predefined constants (addresses, sizes).

    Raises ``AsmError`` naming the line and the reason.
    """
    assembler = _Assembler(source, name, symbols)
    assembler.pass1()
    return assembler.pass2()
