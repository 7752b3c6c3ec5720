"""Render recordings to audio: the library API the generator, the pruner and the CLI use.

    from gbsynth.synth import render
    audio = render(recording, rate=44100)          # float32 (n, 2), about +-1 full scale

    synth = Synth(rate=44100)                      # streaming: state carries over
    for writes, end_cycle in pieces:               # writes in [synth.cycle, end_cycle)
        play(synth.render(writes, end_cycle))

Both give the same samples for the same writes, however the time is cut into
pieces. Output sample ``n`` is the DMG's signal at cycle ``n * 4194304 / rate``
(exact integers, no drift) delayed by the step filter's constant group delay,
``LATENCY_SAMPLES`` (7.5 samples, 0.17 ms at 44.1 kHz). The recording starts
from the DMG's post-boot sound state (the emulator's ``new_apu_state``) unless
another APU state is given.
"""

from __future__ import annotations

import numpy as np

from gbsynth.common.events import FRAME_CYCLES, ApuWrites, Recording, RecordingError
from gbsynth.emulator.core.apu import APU_STATE_SIZE, new_apu_state
from gbsynth.synth import core
from gbsynth.synth.core import (
    BLOCK_SAMPLES,
    CPU_HZ,
    DMG_CHARGE_PER_CYCLE,
    LATENCY_SAMPLES,
    TAPS,
    samples_before,
)

__all__ = [
    "LATENCY_SAMPLES",
    "MAX_RATE",
    "MIN_RATE",
    "SynthError",
    "Synth",
    "channel_activity",
    "render",
    "rms_envelope",
    "samples_before",
    "sounds_alike",
    "to_pcm16",
]

MIN_RATE = 8_000
MAX_RATE = 384_000


class SynthError(ValueError):
    """Writes or settings the synthesizer cannot render."""


def _check_rate(rate: int) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer):
        raise SynthError(f"sample rate must be an integer number of Hz, not {rate!r}")
    if not MIN_RATE <= int(rate) <= MAX_RATE:
        raise SynthError(f"sample rate {rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz")
    return int(rate)


def _writes_of(
    source: Recording | ApuWrites | object, duration_cycles: int | None
) -> tuple[ApuWrites, int]:
    """The writes of a Recording, Segment (anything with .writes/.duration_cycles) or
    ApuWrites, and the span to render: ``duration_cycles`` if given, else the source's
    duration (bare writes: just past the last one)."""
    if isinstance(source, ApuWrites):
        writes, own_duration = source, None
    else:
        writes = getattr(source, "writes", None)
        if not isinstance(writes, ApuWrites):
            raise SynthError(f"cannot render a {type(source).__name__}: no APU writes")
        own_duration = int(source.duration_cycles)
    if duration_cycles is None:
        duration_cycles = own_duration
    if duration_cycles is None:
        duration_cycles = int(writes.cycles[-1]) + 1 if len(writes) else 0
    return writes, int(duration_cycles)


