"""The synthesizer engine: DMG sound hardware, cycle-exact, with band-limited output.

The register side (what a write does, the frame sequencer, lengths, envelopes,
sweep, DAC enables, NR52 power) is the emulator's APU model
(``gbsynth.emulator.core.apu``), driven with the same writes at the same cycles, so
there is one model of the hardware. This module adds what makes sound:

* the channels' waveform generators: the pulse channels' duty step counters
  (4 T-cycles per period tick, 8 steps), the wave channel's sample reads (2
  T-cycles per tick, 32 samples; its position, buffer and next-read cycle are
  the APU model's own slots), the noise channel's LFSR (15 or 7 bits, clocked
  every ``divisor << shift`` T-cycles);
* the DACs and mixer: a channel's digital output 0..15 becomes the analog
  level ``1 - 2 * digital / 15`` while its DAC is on (negative slope, as on
  hardware) and 0 while it is off, so DAC switches and NR51 changes click as
  on a DMG; each side sums its routed channels and scales by NR50
  (``(volume + 1) / 8``);
* band-limited synthesis, as in blargg's Blip_Buffer: every change of a
  channel's level at its exact cycle is added to the output as a windowed-sinc
  step (``TAPS`` taps, ``PHASES`` sub-sample phases), which is a delta buffer
  integrated while samples are read out, so high notes do not alias;
* the DMG output high-pass filter (its coupling capacitor), per side.

Timing is exact: output sample ``n`` is the band-limited signal at cycle
``n * CPU_HZ / rate`` (integers only, so nothing drifts), delayed by the step
filter's constant group delay of ``LATENCY_SAMPLES``. Time advances in spans
between register writes and frame-sequencer steps; within a span every
generator's register inputs are constant, so each loops over its own edges.

Everything is numba over numpy arrays: the APU model's int64 state, an int64
and a float64 state array of this module (named slots below), and a delta
buffer that carries the filter tails between calls, so a recording can be
rendered in any number of pieces with the same result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import njit

from gbsynth.common.jit import drop_stale_jit_cache
from gbsynth.emulator.core import apu as A
from gbsynth.emulator.core.apu import apu_frame_sequencer_step, apu_write

# The engine inlines the APU model's functions and constants (emulator/core/apu.py).
_PACKAGE = Path(__file__).resolve().parent
drop_stale_jit_cache(
    _PACKAGE,
    [*sorted(_PACKAGE.glob("*.py")), Path(A.__file__).resolve()],
    "gbsynth_synth_jit_sources.sha256",
)

CPU_HZ = 4_194_304
FRAME_SEQUENCER_PERIOD = 8192
"""T-cycles between frame-sequencer steps (512 Hz; DIV bit 12 falling edges from cycle 0)."""

TAPS = 16
"""Output samples one band-limited step touches."""
PHASES = 256
"""Sub-sample positions of a step (1/256 sample: under one T-cycle at 44.1 kHz)."""
LATENCY_SAMPLES = (TAPS - 1) / 2
"""Constant delay of the output behind the hardware signal, in samples (the step filter's
group delay): sample ``n`` shows the signal at cycle ``n * CPU_HZ / rate`` this much late."""
STEP_CUTOFF = 0.47
"""Cut-off of the step filter, as a fraction of the sample rate (0.5 is Nyquist)."""
STEP_KAISER_BETA = 7.0
BLOCK_SAMPLES = 8192
"""Output samples produced per pass over the delta buffer."""

OUTPUT_GAIN = 0.125
"""Output units per analog unit. The mix spans +-4 analog units; the high-pass filter can
at most double a swing, so +-8 units is the largest output possible: it maps to +-1, and
nothing ever clips (music typically peaks around -6 dBFS, as in gbsplay)."""
DMG_CHARGE_PER_CYCLE = 0.999958
"""The DMG's high-pass capacitor keeps this fraction of its charge difference per T-cycle
(Pan Docs / blargg); per output sample it is this to the power ``CPU_HZ / rate``."""

DUTY_MASKS = (0x80, 0x81, 0xE1, 0x7E)
"""Pulse waveforms by NRx1 duty (12.5, 25, 50, 75 %): bit ``i`` is the output at duty step
``i`` (1 = the envelope volume, 0 = digital 0)."""

NOISE_DIVISOR_CYCLES = (8, 16, 32, 48, 64, 80, 96, 112)
"""T-cycles between LFSR clocks for NR43's divider code at shift 0 (code 0 counts as 0.5)."""
NOISE_STALLED_SHIFT = 14
"""NR43 clock shifts of 14 and 15 give the LFSR no clocks at all."""

