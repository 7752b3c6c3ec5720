"""The synthesizer against documented DMG sound hardware (Pan Docs "Audio", "Audio Registers",
"Audio Details"): pitch, envelope and length timing, sweep overflow, the noise LFSR, panning,
master volume, DACs, band-limiting and the high-pass filter. No test material needed."""

from __future__ import annotations

import numpy as np
import pytest

from gbsynth.common.events import CPU_HZ, ApuWrites
from gbsynth.emulator.core.apu import apu_write, new_apu_state
from gbsynth.synth import LATENCY_SAMPLES, Synth
from gbsynth.synth import render as render_from_boot
from gbsynth.synth.core import OUTPUT_GAIN

NR10, NR11, NR12, NR13, NR14 = 0xFF10, 0xFF11, 0xFF12, 0xFF13, 0xFF14
NR21, NR22, NR23, NR24 = 0xFF16, 0xFF17, 0xFF18, 0xFF19
NR30, NR31, NR32, NR33, NR34 = 0xFF1A, 0xFF1B, 0xFF1C, 0xFF1D, 0xFF1E
NR41, NR42, NR43, NR44 = 0xFF20, 0xFF21, 0xFF22, 0xFF23
NR50, NR51, NR52 = 0xFF24, 0xFF25, 0xFF26

RATE = 44_100
START = 1000  # cycle of the set-up writes; notes start a little later
STEP = 1 / OUTPUT_GAIN  # output units per analog unit


def cleared_apu() -> np.ndarray:
    """An APU just powered off and on: every register and channel cleared, all DACs off."""
    apu = new_apu_state()
    apu_write(apu, NR52, 0x00, 0)
    apu_write(apu, NR52, 0x80, 0)
    return apu


def render(*args, **kwargs) -> np.ndarray:
    """Render from a cleared APU (the post-boot state has CH1's DAC on: a click at start)."""
    return render_from_boot(*args, apu_state=cleared_apu(), **kwargs)


def writes(*events: tuple[int, int, int]) -> ApuWrites:
    """(cycle, register, value) triples, in order."""
    cycles, registers, values = zip(*events, strict=True) if events else ((), (), ())
    return ApuWrites.from_arrays(list(cycles), list(registers), list(values))


def quiet_start(cycle: int = START, panning: int = 0xFF) -> list[tuple[int, int, int]]:
    """Full master volume and the given panning."""
    return [(cycle, NR50, 0x77), (cycle, NR51, panning)]


def pulse1(
    cycle: int,
    period: int,
    *,
    envelope: int = 0xF0,
    duty: int = 2,
    length: int = 0,
    length_enable: bool = False,
) -> list[tuple[int, int, int]]:
    control = 0x80 | (0x40 if length_enable else 0) | (period >> 8)
    return [
        (cycle, NR11, (duty << 6) | length),
        (cycle, NR12, envelope),
        (cycle, NR13, period & 0xFF),
        (cycle, NR14, control),
    ]


def seconds(s: float) -> int:
    return int(round(s * CPU_HZ))


def rising_crossings(signal: np.ndarray) -> np.ndarray:
    """Sub-sample times (in samples) where ``signal`` crosses its mid level upwards."""
    mid = 0.5 * (np.percentile(signal, 5) + np.percentile(signal, 95))
    x = signal - mid
    idx = np.nonzero((x[:-1] < 0) & (x[1:] >= 0))[0]
    return idx + x[idx] / (x[idx] - x[idx + 1])


def measured_frequency(signal: np.ndarray, rate: int) -> float:
    times = rising_crossings(signal)
    return (len(times) - 1) * rate / (times[-1] - times[0])


def cents(f: float, reference: float) -> float:
    return 1200 * np.log2(f / reference)


