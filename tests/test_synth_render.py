"""The synthesizer's library API: whole and streamed rendering, inputs it refuses, activity."""

from __future__ import annotations

import numpy as np
import pytest

from gbsynth.common.avro import Segment, SegmentFeatures
from gbsynth.common.events import CPU_HZ, ApuWrites, Recording, Source, SourceKind
from gbsynth.synth import Synth, SynthError, channel_activity, render, rms_envelope, to_pcm16
from gbsynth.synth.render import samples_before

RATE = 44_100


def random_song(seed: int, seconds: float = 3.0) -> ApuWrites:
    """Random but sensible writes: notes on all four channels, panning and volume changes,
    wave RAM rewrites with the DAC off, a power cycle."""
    rng = np.random.default_rng(seed)

    def r(low: int, high: int) -> int:
        return int(rng.integers(low, high))

    events = []
    t = 2000
    end = int(seconds * CPU_HZ)
    while t < end - 70224:
        t += r(200, 20000)
        kind = r(0, 9)
        if kind == 0:
            events += [
                (t, 0xFF10, r(0, 0x80)),
                (t, 0xFF11, r(0, 256)),
                (t, 0xFF12, r(0, 256)),
                (t, 0xFF13, r(0, 256)),
                (t, 0xFF14, 0x80 | r(0, 0x48)),
            ]
        elif kind == 1:
            events += [
                (t, 0xFF16, r(0, 256)),
                (t, 0xFF17, r(0x10, 256)),
                (t, 0xFF18, r(0, 256)),
                (t, 0xFF19, 0x80 | r(0, 0x48)),
            ]
        elif kind == 2:
            events += [(t, 0xFF1A, 0x00)] + [(t, 0xFF30 + i, r(0, 256)) for i in range(16)]
            events += [
                (t, 0xFF1A, 0x80),
                (t, 0xFF1C, r(0, 4) << 5),
                (t, 0xFF1D, r(0, 256)),
                (t, 0xFF1E, 0x80 | r(0, 8)),
            ]
        elif kind == 3:
            events += [
                (t, 0xFF21, r(0x10, 256)),
                (t, 0xFF22, r(0, 256)),
                (t, 0xFF23, 0x80 | r(0, 2) << 6),
            ]
        elif kind == 4:
            events.append((t, 0xFF25, r(0, 256)))
        elif kind == 5:
            events.append((t, 0xFF24, r(0, 256)))
        elif kind == 6:
            events.append((t, 0xFF13, r(0, 256)))
        elif kind == 7 and rng.random() < 0.05:
            events += [(t, 0xFF26, 0x00), (t, 0xFF26, 0x80), (t, 0xFF24, 0x77), (t, 0xFF25, 0xFF)]
        else:
            events.append((t, 0xFF17, r(0, 256)))
    cycles, registers, values = zip(*events, strict=True)
    return ApuWrites.from_arrays(list(cycles), list(registers), list(values))


def test_output_shape_dtype_and_length():
    writes = random_song(1, 1.0)
    duration = CPU_HZ
    for rate in (8000, 22_050, 44_100, 48_000, 96_000):
        audio = render(writes, duration, rate=rate)
        assert audio.dtype == np.float32
        assert audio.shape == (samples_before(duration, rate), 2)
        assert audio.shape[0] == rate  # exactly one second
    mono = render(writes, duration, stereo=False)
    assert mono.shape == (RATE,)
    np.testing.assert_allclose(mono, render(writes, duration).mean(axis=1), atol=1e-7)


def test_streaming_in_pieces_gives_the_same_samples():
    writes = random_song(2, 4.0)
    duration = 4 * CPU_HZ
    whole = render(writes, duration)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.integers(1, duration, size=40))
    cuts = np.concatenate([cuts, [duration, duration]])  # and an empty piece
    synth = Synth(RATE)
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(synth.render(writes.between(start, int(cut)), int(cut)))
        start = int(cut)
    streamed = np.concatenate(pieces)
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-9)
    assert synth.cycle == duration and synth.samples == whole.shape[0]


def test_copy_branches_an_independent_synth():
    writes = random_song(3, 2.0)
    synth = Synth(RATE)
    synth.render(writes.between(0, CPU_HZ), CPU_HZ)
    twin = synth.copy()
    rest = writes.between(CPU_HZ, 2 * CPU_HZ)
    a = synth.render(rest, 2 * CPU_HZ)
    b = twin.render(rest, 2 * CPU_HZ)
    np.testing.assert_array_equal(a, b)
    c = synth.render(ApuWrites.empty(), 3 * CPU_HZ)
    assert c.shape[0] == RATE and twin.cycle == 2 * CPU_HZ


