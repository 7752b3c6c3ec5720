"""What a stretch of a recording sounds like, read from its register writes without rendering.

Everything here works on a grid of LCD frames (``FRAME_CYCLES``, 59.73 per second,
the tick of most Game Boy sound drivers) and costs a few passes over the writes,
so the pruner keeps up with several emulator cores:

- **onsets** (``FrameAnalysis.onsets``): each audible trigger (NRx4 bit 7) with its
  channel and pitch, plus, on a pulse or wave channel still sounding, each change of
  frequency by 3/4 of a semitone or more since its last onset (drivers that play
  legato, re-triggering only at the start, and slides; vibrato stays below that).
  Pulse and wave pitches are MIDI note numbers from the frequency in NRx3/NRx4
  (pulse: 131072 / (2048 - x) Hz, wave: half that); the noise channel's "pitch" is
  its NR43 setting. A trigger is audible when the APU is powered, the channel's DAC
  is on and its envelope starts above volume 0 or rises (wave: output level not
  muted).
- **level** (``FrameAnalysis.level``): per frame, the four channels' peak-to-peak
  swing (``gbsynth.synth.channel_activity``) summed and scaled by the NR50 master
  volume, as a fraction of the loudest the chip can be: what tells sound from silence.
- **loudness** (``loudness_db``): an estimate of the rendered audio's RMS level in
  dBFS without rendering it: the channels' swings added as uncorrelated signals,
  scaled by the master volume, plus a constant fitted against ``gbsynth.synth.render``
  on the shared music (18 segments: the estimate is within 2.7 dB of the rendered level
  (standard deviation), 9 dB at worst, for a ROM explored with button presses whose
  unrecorded press phase leaves the estimate's channel state behind).
- **rhythm** (``rhythm``): the normalised autocorrelation of the per-frame onset
  count; its highest peak between 0.1 s and 3 s is the regularity (near 1 for a
  strict beat, near 0 for scattered or single events). The tempo is the beat period
  (70-180 BPM) whose multiples of 1 to 4 beats correlate best, weighted towards
  120 BPM to settle a tempo against its double.
- **note starts alone** (``note_starts``): the onsets without the per-frame levels,
  for a piece of a recording given the registers before it (the explorer's listening).
- **sequence hashes** (``sequence_hashes``): a hash of the (channel, pitch) of a run
  of consecutive note starts. Equal hashes mean the same notes in the same order,
  which is how repeats of a loop are found.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES, ApuWrites
from gbsynth.common.hashing import mix64
from gbsynth.synth import channel_activity

FRAMES_PER_SECOND = CPU_HZ / FRAME_CYCLES
TONAL_CHANNELS = 3
"""Channels 0-2 (pulse 1, pulse 2, wave) have pitches; channel 3 is noise."""


@dataclass(frozen=True, eq=False)
class NoteOnsets:
    """Audible note starts, in cycle order: numpy columns of equal length."""

    cycles: np.ndarray  # int64
    channels: np.ndarray  # uint8: 0 pulse 1, 1 pulse 2, 2 wave, 3 noise
    pitches: np.ndarray  # int16: MIDI note (tonal channels) or NR43 (noise)
    starts: np.ndarray
    """bool: a note start (a trigger, or a pitch change after at least ``_CHAIN_FRAMES``
    steady frames), not a step of an arpeggio or slide already under way. How many
    steps an arpeggio takes depends on how a driver's ticks fall on frames; the
    starts do not, so they are what repeats are recognised by."""

    def __len__(self) -> int:
        return int(self.cycles.shape[0])


_CHAIN_FRAMES = 3
"""A legato pitch change within this many frames of the channel's last onset continues it."""


@nb.njit(cache=True, nogil=True)
def _midi(channel, x):
    hz = 131072.0 / (2048 - x)
    if channel == 2:
        hz *= 0.5  # the wave channel steps through 32 samples, not 8
    return 69.0 + 12.0 * math.log2(hz / 440.0)