class Synth:
    """A DMG sound chip rendering successive pieces of one recording.

    ``cycle`` is where the rendered audio ends; each ``render`` call takes the writes
    from there to its ``end_cycle`` and returns the samples of that span.
    """

    def __init__(
        self,
        rate: int = 44_100,
        *,
        highpass: bool = True,
        apu_state: np.ndarray | None = None,
    ) -> None:
        self.rate = _check_rate(rate)
        self.highpass = bool(highpass)
        if apu_state is None:
            apu = new_apu_state()
        else:
            apu = np.array(apu_state, dtype=np.int64)
            if apu.shape != (APU_STATE_SIZE,):
                raise SynthError(f"an APU state has {APU_STATE_SIZE} int64 slots")
        self.apu = apu
        self.syn = np.zeros(core.SYNTH_INT_SIZE, dtype=np.int64)
        self.fst = np.zeros(core.SYNTH_FLOAT_SIZE, dtype=np.float64)
        self.buf = np.zeros((BLOCK_SAMPLES + 2 * TAPS, 2), dtype=np.float64)
        self._queue_cycle = np.zeros(core.QUEUE_SIZE, dtype=np.int64)
        self._queue_delta = np.zeros((core.QUEUE_SIZE, 2), dtype=np.float64)
        self.syn[core.S_RATE] = self.rate
        self.syn[core.S_HIGHPASS] = 1 if self.highpass else 0
        self.fst[core.F_CHARGE] = DMG_CHARGE_PER_CYCLE ** (CPU_HZ / self.rate)
        core.init_synth(self.apu, self.syn, self.fst)

    @property
    def cycle(self) -> int:
        """The cycle the audio rendered so far reaches (exclusive)."""
        return int(self.syn[core.S_NOW])

    @property
    def samples(self) -> int:
        """Output samples rendered so far."""
        return int(self.syn[core.S_BASE])

    def copy(self) -> Synth:
        """An independent synthesizer in the same state (to try alternative continuations)."""
        twin = object.__new__(Synth)
        twin.rate, twin.highpass = self.rate, self.highpass
        twin.apu, twin.syn = self.apu.copy(), self.syn.copy()
        twin.fst, twin.buf = self.fst.copy(), self.buf.copy()
        twin._queue_cycle, twin._queue_delta = self._queue_cycle.copy(), self._queue_delta.copy()
        return twin

    def render(self, writes: ApuWrites, end_cycle: int) -> np.ndarray:
        """Apply ``writes`` (cycles in ``[self.cycle, end_cycle)``) and return the samples up
        to ``end_cycle``: float32 ``(n, 2)``, left and right."""
        end_cycle = int(end_cycle)
        if end_cycle < self.cycle:
            raise SynthError(f"end cycle {end_cycle} is before the synthesizer's {self.cycle}")
        if len(writes):
            first, last = int(writes.cycles[0]), int(writes.cycles[-1])
            if first < self.cycle or last >= end_cycle:
                raise SynthError(
                    f"writes span cycles {first}..{last}, outside [{self.cycle}, {end_cycle})"
                )
            try:
                writes.validate()
            except RecordingError as exc:
                raise SynthError(str(exc)) from exc
        count = samples_before(end_cycle, self.rate) - self.samples
        out = np.empty((count, 2), dtype=np.float32)
        written = core.render_span(
            self.apu,
            self.syn,
            self.fst,
            self.buf,
            core.STEP_KERNEL,
            self._queue_cycle,
            self._queue_delta,
            writes.cycles,
            writes.registers.astype(np.int64),
            writes.values.astype(np.int64),
            end_cycle,
            out,
        )
        assert written == count
        return out

    def render_seconds(self, writes: ApuWrites, seconds: float) -> np.ndarray:
        """Render ``seconds`` more of audio, with ``writes`` in that span."""
        return self.render(writes, self.cycle + int(round(seconds * CPU_HZ)))


def render(
    recording: Recording | ApuWrites | object,
    duration_cycles: int | None = None,
    *,
    rate: int = 44_100,
    stereo: bool = True,
    highpass: bool = True,
    apu_state: np.ndarray | None = None,
) -> np.ndarray:
    """Render a whole recording (a ``Recording``, a ``Segment`` or bare ``ApuWrites``).

    ``duration_cycles`` defaults to the recording's duration (just past the last write
    for bare writes); writes at or after it are left out. Returns float32 ``(n, 2)``
    (left, right), or ``(n,)`` with ``stereo=False`` (the mean of both sides), with
    ``n = samples_before(duration_cycles, rate)``.
    """
    writes, duration_cycles = _writes_of(recording, duration_cycles)
    if duration_cycles < 0:
        raise SynthError(f"negative duration {duration_cycles}")
    if len(writes) and int(writes.cycles[-1]) >= duration_cycles:
        writes = writes.between(0, duration_cycles)
    synth = Synth(rate, highpass=highpass, apu_state=apu_state)
    audio = synth.render(writes, duration_cycles)
    if stereo:
        return audio
    return audio.mean(axis=1, dtype=np.float32)


