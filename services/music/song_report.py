"""Musical statistics of generated songs beside real ones (``gbsynth evaluate CKPT --generate N``,
``gbsynth.trainer.cli_evaluate``, and ``bench/music_acceptance.py``).

    gbsynth evaluate var/checkpoints --generate 20 --seconds 30 \\
        --real ../shared/corpus/nightmode.gbs '../shared/corpus/DevSound_demo.gbs#1' \\
        --train-data ../shared/corpus/DevSound_demo.gbs --json report.json --piano-roll rolls.png

Samples N songs with seeds 0..N-1 through the generator's offline path
(``gbsynth generate``: same checkpoint, seed and parameters, same song), records
each ``--real`` file for the same length (a GBS file: every subsong, or ``FILE#N``
for subsong N; a ROM played without pressing buttons; Avro recordings or segments
cut to the length), computes ``gbsynth.music.stats`` of every song and prints per
statistic the generated and the real median and range, then each song's line.
It also finds the longest stretch of each generated song copied from the training
music: the ``--train-data`` files (recorded for ``--train-seconds``), else the
training data ``gbsynth train`` saved beside the checkpoint; ``--json`` writes everything,
``--piano-roll`` draws the first 3 generated songs beside the first 3 real ones.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from gbsynth.common.events import CPU_HZ, ApuWrites

DEFAULT_SECONDS = 30.0
ROLL_SONGS = 3


class SongReportError(ValueError):
    """Music that cannot be loaded or generated, with the reason."""


@dataclass(frozen=True, eq=False)
class SongWrites:
    """A song to measure: a name, its writes and its length."""

    name: str
    writes: ApuWrites
    duration_cycles: int

    @cached_property
    def notes(self):
        from gbsynth.music.notes import decode_notes

        return decode_notes(self.writes, self.duration_cycles)

    @cached_property
    def stats(self):
        from gbsynth.music.stats import song_stats

        return song_stats(self.notes, self.duration_cycles)


def split_subsong(spec: str) -> tuple[Path, int | None]:
    """``FILE`` or ``FILE#N`` (subsong N of a GBS file, counting from 1)."""
    path, _, number = spec.rpartition("#") if "#" in spec else (spec, "", "")
    if not number:
        return Path(spec), None
    if not number.isdigit() or int(number) < 1:
        raise SongReportError(f"{spec}: the subsong after # must be a number from 1")
    return Path(path), int(number)


def load_songs(specs: Iterable[str | Path], seconds: float) -> list[SongWrites]:
    """The songs in music files, each at most ``seconds`` long (module docstring)."""
    from gbsynth.common.avro import CodecError
    from gbsynth.common.events import RecordingError, SourceKind
    from gbsynth.common.formats import EventFileError, is_avro_file, read_event_file
    from gbsynth.emulator.gbs import GbsError, build_player_rom
    from gbsynth.emulator.jobs import detect_kind
    from gbsynth.emulator.sources import SourceError, open_session

    limit = int(round(seconds * CPU_HZ))
    songs: list[SongWrites] = []
    for spec in specs:
        path, subsong = split_subsong(str(spec))
        if not path.is_file():
            raise SongReportError(f"{path}: no such file")
        try:
            if is_avro_file(path):
                for i, item in enumerate(read_event_file(path)):
                    duration = min(item.duration_cycles, limit)
                    songs.append(
                        SongWrites(f"{path.name}#{i}", item.writes.between(0, duration), duration)
                    )
                continue
            with path.open("rb") as stream:
                kind = detect_kind(path, stream.read(0x70))
            if kind is None:
                raise SongReportError(f"{path}: not a GBS, ROM, VGM or Avro recordings file")
            subsongs: list[int | None] = [subsong]
            if kind is SourceKind.GBS and subsong is None:
                _, header = build_player_rom(path.read_bytes(), 1)
                subsongs = list(range(1, header.song_count + 1))
            for number in subsongs:
                recording = open_session(path, kind=kind, subsong=number).record(seconds)
                name = path.name + (f"#{number}" if number else "")
                songs.append(SongWrites(name, recording.writes, recording.duration_cycles))
        except (OSError, EventFileError, CodecError, RecordingError, GbsError, SourceError) as exc:
            raise SongReportError(f"{path}: {exc}") from exc
    return songs


def training_songs(folder: Path) -> list[SongWrites]:
    """The training data a checkpoint folder's ``gbsynth train`` saved (``dataset.npz``),
    decoded back to writes from the representation it was saved in; empty if the folder
    has none."""
    from gbsynth.trainer.data import DataError, load_tracks
    from gbsynth.trainer.training_folder import DATASET_FILE, folder_representation

    path = Path(folder) / DATASET_FILE
    if not path.is_file():
        return []
    rep = folder_representation(Path(folder))
    if rep is None:
        raise SongReportError(f"{path}: not a saved track file of a known representation")
    try:
        tracks = load_tracks(path, rep)
    except DataError as exc:
        raise SongReportError(str(exc)) from exc
    songs = []
    for track in tracks:
        writes, duration_cycles = rep.decode(track.tokens)
        songs.append(SongWrites(track.name, writes, duration_cycles))
    return songs