WAVE_LEVEL_SHIFT = (4, 0, 1, 2)
"""Right shift of the wave sample for NR32's output level (mute, 100 %, 50 %, 25 %)."""

QUEUE_SIZE = 8192
"""Level changes one span can produce: spans end at every frame-sequencer step (8192
cycles), in which the busiest generators change at most 2 * 512 + 4096 + 1024 times."""

# -- int64 synth state slots ---------------------------------------------------------------
S_NOW = 0
"""Cycle up to which the generators have run (events before it are in the delta buffer)."""
S_FS_NEXT = 1
"""Cycle of the next frame-sequencer step."""
S_RATE = 2
"""Output sample rate in Hz."""
S_BASE = 3
"""Index of the next output sample; delta buffer row 0 belongs to it."""
S_SQ_POS = 4
"""Duty step (0..7) of pulse channel 1; channel 2 at +1."""
S_SQ_NEXT = 6
"""Cycle of pulse channel 1's next duty step; channel 2 at +1."""
S_SQ_SILENT = 8
"""1 from the trigger of a stopped pulse channel until its first duty step: it outputs 0."""
S_NOISE_NEXT = 10
"""Cycle of the next LFSR clock."""
S_DIGITAL = 11
"""Digital output 0..15 of each channel (4 slots)."""
S_HIGHPASS = 15
"""1 when the DMG high-pass filter is applied."""
SYNTH_INT_SIZE = 16

# -- float64 synth state slots -------------------------------------------------------------
F_LEVEL_L = 0
"""Each channel's contribution to the left output now (4 slots); right at F_LEVEL_R."""
F_LEVEL_R = 4
F_SLOPE_L = 8
"""Left output change per unit of each channel's digital value (4 slots; 0 if muted)."""
F_SLOPE_R = 12
F_ACC_L = 16
"""Integrated delta buffer: the unfiltered left output at the last sample read out."""
F_ACC_R = 17
F_CAP_L = 18
"""High-pass capacitor charge, left."""
F_CAP_R = 19
F_CHARGE = 20
"""High-pass charge factor per output sample."""
SYNTH_FLOAT_SIZE = 21

_REGS = A.REGS
_NR13, _NR14, _NR24, _NR30, _NR32 = A.NR13, A.NR14, A.NR24, A.NR30, A.NR32
_NR33, _NR34, _NR43, _NR44 = A.NR33, A.NR34, A.NR43, A.NR44
_NR50, _NR51, _NR52 = A.NR50, A.NR51, A.NR52
_CHANNEL_BASE = A.CHANNEL_BASE
_CHANNEL_STRIDE = A.CHANNEL_STRIDE
_CH_ON = A.CH_ON
_CH_VOLUME = A.CH_VOLUME
_CH3_ON = A.CH3_ON
_CH4_ON = A.CH4_ON
_NOISE_VOLUME = A.CH4_BASE + A.CH_VOLUME
_WAVE_RAM = A.WAVE_RAM
_WAVE_POSITION = A.WAVE_POSITION
_WAVE_NEXT_READ = A.WAVE_NEXT_READ
_WAVE_SAMPLE = A.WAVE_SAMPLE
_NOISE_LFSR = A.NOISE_LFSR
_NRX0 = 5
"""Register slots between one channel's NRx0 and the next one's (NR10, NR15, NR1A, NR1F)."""


