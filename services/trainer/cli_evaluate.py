"""``gbsynth evaluate CKPT DATA...``: the model's held-out fit against n-gram baselines.

Prints one JSON object::

    {"checkpoint": ..., "step": ..., "representation": ..., "tokens": n, "music_seconds": s,
     "nats_per_second": x, "nll_per_token": y,          # the model
     "baselines": {"unigram": {"nats_per_second": ..., "nll_per_token": ...}, ... "5-gram"},
     "best_baseline": "...", "vs_best_baseline": -0.31,  # (model - best) / best, per second
     "train_tokens": N}

Nats per *second of music* is the figure to compare: it does not depend on how
many tokens a representation spends on a second. CKPT is a checkpoint file or a
folder (its newest checkpoint; ``--best`` for the best held-out one). DATA is the
music to score (any input ``gbsynth train`` accepts); without DATA, the held-out
split saved by ``gbsynth train`` in the folder. The baselines
(``gbsynth.trainer.baselines``, in the model's representation) are fitted on the
training data: ``--train-data`` files, else the folder's ``dataset.npz``. Model
and baselines score the same tokens the same way: every token of each track but
its first.

``--generate N`` reports musical statistics of N sampled songs beside ``--real``
songs instead (``gbsynth.music.song_report``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gbsynth.generator.cli_generate import GenerateError, add_sampling_arguments, check_plan
from gbsynth.music.song_report import DEFAULT_SECONDS as DEFAULT_SONG_SECONDS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="checkpoint file or folder")
    parser.add_argument("data", nargs="*", type=Path, help="music to score (default: held-out)")
    parser.add_argument(
        "--train-data",
        nargs="+",
        type=Path,
        default=None,
        help="training data for the baselines (default: CKPT_DIR/dataset.npz)",
    )
    parser.add_argument("--best", action="store_true", help="the best held-out checkpoint")
    parser.add_argument(
        "--seconds", type=float, default=None,
        help="seconds recorded per music file (subsong), default 120; --generate: song length",
    )  # fmt: skip
    parser.add_argument("--max-tokens", type=int, default=None, help="score at most this many")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    group = parser.add_argument_group("musical statistics of generated songs (--generate)")
    group.add_argument(
        "--generate", type=int, default=None, metavar="N",
        help="sample N songs (seeds 0..N-1) and report their musical statistics beside --real "
        f"songs instead of the NLL (--seconds: song length, default {DEFAULT_SONG_SECONDS:g})",
    )  # fmt: skip
    group.add_argument(
        "--real", nargs="+", default=[], metavar="FILE",
        help="real music to compare with: GBS (FILE#N: subsong N), ROM, VGM or Avro recordings",
    )  # fmt: skip
    group.add_argument(
        "--train-seconds", type=float, default=180.0,
        help="seconds recorded per --train-data file for memorisation (180)",
    )  # fmt: skip
    add_sampling_arguments(group)
    group.add_argument(
        "--json", type=Path, default=None, metavar="PATH",
        help="write the statistics of every song as JSON",
    )  # fmt: skip
    group.add_argument(
        "--piano-roll", type=Path, default=None, metavar="PNG",
        help="draw 3 generated songs beside 3 real ones",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import torch

    from gbsynth.trainer import representation
    from gbsynth.trainer.checkpoint import (
        CheckpointError,
        best_checkpoint,
        load_checkpoint,
        newest_checkpoint,
    )
    from gbsynth.trainer.data import DataError, load_tracks, tracks_from_paths
    from gbsynth.trainer.evaluate import evaluate, first_tokens
    from gbsynth.trainer.training_folder import DATASET_FILE, HELDOUT_FILE

    torch.set_num_threads(max(1, args.threads))
    if not args.checkpoint.exists():
        print(f"gbsynth evaluate: no checkpoint at {args.checkpoint}", file=sys.stderr)
        return 1
    folder = args.checkpoint if args.checkpoint.is_dir() else args.checkpoint.parent
    path = args.checkpoint
    if args.checkpoint.is_dir():
        path = best_checkpoint(folder) if args.best else newest_checkpoint(folder)
        if path is None:
            print(f"gbsynth evaluate: no checkpoint in {folder}", file=sys.stderr)
            return 1
    if args.generate is not None:
        return _run_generate(args, path)
    seconds = 120.0 if args.seconds is None else args.seconds
    try:
        loaded = load_checkpoint(path)
        rep = representation.get(loaded.config.representation)
        if args.data:
            heldout = tracks_from_paths(args.data, rep, seconds=seconds)
        else:
            heldout = load_tracks(folder / HELDOUT_FILE, rep)
        if args.train_data:
            train = tracks_from_paths(args.train_data, rep, seconds=seconds)
        else:
            train = load_tracks(folder / DATASET_FILE, rep)
    except (CheckpointError, DataError) as exc:
        print(f"gbsynth evaluate: {exc}", file=sys.stderr)
        return 1
    if args.max_tokens is not None:
        heldout = first_tokens(heldout, args.max_tokens)
    if not heldout:
        print("gbsynth evaluate: no held-out music to score", file=sys.stderr)
        return 1
    print(json.dumps(evaluate(loaded, train, heldout), indent=1))
    return 0


def _run_generate(args: argparse.Namespace, checkpoint: Path) -> int:
    """``--generate N``: musical statistics of N sampled songs beside the ``--real`` ones."""
    from gbsynth.music.song_report import (
        SongReportError,
        compare_with_real,
        format_report,
        plot_songs,
    )

    seconds = DEFAULT_SONG_SECONDS if args.seconds is None else args.seconds
    try:
        check_plan(args.plan)
    except GenerateError as exc:
        print(f"gbsynth evaluate: {exc}", file=sys.stderr)
        return 2
    try:
        generated, real, report = compare_with_real(
            checkpoint, args.generate, seconds, args.real, train_data=args.train_data,
            train_seconds=args.train_seconds, temperature=args.temperature, top_p=args.top_p,
            plan=args.plan,
        )  # fmt: skip
        print(format_report(generated, real, report))
        if args.json:
            args.json.write_text(json.dumps(report, indent=1) + "\n")
        if args.piano_roll:
            plot_songs(generated, real, args.piano_roll)
    except (SongReportError, OSError) as exc:
        print(f"gbsynth evaluate: {exc}", file=sys.stderr)
        return 1
    return 0
