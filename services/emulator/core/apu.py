"""The DMG APU as the CPU sees it: registers, channel status and their timing.

This is the state machine behind the sound registers FF10-FF3F of a DMG (model
ABC): read masks, NR52 power and channel status, length counters, the channel 1
frequency sweep, volume envelopes, DACs, triggers, the 512 Hz frame sequencer and
the DMG wave-channel quirks (wave RAM access while channel 3 plays, wave RAM
corruption on retrigger). It does not make sound; a synthesizer can drive the
same functions and read the tracked envelope volume, sweep shadow frequency and
wave position from the state array.

Everything lives in one int64 array (``new_apu_state``) addressed by the named
index constants below, and every function is a pure numba function over that
array, so the emulator core can call it from its jitted run loop and save or
load it like the rest of the machine.

Timing contract with the core:

* ``now`` is the T-cycle (4,194,304 Hz) of the access; it never goes backwards.
* ``apu_frame_sequencer_step`` is called once per falling edge of bit 12 of the
  16-bit DIV counter (bit 4 of DIV), in cycle order, before any later access.

Only channel 3 needs ``now``: its sample position advances at 2 * (2048 - f)
T-cycles per sample, and on a DMG wave RAM is only reachable (as the byte the
channel is reading) within a couple of cycles of each sample read. Its position
is computed lazily from ``now`` at each access instead of being ticked. (When a
frame-sequencer length clock stops CH3, its position is left where the last
access put it: the step carries no cycle, and nothing a program can read
depends on it, since a trigger restarts the position.)

Quirk references: Pan Docs "Audio" and "Audio details", blargg's notes on the
sound hardware, and blargg's dmg_sound ROMs, all 12 of which pass
(tests/test_dmg_sound.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# --------------------------------------------------------------------------
# State layout: int64 slots, named.
# --------------------------------------------------------------------------

REGS = 0
"""0x30 slots: the raw bytes last written to FF10..FF3F (slot = address - 0xFF10)."""
REG_COUNT = 0x30
WAVE_RAM = REGS + 0x20
"""Wave RAM (FF30-FF3F) is the last 16 register slots: 32 four-bit samples, high nibble first."""

# Register slots (offsets from REGS).
NR10, NR11, NR12, NR13, NR14 = 0x00, 0x01, 0x02, 0x03, 0x04
NR21, NR22, NR23, NR24 = 0x06, 0x07, 0x08, 0x09
NR30, NR31, NR32, NR33, NR34 = 0x0A, 0x0B, 0x0C, 0x0D, 0x0E
NR41, NR42, NR43, NR44 = 0x10, 0x11, 0x12, 0x13
NR50, NR51, NR52 = 0x14, 0x15, 0x16

FRAME_SEQ_STEP = 0x30
"""The frame-sequencer step the next DIV-APU clock executes (0..7)."""

CHANNEL_BASE = 0x38
CHANNEL_STRIDE = 8
# Fields of each channel's block; channel c (0..3 for CH1..CH4) starts at
# CHANNEL_BASE + c * CHANNEL_STRIDE.
CH_ON = 0
"""1 while the channel is active (the NR52 status bit)."""
CH_LENGTH = 1
"""Length counter: frame-sequencer length clocks left before the channel stops."""
CH_VOLUME = 2
"""Current envelope volume 0..15 (CH1, CH2, CH4; CH3 uses NR32)."""
CH_ENV_TIMER = 3
"""Envelope clocks (64 Hz) left before the next volume step."""
CH_ENV_RUNNING = 4
"""1 until the envelope has hit 0 or 15 since the last trigger."""

CH1_BASE = CHANNEL_BASE
CH2_BASE = CHANNEL_BASE + CHANNEL_STRIDE
CH3_BASE = CHANNEL_BASE + 2 * CHANNEL_STRIDE
CH4_BASE = CHANNEL_BASE + 3 * CHANNEL_STRIDE
CH1_ON, CH2_ON, CH3_ON, CH4_ON = (b + CH_ON for b in (CH1_BASE, CH2_BASE, CH3_BASE, CH4_BASE))
CH1_LENGTH, CH2_LENGTH, CH3_LENGTH, CH4_LENGTH = (
    b + CH_LENGTH for b in (CH1_BASE, CH2_BASE, CH3_BASE, CH4_BASE)
)
CH1_VOLUME, CH2_VOLUME, CH4_VOLUME = (b + CH_VOLUME for b in (CH1_BASE, CH2_BASE, CH4_BASE))

_CHANNEL_END = CHANNEL_BASE + 4 * CHANNEL_STRIDE
SWEEP_SHADOW = _CHANNEL_END + 0
"""CH1 sweep shadow frequency (11 bits)."""
SWEEP_TIMER = _CHANNEL_END + 1
"""Sweep clocks (128 Hz) left before the next sweep step."""
SWEEP_ENABLED = _CHANNEL_END + 2
"""Sweep unit enabled (set on trigger when NR10 pace or shift is non-zero)."""
SWEEP_NEGATE_USED = _CHANNEL_END + 3
"""A subtracting sweep calculation happened since the last trigger."""
WAVE_POSITION = _CHANNEL_END + 4
"""Index 0..31 of the wave sample CH3 read last (0 right after a trigger)."""
WAVE_NEXT_READ = _CHANNEL_END + 5
"""T-cycle of CH3's next sample read (valid while CH3 is on)."""
WAVE_SAMPLE = _CHANNEL_END + 6
"""CH3 sample buffer: the last 4-bit sample read (0 after power-on)."""
NOISE_LFSR = _CHANNEL_END + 7
"""CH4 shift register as left by the last trigger (the synthesizer clocks it).

Stored in the XOR convention (all 15 bits set after a trigger, new bit = b0 XOR b1);
Pan Docs' XNOR convention holds the complement (0 after a trigger)."""