@nb.njit(cache=True, nogil=True)
def _scan(cycles, registers, values, frames, out_cycle, out_channel, out_pitch, out_start, master):
    """One pass over the writes: note onsets, and NR50's master volume per frame."""
    last_onset = np.full(4, -(1 << 40), np.int64)  # cycle of each channel's last onset
    low = np.zeros(3, np.int64)  # NR13/NR23/NR33
    high = np.zeros(3, np.int64)  # frequency bits 8-10 from NR14/NR24/NR34
    envelope = np.zeros(4, np.int64)  # NR12/NR22/NR42 (index 2: NR32 output level)
    sounding = np.zeros(4, np.bool_)  # triggered while audible, DAC still on
    note = np.zeros(3, np.float64)  # pitch of the channel's last onset
    wave_dac = 0
    noise = 0
    powered = 1
    nr50 = 0x77
    n = 0
    frame = 0
    count = cycles.shape[0]
    for i in range(count):
        f = cycles[i] // FRAME_CYCLES
        while frame < f and frame < frames:
            master[frame] = nr50
            frame += 1
        register = registers[i]
        value = values[i]
        if register == 0xFF26:
            powered = value >> 7
            if not powered:
                sounding[:] = False
            continue
        if not powered:
            continue  # a powered-off APU ignores register writes
        channel = -1
        trigger = False
        if register == 0xFF24:
            nr50 = value
        elif register == 0xFF12 or register == 0xFF17 or register == 0xFF21:
            c = 0 if register == 0xFF12 else (1 if register == 0xFF17 else 3)
            envelope[c] = value
            if (value & 0xF8) == 0:
                sounding[c] = False  # DAC off
        elif register == 0xFF1C:
            envelope[2] = value
        elif register == 0xFF1A:
            wave_dac = value >> 7
            if not wave_dac:
                sounding[2] = False
        elif register == 0xFF22:
            noise = value
        elif register == 0xFF13 or register == 0xFF18 or register == 0xFF1D:
            channel = 0 if register == 0xFF13 else (1 if register == 0xFF18 else 2)
            low[channel] = value
            # Drivers write NRx3 then NRx4: judge the pitch at NRx4 unless it does not follow.
            if i + 1 < count and registers[i + 1] == register + 1:
                channel = -1
        elif register == 0xFF14 or register == 0xFF19 or register == 0xFF1E or register == 0xFF23:
            if register == 0xFF14:
                channel = 0
            elif register == 0xFF19:
                channel = 1
            elif register == 0xFF1E:
                channel = 2
            else:
                channel = 3
            if channel < 3:
                high[channel] = value & 0x07
            trigger = (value & 0x80) != 0
        if channel < 0:
            continue
        if trigger:
            if channel == 2:
                audible = wave_dac == 1 and (envelope[2] & 0x60) != 0
            else:
                env = envelope[channel]
                rising = (env & 0x08) != 0 and (env & 0x07) != 0
                audible = (env & 0xF8) != 0 and ((env >> 4) != 0 or rising)
            sounding[channel] = audible
            if not audible:
                continue
            if channel == 3:
                pitch = noise
            else:
                note[channel] = _midi(channel, (high[channel] << 8) | low[channel])
                pitch = int(round(note[channel]))
        elif channel < 3 and sounding[channel]:
            # A new note without a trigger (legato drivers, slides): the pitch moved by
            # most of a semitone since the last onset; vibrato stays below that.
            midi = _midi(channel, (high[channel] << 8) | low[channel])
            if abs(midi - note[channel]) < 0.75:
                continue
            note[channel] = midi
            pitch = int(round(midi))
        else:
            continue
        out_cycle[n] = cycles[i]
        out_channel[n] = channel
        out_pitch[n] = pitch
        out_start[n] = trigger or cycles[i] - last_onset[channel] >= _CHAIN_FRAMES * FRAME_CYCLES
        last_onset[channel] = cycles[i]
        n += 1
    while frame < frames:
        master[frame] = nr50
        frame += 1
    return n


@dataclass(frozen=True, eq=False)
class FrameAnalysis:
    """A whole recording analysed once; the pruner slices it per candidate stretch."""

    onsets: NoteOnsets
    activity: np.ndarray
    """float32 ``(frames, 4)``: each channel's swing, 0..1 (``channel_activity``)."""
    level: np.ndarray
    """float64 ``(frames,)``: summed swing times master volume, 0..1 of the chip's loudest."""
    master_volume: np.ndarray
    """float64 ``(frames,)``: NR50's louder side, 1/8 .. 1."""
    onset_counts: np.ndarray
    """int32 ``(frames,)``: audible note starts per frame, all channels."""

    @property
    def frames(self) -> int:
        return int(self.level.shape[0])


