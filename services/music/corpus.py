"""Build a pre-training corpus: every score and tracker module under some folders, arranged
for the Game Boy, played by our driver on our emulator, recorded::

    gbsynth corpus build ../shared/pretrain --out /work/data/corpus
    gbsynth corpus build SRC... --out DIR [--jobs N] [--transpose -2,0,3] [--tempo 0.9,1.0]
                         [--seconds-limit 300] [--shards 8] [--seed 0]

Each file is one task for a pool of worker processes (all cores by default): read, arrange
(every ``--transpose`` x ``--tempo`` variant), record each part of each variant
(``ScoreSession``), decode the recorded notes (``gbsynth.music.notes``) for the statistics.
Recordings go to a handful of Avro recordings files (``recordings-NN.avro``, the format of
``gbsynth emulate --out x.avro``); a file always lands in the same shard. Each finished file
is logged in ``progress.jsonl``, so a second run skips what is done (resumable; files that
failed for want of a reader or by a bug are tried again). At the end
``summary.json`` gathers the files, recordings, failures (each file with its reason), hours
of music (distinct: the un-augmented variant; augmented counted apart), notes, counts per
source folder, the licence of every recording and the corpus statistics.

Files under a folder named ``melody`` or ``chords`` that also exist one folder up (the
Nottingham set's split copies of its tunes) are left out, so each tune counts once.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPLIT_COPY_FOLDERS = frozenset({"melody", "chords"})
PROGRESS_NAME = "progress.jsonl"
SUMMARY_NAME = "summary.json"
DEFAULT_SHARDS = 8
IN_TUNE_SEMITONES = 0.25
"""A pitched note is in tune within 25 cents of equal temperament (A = 440 Hz)."""
RETRY_REASONS = frozenset({"unsupported", "internal_error"})
"""Failures a later run tries again (a reader added since, a bug fixed); other failures are
the file's own and stay done."""
MAX_TASKS_PER_WORKER = 200
"""Workers are replaced after this many files, so memory cannot creep."""


class CorpusError(ValueError):
    """Bad arguments for a corpus build (no such folder, bad variant lists)."""


@dataclass(frozen=True)
class Task:
    path: str
    name: str
    """Path relative to its source folder, with the source folder's own name in front."""
    folder: str
    """The collection: the first folder below the source folder (or the source itself)."""
    kind: str
    variants: tuple[tuple[int, float], ...]
    seconds_limit: float
    seed: int

    @property
    def key(self) -> str:
        """What progress.jsonl remembers: the file and the variants asked for."""
        spec = ";".join(f"{t}:{f!r}" for t, f in self.variants)
        return f"{self.name}|{spec}|{self.seconds_limit!r}|{self.seed}"


def is_split_copy(path: Path) -> bool:
    """A tune's melody-only or chords-only copy beside the combined file one folder up."""
    return (
        path.parent.name.lower() in SPLIT_COPY_FOLDERS
        and (path.parent.parent / path.name).is_file()
    )


def discover(
    sources: list[Path],
    variants: tuple[tuple[int, float], ...],
    seconds_limit: float,
    seed: int,
) -> tuple[list[Task], int]:
    """A task for every score file under ``sources``; also how many split copies were left out."""
    from gbsynth.emulator.jobs import HEAD_BYTES, detect_kind

    tasks: list[Task] = []
    left_out = 0
    for source in sources:
        source = source.resolve()
        if not source.exists():
            raise CorpusError(f"{source}: no such file or folder")
        if source.is_file():
            files, root = [source], source.parent
        else:
            files, root = sorted(p for p in source.rglob("*") if p.is_file()), source
        for path in files:
            if is_split_copy(path):
                left_out += 1
                continue
            try:
                with path.open("rb") as fh:
                    head = fh.read(HEAD_BYTES)
            except OSError:
                continue
            kind = detect_kind(path, head)
            if kind is None or not kind.is_score:
                continue
            rel = path.relative_to(root)
            folder = rel.parts[0] if len(rel.parts) > 1 else root.name
            name = f"{root.name}/{rel.as_posix()}"
            tasks.append(Task(str(path), name, folder, kind.value, variants, seconds_limit, seed))
    return tasks, left_out