def test_render_takes_recordings_segments_and_bare_writes():
    writes = random_song(4, 1.0)
    source = Source("0" * 64, "song.gbs", SourceKind.GBS)
    recording = Recording("rec", source, writes, CPU_HZ + 5000)
    audio = render(recording)
    assert audio.shape[0] == samples_before(CPU_HZ + 5000, RATE)
    features = SegmentFeatures(1.0, len(writes), 15, 3, -20.0)
    segment = Segment("seg", "rec", source, 0, CPU_HZ, writes, features)
    assert render(segment).shape[0] == RATE
    bare = render(writes)
    assert bare.shape[0] == samples_before(int(writes.cycles[-1]) + 1, RATE)
    # A shorter duration leaves later writes out.
    short = render(recording, CPU_HZ // 2)
    np.testing.assert_allclose(short, audio[: short.shape[0]], atol=1e-9)


def test_empty_recording_is_silent_not_an_error():
    assert render(ApuWrites.empty()).shape == (0, 2)
    audio = render(ApuWrites.empty(), CPU_HZ)
    assert audio.shape == (RATE, 2) and np.max(np.abs(audio)) == 0.0


def test_bad_inputs_raise_synth_errors():
    writes = random_song(5, 1.0)
    with pytest.raises(SynthError, match="sample rate"):
        render(writes, rate=1000)
    with pytest.raises(SynthError, match="sample rate"):
        Synth(rate=44100.5)
    synth = Synth(RATE)
    synth.render(writes.between(0, 1000), 1000)
    with pytest.raises(SynthError, match="before"):
        synth.render(ApuWrites.empty(), 500)
    early = ApuWrites.from_arrays([900, 1200], [0xFF12, 0xFF12], [0xF0, 0x00])
    with pytest.raises(SynthError, match="outside"):
        synth.render(early, CPU_HZ)  # starts before the synth's cycle
    with pytest.raises(SynthError, match="outside"):
        synth.render(ApuWrites.from_arrays([1100, 3000], [0xFF12, 0xFF12], [1, 2]), 3000)
    backwards = ApuWrites(
        np.array([2000, 1500], dtype=np.int64),
        np.array([0xFF12, 0xFF12], dtype=np.uint16),
        np.array([0xF0, 0], dtype=np.uint8),
    )
    with pytest.raises(SynthError, match="backwards"):
        Synth(RATE).render(backwards, 3000)
    with pytest.raises(SynthError):
        render(object())
    with pytest.raises(SynthError, match="slots"):
        Synth(apu_state=np.zeros(3, dtype=np.int64))


def test_highpass_option_keeps_or_removes_dc():
    # The post-boot state has CH1's DAC on at volume 0 (analog +1); a song that never
    # touches it keeps that DC without the filter and loses it with the filter.
    writes = ApuWrites.from_arrays([1000], [0xFF24], [0x77])
    raw = render(writes, CPU_HZ, highpass=False)
    filtered = render(writes, CPU_HZ)
    assert raw[-1, 0] == pytest.approx(0.125)
    assert np.max(np.abs(filtered)) == pytest.approx(0.0, abs=1e-9)


def test_channel_activity_follows_notes():
    nr = [
        (1000, 0xFF25, 0xFF),
        (1000, 0xFF24, 0x77),
        (1000, 0xFF12, 0xF0),
        (1000, 0xFF13, 0x00),
        (1000, 0xFF14, 0x87),  # CH1 at 15
        (CPU_HZ // 2, 0xFF12, 0x00),  # DAC off: stops
        (1000, 0xFF21, 0x80),
        (1000, 0xFF23, 0x80),  # CH4 at 8
    ]
    nr.sort(key=lambda e: e[0])
    writes = ApuWrites.from_arrays(*zip(*nr, strict=True))
    frames = channel_activity(writes, CPU_HZ, frame_cycles=CPU_HZ // 8)
    assert frames.shape == (8, 4) and frames.dtype == np.float32
    np.testing.assert_allclose(frames[1:4, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(frames[4:, 0], 0.0, atol=1e-6)
    np.testing.assert_allclose(frames[1:, 3], 8 / 15, atol=1e-6)
    np.testing.assert_allclose(frames[:, 1:3], 0.0)
    panned_away = ApuWrites.from_arrays(
        *zip(*[(e[0], e[1], 0x00 if e[1] == 0xFF25 else e[2]) for e in nr], strict=True)
    )
    assert np.max(channel_activity(panned_away, CPU_HZ)) == 0.0


def test_rms_envelope_and_pcm16():
    audio = np.zeros((RATE, 2), dtype=np.float32)
    audio[:, 0] = 0.5
    envelope = rms_envelope(audio, RATE, 0.02)
    assert envelope.shape == (50,)
    np.testing.assert_allclose(envelope, np.sqrt(0.125))
    pcm = to_pcm16(np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 2.0]))
    assert pcm.dtype == np.int16
    assert pcm.tolist() == [-32768, -32767, 0, 16384, 32767, 32767]


def test_random_songs_stay_finite_and_in_range():
    for seed in range(6):
        audio = render(random_song(10 + seed, 3.0))
        assert np.all(np.isfinite(audio))
        assert np.max(np.abs(audio)) <= 1.0