def build_step_kernel(
    taps: int = TAPS,
    phases: int = PHASES,
    cutoff: float = STEP_CUTOFF,
    beta: float = STEP_KAISER_BETA,
) -> np.ndarray:
    """Band-limited step table, ``(phases, taps)`` float64: row ``p`` is what a unit step at
    sub-sample offset ``(p + 0.5) / phases`` adds to the delta buffer.

    The step is the running integral of a Kaiser-windowed sinc impulse of support
    ``taps - 1`` samples; integrating the buffer turns the rows back into that step. Each
    row sums to exactly 1, so steps leave no DC error however many there are.
    """
    half = (taps - 1) / 2
    grid = np.linspace(-half, half, 4096 * taps + 1)
    impulse = 2 * cutoff * np.sinc(2 * cutoff * grid) * np.kaiser(grid.size, beta)
    step = np.concatenate(([0.0], np.cumsum((impulse[1:] + impulse[:-1]) * 0.5)))
    step /= step[-1]
    offsets = (np.arange(phases) + 0.5) / phases
    # Buffer row i+1+k of a step at sample position i+f gets H(k+1-half-f) - H(k-half-f).
    points = np.arange(taps + 1)[None, :] - half - offsets[:, None]
    cumulative = np.interp(points, grid, step, left=0.0, right=1.0)
    kernel = np.diff(cumulative, axis=1)
    centre = np.argmax(kernel, axis=1)
    kernel[np.arange(phases), centre] += 1.0 - kernel.sum(axis=1)
    return np.ascontiguousarray(kernel)


STEP_KERNEL = build_step_kernel()


