"""Run a test ROM and read its verdict: PASS, FAIL or TIMEOUT (``gbsynth check-rom``).

The caller runs all ROMs in one process, so numba compiles (or loads its cache) once. The
result protocol is detected from what the ROM does:

* ``serial``: blargg's cpu_instrs, instr_timing and mem_timing print over the
  serial port; the text ends in ``Passed`` or ``Failed``.
* ``sram``: blargg's dmg_sound (and other newer blargg tests) keep their status
  in cartridge RAM: A001-A003 = DE B0 61 once running, A000 = 0x80 while
  running and then the result code (0 = pass), the text from A004.
* ``mooneye``: the test ends with ``LD B,B``; B C D E H L = 3 5 8 13 21 34 is a
  pass, all 0x42 a failure.

The timeout counts emulated seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gbsynth.common.events import CPU_HZ

MOONEYE_PASS = (3, 5, 8, 13, 21, 34)
MOONEYE_FAIL = (0x42,) * 6
SRAM_SIGNATURE = (0xDE, 0xB0, 0x61)
SRAM_RUNNING = 0x80
CHUNK_SECONDS = 0.05
DEFAULT_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class RomResult:
    verdict: str  # PASS, FAIL or TIMEOUT
    path: str
    protocol: str
    detail: str

    def line(self) -> str:
        return f"{self.verdict} {self.path} {self.protocol} {self.detail}".rstrip()


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.replace("\x00", " ").split())
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]


def _cart_ram(gb, start: int, length: int) -> bytes:
    """Bytes of cartridge RAM bank 0 as stored (whatever the enable state)."""
    from gbsynth.emulator.core import state as S

    base = int(gb.st[S.CRAM_BASE])
    size = int(gb.st[S.CRAM_SIZE])
    if size < start + length:
        return b""
    return gb.mem[base + start : base + start + length].tobytes()


def _sram_status(gb) -> tuple[int, str] | None:
    """(result code, text) from blargg's RAM protocol, or None if not in use."""
    head = _cart_ram(gb, 0, 4)
    if len(head) < 4 or tuple(head[1:4]) != SRAM_SIGNATURE:
        return None
    raw = _cart_ram(gb, 4, 0x1000 - 4) or b""
    text = raw.split(b"\x00", 1)[0].decode("latin-1")
    return head[0], text


def check_rom(path: Path, timeout_seconds: float) -> RomResult:
    from gbsynth.emulator.core import state as S
    from gbsynth.emulator.core.machine import EmulatorHang, GameBoy, RomError

    name = str(path)
    try:
        rom = path.read_bytes()
    except OSError as exc:
        return RomResult("FAIL", name, "-", f"cannot read: {exc.strerror or exc}")
    try:
        gb = GameBoy(rom, watchdog_seconds=None)
    except RomError as exc:
        return RomResult("FAIL", name, "-", f"not a runnable ROM: {exc}")
    gb.break_on_ld_b_b(True)
    chunk = int(CHUNK_SECONDS * CPU_HZ)
    end = int(timeout_seconds * CPU_HZ)
    protocol = "unknown"
    while gb.cycle < end:
        try:
            reason = gb.run_cycles(min(chunk, end - gb.cycle))
        except EmulatorHang as exc:
            out = gb.serial_output().decode("latin-1")
            detail = f"hung: {exc}"
            if out:
                detail += f"; serial: {_one_line(out, 80)}"
            return RomResult("FAIL", name, protocol, detail)
        if reason == S.EXIT_BREAKPOINT:
            regs = (gb.b, gb.c, gb.d, gb.e, gb.h, gb.l)
            if regs == MOONEYE_PASS:
                return RomResult("PASS", name, "mooneye", "registers 3 5 8 13 21 34")
            if regs == MOONEYE_FAIL:
                return RomResult("FAIL", name, "mooneye", "registers all 0x42")
            # An LD B,B that is not the end-of-test breakpoint: carry on.
        out = gb.serial_output().decode("latin-1")
        if out:
            protocol = "serial"
            tail = out.rstrip()
            last_line = tail.splitlines()[-1] if tail else ""
            if last_line.startswith("Passed"):
                return RomResult("PASS", name, protocol, _one_line(out))
            if last_line.startswith("Failed"):
                return RomResult("FAIL", name, protocol, _one_line(out))
        status = _sram_status(gb)
        if status is not None:
            protocol = "sram"
            code, text = status
            if code != SRAM_RUNNING:
                verdict = "PASS" if code == 0 else "FAIL"
                return RomResult(verdict, name, protocol, f"code {code}: {_one_line(text)}")
    detail = f"no result after {timeout_seconds:g} emulated seconds"
    out = gb.serial_output().decode("latin-1")
    if out:
        detail += f"; serial: {_one_line(out, 80)}"
    return RomResult("TIMEOUT", name, protocol, detail)