def analyse(writes: ApuWrites, duration_cycles: int) -> FrameAnalysis:
    """Onsets, per-frame activity and level of a recording's writes."""
    frames = -(-int(duration_cycles) // FRAME_CYCLES)
    n = len(writes)
    out_cycle = np.empty(n, np.int64)
    out_channel = np.empty(n, np.uint8)
    out_pitch = np.empty(n, np.int16)
    out_start = np.empty(n, np.bool_)
    master = np.empty(frames, np.int64)
    count = _scan(
        writes.cycles,
        writes.registers,
        writes.values,
        frames,
        out_cycle,
        out_channel,
        out_pitch,
        out_start,
        master,
    )
    onsets = NoteOnsets(
        out_cycle[:count], out_channel[:count], out_pitch[:count], out_start[:count]
    )
    activity = channel_activity(writes, duration_cycles)[:frames]
    # NR50: left volume in bits 4-6, right in bits 0-2 (0 is 1/8 of full, not silence).
    master_volume = (np.maximum(master >> 4 & 7, master & 7) + 1) / 8.0
    level = activity.sum(axis=1, dtype=np.float64) / 4.0 * master_volume
    counts = np.bincount(onsets.cycles // FRAME_CYCLES, minlength=frames)[:frames]
    return FrameAnalysis(onsets, activity, level, master_volume, counts.astype(np.int32))


_TRIGGER_REGISTERS = np.array([0xFF14, 0xFF19, 0xFF1E, 0xFF23], dtype=np.uint16)


def note_starts(writes: ApuWrites, before: ApuWrites | None = None) -> NoteOnsets:
    """The audible note starts of ``writes`` (``NoteOnsets.starts`` all true), without the
    per-frame levels ``analyse`` also computes: cheap enough for every second the explorer
    listens to.

    ``before`` is the ``register_snapshot`` of the registers when ``writes`` begin. Its
    channels count as sounding (as if triggered just before), so a driver that triggers a
    note once and then changes pitch without a trigger is heard from the first write on.
    """
    if before is not None and len(before):
        retrigger = before.values.copy()
        retrigger[np.isin(before.registers, _TRIGGER_REGISTERS)] |= 0x80
        # The snapshot sits at cycle 0 and the writes one cycle later; onsets at 0 are its own.
        writes = ApuWrites.concat(
            [ApuWrites(before.cycles, before.registers, retrigger), writes.shifted(1)]
        )
        offset = 1
    else:
        offset = 0
    n = len(writes)
    out_cycle = np.empty(n, np.int64)
    out_channel = np.empty(n, np.uint8)
    out_pitch = np.empty(n, np.int16)
    out_start = np.empty(n, np.bool_)
    master = np.empty(0, np.int64)
    count = _scan(
        writes.cycles,
        writes.registers,
        writes.values,
        0,
        out_cycle,
        out_channel,
        out_pitch,
        out_start,
        master,
    )
    keep = np.flatnonzero(out_start[:count] & (out_cycle[:count] >= offset))
    return NoteOnsets(out_cycle[keep] - offset, out_channel[keep], out_pitch[keep], out_start[keep])


LOUDNESS_OFFSET_DB = -6.5
"""Rendered RMS (dBFS, mono, DMG high-pass) minus the swing-based level: the mean over
the 18 segments kept from the shared music (GBS subsongs and music ROMs)."""


def loudness_db(activity: np.ndarray, master_volume: np.ndarray) -> float:
    """Estimated RMS level in dBFS of these frames rendered (see the module docstring)."""
    if activity.shape[0] == 0:
        return -120.0
    swing = np.square(activity, dtype=np.float64).sum(axis=1) / 16.0
    mean_square = float(np.mean(swing * np.square(master_volume)))
    if mean_square <= 0:
        return -120.0
    return max(-120.0, 10.0 * math.log10(mean_square) + LOUDNESS_OFFSET_DB)


@dataclass(frozen=True)
class Rhythm:
    regularity: float
    """Highest normalised onset autocorrelation between 0.1 s and 3 s (0: none)."""
    tempo_bpm: float | None
    """Beat estimate in 70-180 BPM; None without regular onsets."""


_MIN_LAG_SECONDS = 0.1
_MAX_LAG_SECONDS = 3.0
_BEAT_MIN_BPM, _BEAT_MAX_BPM = 70.0, 180.0


def rhythm(onset_counts: np.ndarray, min_onsets: int = 8) -> Rhythm:
    """Regularity and tempo from the autocorrelation of per-frame onset counts."""
    x = onset_counts.astype(np.float64)
    if int(np.count_nonzero(x)) < min_onsets:
        return Rhythm(0.0, None)
    x = x - x.mean()
    energy = float(np.dot(x, x))
    if energy <= 0:
        return Rhythm(0.0, None)
    n = x.shape[0]
    size = 1 << int(2 * n - 1).bit_length()
    spectrum = np.fft.rfft(x, size)
    corr = np.fft.irfft(spectrum * np.conj(spectrum), size)[:n] / energy
    lo = max(1, int(round(_MIN_LAG_SECONDS * FRAMES_PER_SECOND)))
    hi = min(n // 2, int(round(_MAX_LAG_SECONDS * FRAMES_PER_SECOND)))
    corr = corr[: n // 2 + 1]
    if hi <= lo:
        return Rhythm(0.0, None)
    window = corr[lo : hi + 1]
    regularity = float(max(0.0, window.max()))
    if regularity <= 0:
        return Rhythm(regularity, None)
    return Rhythm(regularity, _tempo(corr))


_BEAT_MULTIPLES = np.array([1.0, 2.0, 3.0, 4.0])
_TEMPO_PRIOR_OCTAVES = 1.0
"""Width (in octaves) of the log-normal preference for tempos near 120 BPM, which settles
the choice between a tempo and its double when both fit the onsets equally well."""


def _tempo(corr: np.ndarray) -> float | None:
    """Beat period whose multiples (1-4 beats) the onsets correlate with best, in BPM."""
    longest = (corr.shape[0] - 1) / _BEAT_MULTIPLES[-1]
    shortest = 60.0 / _BEAT_MAX_BPM * FRAMES_PER_SECOND
    periods = np.arange(shortest, min(longest, 60.0 / _BEAT_MIN_BPM * FRAMES_PER_SECOND), 0.05)
    if periods.size == 0:
        return None
    lags = np.outer(periods, _BEAT_MULTIPLES)
    # Linear interpolation between whole-frame lags: a frame is 4 BPM at 120 BPM.
    below = np.floor(lags).astype(np.int64)
    fraction = lags - below
    values = (
        corr[below] * (1 - fraction) + corr[np.minimum(below + 1, corr.shape[0] - 1)] * fraction
    )
    bpm = 60.0 * FRAMES_PER_SECOND / periods
    prior = np.exp(-0.5 * (np.log2(bpm / 120.0) / _TEMPO_PRIOR_OCTAVES) ** 2)
    score = values.mean(axis=1) * prior
    best = int(np.argmax(score))
    if score[best] <= 0:
        return None
    return round(float(bpm[best]), 1)


@nb.njit(cache=True, nogil=True)
def _sequence_hashes(channels, pitches, length):
    n = channels.shape[0]
    keys = np.empty(n, np.uint64)
    for i in range(n):
        keys[i] = mix64(np.uint64((channels[i] << 16) | (pitches[i] & 0xFFFF)) + np.uint64(1))
    out = np.zeros(n, np.uint64)
    for i in range(n - length + 1):
        h = np.uint64(0)
        for k in range(length):
            h += mix64(keys[i + k] ^ (np.uint64(k + 1) * np.uint64(0x9E3779B97F4A7C15)))
        out[i] = h if h != 0 else np.uint64(1)
    return out


def sequence_hashes(channels: np.ndarray, pitches: np.ndarray, length: int) -> np.ndarray:
    """uint64 per note: hash of the (channel, pitch) of it and the ``length - 1`` notes after
    it, in order, whatever their timing; 0 where fewer than ``length`` notes follow.

    Timing is left out on purpose: a driver whose tempo is not a whole number of frames
    per row plays each pass of a loop on a different frame grid, but in the same order.
    """
    return _sequence_hashes(channels.astype(np.int64), pitches.astype(np.int64), int(length))
