"""``gbsynth train DATA... --out CKPT_DIR``: train a model from files, with a progress bar.

DATA are recordings or segment files, I/O dumps, GBS/ROM/VGM files (recorded on
the fly) or folders of them (``gbsynth.trainer.data``). Source files are split
into training and held-out music by their SHA-256 (``--heldout-percent``); the
two splits are saved in CKPT_DIR (``dataset.npz``, ``heldout.npz``) so that
``gbsynth evaluate`` fits its baselines on exactly the training data.

Training stops after ``--minutes`` of wall time or ``--steps`` updates; it
evaluates and checkpoints every ``--checkpoint-every`` steps and at the end,
keeping the newest ``--keep`` checkpoints and the best held-out one. Each
evaluation is a line of ``training_log.jsonl`` (step, losses, time) for plots.
Run it again on the same CKPT_DIR to continue from the newest checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from gbsynth.trainer.model import PRESETS

DATASET_FILE = "dataset.npz"
HELDOUT_FILE = "heldout.npz"
LOG_FILE = "training_log.jsonl"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="+", type=Path, help="music, recording or segment files")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder")
    parser.add_argument("--minutes", type=float, default=None, help="wall-time budget")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (total)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="model size")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per step")
    parser.add_argument("--dropout", type=float, default=None, help="override the preset's")
    parser.add_argument("--block-size", type=int, default=None, help="context, in events")
    parser.add_argument(
        "--no-augment", dest="augment", action="store_false", help="no channel/tempo variation"
    )
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument(
        "--seconds", type=float, default=120.0, help="seconds recorded per music file (subsong)"
    )
    parser.add_argument(
        "--heldout-percent", type=float, default=10.0, help="share of source files held out"
    )
    parser.add_argument(
        "--heldout", nargs="+", type=Path, default=None,
        help="held-out music files instead of a share of DATA (then DATA is all training)",
    )  # fmt: skip
    parser.add_argument("--checkpoint-every", type=int, default=200, help="steps")
    parser.add_argument("--eval-events", type=int, default=20_000, help="held-out events scored")
    parser.add_argument("--keep", type=int, default=3, help="newest checkpoints kept")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gbsynth.trainer.checkpoint import (
        CheckpointError,
        checkpoint_name,
        load_checkpoint,
        newest_checkpoint,
        prune_checkpoints,
        save_checkpoint,
    )
    from gbsynth.trainer.data import (
        DataError,
        load_tracks,
        save_tracks,
        split_tracks,
        total_events,
        tracks_from_paths,
    )
    from gbsynth.trainer.train import Trainer, TrainSettings, Windows, heldout_nll

    if args.minutes is None and args.steps is None:
        print("gbsynth train: give --minutes or --steps", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.threads))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    try:
        if (out / DATASET_FILE).exists() and newest_checkpoint(out) is not None:
            # Continuing: train on exactly the data the checkpoints were trained on.
            train, heldout = load_tracks(out / DATASET_FILE), load_tracks(out / HELDOUT_FILE)
        else:
            tracks = tracks_from_paths(
                args.data, seconds=args.seconds, seed=args.seed, progress=not args.quiet
            )
            if args.heldout:
                train = tracks
                heldout = tracks_from_paths(args.heldout, seconds=args.seconds, seed=args.seed)
            else:
                train, heldout = split_tracks(tracks, args.heldout_percent)
            save_tracks(out / DATASET_FILE, train)
            save_tracks(out / HELDOUT_FILE, heldout)
    except DataError as exc:
        print(f"gbsynth train: {exc}", file=sys.stderr)
        return 1
    if not train:
        print("gbsynth train: every source file fell in the held-out split", file=sys.stderr)
        return 1
    print(
        f"training on {len(train)} tracks ({total_events(train):,} events), "
        f"held out {len(heldout)} tracks ({total_events(heldout):,} events)",
        file=sys.stderr,
    )

    settings = TrainSettings(
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, augment=args.augment
    )
    config = PRESETS[args.preset]
    if args.dropout is not None:
        config = dataclasses.replace(config, dropout=args.dropout)
    if args.block_size is not None:
        config = dataclasses.replace(config, block_size=args.block_size)
    trainer = Trainer(config, settings)
    resume = newest_checkpoint(out)
    if resume is not None:
        try:
            loaded = load_checkpoint(resume)
        except CheckpointError as exc:
            print(f"gbsynth train: {exc}", file=sys.stderr)
            return 1
        if loaded.trainer_state is None:
            print(f"gbsynth train: {resume} holds no training state", file=sys.stderr)
            return 1
        saved = TrainSettings(**loaded.trainer_state["settings"])
        trainer = Trainer(loaded.config, saved)
        trainer.restore(loaded.model.state_dict(), loaded.step, loaded.trainer_state)
        print(f"resuming from {resume.name} (step {loaded.step})", file=sys.stderr)
    windows = Windows(train, trainer.config.block_size)
    target_steps = None if args.steps is None else args.steps
    budget = None if args.minutes is None else args.minutes * 60.0
    started = time.monotonic()
    if target_steps is not None and trainer.settings.decay_steps == 0:
        decay = max(1, target_steps - trainer.settings.warmup_steps)
        trainer.settings = dataclasses.replace(trainer.settings, decay_steps=decay)

    def evaluate_and_save() -> float | None:
        nll = heldout_nll(trainer.model, heldout, max_events=args.eval_events)
        save_checkpoint(
            out,
            trainer.model,
            step=trainer.step_count,
            train_loss=trainer.train_loss,
            heldout_nll=nll,
            trainer_state=trainer.state(),
        )
        prune_checkpoints(out, keep_newest=args.keep)
        with open(out / LOG_FILE, "a") as log:
            record = {
                "step": trainer.step_count,
                "train_loss": trainer.train_loss,
                "heldout_nll": nll,
                "train_seconds": round(trainer.train_seconds, 2),
                "lr": trainer.learning_rate(),
                "events_trained": trainer.events_trained,
            }
            log.write(json.dumps(record) + "\n")
        return nll

    bar = tqdm(total=target_steps, initial=trainer.step_count, unit="step", disable=args.quiet)
    nll = None
    try:
        while True:
            if target_steps is not None and trainer.step_count >= target_steps:
                break
            elapsed = time.monotonic() - started
            if budget is not None and elapsed >= budget:
                break
            loss = trainer.step(windows)
            bar.update(1)
            if budget is not None and trainer.settings.decay_steps == 0 and elapsed > 30:
                # Fit the cosine decay to the time left, from the speed so far.
                rate = trainer.step_count / max(elapsed, 1e-9)
                expected = trainer.step_count + int(rate * (budget - elapsed))
                decay = max(1, expected - trainer.settings.warmup_steps)
                trainer.settings = dataclasses.replace(trainer.settings, decay_steps=decay)
            if trainer.step_count % args.checkpoint_every == 0:
                nll = evaluate_and_save()
            bar.set_postfix(loss=f"{loss:.3f}", heldout=f"{nll:.3f}" if nll else "-")
    except KeyboardInterrupt:
        print("interrupted: saving a checkpoint", file=sys.stderr)
    finally:
        bar.close()
    if not (out / LOG_FILE).exists() or newest_checkpoint(out) != out / checkpoint_name(
        trainer.step_count
    ):
        nll = evaluate_and_save()
    print(
        json.dumps(
            {
                "checkpoint": str(newest_checkpoint(out)),
                "step": trainer.step_count,
                "train_loss": trainer.train_loss,
                "heldout_nll": nll,
                "train_seconds": round(trainer.train_seconds, 1),
            }
        )
    )
    return 0