def max_voices(score) -> int:
    """Most pitched source notes sounding at once (at any onset)."""
    events = []
    for n in score.notes:
        if not score.parts[n.part].drums:
            events.append((n.start, 1))
            events.append((n.start + n.length, -1))
    events.sort(key=lambda e: (e[0], e[1]))  # ends before starts at one time
    most = sounding = 0
    for _, step in events:
        sounding += step
        most = max(most, sounding)
    return most


def _note_stats(recording) -> dict[str, Any]:
    from gbsynth.music.notes import NOISE, decode_notes

    notes = decode_notes(recording.writes, recording.duration_cycles).onsets()
    channels = np.asarray(notes.channel)
    pitch = np.asarray(notes.pitch, dtype=np.float64)
    pitched = channels != NOISE
    off = np.abs(pitch[pitched] - np.round(pitch[pitched]))
    histograms = []
    for c in range(3):
        p = np.round(pitch[channels == c]).astype(np.int64)
        p = p[(p >= 0) & (p < 128)]
        histograms.append(np.bincount(p, minlength=128).tolist())
    return {
        "notes": int(len(channels)),
        "per_channel": [int(np.sum(channels == c)) for c in range(4)],
        "pitched": int(np.sum(pitched)),
        "in_tune": int(np.sum(off <= IN_TUNE_SEMITONES)),
        "histograms": histograms,
    }


