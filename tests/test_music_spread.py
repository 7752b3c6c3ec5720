"""Fifty composed songs differ from one another and none is silent.

Each song is played for 30 s in our emulator (as a GBS file) and the notes every
channel starts are read back from the register writes. ``pytest -s`` prints the
report: per song its key, mode, tempo, form, writes a second, notes started (distinct
notes) per channel and each channel's pitch histogram, then the spread of tempos, keys
and modes.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from gbsynth.emulator.sources import GbsSession
from gbsynth.music.analysis import song_row, spread_report
from gbsynth.music.composer import compose, song_summary
from gbsynth.music.rom import gbs_file
from gbsynth.music.song import assemble_module

SONGS = 50
SEED = 0
SECONDS = 30


@pytest.fixture(scope="module")
def rows():
    out = []
    for index in range(SONGS):
        song = compose(SEED, index)
        gbs = gbs_file(assemble_module([song]), title=song.title)
        writes = GbsSession(gbs, f"{index}.gbs").record(SECONDS).writes
        out.append(song_row(song_summary(song), writes, SECONDS))
    print()
    print(spread_report(out, histograms=True))
    return out


def test_no_song_or_channel_is_silent(rows):
    for row in rows:
        # every channel starts audible notes within 30 s; the melody and the drums many
        assert min(row["notes"]) >= 4, (row["title"], row["notes"])
        assert row["notes"][0] >= 30 and row["notes"][3] >= 30, (row["title"], row["notes"])


def test_tempos_keys_and_modes_spread(rows):
    bpms = np.array([r["bpm"] for r in rows])
    assert bpms.max() - bpms.min() > 60
    assert len(set(np.round(bpms))) >= 30
    assert len({r["key_pitch_class"] for r in rows}) == 12
    modes = Counter(r["mode"] for r in rows)
    assert len(modes) >= 5 and max(modes.values()) <= SONGS // 2
    assert {r["meter"] for r in rows} == {"3/4", "4/4"}
    assert len({r["form"] for r in rows}) >= 6


def test_songs_use_varied_pitches_and_differ(rows):
    distinct = np.array([r["distinct"] for r in rows])
    assert np.median(distinct[:, 0]) >= 8  # melody
    assert np.median(distinct[:, 2]) >= 5  # bass
    assert distinct[:, 3].min() >= 2  # at least two drum sounds
    melodies = {tuple(sorted(r["histograms"][0].items())) for r in rows}
    assert len(melodies) == SONGS  # no two melodies use their notes the same number of times