APU_STATE_SIZE = _CHANNEL_END + 8

# --------------------------------------------------------------------------
# Hardware tables (data, not branches).
# --------------------------------------------------------------------------

READ_OR_MASK = np.array(
    [
        0x80, 0x3F, 0x00, 0xFF, 0xBF,  # NR10 NR11 NR12 NR13 NR14
        0xFF, 0x3F, 0x00, 0xFF, 0xBF,  # FF15 NR21 NR22 NR23 NR24
        0x7F, 0xFF, 0x9F, 0xFF, 0xBF,  # NR30 NR31 NR32 NR33 NR34
        0xFF, 0xFF, 0x00, 0x00, 0xBF,  # FF1F NR41 NR42 NR43 NR44
        0x00, 0x00, 0x70,  # NR50 NR51 NR52
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,  # FF27-FF2F: unused
    ],
    dtype=np.int64,
)  # fmt: skip
"""Bits that read back as 1 for FF10..FF2F (unused bits and write-only registers)."""

LENGTH_MAX = np.array([64, 64, 256, 64], dtype=np.int64)
"""Full length per channel (NRx1 sets ``LENGTH_MAX - value``)."""

CHANNEL_REG = np.array([0x00, 0x05, 0x0A, 0x0F], dtype=np.int64)
"""Register slot of each channel's NRx0 (NRx1..NRx4 follow)."""

# Channel 3 timing on a DMG, in T-cycles (see _wave_catch_up), with `now` the
# cycle the core stamps on the access M-cycle. blargg's dmg_sound 09, 10 and 12
# pin these: a trigger delay of 4 or 8, an access window of 4, or no corruption
# window each make at least one of them fail.
WAVE_TRIGGER_DELAY = 6
"""Extra delay before the first sample period after a CH3 trigger."""
WAVE_ACCESS_WINDOW = 2
"""Wave RAM is reachable while CH3 plays only if its next read is < this many cycles away."""
WAVE_CORRUPT_WINDOW = 2
"""A retrigger corrupts wave RAM if CH3's next read is WAVE_ACCESS_WINDOW..+this-1 away."""

