"""The GameBoy driver: boot state, capture, save/load, subroutine calls, hangs, buttons."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED

from gbsynth.common.events import FRAME_CYCLES, ApuWrites
from gbsynth.emulator.core import state as S
from gbsynth.emulator.core.cartridge.header import build_rom
from gbsynth.emulator.core.machine import EmulatorHang, GameBoy, RomError

MUSIC_ROM = SHARED / "roms" / "music" / "devsoundx" / "DevSoundX.gb"
ENTRY = bytes([0x00, 0xC3, 0x50, 0x01])  # nop; jp 0x0150


def rom_with(code: bytes, **kwargs) -> bytes:
    """A ROM whose program (at 0x0150) is `code`."""
    return build_rom({0x100: ENTRY, 0x150: code}, **kwargs)


def test_boot_state_is_the_dmg_post_boot_state():
    gb = GameBoy(rom_with(bytes([0x18, 0xFE])))
    assert (gb.a, gb.f, gb.b, gb.c, gb.d, gb.e, gb.h, gb.l) == (
        0x01,
        0xB0,
        0x00,
        0x13,
        0x00,
        0xD8,
        0x01,
        0x4D,
    )
    assert (gb.sp, gb.pc, gb.ime, gb.cycle) == (0xFFFE, 0x0100, 0, 0)
    assert gb.peek(0xFF40) == 0x91
    assert gb.peek(0xFF0F) == 0xE1
    assert gb.peek(0xFF26) == 0xF1
    assert gb.peek(0xFF04) == 0xAB


def test_rom_errors_are_clear():
    good = rom_with(b"\x00", rom_size_code=1)
    with pytest.raises(RomError, match="shorter than a cartridge header"):
        GameBoy(good[:0x100])
    with pytest.raises(RomError, match="truncated"):
        GameBoy(good[:0x8000])
    bad_type = bytearray(good)
    bad_type[0x147] = 0xFC
    with pytest.raises(RomError, match="cartridge type 0xFC"):
        GameBoy(bytes(bad_type))
    bad_size = bytearray(good)
    bad_size[0x148] = 0x52
    with pytest.raises(RomError, match="ROM size"):
        GameBoy(bytes(bad_size))


def test_apu_write_cycle_is_the_m_cycle_of_the_write():
    # nop (4) + jp (16) + ld a,n (8) + ldh (n),a writes in its 3rd M-cycle (12) = 40.
    gb = GameBoy(rom_with(bytes([0x3E, 0x77, 0xE0, 0x24, 0x18, 0xFE])))
    gb.run_cycles(100)
    writes = gb.take_writes()
    assert writes == ApuWrites.from_arrays([40], [0xFF24], [0x77])


def test_recording_origin_and_take_writes():
    gb = GameBoy(rom_with(bytes([0x3E, 0x77, 0xE0, 0x24, 0x18, 0xFC])))  # loop: ld a; ldh
    gb.run_cycles(1000)
    gb.start_recording()
    origin = gb.cycle
    gb.run_cycles(1000)
    writes = gb.take_writes()
    assert len(writes) > 0
    assert writes.cycles[0] >= 0 and writes.cycles[-1] <= gb.cycle - origin
    assert np.all(np.diff(writes.cycles) == 24)  # the loop: ldh (n),a (12) + jr back (12)
    assert len(gb.take_writes()) == 0


def test_run_frames_runs_whole_frames():
    gb = GameBoy(rom_with(bytes([0x18, 0xFE])))
    gb.run_frames(3)
    assert 3 * FRAME_CYCLES <= gb.cycle < 3 * FRAME_CYCLES + 24


@pytest.fixture(scope="module")
def music_rom(shared_dir) -> bytes:
    return MUSIC_ROM.read_bytes()


def test_save_and_load_give_identical_writes(music_rom):
    gb = GameBoy(music_rom)
    gb.run_seconds(1.5)
    gb.start_recording()
    saved = gb.save_state()
    gb.run_seconds(3)
    first = gb.take_writes()
    end = gb.cycle
    gb.load_state(saved)
    gb.run_seconds(3)
    second = gb.take_writes()
    assert len(first) > 1000
    assert first == second
    assert gb.cycle == end
    # A fresh machine loaded from the state behaves the same.
    other = GameBoy(music_rom)
    other.load_state(saved)
    other.run_seconds(3)
    assert other.take_writes() == first


def test_load_state_rejects_other_layouts_and_cartridges(music_rom):
    gb = GameBoy(music_rom)
    saved = gb.save_state()
    other = GameBoy(rom_with(bytes([0x18, 0xFE]), rom_size_code=1))
    with pytest.raises(ValueError, match="cartridge"):
        other.load_state(saved)
    saved["layout"] = saved["layout"] + 1
    with pytest.raises(ValueError, match="another version"):
        gb.load_state(saved)


def test_capture_buffer_overflow_loses_nothing(music_rom):
    big = GameBoy(music_rom)
    big.run_seconds(4)
    small = GameBoy(music_rom, capture_capacity=16)
    small.run_seconds(4)
    reference = big.take_writes()
    assert len(reference) > 1000
    assert small.take_writes() == reference


MUSIC_ROMS = ["devsoundx/DevSoundX.gb", "gbt-player/effects_test.gb", "gbt-player/instr_test.gb"]


@pytest.mark.parametrize("name", MUSIC_ROMS)
def test_idle_skipping_is_exact(shared_dir, name):
    """Jumping a halted CPU to the next event gives the same writes as stepping it."""
    rom = (SHARED / "roms" / "music" / name).read_bytes()
    fast = GameBoy(rom)
    fast.run_seconds(3)
    slow = GameBoy(rom)
    slow.st[S.IDLE_SKIP] = 0
    slow.run_seconds(3)
    reference = slow.take_writes()
    assert len(reference) > 50
    assert fast.take_writes() == reference
    assert fast.cycle == slow.cycle


def test_call_runs_a_subroutine_until_it_returns():
    # 0x200: ld a,0x42; ld (0xC000),a; ld a,0x80; ldh (0x26),a; ret
    sub = bytes([0x3E, 0x42, 0xEA, 0x00, 0xC0, 0x3E, 0x80, 0xE0, 0x26, 0xC9])
    gb = GameBoy(build_rom({0x100: ENTRY, 0x150: bytes([0x18, 0xFE]), 0x200: sub}))
    gb.run_cycles(100)
    sp = gb.sp
    reason = gb.call(0x200, max_cycles=10_000)
    assert reason == S.EXIT_RETURNED
    assert gb.peek(0xC000) == 0x42
    assert gb.sp == sp
    writes = gb.take_writes()
    assert list(writes.registers) == [0xFF26] and list(writes.values) == [0x80]


def test_call_that_never_returns_stops_at_max_cycles():
    gb = GameBoy(build_rom({0x100: ENTRY, 0x150: bytes([0x18, 0xFE]), 0x200: bytes([0x18, 0xFE])}))
    assert gb.call(0x200, max_cycles=5000) == S.EXIT_END


def test_halt_with_nothing_to_wake_it_is_a_hang():
    # di; xor a; ldh (IE),a; halt
    gb = GameBoy(rom_with(bytes([0xF3, 0xAF, 0xE0, 0xFF, 0x76, 0x18, 0xFE])))
    with pytest.raises(EmulatorHang, match="halted") as info:
        gb.run_seconds(10)
    assert info.value.reason == S.EXIT_HANG_HALT
    assert gb.cycle < 1000


def test_illegal_opcode_locks_the_cpu():
    gb = GameBoy(rom_with(bytes([0x00, 0xD3, 0x00])))
    assert gb.run_seconds(1, raise_on_hang=False) == S.EXIT_HANG_LOCKED
    assert gb.pc == 0x151
    with pytest.raises(EmulatorHang, match="illegal"):
        gb.run_seconds(1)


def test_busy_loop_without_io_trips_the_watchdog():
    gb = GameBoy(rom_with(bytes([0x18, 0xFE])), watchdog_seconds=0.5)
    assert gb.run_seconds(10, raise_on_hang=False) == S.EXIT_HANG_NO_IO
    assert 0.5 * 4_194_304 <= gb.cycle < 0.6 * 4_194_304


def test_stop_waits_for_a_button():
    # stop; ld a,0x77; ldh (NR50),a; jr -2
    program = rom_with(bytes([0x10, 0x00, 0x3E, 0x77, 0xE0, 0x24, 0x18, 0xFE]))
    gb = GameBoy(program)
    assert gb.run_cycles(10_000) == S.EXIT_END
    assert len(gb.take_writes()) == 0
    gb.set_buttons(0x08)  # Start
    gb.run_cycles(1000)
    assert list(gb.take_writes().registers) == [0xFF24]
    # A STOP nobody ends is reported once the watchdog span has passed.
    gb = GameBoy(program, watchdog_seconds=0.25)
    with pytest.raises(EmulatorHang, match="STOP") as info:
        gb.run_seconds(5)
    assert info.value.reason == S.EXIT_HANG_STOP


def test_halt_waiting_for_the_joypad_is_not_a_hang():
    # di; ld a,0x10; ldh (IE),a; xor a; ldh (IF),a; ldh (P1),a; halt; ld a,0x77; ldh (NR50),a
    program = bytes([0xF3, 0x3E, 0x10, 0xE0, 0xFF, 0xAF, 0xE0, 0x0F, 0xE0, 0x00, 0x76])
    gb = GameBoy(rom_with(program + bytes([0x3E, 0x77, 0xE0, 0x24, 0x18, 0xFE])))
    assert gb.run_seconds(2) == S.EXIT_END
    assert len(gb.take_writes()) == 0
    gb.set_buttons(0x01)
    gb.run_cycles(100)
    assert list(gb.take_writes().registers) == [0xFF24]


def test_joypad_rows_and_interrupt():
    gb = GameBoy(rom_with(bytes([0x18, 0xFE])))
    gb.poke(0xFF0F, 0x00)
    gb.poke(0xFF00, 0x10)  # P15 low: select the button row
    assert gb.peek(0xFF00) & 0x0F == 0x0F
    gb.set_buttons(0x01 | 0x08 | 0x80)  # A, Start, Down
    assert gb.peek(0xFF00) & 0x0F == 0b0110
    assert gb.peek(0xFF0F) & 0x10
    gb.poke(0xFF00, 0x20)  # P14 low: directions
    assert gb.peek(0xFF00) & 0x0F == 0b0111


def test_serial_bytes_are_captured():
    code = bytearray()
    for ch in b"Hi":
        code += bytes([0x3E, ch, 0xE0, 0x01, 0x3E, 0x81, 0xE0, 0x02])  # SB = ch; SC = 0x81
        code += bytes([0xF0, 0x02, 0xE6, 0x80, 0x20, 0xFA])  # wait for SC bit 7 to clear
    code += bytes([0x18, 0xFE])
    gb = GameBoy(rom_with(bytes(code)))
    gb.run_seconds(0.1)
    assert gb.serial_output() == b"Hi"


def test_register_properties_and_peek_poke():
    gb = GameBoy(rom_with(bytes([0x18, 0xFE])))
    gb.a, gb.f = 0x12, 0xFF
    assert gb.a == 0x12 and gb.f == 0xF0  # the low nibble of F does not exist
    gb.poke(0xC123, 0x99)
    assert gb.peek(0xC123) == 0x99
    assert gb.peek(0xE123) == 0x99  # echo RAM
    gb.patch_rom(0x150, bytes([0x00]))
    assert gb.peek(0x150) == 0x00