def build_file(task: Task) -> dict[str, Any]:
    """Arrange and record one file (in a worker): its recordings and what the summary needs."""
    from gbsynth.common.events import SourceKind
    from gbsynth.emulator.jobs import JobError, read_source_file
    from gbsynth.emulator.score_source import ScoreSession, arrange_file, licence_of
    from gbsynth.emulator.sources import SourceError

    started = time.perf_counter()
    result: dict[str, Any] = {"key": task.key, "name": task.name, "folder": task.folder,
                              "kind": task.kind, "recordings": []}  # fmt: skip
    kind = SourceKind(task.kind)
    path = Path(task.path)
    recordings = []
    try:
        data = read_source_file(path)
        licence = licence_of(path)
        for index, (transpose, tempo_factor) in enumerate(task.variants):
            score, parts = arrange_file(data, path.name, kind, seed=task.seed,
                                        transpose=transpose, tempo_factor=tempo_factor,
                                        seconds_limit=task.seconds_limit)  # fmt: skip
            if index == 0:
                result["voices"] = max_voices(score)
                result["on_row_share"] = parts[0].on_row_share
                result["source_notes"] = len(score.notes)
            for number in range(1, len(parts) + 1):
                session = ScoreSession(data, path.name, kind, part=number, seed=task.seed,
                                       transpose=transpose, tempo_factor=tempo_factor,
                                       licence=licence, arranged=(score, parts))  # fmt: skip
                recording = session.record(session.seconds)
                stats = _note_stats(recording)
                recordings.append(recording)
                result["recordings"].append({
                    "id": recording.recording_id, "part": number, "parts": len(parts),
                    "transpose": transpose, "tempo_factor": tempo_factor,
                    "seconds": round(session.seconds, 3), "licence": licence,
                    "title": score.title[:120], **stats,
                })  # fmt: skip
        result["status"] = "recorded"
    except (SourceError, JobError, OSError) as exc:
        result.update(status="failed", reason=getattr(exc, "reason", "unreadable"),
                      error=str(exc)[:300])  # fmt: skip
        recordings = []
        result["recordings"] = []
    except Exception as exc:  # a bug, not the file's fault: report it, keep the batch going
        result.update(status="failed", reason="internal_error",
                      error=f"{type(exc).__name__}: {exc}"[:300])  # fmt: skip
        recordings = []
        result["recordings"] = []
    result["wall_seconds"] = round(time.perf_counter() - started, 3)
    result["worker_max_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    return {"result": result, "recordings": recordings}


def _import_worker_modules() -> None:
    """Import what the workers run before they are forked: they share it (memory, start-up
    time), and a build goes on with the code it started with even if the files change."""
    import importlib

    from gbsynth.music.score_formats import SCORE_KINDS

    for name in ("gbsynth.emulator.score_source", "gbsynth.music.notes"):
        importlib.import_module(name)
    for kind in SCORE_KINDS:
        try:
            importlib.import_module(f"gbsynth.music.{kind}")
        except ModuleNotFoundError:
            pass  # read_score reports the missing reader per file


class ShardWriter:
    """Appends recordings to ``recordings-NN.avro``; a file always goes to the same shard."""

    def __init__(self, out: Path, shards: int) -> None:
        self.out = out
        self.shards = shards

    def path(self, name: str) -> Path:
        return self.out / f"recordings-{zlib.crc32(name.encode()) % self.shards:02d}.avro"

    def write(self, name: str, recordings: list) -> None:
        if not recordings:
            return
        import fastavro

        from gbsynth import __version__
        from gbsynth.common.avro import recording_to_chunks, schema_family
        from gbsynth.common.formats import CONTAINER_CODEC

        records = [
            c for r in recordings for c in recording_to_chunks(r, emulator_version=__version__)
        ]
        path = self.path(name)
        with open(path, "a+b") as fo:
            fastavro.writer(fo, schema_family("RecordingChunk").schema, records,
                            codec=CONTAINER_CODEC, codec_compression_level=1,
                            metadata={"gbsynth.version": __version__})  # fmt: skip
            fo.flush()
            os.fsync(fo.fileno())


def load_progress(out: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    path = out / PROGRESS_NAME
    if not path.is_file():
        return done
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interrupted run: that file is done again
            done[entry["key"]] = entry
    return done


def _percentile(histogram: np.ndarray, q: float) -> int | None:
    total = int(histogram.sum())
    if not total:
        return None
    return int(np.searchsorted(np.cumsum(histogram), q * total, side="right"))


def summarise(entries: list[dict[str, Any]], run: dict[str, Any]) -> dict[str, Any]:
    """The summary of every finished file (this run's and earlier runs')."""
    from gbsynth.music.notes import CHANNELS

    failed_by_reason: Counter[str] = Counter()
    failures = []
    folders: dict[str, Counter] = defaultdict(Counter)
    folder_hours: dict[str, float] = defaultdict(float)
    kinds: Counter[str] = Counter()
    recordings = []
    hours_distinct = hours_augmented = 0.0
    notes = pitched = in_tune = 0
    per_channel = np.zeros(4, dtype=np.int64)
    histograms = np.zeros((3, 128), dtype=np.int64)
    three_voice = three_voice_three_channels = 0
    on_row = []
    seconds_distinct = 0.0
    for entry in entries:
        folder = entry["folder"]
        folders[folder]["files"] += 1
        kinds[entry["kind"]] += 1
        if entry["status"] != "recorded":
            failed_by_reason[entry["reason"]] += 1
            folders[folder]["failed"] += 1
            failures.append({"file": entry["name"], "reason": entry["reason"],
                             "error": entry.get("error", "")})  # fmt: skip
            continue
        folders[folder]["recorded"] += 1
        on_row.append(entry.get("on_row_share", 0.0))
        first = entry["recordings"][0] if entry["recordings"] else None
        identity = (first["transpose"], first["tempo_factor"]) if first else (0, 1.0)
        used_channels = set()
        for rec in entry["recordings"]:
            distinct = (rec["transpose"], rec["tempo_factor"]) == identity
            hours = rec["seconds"] / 3600
            folders[folder]["recordings"] += 1
            recordings.append({"id": rec["id"], "file": entry["name"], "part": rec["part"],
                               "transpose": rec["transpose"], "tempo_factor": rec["tempo_factor"],
                               "seconds": rec["seconds"], "licence": rec["licence"]})  # fmt: skip
            if not distinct:
                hours_augmented += hours
                continue
            hours_distinct += hours
            seconds_distinct += rec["seconds"]
            folder_hours[folder] += hours
            notes += rec["notes"]
            pitched += rec["pitched"]
            in_tune += rec["in_tune"]
            per_channel += np.asarray(rec["per_channel"])
            histograms += np.asarray(rec["histograms"], dtype=np.int64)
            used_channels |= {c for c in range(3) if rec["per_channel"][c]}
        if entry.get("voices", 0) >= 3:
            three_voice += 1
            three_voice_three_channels += len(used_channels) >= 3
    files = len(entries)
    failed = sum(failed_by_reason.values())
    ranges = {}
    for c in range(3):
        h = histograms[c]
        ranges[CHANNELS[c]] = {
            "lowest": _percentile(h, 0.0), "p5": _percentile(h, 0.05),
            "median": _percentile(h, 0.5), "p95": _percentile(h, 0.95),
            "highest": int(np.nonzero(h)[0].max()) if h.any() else None,
        }  # fmt: skip
    return {
        "files": files,
        "recorded": files - failed,
        "failed": failed,
        "failed_share": round(failed / files, 4) if files else 0.0,
        "failed_by_reason": dict(failed_by_reason.most_common()),
        "failures": failures,
        "recordings": len(recordings),
        "hours": round(hours_distinct, 2),
        "hours_augmented": round(hours_augmented, 2),
        "notes": notes,
        "by_folder": {
            name: {**dict(counts), "hours": round(folder_hours[name], 2)}
            for name, counts in sorted(folders.items())
        },
        "by_kind": dict(kinds),
        "statistics": {
            "pitched_notes_in_tune_share": round(in_tune / pitched, 4) if pitched else None,
            "in_tune_tolerance_semitones": IN_TUNE_SEMITONES,
            "pieces_with_3_voices": three_voice,
            "of_them_using_3_channels_share": (
                round(three_voice_three_channels / three_voice, 4) if three_voice else None
            ),
            "notes_per_second": round(notes / seconds_distinct, 2) if seconds_distinct else None,
            "notes_per_channel": {CHANNELS[c]: int(per_channel[c]) for c in range(4)},
            "pitch_ranges_midi": ranges,
            "onsets_on_a_row_share_mean": round(float(np.mean(on_row)), 4) if on_row else None,
        },
        "run": run,
        "recording_list": recordings,
    }


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise CorpusError(f"--transpose takes whole semitones, like -2,0,3: {text!r}") from exc
    if not values:
        raise CorpusError("--transpose needs at least one value")
    return values


def _float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise CorpusError(f"--tempo takes factors, like 0.9,1.0: {text!r}") from exc
    if not values or not all(0.25 <= v <= 4.0 for v in values):
        raise CorpusError(f"--tempo factors must lie in 0.25-4: {text!r}")
    return values


def build(
    sources: list[Path],
    out: Path,
    *,
    jobs: int | None = None,
    transposes: tuple[int, ...] = (0,),
    tempos: tuple[float, ...] = (1.0,),
    seconds_limit: float = 300.0,
    shards: int = DEFAULT_SHARDS,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Build (or finish building) the corpus in ``out``; returns the summary it writes."""
    import multiprocessing

    from tqdm import tqdm

    if not seconds_limit > 0:
        raise CorpusError("--seconds-limit must be positive")
    if shards < 1:
        raise CorpusError("--shards must be at least 1")
    variants = tuple((t, f) for t in transposes for f in tempos)
    out.mkdir(parents=True, exist_ok=True)
    tasks, left_out = discover(sources, variants, seconds_limit, seed)
    done = load_progress(out)
    todo = [t for t in tasks if t.key not in done or done[t.key].get("reason") in RETRY_REASONS]
    # big files first, so no long file starts last and keeps one core busy alone
    todo.sort(key=lambda t: -os.path.getsize(t.path))
    jobs = max(1, jobs or os.cpu_count() or 1)
    writer = ShardWriter(out, shards)
    started = time.perf_counter()
    load_before = os.getloadavg()
    max_rss = 0.0
    emulated = 0.0
    with (out / PROGRESS_NAME).open("a", encoding="utf-8") as log:
        bar = tqdm(total=len(todo), unit="file", desc="corpus", disable=not progress,
                   file=sys.stderr)  # fmt: skip
        if todo:
            _import_worker_modules()
            context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
            with context.Pool(jobs, maxtasksperchild=MAX_TASKS_PER_WORKER) as pool:
                for item in pool.imap_unordered(build_file, todo, chunksize=1):
                    result = item["result"]
                    writer.write(result["name"], item["recordings"])
                    log.write(json.dumps(result) + "\n")
                    log.flush()
                    done[result["key"]] = result
                    max_rss = max(max_rss, result.get("worker_max_rss_mb", 0.0))
                    emulated += sum(r["seconds"] for r in result["recordings"])
                    bar.set_postfix(
                        failed=sum(1 for e in done.values() if e["status"] != "recorded")
                    )
                    bar.update()
        bar.close()
    wall = time.perf_counter() - started
    keys = {t.key for t in tasks}
    entries = [e for k, e in done.items() if k in keys]
    run = {
        "sources": [str(s) for s in sources],
        "variants": [{"transpose": t, "tempo_factor": f} for t, f in variants],
        "seconds_limit": seconds_limit,
        "seed": seed,
        "jobs": jobs,
        "files_this_run": len(todo),
        "files_skipped_as_done": len(tasks) - len(todo),
        "split_copies_left_out": left_out,
        "wall_seconds_this_run": round(wall, 1),
        "music_hours_recorded_this_run": round(emulated / 3600, 3),
        "music_seconds_per_wall_second": round(emulated / wall, 1) if wall > 0 else None,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "worker_max_rss_mb_this_run": max_rss,
        "shards": sorted(p.name for p in out.glob("recordings-*.avro")),
    }
    summary = summarise(entries, run)
    tmp = out / (SUMMARY_NAME + ".partial")
    tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out / SUMMARY_NAME)
    return summary


# -- command line ------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="arrange and record every score under some folders")
    b.add_argument("sources", nargs="+", type=Path, metavar="SRC", help="folders or files")
    b.add_argument("--out", type=Path, required=True, help="output folder")
    b.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    b.add_argument("--transpose", default="0", help="semitone shifts, e.g. -2,0,3 (default 0)")
    b.add_argument("--tempo", default="1.0", help="tempo factors, e.g. 0.9,1.0 (default 1.0)")
    b.add_argument(
        "--seconds-limit",
        type=float,
        default=300.0,
        help="longest recording; longer pieces are cut at bar lines (default 300)",
    )
    b.add_argument(
        "--shards",
        type=int,
        default=DEFAULT_SHARDS,
        help=f"recordings files to spread the corpus over (default {DEFAULT_SHARDS})",
    )
    b.add_argument("--seed", type=int, default=0, help="varies every piece's instruments")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        summary = build(
            args.sources,
            args.out,
            jobs=args.jobs,
            transposes=_int_list(args.transpose),
            tempos=_float_list(args.tempo),
            seconds_limit=args.seconds_limit,
            shards=args.shards,
            seed=args.seed,
            progress=not args.no_progress,
        )
    except CorpusError as exc:
        print(f"gbsynth corpus: {exc}", file=sys.stderr)
        return 2
    keys = ("files", "recorded", "failed", "failed_by_reason", "recordings", "hours",
            "hours_augmented", "notes")  # fmt: skip
    brief = {k: summary[k] for k in keys}
    brief["statistics"] = summary["statistics"]
    brief["wall_seconds"] = summary["run"]["wall_seconds_this_run"]
    print(json.dumps(brief, indent=1))
    return 0
