"""Piano-roll pictures: notes as horizontal bars, several songs in a grid (matplotlib, Agg).

    panels = [panel_from_notes("seed 0", decode_notes(writes)), ...]
    plot_piano_rolls(panels, "rolls.png", columns=2)

A ``Panel`` is a title and notes as columns: start and end in seconds, pitch (a MIDI
number, or any number on the vertical axis) and lane (an integer: the channel, or a
score's voice). Each lane has one colour in every panel of a picture, so the same
channel looks the same in generated and real songs; ``lane_names`` label the legend.
``panel_from_notes`` draws a recording's noise channel in a strip below its lowest
pitched note (higher noise clock, higher bar), since its NR43 value is not a pitch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gbsynth.music.notes import CHANNELS, NOISE, Notes

LANE_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#7f7f7f", "#ff7f0e", "#9467bd", "#8c564b",
                "#e377c2", "#bcbd22", "#17becf")  # fmt: skip
"""Lane i is drawn in colour i (cycling): channels 0-3 red, blue, green, grey."""

NOISE_STRIP = 8
"""Height in semitones of the strip the noise channel is drawn in."""


class PianoRollError(ValueError):
    """Panels that cannot be drawn (mismatched columns, nothing to draw)."""


@dataclass(frozen=True, eq=False)
class Panel:
    """One piano roll: a title and its notes as columns of equal length."""

    title: str
    start: np.ndarray
    """Seconds."""
    end: np.ndarray
    pitch: np.ndarray
    lane: np.ndarray
    """Integer lane (channel or voice) of each note: sets its colour."""
    lane_names: Sequence[str] = field(default=CHANNELS)
    seconds: float | None = None
    """Length of the time axis; default: the last note's end."""

    def __post_init__(self) -> None:
        columns = [np.asarray(c) for c in (self.start, self.end, self.pitch, self.lane)]
        if len({c.shape for c in columns}) != 1 or columns[0].ndim != 1:
            raise PianoRollError(
                f"panel {self.title!r}: start, end, pitch and lane must be 1-D columns "
                f"of one length, got shapes {[c.shape for c in columns]}"
            )


def panel_from_notes(title: str, notes: Notes, seconds: float | None = None) -> Panel:
    """A recording's notes as a panel: lanes are channels, noise drawn in its own strip."""
    pitch = notes.pitch.copy()
    noise = notes.channel == NOISE
    if noise.any():
        tonal = pitch[~noise]
        floor = float(np.floor(tonal.min())) if tonal.size else 60.0
        # NR43 bits 4-7 are the clock shift: a larger shift is a lower noise.
        shift = (notes.pitch[noise].astype(np.int64) >> 4) & 0x0F
        pitch[noise] = floor - 2 - (shift / 15.0) * NOISE_STRIP
    return Panel(title, notes.start_seconds, notes.end_seconds, pitch, notes.channel.astype(int),
                 CHANNELS, seconds)  # fmt: skip


def _rectangles(start: np.ndarray, end: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """``(n, 4, 2)`` corners of one bar per note, 0.8 semitones high (one collection per
    lane draws thousands of notes in a fraction of a second)."""
    x0, x1 = start, np.maximum(end, start + 1e-3)
    y0, y1 = pitch - 0.4, pitch + 0.4
    return np.stack([np.column_stack(c) for c in ((x0, y0), (x0, y1), (x1, y1), (x1, y0))], 1)


def plot_piano_rolls(
    panels: Sequence[Panel],
    path: str | Path,
    *,
    columns: int = 1,
    column_titles: Sequence[str] | None = None,
    title: str | None = None,
    panel_size: tuple[float, float] = (7.0, 2.6),
    dpi: int = 110,
) -> Path:
    """Draw ``panels`` in a grid filled column by column (``columns`` of them) to ``path``.

    Filling by column puts e.g. generated songs in the first column and real ones in the
    second: pass ``columns=2`` with the generated panels first. Returns the path.
    """
    if not panels:
        raise PianoRollError("no panels to draw")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(
        rows, columns, squeeze=False,
        figsize=(panel_size[0] * columns, panel_size[1] * rows + (0.6 if title else 0.3)),
    )  # fmt: skip
    lanes_seen: dict[int, str] = {}
    for index in range(rows * columns):
        column, row = divmod(index, rows)
        ax = axes[row][column]
        if index >= len(panels):
            ax.set_axis_off()
            continue
        panel = panels[index]
        start = np.asarray(panel.start, np.float64)
        end = np.asarray(panel.end, np.float64)
        pitch = np.asarray(panel.pitch, np.float64)
        lane = np.asarray(panel.lane, np.int64)
        for value in np.unique(lane):
            mask = lane == value
            colour = LANE_COLOURS[int(value) % len(LANE_COLOURS)]
            ax.add_collection(PolyCollection(_rectangles(start[mask], end[mask], pitch[mask]),
                                             facecolors=colour, linewidths=0))  # fmt: skip
            name = panel.lane_names[value] if 0 <= value < len(panel.lane_names) else str(value)
            lanes_seen.setdefault(int(value), name)
        ax.set_title(panel.title, fontsize=9, loc="left")
        ax.set_xlim(0, panel.seconds or (float(end.max()) if end.size else 1.0))
        if pitch.size:
            ax.set_ylim(float(pitch.min()) - 1.5, float(pitch.max()) + 1.5)
        else:
            ax.text(0.5, 0.5, "silent", transform=ax.transAxes, ha="center", va="center")
        ax.tick_params(labelsize=7)
        if row == rows - 1:
            ax.set_xlabel("seconds", fontsize=8)
        if column == 0:
            ax.set_ylabel("MIDI pitch", fontsize=8)
    handles = [
        Patch(color=LANE_COLOURS[value % len(LANE_COLOURS)], label=name)
        for value, name in sorted(lanes_seen.items())
    ]
    figure.legend(handles=handles, loc="upper right", ncol=len(handles), fontsize=8, frameon=False)
    if title:
        figure.suptitle(title, fontsize=11, x=0.01, ha="left")
    figure.tight_layout(rect=(0, 0, 1, 0.95 if column_titles or title else 0.97))
    for column, name in enumerate(column_titles or ()):
        if column < columns:
            box = axes[0][column].get_position()
            figure.text((box.x0 + box.x1) / 2, box.y1 + 0.03, name, ha="center",
                        fontsize=10, fontweight="bold")  # fmt: skip
    path = Path(path)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path
