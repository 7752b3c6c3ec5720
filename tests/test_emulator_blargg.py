"""blargg's CPU, timing and sound test ROMs must pass (one process: numba compiles once)."""

from __future__ import annotations

import pytest
from conftest import SHARED

BLARGG = SHARED / "roms" / "blargg"

CPU_INSTRS_SINGLES = [
    "01-special",
    "02-interrupts",
    "03-op_sp_hl",
    "04-op_r_imm",
    "05-op_rp",
    "06-ld_r_r",
    "07-jr_jp_call_ret_rst",
    "08-misc_instrs",
    "09-op_r_r",
    "10-bit_ops",
    "11-op_a_hl_",
]
MEM_TIMING_SINGLES = ["01-read_timing", "02-write_timing", "03-modify_timing"]
DMG_SOUND_SINGLES = [
    "01-registers",
    "02-len_ctr",
    "03-trigger",
    "04-sweep",
    "05-sweep_details",
    "06-overflow_on_trigger",
    "07-len_sweep_period_sync",
    "08-len_ctr_during_power",
    "09-wave_read_while_on",
    "10-wave_trigger_while_on",
    "11-regs_after_power",
    "12-wave_write_while_on",
]

ROMS = (
    [("serial", f"cpu_instrs/individual/{name}.gb", 60) for name in CPU_INSTRS_SINGLES]
    + [("serial", "cpu_instrs/cpu_instrs.gb", 120)]
    + [("serial", "instr_timing/instr_timing.gb", 30)]
    + [("serial", f"mem_timing/individual/{name}.gb", 30) for name in MEM_TIMING_SINGLES]
    + [("serial", "mem_timing/mem_timing.gb", 30)]
    + [("sram", f"dmg_sound/rom_singles/{name}.gb", 60) for name in DMG_SOUND_SINGLES]
)


@pytest.mark.parametrize(
    ("protocol", "rom", "timeout"), ROMS, ids=[rom.rsplit("/", 1)[-1] for _, rom, _ in ROMS]
)
def test_blargg_rom_passes(shared_dir, protocol, rom, timeout):
    from gbsynth.emulator.check_rom import check_rom

    result = check_rom(BLARGG / rom, timeout_seconds=timeout)
    assert (result.verdict, result.protocol) == ("PASS", protocol), result.line()


@pytest.mark.slow
def test_dmg_sound_combined_passes(shared_dir):
    from gbsynth.emulator.check_rom import check_rom

    result = check_rom(BLARGG / "dmg_sound" / "dmg_sound.gb", timeout_seconds=200)
    assert result.verdict == "PASS", result.line()


def test_cpu_instrs_serial_text(shared_dir):
    """The combined ROM prints each sub-test's number and ok, then its verdict."""
    from gbsynth.emulator.core.machine import GameBoy

    gb = GameBoy((BLARGG / "cpu_instrs" / "cpu_instrs.gb").read_bytes())
    for _ in range(120):
        gb.run_seconds(1)
        if b"Passed" in gb.serial_output():
            break
    text = gb.serial_output().decode()
    assert text.startswith("cpu_instrs")
    for n in range(1, 12):
        assert f"{n:02d}:ok" in text
    assert text.rstrip().endswith("Passed all tests")
