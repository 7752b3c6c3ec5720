"""``gbsynth corpus``: build a pre-training corpus from scores and modules
(``gbsynth.music.corpus``; docs/corpus.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gbsynth.music.corpus import DEFAULT_SHARDS, CorpusError, build, pianoroll, restat


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise CorpusError(f"--transpose takes whole semitones, like -2,0,3: {text!r}") from exc
    if not values:
        raise CorpusError("--transpose needs at least one value")
    return values


def float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise CorpusError(f"--tempo takes factors, like 0.9,1.0: {text!r}") from exc
    if not values or not all(0.25 <= v <= 4.0 for v in values):
        raise CorpusError(f"--tempo factors must lie in 0.25-4: {text!r}")
    return values


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
    p = sub.add_parser("pianoroll", help="arranged pieces beside their source voices (PNG)")
    p.add_argument("files", nargs="+", type=Path, help="score files")
    p.add_argument("--out", type=Path, required=True, help="the picture to write")
    p.add_argument("--seconds", type=float, default=20.0, help="how much of each piece")
    p.add_argument("--seed", type=int, default=0, help="as for build")
    r = sub.add_parser("stats", help="recompute a built corpus's note statistics")
    r.add_argument("out", type=Path, help="the corpus folder (with summary.json)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "pianoroll":
            print(pianoroll(args.files, args.out, args.seconds, args.seed))
            return 0
        if args.action == "stats":
            summary = restat(args.out)
            print(json.dumps(summary["statistics"], indent=1))
            return 0
        summary = build(
            args.sources,
            args.out,
            jobs=args.jobs,
            transposes=int_list(args.transpose),
            tempos=float_list(args.tempo),
            seconds_limit=args.seconds_limit,
            shards=args.shards,
            seed=args.seed,
            progress=not args.no_progress,
        )
    except CorpusError as exc:
        print(f"gbsynth corpus: {exc}", file=sys.stderr)
        return 2
    keys = (
        "files",
        "recorded",
        "failed",
        "failed_by_reason",
        "recordings",
        "hours",
        "hours_augmented",
        "notes",
    )
    brief = {k: summary[k] for k in keys}
    brief["statistics"] = summary["statistics"]
    brief["wall_seconds"] = summary["run"]["wall_seconds_this_run"]
    print(json.dumps(brief, indent=1))
    return 0
