"""`gbsynth check-rom`: one PASS/FAIL/TIMEOUT line per ROM, exit 0 only if all pass."""

from __future__ import annotations

from conftest import SHARED

from gbsynth.cli import main
from gbsynth.emulator.cartridge.header import build_rom

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
        capsys, "--timeout-seconds", "2", str(other_model), str(looping), str(short),
        str(tmp_path / "missing.gb"),
    )  # fmt: skip
    assert code == 1
    verdicts = [line.split()[0] for line in lines]
    assert verdicts == ["FAIL", "TIMEOUT", "FAIL", "FAIL"]
    assert "registers all 0x42" in lines[0]
    assert "no result after 2 emulated seconds" in lines[1]
    assert "shorter than a cartridge header" in lines[2]
    assert "cannot read" in lines[3]
    assert "Traceback" not in err
