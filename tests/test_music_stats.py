"""Musical statistics (``gbsynth.music.stats``): real Game Boy music scores high on tuning,
metric regularity and motif repetition; the same music with random onset times or random
pitches scores low; memorisation finds a copied stretch of known length."""

from __future__ import annotations

import numpy as np
import pytest

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES
from gbsynth.emulator.sources import GbsSession
from gbsynth.music.composer import compose
from gbsynth.music.notes import TRIGGER, Notes, decode_notes, onset_groups
from gbsynth.music.rom import gbs_file
from gbsynth.music.song import assemble_module
from gbsynth.music.stats import (
    CopyIndex,
    comparison_table,
    regularity,
    song_stats,
    sounding_share,
    summary,
)

SECONDS = 20
REAL = [
    ("corpus/nightmode.gbs", None),
    ("corpus/DevSound_demo.gbs", 1),
    ("corpus/DevSound_demo.gbs", 2),
    ("corpus/DevSound_demo.gbs", 4),
]


@pytest.fixture(scope="module")
def real_songs(shared_dir) -> dict[str, tuple[Notes, int]]:
    """Notes of real Game Boy music and two demo songs, 20 s each."""
    songs = {}
    for path, subsong in REAL:
        data = (shared_dir / path).read_bytes()
        recording = GbsSession(data, path, subsong).record(SECONDS)
        songs[f"{path} {subsong or ''}"] = recording
    for index in (0, 1):
        song = compose(0, index)
        gbs = gbs_file(assemble_module([song]), title=song.title)
        recording = GbsSession(gbs, "demo.gbs").record(SECONDS)
        songs[f"demo {index}"] = recording
    return {
        name: (decode_notes(r.writes, r.duration_cycles), r.duration_cycles)
        for name, r in songs.items()
    }


def random_onsets(notes: Notes, duration: int, rng: np.random.Generator) -> Notes:
    """The song's onsets (pitches, lengths) at uniformly random times."""
    onsets = onset_groups(notes)
    length = onsets.end - onsets.start
    start = rng.integers(0, duration - int(length.max()), len(onsets))
    return Notes.from_columns(
        onsets.channel, start, start + length, onsets.pitch, onsets.volume, onsets.kind
    )


def random_pitches(notes: Notes, rng: np.random.Generator) -> Notes:
    """The song's notes with uniformly random pitches (MIDI 40-90) on the pitched channels."""
    pitch = np.where(notes.pitched, rng.uniform(40, 90, len(notes)), notes.pitch)
    return Notes.from_columns(
        notes.channel, notes.start, notes.end, pitch, notes.volume, notes.kind
    )


def test_real_music_scores_high(real_songs):
    for name, (notes, duration) in real_songs.items():
        stats = song_stats(notes, duration)
        assert stats.in_tune >= 0.97, (name, stats)
        assert stats.regularity >= 0.6, (name, stats)
        assert stats.motif_repetition >= 0.5, (name, stats)
        assert stats.key_clarity >= 0.55, (name, stats)
        assert not stats.silent and stats.silence_share < 0.2, (name, stats)
        assert all(rate > 0 for rate in stats.notes_per_second[:3]), (name, stats)


def test_random_onsets_and_pitches_score_low(real_songs):
    rng = np.random.default_rng(7)
    for name, (notes, duration) in real_songs.items():
        shuffled = song_stats(random_onsets(notes, duration, rng), duration)
        assert shuffled.regularity <= 0.15, (name, shuffled)
        assert shuffled.motif_repetition <= 0.35, (name, shuffled)
        detuned = song_stats(random_pitches(notes, rng), duration)
        assert detuned.in_tune <= 0.75, (name, detuned)
        assert detuned.motif_repetition <= 0.1, (name, detuned)


def test_a_drum_machine_is_regular_and_jitter_within_a_frame_is_forgiven():
    rng = np.random.default_rng(0)
    beat = 0.125
    times = np.arange(0, 30, beat) + rng.choice([0, 1], 240) * FRAME_CYCLES / CPU_HZ
    value, grid = regularity(times)
    assert value >= 0.95
    assert grid == pytest.approx(beat, rel=0.01) or grid == pytest.approx(beat / 2, rel=0.01)
    assert regularity(np.sort(rng.uniform(0, 30, 240)))[0] <= 0.1
    assert regularity(times[:5]) == (0.0, None)  # too few onsets


def test_silence_and_sounding_share():
    second = CPU_HZ
    notes = Notes.from_columns(
        [0, 1, 2],
        [0, second // 2, 3 * second],
        [second, second, 4 * second],
        [60.0, 64.0, 48.0],
        [15, 15, 15],
        [TRIGGER] * 3,
    )
    assert sounding_share(notes, 10 * second) == pytest.approx(0.2)
    stats = song_stats(notes, 10 * second)
    assert stats.silence_share == pytest.approx(0.8) and not stats.silent
    empty = song_stats(Notes.empty(), 10 * second)
    assert empty.silent and empty.in_tune is None and empty.regularity == 0.0
    table = comparison_table([stats, empty], [stats])
    assert "silent songs" in table and summary([stats, empty])["silent_songs"] == 1


def synthetic_song(rng: np.random.Generator, count: int) -> Notes:
    """Random notes on the three pitched channels, on a frame grid."""
    frames = np.cumsum(rng.integers(3, 12, count))  # 3 frames apart: no onset groups
    start = frames * FRAME_CYCLES
    return Notes.from_columns(
        rng.integers(0, 3, count),
        start,
        start + 4 * FRAME_CYCLES,
        rng.integers(40, 90, count).astype(float),
        np.full(count, 15),
        np.zeros(count),
    )


def test_memorisation_finds_an_inserted_copy():
    rng = np.random.default_rng(3)
    training = [synthetic_song(rng, 2000) for _ in range(5)]
    index = CopyIndex(training)
    generated = synthetic_song(rng, 600)
    assert index.longest_copy(generated).notes == 0  # random songs share no 8-note stretch
    # Splice 50 notes of training song 2 (from its note 700) into the generated song.
    source = training[2].select(slice(700, 750))
    offset = int(generated.start[300]) - int(source.start[0])
    before = generated.select(slice(0, 300))
    after = generated.select(slice(300, None))
    shift = int(source.end[-1] + offset - after.start[0]) + 5 * FRAME_CYCLES
    spliced = Notes.from_columns(
        np.concatenate([before.channel, source.channel, after.channel]),
        np.concatenate([before.start, source.start + offset, after.start + shift]),
        np.concatenate([before.end, source.end + offset, after.end + shift]),
        np.concatenate([before.pitch, source.pitch, after.pitch]),
        np.concatenate([before.volume, source.volume, after.volume]),
        np.concatenate([before.kind, source.kind, after.kind]),
    )
    copy = index.longest_copy(spliced)
    # The first copied note's gap to the note before it differs from the training song's.
    assert copy.notes in (49, 50)
    expected = (source.end[-1] - source.start[50 - copy.notes]) / CPU_HZ
    assert copy.seconds == pytest.approx(expected)
    assert copy.start_seconds == pytest.approx((source.start[50 - copy.notes] + offset) / CPU_HZ)