# The DMG boot ROM leaves wave RAM in a pattern that varies by unit; this is a
# commonly observed one, fixed so runs are reproducible.
BOOT_WAVE_RAM = np.array(
    [0x84, 0x40, 0x43, 0xAA, 0x2D, 0x78, 0x92, 0x3C,
     0x60, 0x59, 0x59, 0xB0, 0x34, 0xB8, 0x2E, 0xDA],
    dtype=np.int64,
)  # fmt: skip


def new_apu_state() -> np.ndarray:
    """The APU state of a DMG right after the boot ROM.

    The boot ROM powers the APU, sets NR50=77 NR51=F3, and plays its two-note
    chime on CH1 (NR11=80 NR12=F3, last trigger NR13=C1 NR14=87), whose envelope
    has decayed to 0 by the hand-off while the channel stays on: NR52 reads F1.
    Register reads match mooneye's boot_hwio-dmgABCmgb. Two things vary or are
    not documented and are fixed here for reproducible runs: the frame-sequencer
    step (0) and wave RAM (random on hardware; one commonly observed pattern).
    """
    apu = np.zeros(APU_STATE_SIZE, dtype=np.int64)
    apu[REGS + NR11] = 0x80
    apu[REGS + NR12] = 0xF3
    apu[REGS + NR13] = 0xC1
    apu[REGS + NR14] = 0x87
    apu[REGS + NR50] = 0x77
    apu[REGS + NR51] = 0xF3
    apu[REGS + NR52] = 0x80
    apu[WAVE_RAM : WAVE_RAM + 16] = BOOT_WAVE_RAM
    apu[CH1_ON] = 1
    apu[CH1_LENGTH] = 64
    apu[CH2_LENGTH] = 64
    apu[CH3_LENGTH] = 256
    apu[CH4_LENGTH] = 64
    apu[CH1_BASE + CH_ENV_TIMER] = 3
    apu[SWEEP_SHADOW] = 0x7C1
    apu[SWEEP_TIMER] = 8
    apu[NOISE_LFSR] = 0x7FFF
    return apu


# --------------------------------------------------------------------------
# Channel 3 position (lazy, from `now`).
# --------------------------------------------------------------------------


@njit(cache=True)
def _wave_period(apu: np.ndarray) -> int:
    freq = apu[REGS + NR33] | ((apu[REGS + NR34] & 7) << 8)
    return 2 * (2048 - freq)


@njit(cache=True)
def _wave_catch_up(apu: np.ndarray, now: int) -> None:
    """Apply every CH3 sample read due strictly before `now`.

    The frequency timer reloads from NR33/NR34 at each read, and every write to
    them catches up first, so all reads since the last catch-up use one period.
    """
    if apu[CH3_ON] == 0:
        return
    next_read = apu[WAVE_NEXT_READ]
    if now <= next_read:
        return
    period = _wave_period(apu)
    reads = (now - next_read - 1) // period + 1
    position = (apu[WAVE_POSITION] + reads) & 31
    apu[WAVE_POSITION] = position
    apu[WAVE_NEXT_READ] = next_read + reads * period
    byte = apu[WAVE_RAM + (position >> 1)]
    apu[WAVE_SAMPLE] = (byte >> 4) if (position & 1) == 0 else (byte & 0x0F)


@njit(cache=True)
def _wave_ram_index(apu: np.ndarray, addr: int, now: int) -> int:
    """Which wave RAM byte an access to `addr` reaches, or -1 if none (DMG).

    While CH3 plays, any wave RAM address reaches the byte the channel is about
    to read, and only when that read is at most a cycle away. The caller has
    caught CH3 up to `now`.
    """
    if apu[CH3_ON] == 0:
        return addr - 0xFF30
    if apu[WAVE_NEXT_READ] - now >= WAVE_ACCESS_WINDOW:
        return -1
    return ((apu[WAVE_POSITION] + 1) & 31) >> 1


@njit(cache=True)
def _wave_corrupt_on_retrigger(apu: np.ndarray) -> None:
    """DMG: retriggering CH3 just before it reads a byte overwrites wave RAM's start."""
    index = ((apu[WAVE_POSITION] + 1) & 31) >> 1
    if index < 4:
        apu[WAVE_RAM] = apu[WAVE_RAM + index]
    else:
        block = index & ~3
        for i in range(4):
            apu[WAVE_RAM + i] = apu[WAVE_RAM + block + i]