def generate_songs(
    checkpoint: Path,
    count: int,
    seconds: float,
    *,
    temperature: float = 1.0,
    top_p: float = 0.95,
    plan: str = "",
    max_events_per_second: float = 20_000.0,
) -> list[SongWrites]:
    """Songs sampled with seeds 0..count-1, as ``gbsynth generate`` samples them (``plan``:
    ``gbsynth generate --plan``; empty: each seed's default)."""
    from gbsynth.generator.models import load_model
    from gbsynth.generator.songs import SongError, SongParams, generate
    from gbsynth.trainer.checkpoint import CheckpointError

    try:
        model = load_model(checkpoint)
    except CheckpointError as exc:
        raise SongReportError(str(exc)) from exc
    songs = []
    for seed in range(count):
        params = SongParams(
            seconds=seconds, temperature=temperature, top_p=top_p, seed=seed, plan=plan
        )
        try:
            song = generate(model, params, max_events_per_second=max_events_per_second)
        except SongError as exc:
            # A model stuck on fast writes makes no song: it counts as a silent one.
            print(f"seed {seed}: {exc}", file=sys.stderr)
            song_writes = SongWrites(
                f"seed {seed} (failed)", ApuWrites.empty(), params.duration_cycles
            )
        else:
            song_writes = SongWrites(f"seed {seed}", song.writes, song.duration_cycles)
        songs.append(song_writes)
    return songs


def build_report(
    generated: Sequence[SongWrites],
    real: Sequence[SongWrites],
    training: Sequence[SongWrites] | None = None,
) -> dict:
    """Statistics of every song, their summaries and, with ``training``, memorisation."""
    from gbsynth.music.stats import CopyIndex, summary

    report: dict = {
        "generated": {
            "summary": summary([s.stats for s in generated]),
            "songs": {s.name: s.stats.as_dict() for s in generated},
        },
        "real": {
            "summary": summary([s.stats for s in real]),
            "songs": {s.name: s.stats.as_dict() for s in real},
        },
    }
    if training:
        index = CopyIndex(s.notes for s in training)
        copies = {s.name: index.longest_copy(s.notes) for s in generated}
        longest = max(copies.values(), key=lambda c: (c.seconds, c.notes), default=None)
        report["memorisation"] = {
            "training_songs": len(training),
            "training_seconds": round(sum(s.duration_cycles for s in training) / CPU_HZ, 1),
            "songs": {name: vars(copy) for name, copy in copies.items()},
            "longest_seconds": longest.seconds if longest else 0.0,
            "longest_notes": longest.notes if longest else 0,
            "median_seconds": float(np.median([c.seconds for c in copies.values()]))
            if copies
            else 0.0,
        }
    return report


def format_report(generated: Sequence[SongWrites], real: Sequence[SongWrites], report: dict) -> str:
    from gbsynth.music.stats import comparison_table, format_stats

    lines = [comparison_table([s.stats for s in generated], [s.stats for s in real])]
    memorisation = report.get("memorisation")
    if memorisation:
        lines.append(
            f"memorisation: longest copy {memorisation['longest_seconds']:.2f} s "
            f"({memorisation['longest_notes']} notes), median {memorisation['median_seconds']:.2f}"
            f" s, against {memorisation['training_songs']} training songs "
            f"({memorisation['training_seconds']:.0f} s)"
        )
    lines.append("")
    for song in [*generated, *real]:
        line = format_stats(song.name, song.stats)
        if memorisation and song.name in memorisation["songs"]:
            line += f" copy {memorisation['songs'][song.name]['seconds']:.1f} s"
        lines.append(line)
    return "\n".join(lines)


def plot_songs(
    generated: Sequence[SongWrites], real: Sequence[SongWrites], path: Path, count: int = ROLL_SONGS
) -> Path:
    """Piano rolls of the first ``count`` generated songs (left) beside real ones (right)."""
    from gbsynth.music.pianoroll import panel_from_notes, plot_piano_rolls

    left = [
        panel_from_notes(s.name, s.notes, s.duration_cycles / CPU_HZ) for s in generated[:count]
    ]
    right = [panel_from_notes(s.name, s.notes, s.duration_cycles / CPU_HZ) for s in real[:count]]
    rows = max(len(left), len(right))
    if rows == 0:
        raise SongReportError("no songs to draw")
    # Filled column by column: pad the generated column so real songs start the second.
    panels = left + [None] * (rows - len(left)) + right
    return plot_piano_rolls(
        panels, path, columns=2 if right else 1, column_titles=("generated", "real")
    )


def compare_with_real(
    checkpoint: Path,
    count: int,
    seconds: float,
    real: Sequence[str],
    *,
    train_data: Sequence[str | Path] | None = None,
    train_seconds: float = 180.0,
    temperature: float = 1.0,
    top_p: float = 0.95,
    plan: str = "",
) -> tuple[list[SongWrites], list[SongWrites], dict]:
    """``count`` songs sampled from ``checkpoint`` (seeds 0..count-1), the ``real`` songs
    recorded for as long, and ``build_report`` of them: memorisation against the
    ``train_data`` files (recorded for ``train_seconds``), else against the training data
    saved beside the checkpoint. The report also names the checkpoint, the length and the
    sampling wall time. ``SongReportError`` (or ``OSError``) for music that cannot be used."""
    if count < 1:
        raise SongReportError("--generate needs at least 1 song")
    if not 0 < seconds <= 3600:
        raise SongReportError("--seconds must be above 0 and at most 3600")
    started = time.perf_counter()
    generated = generate_songs(
        checkpoint, count, seconds, temperature=temperature, top_p=top_p, plan=plan
    )
    sampled = time.perf_counter() - started
    real_songs = load_songs(real, seconds)
    if train_data:
        training = load_songs(train_data, train_seconds)
    else:
        training = training_songs(Path(checkpoint).parent)
    report = build_report(generated, real_songs, training)
    report["checkpoint"] = str(checkpoint)
    report["seconds"] = seconds
    report["sampling_wall_seconds"] = round(sampled, 2)
    return generated, real_songs, report
