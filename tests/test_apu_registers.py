"""Unit tests of the DMG APU register model (no ROM needed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gbsynth.emulator.core import apu as A
from gbsynth.emulator.core.apu import apu_frame_sequencer_step, apu_read, apu_write, new_apu_state

NR10, NR11, NR12, NR13, NR14 = 0xFF10, 0xFF11, 0xFF12, 0xFF13, 0xFF14
NR21, NR22, NR23, NR24 = 0xFF16, 0xFF17, 0xFF18, 0xFF19
NR30, NR31, NR32, NR33, NR34 = 0xFF1A, 0xFF1B, 0xFF1C, 0xFF1D, 0xFF1E
NR41, NR42, NR43, NR44 = 0xFF20, 0xFF21, 0xFF22, 0xFF23
NR50, NR51, NR52 = 0xFF24, 0xFF25, 0xFF26

# The DMG's OR masks, written out independently of the module's table.
EXPECTED_MASKS = {
    NR10: 0x80, NR11: 0x3F, NR12: 0x00, NR13: 0xFF, NR14: 0xBF,
    0xFF15: 0xFF, NR21: 0x3F, NR22: 0x00, NR23: 0xFF, NR24: 0xBF,
    NR30: 0x7F, NR31: 0xFF, NR32: 0x9F, NR33: 0xFF, NR34: 0xBF,
    0xFF1F: 0xFF, NR41: 0xFF, NR42: 0x00, NR43: 0x00, NR44: 0xBF,
    NR50: 0x00, NR51: 0x00,
}  # fmt: skip


def fresh_powered() -> np.ndarray:
    """An APU just powered off and on again: all registers cleared, sequencer at step 0."""
    apu = new_apu_state()
    apu_write(apu, NR52, 0x00, 0)
    apu_write(apu, NR52, 0x80, 0)
    return apu


def steps(apu: np.ndarray, n: int) -> None:
    for _ in range(n):
        apu_frame_sequencer_step(apu)


def status(apu: np.ndarray) -> int:
    return apu_read(apu, NR52, 0) & 0x0F


def test_state_is_int64_of_declared_size():
    apu = new_apu_state()
    assert apu.dtype == np.int64
    assert apu.shape == (A.APU_STATE_SIZE,)


def test_post_boot_registers_match_a_dmg():
    # As mooneye's boot_hwio-dmgABCmgb and Pan Docs list them.
    expected = {
        NR10: 0x80, NR11: 0xBF, NR12: 0xF3, NR13: 0xFF, NR14: 0xBF,
        NR21: 0x3F, NR22: 0x00, NR23: 0xFF, NR24: 0xBF,
        NR30: 0x7F, NR31: 0xFF, NR32: 0x9F, NR33: 0xFF, NR34: 0xBF,
        NR41: 0xFF, NR42: 0x00, NR43: 0x00, NR44: 0xBF,
        NR50: 0x77, NR51: 0xF3, NR52: 0xF1,
    }  # fmt: skip
    apu = new_apu_state()
    for addr, value in expected.items():
        assert apu_read(apu, addr, 0) == value, hex(addr)


@pytest.mark.parametrize("written", [0x00, 0xFF, 0x5A])
def test_read_masks(written):
    apu = fresh_powered()
    for addr, mask in EXPECTED_MASKS.items():
        # No trigger (bit 7 of NRx4) so that nothing but the register changes.
        value = written & 0x7F if addr in (NR14, NR24, NR34, NR44) else written
        apu_write(apu, addr, value, 0)
        assert apu_read(apu, addr, 0) == value | mask, hex(addr)
    for addr in range(0xFF27, 0xFF30):
        apu_write(apu, addr, written, 0)
        assert apu_read(apu, addr, 0) == 0xFF


def test_nr52_reads_power_and_status_only():
    apu = fresh_powered()
    apu_write(apu, NR52, 0xFF, 0)  # low bits are read-only
    assert apu_read(apu, NR52, 0) == 0xF0
    apu_write(apu, NR52, 0x00, 0)
    assert apu_read(apu, NR52, 0) == 0x70


def test_power_off_clears_registers_and_ignores_writes():
    apu = new_apu_state()
    for addr in range(0xFF10, 0xFF26):
        apu_write(apu, addr, 0xFF if addr not in (NR14, NR24, NR34, NR44) else 0x7F, 0)
    apu_write(apu, NR52, 0x00, 0)
    for addr, mask in EXPECTED_MASKS.items():
        assert apu_read(apu, addr, 0) == mask, hex(addr)
    assert apu_read(apu, NR52, 0) == 0x70
    # Writes while off are ignored (the length counters are write-only anyway).
    for addr in range(0xFF10, 0xFF26):
        apu_write(apu, addr, 0xFF, 0)
    for addr, mask in EXPECTED_MASKS.items():
        assert apu_read(apu, addr, 0) == mask, hex(addr)
    assert status(apu) == 0
    apu_write(apu, NR52, 0x80, 0)
    for addr, mask in EXPECTED_MASKS.items():
        assert apu_read(apu, addr, 0) == mask, hex(addr)
    assert apu_read(apu, NR52, 0) == 0xF0


def test_power_off_stops_every_channel():
    apu = fresh_powered()
    for nrx2, nrx4 in ((NR12, NR14), (NR22, NR24), (NR42, NR44)):
        apu_write(apu, nrx2, 0xF0, 0)
        apu_write(apu, nrx4, 0x80, 0)
    apu_write(apu, NR30, 0x80, 0)
    apu_write(apu, NR34, 0x80, 0)
    assert status(apu) == 0x0F
    apu_write(apu, NR52, 0x00, 0)
    assert status(apu) == 0


def test_wave_ram_accessible_while_off():
    apu = fresh_powered()
    apu_write(apu, NR52, 0x00, 0)
    for i in range(16):
        apu_write(apu, 0xFF30 + i, i * 17, 0)
    assert [apu_read(apu, 0xFF30 + i, 0) for i in range(16)] == [i * 17 for i in range(16)]


def test_dmg_length_counter_writable_while_off():
    apu = fresh_powered()
    apu_write(apu, NR52, 0x00, 0)
    apu_write(apu, NR21, 0x3E, 0)  # length 2, written while off
    apu_write(apu, NR52, 0x80, 0)
    apu_write(apu, NR22, 0xF0, 0)
    apu_write(apu, NR24, 0xC0, 0)  # trigger, length enabled; next step (0) clocks length
    steps(apu, 1)
    assert status(apu) == 0b0010
    steps(apu, 2)  # step 1 does not clock, step 2 does
    assert status(apu) == 0


def test_frame_sequencer_does_not_run_while_off_and_restarts_at_step_0():
    apu = fresh_powered()
    steps(apu, 3)
    apu_write(apu, NR52, 0x00, 0)
    steps(apu, 5)
    apu_write(apu, NR52, 0x80, 0)
    assert apu[A.FRAME_SEQ_STEP] == 0


@pytest.mark.parametrize(
    "nrx1,nrx2,nrx4,bit,full",
    [
        (NR11, NR12, NR14, 0, 64),
        (NR21, NR22, NR24, 1, 64),
        (NR31, NR30, NR34, 2, 256),
        (NR41, NR42, NR44, 3, 64),
    ],
)
def test_length_counter_counts_in_even_steps(nrx1, nrx2, nrx4, bit, full):
    apu = fresh_powered()
    apu_write(apu, nrx2, 0x80 if nrx2 == NR30 else 0xF0, 0)
    apu_write(apu, nrx1, full - 4, 0)  # length 4
    apu_write(apu, nrx4, 0xC0, 0)  # next step 0 clocks length: no extra clock
    assert status(apu) == 1 << bit
    steps(apu, 6)  # steps 0, 2, 4 clocked: one left
    assert status(apu) == 1 << bit
    steps(apu, 1)  # step 6
    assert status(apu) == 0
    assert apu[A.CHANNEL_BASE + bit * A.CHANNEL_STRIDE + A.CH_LENGTH] == 0


def test_length_disabled_does_not_count():
    apu = fresh_powered()
    apu_write(apu, NR22, 0xF0, 0)
    apu_write(apu, NR21, 63, 0)  # length 1
    apu_write(apu, NR24, 0x80, 0)
    steps(apu, 64)
    assert status(apu) == 0b0010


def test_trigger_with_zero_length_loads_full_length():
    apu = fresh_powered()
    apu_write(apu, NR22, 0xF0, 0)
    apu_write(apu, NR21, 63, 0)
    apu_write(apu, NR24, 0xC0, 0)
    steps(apu, 1)  # step 0 -> length expires
    assert status(apu) == 0
    steps(apu, 1)  # next step is 2 (even): trigger loads 64
    apu_write(apu, NR24, 0xC0, 0)
    steps(apu, 2 * 63)
    assert status(apu) == 0b0010
    steps(apu, 2)
    assert status(apu) == 0


def test_extra_length_clock_when_enabling_in_first_half():
    apu = fresh_powered()
    apu_write(apu, NR22, 0xF0, 0)
    apu_write(apu, NR21, 62, 0)  # length 2
    apu_write(apu, NR24, 0x80, 0)  # trigger, length disabled
    steps(apu, 1)  # next step is 1: does not clock length
    apu_write(apu, NR24, 0x40, 0)  # enabling length clocks it once: 1 left
    assert apu[A.CH2_LENGTH] == 1
    assert status(apu) == 0b0010
    apu_write(apu, NR24, 0x00, 0)
    apu_write(apu, NR24, 0x40, 0)  # again: reaches 0 and, without trigger, stops
    assert status(apu) == 0


def test_extra_length_clock_not_when_already_enabled_or_next_step_clocks():
    apu = fresh_powered()
    apu_write(apu, NR22, 0xF0, 0)
    apu_write(apu, NR21, 62, 0)
    apu_write(apu, NR24, 0x80, 0)
    apu_write(apu, NR24, 0x40, 0)  # next step is 0: no extra clock
    assert apu[A.CH2_LENGTH] == 2
    steps(apu, 1)
    apu_write(apu, NR24, 0x40, 0)  # already enabled: no extra clock
    assert apu[A.CH2_LENGTH] == 1


def test_trigger_with_zero_length_in_first_half_loads_one_less():
    apu = fresh_powered()
    apu_write(apu, NR42, 0xF0, 0)
    apu_write(apu, NR41, 63, 0)  # length 1
    apu_write(apu, NR30, 0x80, 0)
    apu_write(apu, NR31, 255, 0)  # length 1
    apu_write(apu, NR44, 0xC0, 0)
    apu_write(apu, NR34, 0xC0, 0)
    steps(apu, 1)  # step 0 expires both; the next step (1) does not clock lengths
    assert status(apu) == 0
    apu_write(apu, NR44, 0xC0, 0)  # length 0 -> 64, minus the extra clock
    assert apu[A.CH4_LENGTH] == 63
    apu_write(apu, NR34, 0xC0, 0)
    assert apu[A.CH3_LENGTH] == 255
    assert status(apu) == 0b1100


def test_trigger_with_length_zero_and_extra_clock_stays_on():
    apu = fresh_powered()
    apu_write(apu, NR22, 0xF0, 0)
    apu_write(apu, NR21, 63, 0)  # length 1
    steps(apu, 1)
    apu_write(apu, NR24, 0xC0, 0)  # enable + trigger: clock to 0, then trigger reloads 63
    assert status(apu) == 0b0010
    assert apu[A.CH2_LENGTH] == 63


def test_sweep_overflow_on_trigger_disables_channel_1():
    apu = fresh_powered()
    apu_write(apu, NR12, 0xF0, 0)
    apu_write(apu, NR10, 0x01, 0)  # shift 1, add, pace 0: the trigger still checks
    apu_write(apu, NR13, 0x00, 0)
    apu_write(apu, NR14, 0x86, 0)  # 0x600 + 0x300 > 0x7FF
    assert status(apu) == 0
    apu_write(apu, NR14, 0x85, 0)  # 0x500 + 0x280 = 0x780: fine
    assert status(apu) == 1


def test_sweep_overflow_on_clock_and_shadow_write_back():
    apu = fresh_powered()
    apu_write(apu, NR12, 0xF0, 0)
    apu_write(apu, NR10, 0x11, 0)  # pace 1, add, shift 1
    apu_write(apu, NR13, 0x00, 0)
    apu_write(apu, NR14, 0x84, 0)  # 0x400 -> 0x600 at first sweep clock
    steps(apu, 3)  # steps 0, 1, 2: the sweep clocks on step 2
    assert apu[A.SWEEP_SHADOW] == 0x600
    assert apu[A.REGS + A.NR13] == 0x00 and apu[A.REGS + A.NR14] & 7 == 6
    # The second calculation (0x600 + 0x300) overflows: channel 1 stops.
    assert status(apu) == 0


def test_sweep_subtract_then_leaving_negate_mode_disables():
    apu = fresh_powered()
    apu_write(apu, NR12, 0xF0, 0)
    apu_write(apu, NR10, 0x19, 0)  # pace 1, subtract, shift 1
    apu_write(apu, NR14, 0x84, 0)  # the trigger's calculation subtracts
    assert status(apu) == 1
    apu_write(apu, NR10, 0x11, 0)
    assert status(apu) == 0


def test_leaving_negate_mode_before_any_calculation_is_harmless():
    apu = fresh_powered()
    apu_write(apu, NR12, 0xF0, 0)
    apu_write(apu, NR10, 0x18, 0)  # subtract, shift 0: no calculation on trigger
    apu_write(apu, NR14, 0x84, 0)
    apu_write(apu, NR10, 0x10, 0)
    assert status(apu) == 1


def test_sweep_subtract_steps_shadow_down():
    apu = fresh_powered()
    apu_write(apu, NR12, 0xF0, 0)
    apu_write(apu, NR10, 0x2A, 0)  # pace 2, subtract, shift 2
    apu_write(apu, NR13, 0x00, 0)
    apu_write(apu, NR14, 0x84, 0)
    steps(apu, 8)  # sweep clocks on steps 2 and 6: pace 2 -> one update
    assert apu[A.SWEEP_SHADOW] == 0x400 - 0x100
    assert status(apu) == 1


def test_nr52_status_bits_per_channel():
    apu = fresh_powered()
    for bit, (nrx2, nrx4, dac) in enumerate(
        ((NR12, NR14, 0xF0), (NR22, NR24, 0xF0), (NR30, NR34, 0x80), (NR42, NR44, 0xF0))
    ):
        apu_write(apu, nrx2, dac, 0)
        assert status(apu) == (1 << bit) - 1  # the DAC alone does not start a channel
        apu_write(apu, nrx4, 0x80, 0)
        assert status(apu) == (2 << bit) - 1


@pytest.mark.parametrize(
    "nrx2,nrx4,bit,on,off",
    [
        (NR12, NR14, 0, 0x08, 0x07),
        (NR22, NR24, 1, 0x10, 0x07),
        (NR42, NR44, 3, 0xF0, 0x00),
        (NR30, NR34, 2, 0x80, 0x7F),
    ],
)
def test_dac_off_disables_channel_and_blocks_trigger(nrx2, nrx4, bit, on, off):
    apu = fresh_powered()
    apu_write(apu, nrx2, on, 0)
    apu_write(apu, nrx4, 0x80, 0)
    assert status(apu) == 1 << bit
    apu_write(apu, nrx2, off, 0)
    assert status(apu) == 0
    apu_write(apu, nrx4, 0x80, 0)
    assert status(apu) == 0
    apu_write(apu, nrx2, on, 0)  # turning the DAC back on does not restart it
    assert status(apu) == 0


def test_envelope_volume_steps_on_step_7():
    apu = fresh_powered()
    apu_write(apu, NR22, 0xA2, 0)  # volume 10, decrease, pace 2
    apu_write(apu, NR24, 0x80, 0)
    assert apu[A.CH2_VOLUME] == 10
    steps(apu, 8)  # one envelope clock: 1 left
    assert apu[A.CH2_VOLUME] == 10
    steps(apu, 8)
    assert apu[A.CH2_VOLUME] == 9
    steps(apu, 8 * 2 * 20)
    assert apu[A.CH2_VOLUME] == 0
    assert status(apu) == 0b0010  # volume 0 does not stop the channel


def test_envelope_trigger_before_step_7_delays_first_step():
    apu = fresh_powered()
    steps(apu, 7)  # next step is 7
    apu_write(apu, NR42, 0x31, 0)  # volume 3, decrease, pace 1
    apu_write(apu, NR44, 0x80, 0)
    steps(apu, 1)
    assert apu[A.CH4_BASE + A.CH_VOLUME] == 3
    steps(apu, 8)
    assert apu[A.CH4_BASE + A.CH_VOLUME] == 2


def test_envelope_increase_stops_at_15():
    apu = fresh_powered()
    apu_write(apu, NR12, 0xE9, 0)  # volume 14, increase, pace 1
    apu_write(apu, NR14, 0x80, 0)
    steps(apu, 8 * 5)
    assert apu[A.CH1_VOLUME] == 15
    assert apu[A.CH1_BASE + A.CH_ENV_RUNNING] == 0


# -- channel 3 position and the DMG wave RAM quirks ------------------------------


def _start_wave(apu: np.ndarray, freq: int, now: int) -> int:
    for i in range(16):
        apu_write(apu, 0xFF30 + i, 0x10 * i + i, 0)  # byte i = 0xii
    apu_write(apu, NR30, 0x80, now)
    apu_write(apu, NR33, freq & 0xFF, now)
    apu_write(apu, NR34, 0x80 | (freq >> 8), now)
    return 2 * (2048 - freq)


def test_wave_ram_while_playing_reaches_the_byte_being_read_only_at_the_read():
    apu = fresh_powered()
    t0 = 1000
    period = _start_wave(apu, 0x700, t0)  # 512 cycles per sample
    first_read = t0 + period + A.WAVE_TRIGGER_DELAY
    # Sample 0 is skipped: reads go to samples 1, 2, 3, ... (bytes 0, 1, 1, 2, ...).
    for k in range(40):
        read_at = first_read + k * period
        sample = (k + 1) & 31
        assert apu_read(apu, 0xFF30, read_at - A.WAVE_ACCESS_WINDOW) == 0xFF
        assert apu_read(apu, 0xFF3A, read_at) == 0x11 * (sample >> 1), k
    assert apu[A.WAVE_POSITION] == 39 & 31  # reads before the last access


def test_wave_ram_write_while_playing_hits_current_byte_or_nothing():
    apu = fresh_powered()
    t0 = 0
    period = _start_wave(apu, 0x7C0, t0)  # 128 cycles per sample
    first_read = t0 + period + A.WAVE_TRIGGER_DELAY
    apu_write(apu, 0xFF30, 0xAB, first_read - 10)  # outside the window: ignored
    apu_write(apu, 0xFF3F, 0xCD, first_read + 3 * period)  # sample 4 -> byte 2
    apu_write(apu, NR30, 0x00, first_read + 3 * period + 1)  # stop: plain access again
    got = [apu_read(apu, 0xFF30 + i, 0) for i in range(16)]
    want = [0x11 * i for i in range(16)]
    want[2] = 0xCD
    assert got == want


@pytest.mark.parametrize(
    "reads_done,expected_head",
    [
        (0, [0x00, 0x11, 0x22, 0x33]),  # about to read sample 1 (byte 0): byte 0 <- byte 0
        (2, [0x11, 0x11, 0x22, 0x33]),  # about to read sample 3 (byte 1): byte 0 <- byte 1
        (9, [0x44, 0x55, 0x66, 0x77]),  # about to read sample 10 (byte 5): bytes 0-3 <- 4-7
        (24, [0xCC, 0xDD, 0xEE, 0xFF]),  # about to read sample 25 (byte 12): bytes 0-3 <- 12-15
    ],
)
def test_retrigger_corrupts_wave_ram_just_before_a_read(reads_done, expected_head):
    apu = fresh_powered()
    period = _start_wave(apu, 0x7C0, 0)
    next_read = period + A.WAVE_TRIGGER_DELAY + reads_done * period
    apu_write(apu, NR34, 0x87, next_read - A.WAVE_ACCESS_WINDOW)
    apu_write(apu, NR30, 0x00, next_read)
    head = [apu_read(apu, 0xFF30 + i, 0) for i in range(4)]
    assert head == expected_head
    # Away from a read, a retrigger leaves wave RAM alone.
    apu = fresh_powered()
    period = _start_wave(apu, 0x7C0, 0)
    apu_write(apu, NR34, 0x87, next_read - 20)
    apu_write(apu, NR30, 0x00, next_read)
    assert [apu_read(apu, 0xFF30 + i, 0) for i in range(4)] == [0x00, 0x11, 0x22, 0x33]


def test_wave_frequency_change_applies_from_next_reload():
    apu = fresh_powered()
    period = _start_wave(apu, 0x700, 0)  # 512
    first_read = period + A.WAVE_TRIGGER_DELAY
    apu_write(apu, NR33, 0xC0, first_read - 100)  # freq 0x7C0: 128 cycles from next read on
    apu_write(apu, NR34, 0x07, first_read - 100)
    assert apu_read(apu, 0xFF30, first_read) == 0x00  # sample 1 -> byte 0
    assert apu_read(apu, 0xFF30, first_read + 128) == 0x11  # sample 2 -> byte 1
    assert apu_read(apu, 0xFF30, first_read + 256) == 0x11  # sample 3 -> byte 1
    assert apu[A.WAVE_SAMPLE] == 0x1  # last read: sample 2, byte 1's high nibble


def test_functions_are_pure_over_the_state():
    a = fresh_powered()
    b = a.copy()
    for apu in (a, b):
        apu_write(apu, NR22, 0xF3, 5)
        apu_write(apu, NR24, 0xC0, 9)
        steps(apu, 37)
    assert np.array_equal(a, b)


# -- properties over random access sequences --------------------------------------

_ops = st.lists(
    st.tuples(
        st.sampled_from(["write", "read", "step"]),
        st.integers(0xFF10, 0xFF3F),
        st.integers(0, 255),
        st.integers(0, 600),  # cycles since the previous access
    ),
    max_size=200,
)


def _run(ops: list[tuple[str, int, int, int]]) -> tuple[np.ndarray, list[int]]:
    apu = new_apu_state()
    now = 0
    reads = []
    for kind, addr, value, dt in ops:
        now += dt
        if kind == "write":
            apu_write(apu, addr, value, now)
        elif kind == "read":
            reads.append(apu_read(apu, addr, now))
        else:
            apu_frame_sequencer_step(apu)
    return apu, reads


@settings(max_examples=300, deadline=None)
@given(_ops)
def test_random_accesses_keep_the_state_consistent(ops):
    apu, reads = _run(ops)
    assert all(0 <= r <= 0xFF for r in reads)
    powered = apu_read(apu, NR52, 0) & 0x80
    for channel in range(4):
        base = A.CHANNEL_BASE + channel * A.CHANNEL_STRIDE
        assert 0 <= apu[base + A.CH_LENGTH] <= A.LENGTH_MAX[channel]
        assert 0 <= apu[base + A.CH_VOLUME] <= 15
        on = apu[base + A.CH_ON]
        assert (apu_read(apu, NR52, 0) >> channel) & 1 == on
        if on:
            assert powered
            # A channel only plays with its DAC on.
            if channel == 2:
                assert apu[A.REGS + A.NR30] & 0x80
            else:
                assert apu[A.REGS + A.CHANNEL_REG[channel] + 2] & 0xF8
    assert 0 <= apu[A.WAVE_POSITION] <= 31
    assert 0 <= apu[A.SWEEP_SHADOW] <= 0x7FF
    assert 0 <= apu[A.FRAME_SEQ_STEP] <= 7
    assert all(0 <= apu[A.REGS + i] <= 0xFF for i in range(A.REG_COUNT))
    if not powered:
        for addr, mask in EXPECTED_MASKS.items():
            assert apu_read(apu, addr, 0) == mask
    # Same inputs, same state and same reads: nothing outside the array matters.
    again, reads_again = _run(ops)
    assert np.array_equal(apu, again) and reads == reads_again


def test_out_of_range_addresses_are_ignored():
    apu = new_apu_state()
    before = apu.copy()
    apu_write(apu, 0xFF0F, 0x12, 0)
    apu_write(apu, 0xFF40, 0x12, 0)
    assert np.array_equal(apu, before)
    assert apu_read(apu, 0xFF40, 0) == 0xFF