# --------------------------------------------------------------------------
# Units clocked by the frame sequencer.
# --------------------------------------------------------------------------


@njit(cache=True)
def _clock_length(apu: np.ndarray, channel: int) -> None:
    base = CHANNEL_BASE + channel * CHANNEL_STRIDE
    if (apu[REGS + CHANNEL_REG[channel] + 4] & 0x40) and apu[base + CH_LENGTH] > 0:
        apu[base + CH_LENGTH] -= 1
        if apu[base + CH_LENGTH] == 0:
            apu[base + CH_ON] = 0


@njit(cache=True)
def _clock_envelope(apu: np.ndarray, channel: int) -> None:
    base = CHANNEL_BASE + channel * CHANNEL_STRIDE
    if apu[base + CH_ENV_RUNNING] == 0:
        return
    apu[base + CH_ENV_TIMER] -= 1
    if apu[base + CH_ENV_TIMER] > 0:
        return
    nrx2 = apu[REGS + CHANNEL_REG[channel] + 2]
    pace = nrx2 & 7
    apu[base + CH_ENV_TIMER] = pace if pace else 8  # a pace of 0 counts as 8 but never steps
    if pace == 0:
        return
    volume = apu[base + CH_VOLUME] + (1 if nrx2 & 0x08 else -1)
    if 0 <= volume <= 15:
        apu[base + CH_VOLUME] = volume
    else:
        apu[base + CH_ENV_RUNNING] = 0


@njit(cache=True)
def _sweep_next_frequency(apu: np.ndarray) -> int:
    """One sweep calculation from the shadow frequency; disables CH1 on overflow."""
    nr10 = apu[REGS + NR10]
    shadow = apu[SWEEP_SHADOW]
    delta = shadow >> (nr10 & 7)
    if nr10 & 0x08:
        apu[SWEEP_NEGATE_USED] = 1
        new_freq = shadow - delta
    else:
        new_freq = shadow + delta
    if new_freq > 0x7FF:
        apu[CH1_ON] = 0
    return new_freq


@njit(cache=True)
def _clock_sweep(apu: np.ndarray) -> None:
    apu[SWEEP_TIMER] -= 1
    if apu[SWEEP_TIMER] > 0:
        return
    nr10 = apu[REGS + NR10]
    pace = (nr10 >> 4) & 7
    apu[SWEEP_TIMER] = pace if pace else 8
    if apu[SWEEP_ENABLED] == 0 or pace == 0:
        return
    new_freq = _sweep_next_frequency(apu)
    if new_freq <= 0x7FF and (nr10 & 7):
        apu[SWEEP_SHADOW] = new_freq
        apu[REGS + NR13] = new_freq & 0xFF
        apu[REGS + NR14] = (apu[REGS + NR14] & 0xF8) | (new_freq >> 8)
        _sweep_next_frequency(apu)  # checked again with the new value, not written back


@njit(cache=True)
def apu_frame_sequencer_step(apu: np.ndarray) -> None:
    """One DIV-APU clock (512 Hz): lengths on even steps, sweep on 2 and 6, envelopes on 7."""
    if (apu[REGS + NR52] & 0x80) == 0:
        return  # held in reset while the APU is off
    step = apu[FRAME_SEQ_STEP]
    if (step & 1) == 0:
        for channel in range(4):
            _clock_length(apu, channel)
        if step == 2 or step == 6:
            _clock_sweep(apu)
    elif step == 7:
        _clock_envelope(apu, 0)
        _clock_envelope(apu, 1)
        _clock_envelope(apu, 3)
    apu[FRAME_SEQ_STEP] = (step + 1) & 7


# --------------------------------------------------------------------------
# Register writes.
# --------------------------------------------------------------------------


