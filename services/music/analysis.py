"""What a recording plays: the notes each channel starts, read back from its register writes.

Used to check that songs are audible and differ (``spread_report``), and handy for
any recording: the notes are those ``gbsynth.music.notes.decode_notes`` finds that
begin with a trigger, as driver note numbers (0 = C2; noise: the NR43 setting).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from gbsynth.common.events import CPU_HZ, ApuWrites
from gbsynth.music.driver import LOWEST_MIDI
from gbsynth.music.notes import CHANNELS, NOISE, TRIGGER, decode_notes

PITCH_CLASSES = ("C", "C#/Db", "D", "D#/Eb", "E", "F", "F#/Gb", "G", "G#/Ab", "A", "A#/Bb", "B")


@dataclass
class ChannelNotes:
    """Notes (0 = C2; noise: the NR43 setting) started on one channel, with their cycles."""

    cycles: list[int] = field(default_factory=list)
    notes: list[int] = field(default_factory=list)

    @property
    def histogram(self) -> Counter:
        return Counter(self.notes)

    @property
    def distinct(self) -> int:
        return len(set(self.notes))


def channel_notes(writes: ApuWrites) -> list[ChannelNotes]:
    """The audible notes each channel starts with a trigger."""
    notes = decode_notes(writes)
    out = []
    for channel in range(len(CHANNELS)):
        started = notes.select((notes.channel == channel) & (notes.kind == TRIGGER))
        pitch = np.round(started.pitch).astype(np.int64)
        if channel != NOISE:
            pitch -= LOWEST_MIDI
        out.append(ChannelNotes(started.start.tolist(), pitch.tolist()))
    return out


def is_silent(writes: ApuWrites) -> bool:
    return not any(c.notes for c in channel_notes(writes))


def note_name(note: int) -> str:
    return f"{PITCH_CLASSES[note % 12].split('/')[0]}{2 + note // 12}"


def histogram_lines(row: dict) -> list[str]:
    """A song's pitch histograms: per channel, each note (noise: NR43 setting) and its count."""
    lines = []
    for channel, histogram in zip(CHANNELS, row["histograms"], strict=True):
        if channel == "noise":
            cells = " ".join(f"${k:02X}:{n}" for k, n in histogram.items())
        else:
            cells = " ".join(f"{note_name(k)}:{n}" for k, n in histogram.items())
        lines.append(f"      {channel:<8} {cells}")
    return lines


def spread_report(rows: list[dict], histograms: bool = False) -> str:
    """A text report of songs: one row each (title, key, mode, bpm, writes, notes per channel,
    distinct notes per channel, with ``histograms`` each channel's pitch histogram), then the
    spread of tempos, keys and modes."""
    lines = [
        f"{'#':>3} {'title':<16} {'key':<4} {'mode':<15} {'bpm':>5} {'meter':>5} "
        f"{'form':<6} {'writes/s':>8}  notes started (distinct) pulse1 pulse2 wave noise"
    ]
    for i, row in enumerate(rows):
        per_channel = "  ".join(
            f"{n:4d} ({d:2d})" for n, d in zip(row["notes"], row["distinct"], strict=True)
        )
        lines.append(
            f"{i:3d} {row['title']:<16} {row['key']:<4} {row['mode']:<15} {row['bpm']:5.1f} "
            f"{row['meter']:>5} {row['form']:<6} {row['writes_per_second']:8.1f}  {per_channel}"
        )
        if histograms:
            lines += histogram_lines(row)
    bpms = np.array([r["bpm"] for r in rows])
    keys = Counter(r["key_pitch_class"] for r in rows)
    modes = Counter(r["mode"] for r in rows)
    keys_modes = Counter((r["key_pitch_class"], r["mode"]) for r in rows)
    distinct = np.array([r["distinct"] for r in rows])
    lines += [
        "",
        f"songs: {len(rows)}; silent: {sum(1 for r in rows if sum(r['notes']) == 0)}; "
        f"with a silent channel: {sum(1 for r in rows if min(r['notes']) == 0)}",
        f"tempo: {bpms.min():.1f}-{bpms.max():.1f} BPM, median {np.median(bpms):.1f}, "
        f"{len(set(np.round(bpms, 1)))} distinct",
        f"keys: {len(keys)} of 12 ("
        + ", ".join(f"{PITCH_CLASSES[k]} {n}" for k, n in sorted(keys.items()))
        + ")",
        f"modes: {len(modes)} ({', '.join(f'{k} {n}' for k, n in modes.most_common())})",
        f"key and mode pairs: {len(keys_modes)} distinct",
        "distinct notes per song, median (min-max): "
        + ", ".join(
            f"{name} {int(np.median(column))} ({column.min()}-{column.max()})"
            for name, column in zip(CHANNELS, distinct.T, strict=True)
        ),
    ]
    return "\n".join(lines)


def song_row(summary: dict, writes: ApuWrites, seconds: float) -> dict:
    """One report row: the song's summary with the notes its recording starts."""
    notes = channel_notes(writes)
    return {
        **summary,
        "writes_per_second": len(writes) / seconds,
        "notes": [len(c.notes) for c in notes],
        "distinct": [c.distinct for c in notes],
        "histograms": [dict(sorted(c.histogram.items())) for c in notes],
    }


__all__ = ["ChannelNotes", "channel_notes", "is_silent", "spread_report", "song_row", "CPU_HZ"]