def samples_before(cycle: int, rate: int) -> int:
    """How many output samples lie before ``cycle``: those with ``n * CPU_HZ / rate < cycle``."""
    return -((-cycle * rate) // CPU_HZ)


# -- engine ----------------------------------------------------------------------------------
# numba increments and decrements reference counts (atomically) around every call that
# passes arrays, which costs more than a span's work; so the per-span work (generators,
# steps into the delta buffer, read-out) is one function, and helpers are only called per
# register write or sequencer step.


@njit(cache=True, error_model="numpy")
def _dac_on(apu, channel):
    if channel == 2:
        return (apu[_REGS + _NR30] & 0x80) != 0
    return (apu[_REGS + _NRX0 * channel + 2] & 0xF8) != 0


@njit(cache=True, error_model="numpy")
def _mix(apu, syn, fst):
    """Recompute every channel's digital output, DAC state and mixer gains (after a write or
    a sequencer step). Returns the change of the (left, right) output it makes."""
    nr50 = apu[_REGS + _NR50]
    nr51 = apu[_REGS + _NR51]
    left_gain = (((nr50 >> 4) & 7) + 1) * (OUTPUT_GAIN / 8.0)
    right_gain = ((nr50 & 7) + 1) * (OUTPUT_GAIN / 8.0)
    d_left = 0.0
    d_right = 0.0
    for channel in range(4):
        base = _CHANNEL_BASE + channel * _CHANNEL_STRIDE
        digital = 0  # a stopped channel outputs digital 0
        if apu[base + _CH_ON]:
            if channel < 2:
                if syn[S_SQ_SILENT + channel] == 0:
                    duty = DUTY_MASKS[apu[_REGS + _NRX0 * channel + 1] >> 6]
                    if (duty >> syn[S_SQ_POS + channel]) & 1:
                        digital = apu[base + _CH_VOLUME]
            elif channel == 2:
                digital = apu[_WAVE_SAMPLE] >> WAVE_LEVEL_SHIFT[(apu[_REGS + _NR32] >> 5) & 3]
            elif (apu[_NOISE_LFSR] & 1) == 0:
                digital = apu[base + _CH_VOLUME]
        syn[S_DIGITAL + channel] = digital
        gain_l = left_gain if (nr51 >> (4 + channel)) & 1 else 0.0
        gain_r = right_gain if (nr51 >> channel) & 1 else 0.0
        if channel == 2:
            dac_on = (apu[_REGS + _NR30] & 0x80) != 0
        else:
            dac_on = (apu[_REGS + _NRX0 * channel + 2] & 0xF8) != 0
        if dac_on:
            analog = 1.0 - digital * (2.0 / 15.0)  # negative slope: digital 0 is analog +1
            fst[F_SLOPE_L + channel] = gain_l * (-2.0 / 15.0)
            fst[F_SLOPE_R + channel] = gain_r * (-2.0 / 15.0)
        else:
            analog = 0.0  # a DAC that is off outputs analog 0, whatever its channel does
            fst[F_SLOPE_L + channel] = 0.0
            fst[F_SLOPE_R + channel] = 0.0
        d_left += gain_l * analog - fst[F_LEVEL_L + channel]
        d_right += gain_r * analog - fst[F_LEVEL_R + channel]
        fst[F_LEVEL_L + channel] = gain_l * analog
        fst[F_LEVEL_R + channel] = gain_r * analog
    return d_left, d_right


@njit(cache=True, error_model="numpy")
def _pulse_period(apu, channel):
    reg = _REGS + _NRX0 * channel
    return 4 * (2048 - (apu[reg + 3] | ((apu[reg + 4] & 7) << 8)))


@njit(cache=True, error_model="numpy")
def _write(apu, syn, cycle, register, value):
    """A sound-register write: the APU model's semantics plus the generators' timers."""
    slot = register - 0xFF10
    powered = (apu[_REGS + _NR52] & 0x80) != 0
    was_on_1 = apu[A.CH1_ON]
    was_on_2 = apu[A.CH2_ON]
    apu_write(apu, register, value, cycle)
    if not powered:
        return
    if slot == _NR52 and (value & 0x80) == 0:
        # Powering off is the one thing that resets the duty step counters.
        syn[S_SQ_POS] = 0
        syn[S_SQ_POS + 1] = 0
    elif value & 0x80:
        # A trigger restarts the channel's period timer (the duty step itself carries on).
        if slot == _NR14:
            syn[S_SQ_NEXT] = cycle + _pulse_period(apu, 0)
            if was_on_1 == 0:
                syn[S_SQ_SILENT] = 1
        elif slot == _NR24:
            syn[S_SQ_NEXT + 1] = cycle + _pulse_period(apu, 1)
            if was_on_2 == 0:
                syn[S_SQ_SILENT + 1] = 1
        elif slot == _NR44:
            nr43 = apu[_REGS + _NR43]
            syn[S_NOISE_NEXT] = cycle + (NOISE_DIVISOR_CYCLES[nr43 & 7] << (nr43 >> 4))


@njit(cache=True, error_model="numpy")
def render_span(
    apu, syn, fst, buf, kernel, queue_cycle, queue_delta, cycles, registers, values, end, out
):
    """Apply the writes ``cycles/registers/values`` (all in ``[S_NOW, end)``, in order) and
    render every output sample before ``end`` into ``out`` (float32 ``(n, 2)`` with
    ``n = samples_before(end) - S_BASE``). Returns the number of samples written.

    Time runs in spans that end at each write, sequencer step or block end. Within a span
    each generator's inputs are constant: it loops over its own edges, queueing each level
    change (cycle, left, right); the queue then goes into the delta buffer as band-limited
    steps. A block's samples are read out by integrating the buffer.
    """
    rate = syn[S_RATE]
    n_writes = cycles.shape[0]
    index = 0
    written = 0
    while True:
        block_end = ((syn[S_BASE] + BLOCK_SAMPLES) * CPU_HZ) // rate
        stop = end if end < block_end else block_end
        while True:
            sequencer = syn[S_FS_NEXT]
            span_end = stop
            if sequencer < span_end:
                span_end = sequencer
            if index < n_writes and cycles[index] < span_end:
                span_end = cycles[index]
            queued = 0

            # Pulse channels: duty steps every 4 * (2048 - period) cycles.
            for channel in range(2):
                base = _CHANNEL_BASE + channel * _CHANNEL_STRIDE
                next_step = syn[S_SQ_NEXT + channel]
                if apu[base + _CH_ON] == 0 or next_step >= span_end:
                    continue
                # The pending step was scheduled with the old period; every later one
                # reloads the period from the registers, constant within the span.
                reg = _REGS + _NRX0 * channel
                period = 4 * (2048 - (apu[reg + 3] | ((apu[reg + 4] & 7) << 8)))
                position = syn[S_SQ_POS + channel]
                syn[S_SQ_SILENT + channel] = 0
                volume = apu[base + _CH_VOLUME]
                slope_l = fst[F_SLOPE_L + channel]
                slope_r = fst[F_SLOPE_R + channel]
                if volume == 0 or (slope_l == 0.0 and slope_r == 0.0):
                    # Inaudible: only the duty step moves on (the next mix recomputes the
                    # digital output from it).
                    count = (span_end - 1 - next_step) // period + 1
                    position = (position + count) & 7
                    next_step += count * period
                else:
                    duty = DUTY_MASKS[apu[_REGS + _NRX0 * channel + 1] >> 6]
                    first = syn[S_DIGITAL + channel]
                    digital = first
                    while next_step < span_end:
                        position = (position + 1) & 7
                        level = volume if (duty >> position) & 1 else 0
                        if level != digital:
                            queue_cycle[queued] = next_step
                            queue_delta[queued, 0] = slope_l * (level - digital)
                            queue_delta[queued, 1] = slope_r * (level - digital)
                            queued += 1
                            digital = level
                        next_step += period
                    syn[S_DIGITAL + channel] = digital
                    fst[F_LEVEL_L + channel] += slope_l * (digital - first)
                    fst[F_LEVEL_R + channel] += slope_r * (digital - first)
                syn[S_SQ_POS + channel] = position
                syn[S_SQ_NEXT + channel] = next_step

            # Wave channel: a sample read every 2 * (2048 - period) cycles, into the APU
            # model's own position, buffer and next-read slots.
            next_read = apu[_WAVE_NEXT_READ]
            if apu[_CH3_ON] and next_read < span_end:
                period = 2 * (2048 - (apu[_REGS + _NR33] | ((apu[_REGS + _NR34] & 7) << 8)))
                shift = WAVE_LEVEL_SHIFT[(apu[_REGS + _NR32] >> 5) & 3]
                position = apu[_WAVE_POSITION]
                sample = apu[_WAVE_SAMPLE]
                slope_l = fst[F_SLOPE_L + 2]
                slope_r = fst[F_SLOPE_R + 2]
                first = syn[S_DIGITAL + 2]
                digital = first
                while next_read < span_end:
                    position = (position + 1) & 31
                    byte = apu[_WAVE_RAM + (position >> 1)]
                    sample = (byte >> 4) if (position & 1) == 0 else (byte & 0x0F)
                    level = sample >> shift
                    if level != digital:
                        queue_cycle[queued] = next_read
                        queue_delta[queued, 0] = slope_l * (level - digital)
                        queue_delta[queued, 1] = slope_r * (level - digital)
                        queued += 1
                        digital = level
                    next_read += period
                apu[_WAVE_POSITION] = position
                apu[_WAVE_SAMPLE] = sample
                apu[_WAVE_NEXT_READ] = next_read
                syn[S_DIGITAL + 2] = digital
                fst[F_LEVEL_L + 2] += slope_l * (digital - first)
                fst[F_LEVEL_R + 2] += slope_r * (digital - first)

            # Noise channel: the LFSR (XOR convention: all ones after a trigger, output is
            # the inverted bit 0) clocked every divisor << shift cycles.
            next_clock = syn[S_NOISE_NEXT]
            if apu[_CH4_ON] and next_clock < span_end:
                nr43 = apu[_REGS + _NR43]
                if (nr43 >> 4) >= NOISE_STALLED_SHIFT:
                    syn[S_NOISE_NEXT] = span_end  # no clocks until a usable shift
                else:
                    period = NOISE_DIVISOR_CYCLES[nr43 & 7] << (nr43 >> 4)
                    short = (nr43 & 0x08) != 0
                    volume = apu[_NOISE_VOLUME]
                    lfsr = apu[_NOISE_LFSR]
                    slope_l = fst[F_SLOPE_L + 3]
                    slope_r = fst[F_SLOPE_R + 3]
                    first = syn[S_DIGITAL + 3]
                    digital = first
                    while next_clock < span_end:
                        feedback = (lfsr ^ (lfsr >> 1)) & 1
                        lfsr = (lfsr >> 1) | (feedback << 14)
                        if short:
                            lfsr = (lfsr & ~0x40) | (feedback << 6)
                        level = 0 if lfsr & 1 else volume
                        if level != digital:
                            queue_cycle[queued] = next_clock
                            queue_delta[queued, 0] = slope_l * (level - digital)
                            queue_delta[queued, 1] = slope_r * (level - digital)
                            queued += 1
                            digital = level
                        next_clock += period
                    apu[_NOISE_LFSR] = lfsr
                    syn[S_NOISE_NEXT] = next_clock
                    syn[S_DIGITAL + 3] = digital
                    fst[F_LEVEL_L + 3] += slope_l * (digital - first)
                    fst[F_LEVEL_R + 3] += slope_r * (digital - first)
            syn[S_NOW] = span_end

            # The event that ends the span: a sequencer step (before a write at the same
            # cycle), then the writes at that cycle; then the mixer follows the new state.
            event = False
            if sequencer == span_end and span_end < stop:
                apu_frame_sequencer_step(apu)
                syn[S_FS_NEXT] = sequencer + FRAME_SEQUENCER_PERIOD
                event = True
            while index < n_writes and cycles[index] == span_end and span_end < stop:
                _write(apu, syn, span_end, registers[index], values[index])
                index += 1
                event = True
            if event:
                d_left, d_right = _mix(apu, syn, fst)
                if d_left != 0.0 or d_right != 0.0:
                    queue_cycle[queued] = span_end
                    queue_delta[queued, 0] = d_left
                    queue_delta[queued, 1] = d_right
                    queued += 1

            # Queued level changes become band-limited steps in the delta buffer.
            base_sample = syn[S_BASE]
            for item in range(queued):
                x = queue_cycle[item] * rate
                whole = x // CPU_HZ
                phase = ((x - whole * CPU_HZ) * PHASES) // CPU_HZ
                row = whole + 1 - base_sample
                d_left = queue_delta[item, 0]
                d_right = queue_delta[item, 1]
                for k in range(TAPS):
                    weight = kernel[phase, k]
                    buf[row + k, 0] += weight * d_left
                    buf[row + k, 1] += weight * d_right
            if not event:
                break

        # Read the block out: integrate the buffer (clearing it), high-pass filter, then
        # move the filter tails to the front.
        count = -((-stop * rate) // CPU_HZ) - syn[S_BASE]
        acc_l = fst[F_ACC_L]
        acc_r = fst[F_ACC_R]
        cap_l = fst[F_CAP_L]
        cap_r = fst[F_CAP_R]
        charge = fst[F_CHARGE]
        leak = 1.0 - charge
        highpass = syn[S_HIGHPASS] != 0
        if highpass:
            for k in range(count):
                acc_l += buf[k, 0]
                acc_r += buf[k, 1]
                # The capacitor keeps `charge` of its difference to the input per sample.
                out[written + k, 0] = acc_l - cap_l
                out[written + k, 1] = acc_r - cap_r
                cap_l = cap_l * charge + acc_l * leak  # = acc - (acc - cap) * charge
                cap_r = cap_r * charge + acc_r * leak
        else:
            for k in range(count):
                acc_l += buf[k, 0]
                acc_r += buf[k, 1]
                out[written + k, 0] = acc_l
                out[written + k, 1] = acc_r
        buf[:count] = 0.0
        for k in range(TAPS):
            buf[k, 0] = buf[count + k, 0]
            buf[k, 1] = buf[count + k, 1]
            if count > 0:
                buf[count + k, 0] = 0.0
                buf[count + k, 1] = 0.0
        fst[F_ACC_L] = acc_l
        fst[F_ACC_R] = acc_r
        fst[F_CAP_L] = cap_l
        fst[F_CAP_R] = cap_r
        syn[S_BASE] += count
        written += count
        if stop >= end:
            return written


@njit(cache=True, error_model="numpy")
def init_synth(apu, syn, fst):
    """Start the generators at cycle 0 from the APU state, and take its outputs as settled
    (the high-pass capacitor charged to them), as on a console whose boot ROM ran long
    before the recording starts. A channel left playing (the boot chime) keeps stepping."""
    syn[S_NOW] = 0
    syn[S_FS_NEXT] = FRAME_SEQUENCER_PERIOD
    syn[S_SQ_NEXT] = _pulse_period(apu, 0)
    syn[S_SQ_NEXT + 1] = _pulse_period(apu, 1)
    nr43 = apu[_REGS + _NR43]
    syn[S_NOISE_NEXT] = NOISE_DIVISOR_CYCLES[nr43 & 7] << (nr43 >> 4)
    _mix(apu, syn, fst)
    acc_l = 0.0
    acc_r = 0.0
    for channel in range(4):
        acc_l += fst[F_LEVEL_L + channel]
        acc_r += fst[F_LEVEL_R + channel]
    fst[F_ACC_L] = acc_l
    fst[F_ACC_R] = acc_r
    fst[F_CAP_L] = acc_l
    fst[F_CAP_R] = acc_r


@njit(cache=True, error_model="numpy")
def float_to_pcm16(audio, out):
    """``out[:] = audio * 32767`` rounded to nearest and clipped to int16 (any shape)."""
    flat_in = audio.reshape(-1)
    flat_out = out.reshape(-1)
    for i in range(flat_in.size):
        x = flat_in[i] * 32767.0
        if x >= 32767.0:
            flat_out[i] = 32767
        elif x <= -32768.0:
            flat_out[i] = -32768
        else:
            flat_out[i] = np.int16(np.rint(x))


# -- activity (no audio) ---------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _swing(apu, channel):
    """Peak-to-peak digital swing of a channel now, 0..1 (0 if stopped, DAC off or routed
    to neither side)."""
    base = _CHANNEL_BASE + channel * _CHANNEL_STRIDE
    nr51 = apu[_REGS + _NR51]
    if apu[base + _CH_ON] == 0 or not _dac_on(apu, channel):
        return 0.0
    if ((nr51 >> channel) | (nr51 >> (4 + channel))) & 1 == 0:
        return 0.0
    if channel != 2:
        return apu[base + _CH_VOLUME] / 15.0
    shift = WAVE_LEVEL_SHIFT[(apu[_REGS + _NR32] >> 5) & 3]
    low = 15
    high = 0
    for i in range(16):
        byte = apu[A.WAVE_RAM + i]
        for sample in (byte >> 4, byte & 0x0F):
            level = sample >> shift
            low = min(low, level)
            high = max(high, level)
    return (high - low) / 15.0


@njit(cache=True, error_model="numpy")
def channel_swing_frames(apu, cycles, registers, values, end, frame_cycles, out):
    """Mean swing of each channel over consecutive frames of ``frame_cycles`` up to ``end``
    (``out``: float64 ``(frames, 4)``, zeroed by the caller)."""
    swing = np.zeros(4)
    for channel in range(4):
        swing[channel] = _swing(apu, channel)
    now = 0
    sequencer = FRAME_SEQUENCER_PERIOD
    index = 0
    n_writes = cycles.shape[0]
    while now < end:
        event = end
        if sequencer < event:
            event = sequencer
        if index < n_writes and cycles[index] < event:
            event = cycles[index]
        t = now
        while t < event:  # the swing is constant until the event
            frame = t // frame_cycles
            stop = min(event, (frame + 1) * frame_cycles)
            for channel in range(4):
                out[frame, channel] += swing[channel] * (stop - t)
            t = stop
        now = event
        if now >= end:
            break
        if sequencer == now:
            apu_frame_sequencer_step(apu)
            sequencer += FRAME_SEQUENCER_PERIOD
        while index < n_writes and cycles[index] == now:
            apu_write(apu, registers[index], values[index], now)
            index += 1
        for channel in range(4):
            swing[channel] = _swing(apu, channel)
    frames = out.shape[0]
    for frame in range(frames):
        span = min(end, (frame + 1) * frame_cycles) - frame * frame_cycles
        for channel in range(4):
            out[frame, channel] /= span