@njit(cache=True)
def _set_length(apu: np.ndarray, channel: int, value: int) -> None:
    length_max = LENGTH_MAX[channel]
    apu[CHANNEL_BASE + channel * CHANNEL_STRIDE + CH_LENGTH] = length_max - (
        value & (length_max - 1)
    )


@njit(cache=True)
def _dac_on(apu: np.ndarray, channel: int) -> bool:
    if channel == 2:
        return (apu[REGS + NR30] & 0x80) != 0
    return (apu[REGS + CHANNEL_REG[channel] + 2] & 0xF8) != 0


@njit(cache=True)
def _write_envelope(apu: np.ndarray, channel: int, old: int, value: int) -> None:
    """NRx2 of CH1, CH2, CH4 (the DMG "zombie mode" volume change while playing)."""
    base = CHANNEL_BASE + channel * CHANNEL_STRIDE
    if apu[base + CH_ON]:
        volume = apu[base + CH_VOLUME]
        if (old & 7) == 0 and apu[base + CH_ENV_RUNNING]:
            volume += 1
        elif (old & 0x08) == 0:
            volume += 2
        if (old ^ value) & 0x08:
            volume = 16 - volume
        apu[base + CH_VOLUME] = volume & 0x0F
    if (value & 0xF8) == 0:
        apu[base + CH_ON] = 0


@njit(cache=True)
def _write_nrx4(apu: np.ndarray, channel: int, old: int, value: int, now: int) -> None:
    """Length enable (with the extra clock) and trigger."""
    base = CHANNEL_BASE + channel * CHANNEL_STRIDE
    # The next frame-sequencer step does not clock lengths: enabling length now
    # clocks it once immediately.
    no_length_clock_next = (apu[FRAME_SEQ_STEP] & 1) == 1
    length_enabled = (value & 0x40) != 0
    if no_length_clock_next and (old & 0x40) == 0 and length_enabled and apu[base + CH_LENGTH]:
        apu[base + CH_LENGTH] -= 1
        if apu[base + CH_LENGTH] == 0 and (value & 0x80) == 0:
            apu[base + CH_ON] = 0
    if (value & 0x80) == 0:
        return

    was_on = apu[base + CH_ON]
    apu[base + CH_ON] = 1
    if apu[base + CH_LENGTH] == 0:
        apu[base + CH_LENGTH] = LENGTH_MAX[channel]
        if no_length_clock_next and length_enabled:
            apu[base + CH_LENGTH] -= 1

    if channel == 2:
        if was_on and _dac_on(apu, 2):
            distance = apu[WAVE_NEXT_READ] - now
            if WAVE_ACCESS_WINDOW <= distance < WAVE_ACCESS_WINDOW + WAVE_CORRUPT_WINDOW:
                _wave_corrupt_on_retrigger(apu)
        apu[WAVE_POSITION] = 0
        apu[WAVE_NEXT_READ] = now + _wave_period(apu) + WAVE_TRIGGER_DELAY
    else:
        nrx2 = apu[REGS + CHANNEL_REG[channel] + 2]
        pace = nrx2 & 7
        apu[base + CH_VOLUME] = nrx2 >> 4
        # A trigger just before an envelope clock delays the first step by one.
        apu[base + CH_ENV_TIMER] = (pace if pace else 8) + (1 if apu[FRAME_SEQ_STEP] == 7 else 0)
        apu[base + CH_ENV_RUNNING] = 1
        if channel == 3:
            apu[NOISE_LFSR] = 0x7FFF
        elif channel == 0:
            nr10 = apu[REGS + NR10]
            apu[SWEEP_SHADOW] = apu[REGS + NR13] | ((value & 7) << 8)
            sweep_pace = (nr10 >> 4) & 7
            apu[SWEEP_TIMER] = sweep_pace if sweep_pace else 8
            apu[SWEEP_ENABLED] = 1 if (nr10 & 0x77) else 0
            apu[SWEEP_NEGATE_USED] = 0
            if nr10 & 7:
                _sweep_next_frequency(apu)  # overflow check only
    if not _dac_on(apu, channel):
        apu[base + CH_ON] = 0


