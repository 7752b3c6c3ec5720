"""``gbsynth prune``: the pruner on files, without Kafka.

    gbsynth prune rec.avro dump.txt --out segments/
    gbsynth prune rec.avro --out segments/ --min-seconds 10 --max-seconds 20

Reads recordings as ``gbsynth emulate`` writes them (an Avro recordings file, any
number of recordings, or gbsplay's I/O dump text, one recording per subsong),
prunes each exactly as the service does, writes one Avro segments file per kept
segment into the output folder (``<segment id>.avro``; ``gbsynth render FILE``
plays one) and prints a one-line JSON summary::

    {"recordings": 2, "kept": 3, "rejected": {"repeat": 1, "silence": 1}, ...}

Thresholds come from the ``GBSYNTH_PRUNE_*`` settings; the options override them.
A file that is not a recording (a ROM, a GBS rip, a segments file, damaged data)
gets a one-line error naming it; the other files are still pruned and the exit
status is 1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

from gbsynth.common.avro import Segment
from gbsynth.common.config import SettingError
from gbsynth.common.events import Recording
from gbsynth.pruner.prune import PruneConfig, PruneConfigError, prune_recording


class PruneInputError(Exception):
    """A file that holds no recordings; one line for the user."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "recordings",
        nargs="+",
        metavar="RECORDING",
        type=Path,
        help="Avro recordings file or gbsplay I/O dump (as gbsynth emulate writes them)",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--min-seconds", type=float, default=None, help="shortest segment")
    parser.add_argument("--max-seconds", type=float, default=None, help="longest segment")
    parser.add_argument(
        "--verbose", action="store_true", help="also print each segment and rejection on stderr"
    )


def read_recording_file(path: Path) -> list[Recording]:
    """The recordings of an Avro recordings file or an I/O dump; ``PruneInputError`` else."""
    from gbsynth.common.formats import EventFileError, read_event_file

    try:
        items = read_event_file(path)
    except EventFileError as exc:
        raise PruneInputError(str(exc)) from exc
    if items and isinstance(items[0], Segment):
        raise PruneInputError(
            f"{path}: holds segments, not recordings "
            "(make recordings with gbsynth emulate FILE --out REC.avro)"
        )
    return items


def segment_file_name(segment_id: str) -> str:
    """A portable file name for a segment id (``recording@cycle``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", segment_id) + ".avro"


def _run(args: argparse.Namespace) -> int:
    from gbsynth.common.formats import write_segments

    config = PruneConfig.from_env(min_seconds=args.min_seconds, max_seconds=args.max_seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    recordings = kept = writes = 0
    rejected: Counter[str] = Counter()
    failed: list[str] = []
    for path in args.recordings:
        try:
            for recording in read_recording_file(path):
                result = prune_recording(recording, config)
                recordings += 1
                writes += len(recording.writes)
                rejected.update(r.reason for r in result.rejections)
                for segment in result.segments:
                    write_segments(args.out / segment_file_name(segment.segment_id), [segment])
                kept += len(result.segments)
                if args.verbose:
                    _describe(recording, result)
        except PruneInputError as exc:
            print(f"gbsynth prune: {exc}", file=sys.stderr)
            failed.append(str(path))
    summary = {
        "recordings": recordings,
        "kept": kept,
        "rejected": dict(sorted(rejected.items())),
        "writes": writes,
        "seconds": round(time.perf_counter() - started, 3),
        "out": str(args.out),
    }
    if failed:
        summary["failed"] = failed
    print(json.dumps(summary), flush=True)
    return 1 if failed else 0


def _describe(recording: Recording, result) -> None:
    def at(cycle: int) -> str:
        return f"{cycle / 4194304:7.2f}"

    print(f"{recording.recording_id} ({recording.source.file_name}):", file=sys.stderr)
    for segment in result.segments:
        f = segment.features
        print(
            f"  keep {at(segment.start_cycle)}-{at(segment.end_cycle)} s  "
            f"{f.distinct_pitches} pitches, {f.loudness_db:.1f} dB, tempo {f.tempo_bpm}",
            file=sys.stderr,
        )
    for r in result.rejections:
        print(
            f"  drop {at(r.start_cycle)}-{at(r.end_cycle)} s  {r.reason}: {r.detail}",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (SettingError, PruneConfigError) as exc:
        print(f"gbsynth prune: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gbsynth prune: cannot write to {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
