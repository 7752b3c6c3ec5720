"""Piano-roll pictures (``gbsynth.music.pianoroll``) of decoded recordings and of scores."""

from __future__ import annotations

import numpy as np
import pytest

from gbsynth.common.events import CPU_HZ
from gbsynth.music.notes import NOISE, TRIGGER, Notes
from gbsynth.music.pianoroll import (
    Panel,
    PianoRollError,
    panel_from_notes,
    panel_from_score,
    plot_piano_rolls,
)
from gbsynth.music.score import Note, Part, Score, TempoChange


def test_recordings_and_a_score_in_one_grid(tmp_path):
    notes = Notes.from_columns(
        [0, 1, 2, NOISE],
        np.array([0, 1, 2, 3]) * CPU_HZ,
        np.array([1, 2, 3, 3.5]) * CPU_HZ,
        [60.0, 64.0, 48.0, 0x35],
        [15] * 4,
        [TRIGGER] * 4,
    )
    panel = panel_from_notes("song", notes, seconds=4.0)
    assert panel.pitch[3] < 48  # the noise strip sits below the lowest pitched note
    score = Score(
        "tune",
        "midi",
        [Part("melody"), Part("bass")],
        [Note(0.0, 1.0, 72), Note(1.0, 2.0, 74), Note(0.0, 4.0, 36, part=1)],
        tempos=[TempoChange(0.0, 120.0)],
    )
    from_score = panel_from_score("score", score)
    assert from_score.end.tolist() == [0.5, 2.0, 1.5]  # 120 BPM: half a second a quarter
    assert list(from_score.lane_names) == ["melody", "bass"]
    path = plot_piano_rolls(
        [panel, None, from_score],
        tmp_path / "rolls.png",
        columns=2,
        column_titles=("arranged", "score"),
        title="rolls",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_panels_are_refused(tmp_path):
    with pytest.raises(PianoRollError, match="one length"):
        Panel("bad", np.zeros(2), np.ones(3), np.zeros(2), np.zeros(2, int))
    with pytest.raises(PianoRollError, match="no panels"):
        plot_piano_rolls([], tmp_path / "none.png")
    silent = panel_from_notes("silent", Notes.empty(), seconds=1.0)
    assert plot_piano_rolls([silent], tmp_path / "silent.png").exists()
