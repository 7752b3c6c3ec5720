"""``gbsynth evaluate CKPT DATA...``: the model's held-out NLL per event against n-gram baselines.

Prints one JSON object::

    {"checkpoint": ..., "step": ..., "events": n, "music_seconds": s,
     "nll_per_event": x,                 # the model, nats per event
     "baselines": {"unigram": ..., "2-gram": ..., ..., "factorized 5-gram": ...},
     "best_baseline": "...", "beats_best_baseline": true, "train_events": N}

CKPT is a checkpoint file or a folder (its newest checkpoint; ``--best`` for the
best held-out one). DATA is the music to score (any input ``gbsynth train``
accepts); without DATA, the held-out split saved by ``gbsynth train`` in the
folder. The baselines (``gbsynth.trainer.baselines``) are fitted on the
training data: ``--train-data`` files, else the folder's ``dataset.npz``.
Model and baselines score the same events the same way: every event of each
track but its first.

``--generate N`` reports musical statistics of N sampled songs beside ``--real``
songs instead (``gbsynth.music.song_report``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gbsynth.music import song_report


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
    parser.add_argument("--max-events", type=int, default=None, help="score at most this many")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    song_report.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from gbsynth.trainer.baselines import baseline_nlls
    from gbsynth.trainer.checkpoint import (
        CheckpointError,
        list_checkpoints,
        load_checkpoint,
        newest_checkpoint,
        read_metadata,
    )
    from gbsynth.trainer.data import DataError, Track, load_tracks, total_events, tracks_from_paths
    from gbsynth.trainer.offline import DATASET_FILE, HELDOUT_FILE
    from gbsynth.trainer.tokens import duration_cycles
    from gbsynth.trainer.train import model_event_nll

    torch.set_num_threads(max(1, args.threads))
    if not args.checkpoint.exists():
        print(f"gbsynth evaluate: no checkpoint at {args.checkpoint}", file=sys.stderr)
        return 1
    folder = args.checkpoint if args.checkpoint.is_dir() else args.checkpoint.parent
    path = args.checkpoint
    if args.checkpoint.is_dir():
        if args.best:
            scored = []
            for step, candidate in list_checkpoints(folder):
                meta = read_metadata(candidate) or {}
                if meta.get("heldout_nll") is not None:
                    scored.append((meta["heldout_nll"], -step, candidate))
            path = min(scored)[2] if scored else newest_checkpoint(folder)
        else:
            path = newest_checkpoint(folder)
        if path is None:
            print(f"gbsynth evaluate: no checkpoint in {folder}", file=sys.stderr)
            return 1
    if args.generate is not None:
        return song_report.run(args, path)
    seconds = 120.0 if args.seconds is None else args.seconds
    try:
        loaded = load_checkpoint(path)
        if args.data:
            heldout = tracks_from_paths(args.data, seconds=seconds)
        else:
            heldout = load_tracks(folder / HELDOUT_FILE)
        if args.train_data:
            train = tracks_from_paths(args.train_data, seconds=seconds)
        else:
            train = load_tracks(folder / DATASET_FILE)
    except (CheckpointError, DataError) as exc:
        print(f"gbsynth evaluate: {exc}", file=sys.stderr)
        return 1
    if args.max_events is not None:
        heldout = _first_events(heldout, args.max_events, Track)
    if not heldout:
        print("gbsynth evaluate: no held-out music to score", file=sys.stderr)
        return 1
    model_nll = model_event_nll(loaded.model, heldout)
    baselines = baseline_nlls(train, heldout)
    best = min(baselines, key=baselines.get)
    nll = float(np.mean(model_nll))
    result = {
        "checkpoint": str(path),
        "step": loaded.step,
        "events": int(len(model_nll)),
        "music_seconds": round(sum(duration_cycles(t.events) for t in heldout) / 4_194_304, 1),
        "nll_per_event": nll,
        "baselines": baselines,
        "best_baseline": best,
        "beats_best_baseline": bool(nll < baselines[best]),
        "train_events": total_events(train),
    }
    print(json.dumps(result, indent=1))
    return 0


def _first_events(tracks, limit: int, track_type):
    """The tracks cut to ``limit`` events in total (in order)."""
    out, left = [], limit
    for track in tracks:
        if left <= 1:
            break
        out.append(track_type(track.name, track.source_sha256, track.events[:left]))
        left -= len(out[-1])
    return out