@njit(cache=True)
def _power_off(apu: np.ndarray) -> None:
    # Registers FF10-FF25 are cleared; on a DMG the length counters survive.
    for slot in range(NR52):
        apu[REGS + slot] = 0
    for channel in range(4):
        base = CHANNEL_BASE + channel * CHANNEL_STRIDE
        apu[base + CH_ON] = 0
        apu[base + CH_VOLUME] = 0
        apu[base + CH_ENV_TIMER] = 0
        apu[base + CH_ENV_RUNNING] = 0
    apu[SWEEP_SHADOW] = 0
    apu[SWEEP_TIMER] = 0
    apu[SWEEP_ENABLED] = 0
    apu[SWEEP_NEGATE_USED] = 0
    apu[WAVE_POSITION] = 0
    apu[REGS + NR52] = 0


@njit(cache=True)
def _power_on(apu: np.ndarray) -> None:
    apu[REGS + NR52] = 0x80
    apu[FRAME_SEQ_STEP] = 0  # the next DIV-APU clock is step 0
    apu[WAVE_SAMPLE] = 0


@njit(cache=True)
def apu_write(apu: np.ndarray, addr: int, value: int, now: int) -> None:
    """A CPU write of `value` to `addr` (0xFF10..0xFF3F) at T-cycle `now`."""
    slot = addr - 0xFF10
    if slot < 0 or slot >= REG_COUNT:
        return
    value &= 0xFF
    # Every write catches CH3 up first: NR30/NR52 may stop it, NR33/NR34 change its period.
    _wave_catch_up(apu, now)
    if slot >= 0x20:
        index = _wave_ram_index(apu, addr, now)
        if index >= 0:
            apu[WAVE_RAM + index] = value
        return
    if slot > NR52:
        return  # FF27-FF2F: nothing there
    if slot == NR52:
        if value & 0x80:
            if (apu[REGS + NR52] & 0x80) == 0:
                _power_on(apu)
        elif apu[REGS + NR52] & 0x80:
            _power_off(apu)
        return

    channel = slot // 5
    reg = slot - 5 * channel
    if (apu[REGS + NR52] & 0x80) == 0:
        # Powered off: only the DMG length counters (NRx1) take writes.
        if channel < 4 and reg == 1:
            _set_length(apu, channel, value)
        return
    if channel == 4:
        apu[REGS + slot] = value  # NR50, NR51
        return

    old = apu[REGS + slot]
    apu[REGS + slot] = value
    if reg == 0:
        if channel == 0:
            # Leaving subtract mode after a subtracting calculation stops CH1.
            if apu[SWEEP_NEGATE_USED] and (value & 0x08) == 0:
                apu[CH1_ON] = 0
        elif channel == 2:
            if (value & 0x80) == 0:
                apu[CH3_ON] = 0
    elif reg == 1:
        _set_length(apu, channel, value)
    elif reg == 2:
        if channel != 2:
            _write_envelope(apu, channel, old, value)
    elif reg == 4:
        _write_nrx4(apu, channel, old, value, now)
    # reg 3 (frequency low, NR43) only needs storing.


# --------------------------------------------------------------------------
# Register reads.
# --------------------------------------------------------------------------


@njit(cache=True)
def apu_read(apu: np.ndarray, addr: int, now: int) -> int:
    """What a CPU read of `addr` (0xFF10..0xFF3F) at T-cycle `now` returns."""
    slot = addr - 0xFF10
    if slot < 0 or slot >= REG_COUNT:
        return 0xFF
    if slot >= 0x20:
        _wave_catch_up(apu, now)
        index = _wave_ram_index(apu, addr, now)
        if index < 0:
            return 0xFF
        return int(apu[WAVE_RAM + index])
    if slot == NR52:
        status = apu[REGS + NR52] | 0x70
        for channel in range(4):
            if apu[CHANNEL_BASE + channel * CHANNEL_STRIDE + CH_ON]:
                status |= 1 << channel
        return int(status)
    return int(apu[REGS + slot] | READ_OR_MASK[slot])