def channel_activity(
    recording: Recording | ApuWrites | object,
    duration_cycles: int | None = None,
    *,
    frame_cycles: int = FRAME_CYCLES,
    apu_state: np.ndarray | None = None,
) -> np.ndarray:
    """How much each channel sounds, frame by frame, without rendering audio.

    Returns float32 ``(frames, 4)`` (pulse 1, pulse 2, wave, noise): the channel's
    peak-to-peak digital swing as a fraction of full scale (envelope volume / 15 for
    the pulse and noise channels; the range of the shifted wave samples for the wave
    channel), averaged over each frame of ``frame_cycles`` (default one LCD frame); 0
    while the channel is stopped, its DAC is off or NR51 routes it to neither side.
    Cheap: it follows only register writes and frame-sequencer steps.
    """
    writes, duration_cycles = _writes_of(recording, duration_cycles)
    if frame_cycles <= 0:
        raise SynthError("frame_cycles must be positive")
    writes = writes.between(0, duration_cycles)
    frames = -(-duration_cycles // frame_cycles)
    out = np.zeros((frames, 4), dtype=np.float64)
    apu = new_apu_state() if apu_state is None else np.array(apu_state, dtype=np.int64)
    core.channel_swing_frames(
        apu,
        writes.cycles,
        writes.registers.astype(np.int64),
        writes.values.astype(np.int64),
        duration_cycles,
        int(frame_cycles),
        out,
    )
    return out.astype(np.float32)


def rms_envelope(audio: np.ndarray, rate: int, frame_seconds: float = 0.02) -> np.ndarray:
    """RMS of consecutive frames of ``frame_seconds`` (both sides together for stereo);
    a last partial frame is dropped. float64 ``(frames,)``."""
    audio = np.asarray(audio, dtype=np.float64)
    frame = max(1, int(round(frame_seconds * rate)))
    frames = audio.shape[0] // frame
    power = np.square(audio[: frames * frame])
    if power.ndim == 2:
        power = power.mean(axis=1)
    return np.sqrt(power.reshape(frames, frame).mean(axis=1))


def band_energies(
    audio: np.ndarray, rate: int, frame_seconds: float = 0.02, window: int = 8192
) -> np.ndarray:
    """Energy in 48 log-spaced bands (50 Hz - 16 kHz) of each ``frame_seconds`` frame of
    mono ``audio``: float64 ``(frames, 48)``. Each frame's spectrum is taken with a
    ``window``-sample Hann window centred on it (the lowest bands are 6 Hz wide at
    44.1 kHz; a shorter window leaves some without a single FFT bin)."""
    audio = np.asarray(audio, dtype=np.float64)
    frame = max(1, int(round(frame_seconds * rate)))
    edges = np.geomspace(50, 16_000, 49)
    band = np.digitize(np.fft.rfftfreq(window, 1 / rate), edges) - 1
    padded = np.concatenate([np.zeros(window // 2), audio, np.zeros(window // 2)])
    frames = audio.size // frame
    taper = np.hanning(window)
    out = np.empty((frames, 48))
    for start in range(0, frames, 256):
        idx = np.arange(start, min(frames, start + 256))
        blocks = padded[(idx * frame + frame // 2)[:, None] + np.arange(window)[None, :]] * taper
        spectrum = np.abs(np.fft.rfft(blocks, axis=1)) ** 2
        for b in range(48):
            out[idx, b] = spectrum[:, band == b].sum(axis=1)
    return out


def log_band_correlation(reference: np.ndarray, other: np.ndarray, rate: int) -> float:
    """Mean over the frames where both play (total energy above 1e-6 of its peak) of the
    correlation, across the 48 bands, of the two signals' log band energies
    (``band_energies``); 1.0 is the same spectral shape in every frame."""
    ea, eb = band_energies(reference, rate), band_energies(other, rate)
    total_a, total_b = ea.sum(axis=1), eb.sum(axis=1)
    playing = (total_a > 1e-6 * total_a.max()) & (total_b > 1e-6 * total_b.max())
    if not playing.any():
        return float("nan")
    la = np.log10(ea[playing] + 1e-12 * total_a.max())
    lb = np.log10(eb[playing] + 1e-12 * total_b.max())
    la -= la.mean(axis=1, keepdims=True)
    lb -= lb.mean(axis=1, keepdims=True)
    per_frame = (la * lb).sum(axis=1) / np.sqrt((la * la).sum(axis=1) * (lb * lb).sum(axis=1))
    return float(per_frame.mean())


def sounds_alike(
    reference: ApuWrites, other: ApuWrites, duration_cycles: int, rate: int = 44_100
) -> tuple[float, float]:
    """How alike two sets of writes sound over ``duration_cycles``: both rendered mono, the
    correlation of their 20 ms RMS envelopes and their ``log_band_correlation``."""
    a = render(reference, duration_cycles, rate=rate, stereo=False).astype(np.float64)
    b = render(other, duration_cycles, rate=rate, stereo=False).astype(np.float64)
    envelopes = np.corrcoef(rms_envelope(a, rate), rms_envelope(b, rate))[0, 1]
    return float(envelopes), log_band_correlation(a, b, rate)


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float audio (full scale +-1) as int16, rounded and clipped."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    out = np.empty(audio.shape, dtype=np.int16)
    core.float_to_pcm16(audio, out)
    return out
