"""`gbsynth check-rom`: one PASS/FAIL/TIMEOUT line per ROM, exit 0 only if all pass."""

from __future__ import annotations

from conftest import SHARED

from gbsynth.cli import main
from gbsynth.emulator.core.cartridge.header import build_rom

MOONEYE = SHARED / "roms" / "mooneye" / "acceptance"
BLARGG = SHARED / "roms" / "blargg"


def run_cli(capsys, *args: str) -> tuple[int, list[str], str]:
    code = main(["check-rom", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_all_protocols_pass(shared_dir, capsys):
    roms = [
        BLARGG / "instr_timing" / "instr_timing.gb",
        BLARGG / "dmg_sound" / "rom_singles" / "01-registers.gb",
        MOONEYE / "instr" / "daa.gb",
    ]
    code, lines, err = run_cli(capsys, *map(str, roms))
    assert code == 0, lines
    assert [line.split()[0] for line in lines] == ["PASS"] * 3
    assert [line.split()[2] for line in lines] == ["serial", "sram", "mooneye"]
    assert lines[0].endswith("Passed")
    assert err == ""


def test_failures_timeouts_and_bad_files(shared_dir, capsys, tmp_path):
    looping = tmp_path / "loop.gb"
    looping.write_bytes(build_rom({0x100: bytes([0x18, 0xFE])}))
    short = tmp_path / "short.gb"
    short.write_bytes(b"\x00" * 100)
    other_model = MOONEYE / "boot_regs-sgb.gb"  # expects SGB registers: fails on a DMG
    code, lines, err = run_cli(
        capsys,
        "--timeout-seconds",
        "2",
        str(other_model),
        str(looping),
        str(short),
        str(tmp_path / "missing.gb"),
    )
    assert code == 1
    verdicts = [line.split()[0] for line in lines]
    assert verdicts == ["FAIL", "TIMEOUT", "FAIL", "FAIL"]
    assert "registers all 0x42" in lines[0]
    assert "no result after 2 emulated seconds" in lines[1]
    assert "shorter than a cartridge header" in lines[2]
    assert "cannot read" in lines[3]
    assert "Traceback" not in err


def serial_rom(text: bytes) -> bytes:
    """A ROM that sends `text` over the serial port, then loops."""
    code = bytearray([0x00, 0xC3, 0x50, 0x01])
    body = bytearray()
    for ch in text:
        body += bytes([0x3E, ch, 0xE0, 0x01, 0x3E, 0x81, 0xE0, 0x02])  # SB = ch; SC = 0x81
        body += bytes([0xF0, 0x02, 0xE6, 0x80, 0x20, 0xFA])  # wait for the transfer
    body += bytes([0x18, 0xFE])
    return build_rom({0x100: bytes(code), 0x150: bytes(body)})


def test_serial_failure_text_is_a_fail(capsys, tmp_path):
    failing = tmp_path / "failing.gb"
    failing.write_bytes(serial_rom(b"03-op sp,hl\n\nE8 F8\nFailed #2\n"))
    passing = tmp_path / "passing.gb"
    passing.write_bytes(serial_rom(b"demo\n\nPassed\n"))
    code, lines, _ = run_cli(capsys, str(failing), str(passing))
    assert code == 1
    assert lines[0].startswith("FAIL ") and lines[0].endswith("serial 03-op sp,hl E8 F8 Failed #2")
    assert lines[1].startswith("PASS ") and " serial " in lines[1]
