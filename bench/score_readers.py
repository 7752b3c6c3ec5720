"""Score readers: files per second and hours of music read per wall second, per reader.

    .venv/bin/python bench/score_readers.py                  # every file in ../shared/pretrain
    .venv/bin/python bench/score_readers.py --limit 200      # the first 200 of each kind
    .venv/bin/python bench/score_readers.py --json out.json

Every MusicXML (``.mxl``), MOD and (when the reader is there) MIDI and ABC file under
``../shared/pretrain`` is read with ``read_score`` on one core, one file after another.
The peer is real time: "x real time" is seconds of music (``Score.seconds``, repeats
expanded, each piece played once) per CPU second of reading (``time.process_time``, so
other work on the shared machine moves it less; wall seconds are printed too). Also
printed: files that parse, failures by reason, notes, median and slowest file (CPU).
File reading is outside the timed part; the readers get bytes.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRETRAIN = REPO.parent / "shared" / "pretrain"
SUFFIXES = {
    ".mxl": "musicxml",
    ".musicxml": "musicxml",
    ".mod": "mod",
    ".mid": "midi",
    ".abc": "abc",
}


def files_by_kind(root: Path, limit: int | None) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = collections.defaultdict(list)
    for path in sorted(root.rglob("*")):
        kind = SUFFIXES.get(path.suffix.lower())
        if kind and path.is_file() and (limit is None or len(found[kind]) < limit):
            found[kind].append(path)
    return found


def measure(kind: str, paths: list[Path]) -> dict:
    from gbsynth.music.score import ScoreError
    from gbsynth.music.score_formats import read_score

    failures: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    times: list[float] = []  # CPU seconds per file
    wall = 0.0
    notes = 0
    music_seconds = 0.0
    slowest = ("", 0.0)
    for path in paths:
        data = path.read_bytes()
        start, wall_start = time.process_time(), time.perf_counter()
        try:
            score = read_score(data, path.name, kind)
        except ScoreError as exc:
            failures[exc.reason] += 1
            examples.setdefault(exc.reason, f"{path.name}: {exc}")
            score = None
        elapsed = time.process_time() - start
        wall += time.perf_counter() - wall_start
        times.append(elapsed)
        if elapsed > slowest[1]:
            slowest = (path.name, elapsed)
        if score is not None:
            notes += len(score.notes)
            music_seconds += score.seconds
    cpu = sum(times)
    return {
        "kind": kind,
        "files": len(paths),
        "parsed": len(paths) - sum(failures.values()),
        "failed": dict(failures),
        "failure_examples": examples,
        "notes": notes,
        "music_hours": music_seconds / 3600,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "files_per_cpu_second": len(paths) / cpu if cpu else 0.0,
        "x_real_time": music_seconds / cpu if cpu else 0.0,
        "median_ms": 1000 * statistics.median(times) if times else 0.0,
        "slowest": {"file": slowest[0], "ms": 1000 * slowest[1]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=PRETRAIN)
    parser.add_argument("--limit", type=int, help="at most this many files of each kind")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"no test material at {args.root}", file=sys.stderr)
        return 1
    results = []
    for kind, paths in sorted(files_by_kind(args.root, args.limit).items()):
        result = measure(kind, paths)
        results.append(result)
        print(
            f"{kind:9s} {result['parsed']:5d}/{result['files']:<5d} parsed  "
            f"{result['notes']:>9,d} notes  {result['music_hours']:7.2f} h of music  "
            f"{result['cpu_seconds']:6.1f} s CPU ({result['wall_seconds']:.1f} s wall)  "
            f"{result['files_per_cpu_second']:7.1f} files/s  "
            f"{result['x_real_time']:8.0f} x real time  median {result['median_ms']:.1f} ms  "
            f"slowest {result['slowest']['ms']:.0f} ms ({result['slowest']['file']})"
        )
        for reason, count in sorted(result["failed"].items()):
            print(f"          failed {count} x {reason}: e.g. {result['failure_examples'][reason]}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
