"""What a stretch of a recording sounds like, read from its register writes without rendering.

Everything here works on a grid of LCD frames (``FRAME_CYCLES``, 59.73 per second,
the tick of most Game Boy sound drivers) and costs a few passes over the writes,
so the pruner keeps up with several emulator cores:

- **onsets** (``FrameAnalysis.onsets``): the start of each note the shared decoder
  (``gbsynth.music.notes.decode_notes``) finds: audible triggers, and on a pulse or
  wave channel still sounding each change of frequency by 3/4 of a semitone or more
  (legato drivers, arpeggios, slides; vibrato stays below that), with its channel and
  pitch rounded to a MIDI note (the noise channel's "pitch" is its NR43 setting).
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
from gbsynth.music.notes import decode_notes
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
    """bool: a note start (a trigger, or a pitch change to a pitch then held for 4
    frames: ``Notes.is_onset``), not a step of an arpeggio or slide. How many steps an
    arpeggio takes depends on how a driver's ticks fall on frames; the starts do not,
    so they are what repeats are recognised by."""

    def __len__(self) -> int:
        return int(self.cycles.shape[0])


_NR50, _NR52 = 0xFF24, 0xFF26
_NR50_AT_POWER_ON = 0x77


def master_per_frame(writes: ApuWrites, frames: int) -> np.ndarray:
    """NR50 as it stands at the end of each frame (writes while the APU is off are ignored)."""
    power_writes = np.flatnonzero(writes.registers == _NR52)
    nr50 = np.flatnonzero(writes.registers == _NR50)
    # The APU is powered at an NR50 write unless the last NR52 write before it turned it off.
    last_power = np.searchsorted(power_writes, nr50) - 1
    powered = (last_power < 0) | (
        writes.values[power_writes[np.maximum(last_power, 0)]] & 0x80 != 0
    )
    nr50 = nr50[powered]
    frame_ends = (np.arange(frames, dtype=np.int64) + 1) * FRAME_CYCLES
    index = np.searchsorted(writes.cycles[nr50], frame_ends, side="left") - 1
    values = writes.values[nr50].astype(np.int64)
    return np.where(index >= 0, values[np.maximum(index, 0)] if nr50.size else 0, _NR50_AT_POWER_ON)


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
    notes = decode_notes(writes, duration_cycles)
    onsets = NoteOnsets(
        notes.start, notes.channel, np.round(notes.pitch).astype(np.int16), notes.is_onset
    )
    master = master_per_frame(writes, frames)
    activity = channel_activity(writes, duration_cycles)[:frames]
    # NR50: left volume in bits 4-6, right in bits 0-2 (0 is 1/8 of full, not silence).
    master_volume = (np.maximum(master >> 4 & 7, master & 7) + 1) / 8.0
    level = activity.sum(axis=1, dtype=np.float64) / 4.0 * master_volume
    counts = np.bincount(onsets.cycles // FRAME_CYCLES, minlength=frames)[:frames]
    return FrameAnalysis(onsets, activity, level, master_volume, counts.astype(np.int32))


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
