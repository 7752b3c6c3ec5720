"""mooneye acceptance ROMs for a DMG: the ones that pass must keep passing."""

from __future__ import annotations

import pytest
from conftest import SHARED

MOONEYE = SHARED / "roms" / "mooneye" / "acceptance"

# Suffixes naming other models; a DMG (ABC) runs the unsuffixed ROMs and those
# marked dmgABC, dmgABCmgb, G or GS.
OTHER_MODELS = ("-S", "-sgb", "-sgb2", "-mgb", "-dmg0", "-C", "-A")

PASSING = [
    "add_sp_e_timing",
    "bits/mem_oam",
    "bits/reg_f",
    "bits/unused_hwio-GS",
    "boot_div-dmgABCmgb",
    "boot_hwio-dmgABCmgb",
    "boot_regs-dmgABC",
    "call_cc_timing",
    "call_cc_timing2",
    "call_timing",
    "call_timing2",
    "di_timing-GS",
    "div_timing",
    "ei_sequence",
    "ei_timing",
    "halt_ime0_ei",
    "halt_ime0_nointr_timing",
    "halt_ime1_timing",
    "halt_ime1_timing2-GS",
    "if_ie_registers",
    "instr/daa",
    "interrupts/ie_push",
    "intr_timing",
    "jp_cc_timing",
    "jp_timing",
    "ld_hl_sp_e_timing",
    "oam_dma/basic",
    "oam_dma/reg_read",
    "oam_dma/sources-GS",
    "oam_dma_restart",
    "oam_dma_start",
    "oam_dma_timing",
    "pop_timing",
    "ppu/hblank_ly_scx_timing-GS",
    "ppu/intr_1_2_timing-GS",
    "ppu/intr_2_0_timing",
    "ppu/intr_2_mode0_timing",
    "ppu/intr_2_mode0_timing_sprites",
    "ppu/intr_2_mode3_timing",
    "ppu/intr_2_oam_ok_timing",
    "ppu/lcdon_timing-GS",
    "ppu/lcdon_write_timing-GS",
    "ppu/stat_irq_blocking",
    "ppu/stat_lyc_onoff",
    "ppu/vblank_stat_intr-GS",
    "push_timing",
    "rapid_di_ei",
    "ret_cc_timing",
    "ret_timing",
    "reti_intr_timing",
    "reti_timing",
    "rst_timing",
    "serial/boot_sclk_align-dmgABCmgb",
    "timer/div_write",
    "timer/rapid_toggle",
    "timer/tim00",
    "timer/tim00_div_trigger",
    "timer/tim01",
    "timer/tim01_div_trigger",
    "timer/tim10",
    "timer/tim10_div_trigger",
    "timer/tim11",
    "timer/tim11_div_trigger",
    "timer/tima_reload",
    "timer/tima_write_reloading",
    "timer/tma_write_reloading",
]


def dmg_roms() -> list[str]:
    """Every acceptance ROM that applies to a DMG, as a path relative to acceptance/."""
    if not MOONEYE.is_dir():
        return []
    return sorted(
        str(p.relative_to(MOONEYE).with_suffix(""))
        for p in MOONEYE.rglob("*.gb")
        if not p.stem.endswith(OTHER_MODELS)
    )


@pytest.mark.parametrize("name", PASSING)
def test_mooneye_rom_passes(shared_dir, name):
    from gbsynth.emulator.check_rom import check_rom

    result = check_rom(MOONEYE / f"{name}.gb", timeout_seconds=10)
    assert (result.verdict, result.protocol) == ("PASS", "mooneye"), result.line()


def test_passing_list_covers_at_least_90_percent_of_dmg_roms(shared_dir):
    applicable = dmg_roms()
    assert set(PASSING) <= set(applicable)
    assert len(PASSING) >= 0.9 * len(applicable), (len(PASSING), len(applicable))
