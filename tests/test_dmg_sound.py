"""blargg's dmg_sound ROMs (DMG APU registers and timing) keep passing.

They exercise services/emulator/core/apu.py through the whole machine: the core's
DIV-driven frame-sequencer edges and its per-access cycle timing included.
"""

from __future__ import annotations

import pytest

from gbsynth.emulator.check_rom import check_rom

DMG_SOUND_SINGLES = [
    "01-registers.gb",
    "02-len_ctr.gb",
    "03-trigger.gb",
    "04-sweep.gb",
    "05-sweep_details.gb",
    "06-overflow_on_trigger.gb",
    "07-len_sweep_period_sync.gb",
    "08-len_ctr_during_power.gb",
    "09-wave_read_while_on.gb",
    "10-wave_trigger_while_on.gb",
    "11-regs_after_power.gb",
    "12-wave_write_while_on.gb",
]
"""Every single passes; a ROM that stops passing is a regression."""

TIMEOUT_SECONDS = 60.0


@pytest.mark.parametrize("name", DMG_SOUND_SINGLES)
def test_dmg_sound_single(shared_dir, name):
    result = check_rom(shared_dir / "roms/blargg/dmg_sound/rom_singles" / name, TIMEOUT_SECONDS)
    assert result.verdict == "PASS", result.line()


def test_dmg_sound_combined(shared_dir):
    result = check_rom(shared_dir / "roms/blargg/dmg_sound/dmg_sound.gb", TIMEOUT_SECONDS)
    assert result.verdict == "PASS", result.line()