# -- pitch --------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [44_100, 48_000, 22_050])
@pytest.mark.parametrize("period", [0x106, 0x500, 0x6D6, 0x783, 0x7C1])
def test_pulse_pitch_is_131072_over_2048_minus_period_within_a_cent(period, rate):
    # A 60 s note: any per-sample rounding of the clock ratio would add up to many cents.
    duration = seconds(60)
    audio = render(
        writes(*quiet_start(), *pulse1(START, period)), duration, rate=rate, highpass=False
    )
    left = audio[rate // 10 :, 0]
    expected = 131072 / (2048 - period)
    measured = measured_frequency(left, rate)
    assert abs(cents(measured, expected)) < 1.0, (measured, expected)
    # Much better than a cent in fact: the edges sit at their exact cycles.
    assert abs(cents(measured, expected)) < 0.01


def test_wave_pitch_is_65536_over_2048_minus_period():
    period = 0x6D6
    ramp = [(START, 0xFF30 + i, (2 * i) << 4 | (2 * i + 1)) for i in range(8)] + [
        (START, 0xFF38 + i, (15 - 2 * i) << 4 | (14 - 2 * i)) for i in range(8)
    ]  # a triangle
    events = [
        *quiet_start(),
        (START, NR30, 0x00),
        *ramp,
        (START, NR30, 0x80),
        (START, NR32, 0x20),
        (START, NR33, period & 0xFF),
        (START, NR34, 0x80 | period >> 8),
    ]
    audio = render(writes(*events), seconds(30), rate=RATE, highpass=False)
    measured = measured_frequency(audio[RATE // 10 :, 0], RATE)
    assert abs(cents(measured, 65536 / (2048 - period))) < 0.05


def test_sample_n_is_at_cycle_n_times_clock_over_rate():
    # A single edge (a DAC switched on) at a known cycle: the centre of the band-limited
    # step (the centroid of the sample differences) is at cycle * rate / CPU_HZ plus the
    # filter's constant latency, to a small fraction of a sample.
    for rate, cycle in [(44_100, 1_000_003), (48_000, 777_777), (96_000, 2_000_001)]:
        audio = render(
            writes(*quiet_start(), (cycle, NR12, 0x08)),
            cycle + CPU_HZ // 10,
            rate=rate,
            highpass=False,
        )
        rise = np.diff(audio[:, 0].astype(np.float64))
        where = np.arange(rise.size) + 0.5  # rise[m] lies between samples m and m + 1
        centre = np.sum(where * rise) / np.sum(rise)
        expected = cycle * rate / CPU_HZ + LATENCY_SAMPLES
        assert centre == pytest.approx(expected, abs=0.01)


# -- pulse duty steps (Pan Docs "Audio Details", pulse channels) -----------------------------

DUTY_STEP = 4 * 2048  # cycles between duty steps at period 0 (86 samples at 44.1 kHz)


def level_at(audio: np.ndarray, cycle: float, rate: int = RATE) -> float:
    """The left output at ``cycle`` in analog units (rendered without the high-pass)."""
    return float(audio[int(round(cycle * rate / CPU_HZ + LATENCY_SAMPLES)), 0]) * STEP


def edge_cycles(audio: np.ndarray, rate: int = RATE) -> np.ndarray:
    """Cycles of the level changes in the left output: the centroid of each band-limited
    step's sample differences, less the step filter's latency."""
    rise = np.diff(audio[:, 0].astype(np.float64))
    busy = np.abs(rise) > 1e-3 * np.abs(rise).max()
    starts = np.nonzero(busy & ~np.concatenate(([False], busy[:-1])))[0]
    stops = np.nonzero(busy & ~np.concatenate((busy[1:], [False])))[0] + 1
    centres = [
        np.sum((np.arange(a, b) + 0.5) * rise[a:b]) / np.sum(rise[a:b])
        for a, b in zip(starts, stops, strict=True)
    ]
    return (np.array(centres) - LATENCY_SAMPLES) * CPU_HZ / rate


def test_retrigger_restarts_the_duty_step_timer_and_keeps_the_duty_step():
    # 50 % duty is high at duty steps 5, 6, 7 and 0; after power-on the step is 0. A note
    # started at t0 steps at t0 + k * DUTY_STEP: high from step 5 on. Retriggered half-way
    # through step 6, the step carries on (no reset to 0, which would fall at t1 + 1 step)
    # but its timer restarts: steps 7, 0 and then 1 (low) at t1 + 3 steps, half a step
    # later than without the restart (t0 + 9 steps, as gbsplay plays it).
    t0 = START
    t1 = t0 + 6 * DUTY_STEP + DUTY_STEP // 2
    events = [*quiet_start(), *pulse1(t0, 0x000), (t1, NR14, 0x80)]
    audio = render(writes(*events), t1 + 4 * DUTY_STEP, rate=RATE, highpass=False)
    # The DAC switched on (analog 0 to +1), step 5 (down to -1), step 1 (back up).
    expected = [t0, t0 + 5 * DUTY_STEP, t1 + 3 * DUTY_STEP]
    np.testing.assert_allclose(edge_cycles(audio), expected, atol=2)


def test_a_pulse_channel_started_from_off_outputs_digital_0_until_its_first_step():
    # Stopped (DAC off) during duty step 6, which is high at 50 % duty, then started again:
    # the step is kept, yet the channel outputs digital 0 (analog +1) until its first step
    # (7, high: analog -1 at volume 15).
    t0 = START
    stop = t0 + 6 * DUTY_STEP + DUTY_STEP // 2
    t2 = stop + DUTY_STEP  # far enough apart for the two steps to be told apart
    events = [*quiet_start(), *pulse1(t0, 0x000), (stop, NR12, 0x00), *pulse1(t2, 0x000)]
    audio = render(writes(*events), t2 + 3 * DUTY_STEP, rate=RATE, highpass=False)
    assert level_at(audio, stop - DUTY_STEP / 4) == pytest.approx(-1.0, abs=1e-3)
    assert level_at(audio, stop + DUTY_STEP / 2) == pytest.approx(0.0, abs=1e-3)  # DAC off
    assert level_at(audio, t2 + DUTY_STEP / 2) == pytest.approx(1.0, abs=1e-3)
    assert level_at(audio, t2 + 1.5 * DUTY_STEP) == pytest.approx(-1.0, abs=1e-3)
    np.testing.assert_allclose(edge_cycles(audio)[-3:], [stop, t2, t2 + DUTY_STEP], atol=2)


# -- frame sequencer: envelope, length, sweep --------------------------------------------


def volume_in_windows(audio: np.ndarray, rate: int, centres_s: np.ndarray) -> np.ndarray:
    """Envelope volume (0..15) of a pulse around each centre: the distance of its two levels
    (medians of the upper and lower halves of the window, clear of the edges' ringing)."""
    half = int(0.003 * rate)
    vols = []
    for c in centres_s:
        i = int(c * rate)
        window = audio[i - half : i + half, 0].astype(np.float64)
        mid = 0.5 * (window.max() + window.min())
        high, low = window[window > mid], window[window <= mid]
        swing = np.median(high) - np.median(low) if high.size and low.size else 0.0
        vols.append(swing * STEP * 15 / 2)
    return np.array(vols)


@pytest.mark.parametrize("pace", [1, 2, 3, 7])
def test_envelope_steps_every_pace_64ths_of_a_second(pace):
    # Trigger right after a sequencer step 7 (cycle 8 * 8192): the envelope is clocked at
    # every later multiple of 65536 cycles (64 Hz) and steps once per `pace` clocks.
    trigger = 8 * 8192 + 100
    events = [*quiet_start(), *pulse1(trigger, 0x783, envelope=0xF0 | pace)]
    duration = trigger + 16 * pace * 65536 + seconds(0.05)
    audio = render(writes(*events), duration, rate=RATE, highpass=False)
    steps = np.arange(0, 15)
    step_cycles = 8 * 8192 + (steps + 1) * pace * 65536  # volume 15 - (k + 1) from here
    middles = (step_cycles - pace * 65536 / 2) / CPU_HZ  # half-way between steps
    vols = volume_in_windows(audio, RATE, middles)
    np.testing.assert_allclose(vols, 15 - steps, atol=0.2)
    # And the change happens at the step, not before: just before/after each step.
    before = volume_in_windows(audio, RATE, step_cycles / CPU_HZ - 0.004)
    after = volume_in_windows(audio, RATE, step_cycles / CPU_HZ + 0.004)
    np.testing.assert_allclose(before, 15 - steps, atol=0.2)
    np.testing.assert_allclose(after, 14 - steps, atol=0.2)


def last_sound_time(channel_audio: np.ndarray, rate: int) -> float:
    loud = np.nonzero(np.abs(np.diff(channel_audio)) > 1e-3)[0]
    return (loud[-1] - LATENCY_SAMPLES) / rate


@pytest.mark.parametrize("length", [0, 32, 63])
def test_length_counter_cuts_pulse_after_64_minus_length_256ths(length):
    # Trigger just after sequencer step 1 (the step at cycle 8192 * j runs step j - 1 mod 8),
    # so the next step (2) clocks the length counter: clocks at 256 Hz from there on.
    j = 8 * 6 + 2
    trigger = 8192 * j + 50
    events = [*quiet_start(), *pulse1(trigger, 0x7C1, length=length, length_enable=True)]
    audio = render(writes(*events), seconds(0.6), rate=RATE, highpass=False)
    expected = (8192 * (j + 1) + (64 - length - 1) * 16384) / CPU_HZ
    assert abs(last_sound_time(audio[:, 0], RATE) - expected) < 0.0005


def test_length_counter_cuts_wave_after_256_minus_length_256ths():
    # Triggered before the first sequencer step (step 0, a length clock, at cycle 8192).
    events = [
        *quiet_start(),
        (START, NR30, 0x80),
        (START, NR31, 0x00),
        (START, NR32, 0x20),
        (START, NR33, 0x00),
        (START, NR34, 0xC7),
    ]
    audio = render(writes(*events), seconds(1.5), rate=RATE, highpass=False)
    expected = (8192 + 255 * 16384) / CPU_HZ
    assert abs(last_sound_time(audio[:, 0], RATE) - expected) < 0.0005


def test_notes_without_length_enable_keep_playing():
    events = [*quiet_start(), *pulse1(START, 0x7C1, length=63, length_enable=False)]
    audio = render(writes(*events), seconds(1.0), rate=RATE, highpass=False)
    assert last_sound_time(audio[:, 0], RATE) > 0.99


def test_sweep_overflow_disables_channel_1():
    # Pace 2, add, shift 2 from 0x500. Sweep clocks come with sequencer steps 2 and 6 (at
    # cycles 8192 * (3 + 4k)); every second one iterates: 0x640 (its next value 0x7D0
    # checks fine), then 0x7D0, whose next value 0x9C4 overflows: channel 1 stops.
    events = [*quiet_start(), (START, NR10, 0x22), *pulse1(START, 0x500)]
    synth = Synth(RATE, highpass=False, apu_state=cleared_apu())
    audio = synth.render(writes(*events), seconds(0.3))
    assert synth.apu[0x38] == 0  # CH1 on flag (the NR52 status bit)
    end = last_sound_time(audio[:, 0], RATE)
    assert abs(end - 8192 * 15 / CPU_HZ) < 0.0005
    first = audio[int(0.001 * RATE) : int(0.013 * RATE), 0]
    assert measured_frequency(first, RATE) == pytest.approx(131072 / (2048 - 0x500), rel=0.01)
    second = audio[int(0.015 * RATE) : int(0.028 * RATE), 0]
    assert measured_frequency(second, RATE) == pytest.approx(131072 / (2048 - 0x640), rel=0.01)


def test_decreasing_sweep_never_disables_channel_1():
    events = [*quiet_start(), (START, NR10, 0x2A), *pulse1(START, 0x500)]
    synth = Synth(RATE, highpass=False, apu_state=cleared_apu())
    audio = synth.render(writes(*events), seconds(0.5))
    assert synth.apu[0x38] == 1
    assert last_sound_time(audio[:, 0], RATE) > 0.49


# -- noise --------------------------------------------------------------------------------


@pytest.mark.parametrize(("width_bit", "period"), [(0x08, 127), (0x00, 32767)])
def test_lfsr_sequence_periods(width_bit, period):
    # Clock the LFSR every 16 cycles and sample at 4194304 / 16 Hz: one sample per clock,
    # so the output repeats with exactly the LFSR's period, and with no shorter one.
    rate = CPU_HZ // 16
    events = [
        *quiet_start(),
        (START, NR42, 0xF0),
        (START, NR43, 0x01 | width_bit),
        (START, NR44, 0x80),
    ]
    audio = render(writes(*events), START + 16 * (3 * period + 200), rate=rate, highpass=False)
    x = audio[100 : 100 + 2 * period, 0].astype(np.float64)
    y = audio[100 + period : 100 + 3 * period, 0].astype(np.float64)
    np.testing.assert_allclose(x, y, atol=1e-5)
    for divisor in [d for d in range(1, period) if period % d == 0]:
        shifted = audio[100 + divisor : 100 + divisor + 2 * period, 0]
        assert np.max(np.abs(shifted - x)) > 0.1, divisor


def test_noise_clock_rate_follows_divisor_and_shift():
    # Changes of a 15-bit LFSR's output happen at about half its clocks.
    for nr43, clock_hz in [(0x00, 524288), (0x04, 65536), (0x27, 262144 / 7 / 4)]:
        events = [*quiet_start(), (START, NR42, 0xF0), (START, NR43, nr43), (START, NR44, 0x80)]
        audio = render(writes(*events), seconds(1.0), rate=192_000, highpass=False)
        bits = audio[200:, 0] < np.median(audio[200:, 0])
        if clock_hz > 96_000:
            continue  # too fast to count at this rate
        changes = np.count_nonzero(bits[1:] != bits[:-1])
        assert changes == pytest.approx(clock_hz / 2, rel=0.05)


# -- mixer: panning, master volume, DACs, power ---------------------------------------------


def channel_events(channel: int) -> list[tuple[int, int, int]]:
    if channel == 0:
        return pulse1(START, 0x783)
    if channel == 1:
        return [(START, NR21, 0x80), (START, NR22, 0xF0), (START, NR23, 0x83), (START, NR24, 0x87)]
    if channel == 2:
        wave = [(START, 0xFF30 + i, 0xF0) for i in range(16)]
        return [
            (START, NR30, 0x00),
            *wave,
            (START, NR30, 0x80),
            (START, NR32, 0x20),
            (START, NR33, 0x83),
            (START, NR34, 0x87),
        ]
    return [(START, NR42, 0xF0), (START, NR43, 0x11), (START, NR44, 0x80)]


@pytest.mark.parametrize("channel", [0, 1, 2, 3])
@pytest.mark.parametrize("side", ["left", "right", "both", "neither"])
def test_nr51_routes_each_channel_to_its_sides(channel, side):
    bits = {"left": 0x10, "right": 0x01, "both": 0x11, "neither": 0x00}[side] << channel
    audio = render(
        writes(*quiet_start(panning=bits), *channel_events(channel)), seconds(0.2), rate=RATE
    )
    rms = np.sqrt(np.mean(np.square(audio[RATE // 20 :].astype(np.float64)), axis=0))
    assert (rms[0] > 0.01) == (side in ("left", "both"))
    assert (rms[1] > 0.01) == (side in ("right", "both"))
    assert np.all((rms > 0.01) | (rms < 1e-6))


@pytest.mark.parametrize("volume", range(8))
def test_nr50_scales_each_side_by_volume_plus_one_eighths(volume):
    events = [*quiet_start(), (START, NR50, volume << 4 | 7), *pulse1(START, 0x783)]
    audio = render(writes(*events), seconds(0.2), rate=RATE, highpass=False)
    swing = np.percentile(audio[RATE // 20 :], 97, axis=0) - np.percentile(
        audio[RATE // 20 :], 3, axis=0
    )
    assert swing[0] / swing[1] == pytest.approx((volume + 1) / 8, rel=0.01)


def test_dac_off_silences_a_triggered_channel():
    # NR12 with its upper five bits clear is a DAC that is off: triggering does nothing.
    events = [*quiet_start(), *pulse1(START, 0x783, envelope=0x07)]
    audio = render(writes(*events), seconds(0.2), rate=RATE, highpass=False)
    assert np.max(np.abs(audio)) == 0.0


def test_dac_on_with_volume_0_is_analog_1_and_dac_off_is_analog_0():
    # A DAC that is on turns a silent channel (digital 0) into analog +1; switching it
    # off returns to 0: both are steps (the clicks of a DMG), with no tone.
    events = [*quiet_start(), (START, NR12, 0x08), (seconds(0.1), NR12, 0x00)]
    audio = render(writes(*events), seconds(0.2), rate=RATE, highpass=False)
    left = audio[:, 0].astype(np.float64) * STEP
    assert left[int(0.05 * RATE)] == pytest.approx(1.0, abs=1e-6)
    assert left[int(0.15 * RATE)] == pytest.approx(0.0, abs=1e-6)


def test_wave_output_level_shifts_samples():
    half_high = [(START, 0xFF30 + i, 0xFF if i < 8 else 0x00) for i in range(16)]
    vols = []
    for level in (1, 2, 3, 0):
        events = [
            *quiet_start(),
            (START, NR30, 0x00),
            *half_high,
            (START, NR30, 0x80),
            (START, NR32, level << 5),
            (START, NR33, 0x83),
            (START, NR34, 0x87),
        ]
        audio = render(writes(*events), seconds(0.2), rate=RATE, highpass=False)
        vols.append(volume_in_windows(audio, RATE, np.array([0.1]))[0])
    # Samples 15 and 0 shifted right by 0, 1, 2 and 4 bits: digital swings 15, 7, 3, 0.
    np.testing.assert_allclose(vols, [15, 7, 3, 0], atol=0.15)


def test_power_off_stops_every_channel():
    events = [*quiet_start()]
    for channel in range(4):
        events += channel_events(channel)
    events.append((seconds(0.1), NR52, 0x00))
    synth = Synth(RATE, highpass=False, apu_state=cleared_apu())
    audio = synth.render(writes(*events), seconds(0.3))
    assert np.max(np.abs(audio[int(0.11 * RATE) :])) < 1e-9
    assert [synth.apu[0x38 + 8 * c] for c in range(4)] == [0, 0, 0, 0]


# -- output filters -------------------------------------------------------------------------


def test_high_notes_do_not_alias():
    # A 7282 Hz square: its 5th harmonic (36.4 kHz) would fold to 7.69 kHz at 44.1 kHz,
    # at -14 dB with naive sampling. Band-limited steps leave nothing there.
    period = 2048 - 18
    audio = render(writes(*quiet_start(), *pulse1(START, period)), seconds(2), rate=RATE)
    x = audio[RATE // 2 : RATE // 2 + 65536, 0].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.blackman(x.size)))
    freqs = np.fft.rfftfreq(x.size, 1 / RATE)
    fundamental = 131072 / 18

    def level(f):
        band = np.abs(freqs - f) < 30
        return 20 * np.log10(spectrum[band].max())

    alias = RATE - 5 * fundamental
    assert level(fundamental) - level(alias) > 60
    # Everything that is not a harmonic below Nyquist is far down.
    mask = np.ones_like(freqs, dtype=bool)
    for k in (1, 3):
        mask &= np.abs(freqs - k * fundamental) > 60
    assert level(fundamental) - 20 * np.log10(spectrum[mask & (freqs > 20)].max()) > 55


def test_highpass_removes_dc_with_the_dmg_time_constant():
    events = [*quiet_start(), (START, NR12, 0x08)]  # a DC step of one analog unit
    audio = render(writes(*events), seconds(0.5), rate=RATE)
    left = audio[:, 0].astype(np.float64) * STEP
    start = int(START * RATE / CPU_HZ + LATENCY_SAMPLES) + 16
    # The capacitor keeps 0.999958 per cycle of its difference: e^-t/tau, tau = 5.68 ms.
    tau = -1 / (CPU_HZ * np.log(0.999958))
    t = (np.arange(start, start + 2000) - start) / RATE
    np.testing.assert_allclose(
        left[start : start + 2000], left[start] * np.exp(-t / tau), atol=2e-3
    )
    assert abs(left[-1]) < 1e-6
    raw = render(writes(*events), seconds(0.5), rate=RATE, highpass=False)
    assert raw[-1, 0] * STEP == pytest.approx(1.0, abs=1e-9)


def test_output_never_exceeds_full_scale():
    # Everything at maximum, with the worst swings the high-pass filter can double.
    events = [*quiet_start()]
    for channel in range(4):
        events += channel_events(channel)
    for k in range(1, 40):
        events.append((START + k * 40000, NR51, 0x00 if k % 2 else 0xFF))
    audio = render(writes(*events), seconds(1.0), rate=RATE)
    assert np.max(np.abs(audio)) <= 1.0
