"""``gbsynth train DATA... --out CKPT_DIR``: train a model from files, with a progress bar.

DATA are recordings or segment files, I/O dumps, GBS/ROM/VGM files (recorded on
the fly) or folders of them (``gbsynth.trainer.data``). Source files are split
into training and validation music by their SHA-256 (``--heldout-percent``), or
``--heldout`` names the validation music; the two splits are saved in CKPT_DIR
(``dataset.npz``, ``heldout.npz``) so that ``gbsynth evaluate`` fits its baselines
on exactly the training data.

Training (``gbsynth.trainer.train.TrainingRun``, the loop the trainer service runs
too) stops after ``--minutes`` of wall time, ``--steps`` updates, or when the
validation score has not improved for ``--patience`` evaluations (early stopping);
it evaluates and checkpoints every ``--checkpoint-every`` steps and at the end,
keeping the newest ``--keep`` checkpoints and the best one. Each evaluation is a
line of ``training_log.jsonl`` (step, losses, time) for plots. ``--init CKPT``
starts from a model's weights (fine-tuning). Run it again on the same CKPT_DIR to
continue from the newest checkpoint.

``gbsynth train --recipe default --out DIR`` instead makes the default model
(pre-training, fine-tuning, held-out evaluation, export): see
``gbsynth.trainer.recipe``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from gbsynth.trainer import representation
from gbsynth.trainer.model import PRESETS
from gbsynth.trainer.train import TrainSettings

DATASET_FILE = "dataset.npz"
HELDOUT_FILE = "heldout.npz"
LOG_FILE = "training_log.jsonl"
DEFAULTS = TrainSettings()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="*", type=Path, help="music, recording or segment files")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder")
    parser.add_argument(
        "--recipe", choices=("default",), default=None,
        help="make the default model (pre-train, fine-tune, evaluate, export); see docs/model.md",
    )  # fmt: skip
    parser.add_argument("--minutes", type=float, default=None, help="wall-time budget")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (total)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="model size")
    parser.add_argument(
        "--representation", choices=representation.NAMES, default=representation.DEFAULT,
        help="token representation of a new model",
    )  # fmt: skip
    parser.add_argument("--init", type=Path, default=None, help="start from this model's weights")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    parser.add_argument("--dropout", type=float, default=None, help="override the preset's")
    parser.add_argument("--block-size", type=int, default=None, help="context, in tokens")
    parser.add_argument(
        "--window", type=int, default=DEFAULTS.window,
        help="tokens per training window (0: the whole context)",
    )  # fmt: skip
    parser.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        help="no transposition or tempo variation",
    )
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr, help="peak learning rate")
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
    parser.add_argument("--patience", type=int, default=0,
                        help="stop after this many evaluations without a better validation "
                        "score (0: never)")  # fmt: skip
    parser.add_argument("--eval-tokens", type=int, default=20_000, help="held-out tokens scored")
    parser.add_argument("--keep", type=int, default=3, help="newest checkpoints kept")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--corpus", type=Path, default=None,
        help="--recipe: pre-training corpus folder (Avro recordings; default /work/data/corpus)",
    )  # fmt: skip
    parser.add_argument(
        "--shared", type=Path, default=Path("../shared"),
        help="--recipe: the shared music folder (default ../shared)",
    )  # fmt: skip
    parser.add_argument(
        "--export", type=Path, default=None,
        help="--recipe: where to write the model and its card (default: the shipped default)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import torch

    if args.recipe is not None:
        from gbsynth.trainer.recipe import run_recipe

        torch.set_num_threads(max(1, args.threads))
        return run_recipe(args)
    if not args.data:
        print("gbsynth train: give DATA (music files or folders) or --recipe", file=sys.stderr)
        return 2
    if args.minutes is None and args.steps is None:
        print("gbsynth train: give --minutes or --steps", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.threads))
    config = PRESETS[args.preset]
    config = dataclasses.replace(config, representation=args.representation, vocab_size=0)
    if args.dropout is not None:
        config = dataclasses.replace(config, dropout=args.dropout)
    if args.block_size is not None:
        config = dataclasses.replace(config, block_size=args.block_size)
    settings = TrainSettings(
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, augment=args.augment,
        window=args.window,
    )  # fmt: skip
    result = train_stage(
        args.out, args.data, config, settings, heldout_paths=args.heldout,
        heldout_percent=args.heldout_percent, seconds=args.seconds, minutes=args.minutes,
        steps=args.steps, patience=args.patience, init=args.init,
        checkpoint_every=args.checkpoint_every, eval_tokens=args.eval_tokens, keep=args.keep,
        seed=args.seed, quiet=args.quiet,
    )  # fmt: skip
    if isinstance(result, str):
        print(f"gbsynth train: {result}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def train_stage(
    out: Path,
    data,
    config,
    settings: TrainSettings,
    *,
    heldout_paths=None,
    heldout_percent: float = 10.0,
    seconds: float = 120.0,
    minutes: float | None = None,
    steps: int | None = None,
    patience: int = 0,
    init: Path | None = None,
    checkpoint_every: int = 200,
    eval_tokens: int | None = 20_000,
    keep: int = 3,
    seed: int = 0,
    quiet: bool = False,
    tracks=None,
) -> dict | str:
    """One training run into ``out``; a summary dict, or an error message.

    ``tracks`` (``(train, heldout)``) skips reading ``data``.
    """
    from tqdm import tqdm

    from gbsynth.trainer.checkpoint import CheckpointError, checkpoint_name, newest_checkpoint
    from gbsynth.trainer.data import (
        DataError,
        load_tracks,
        save_tracks,
        split_tracks,
        total_seconds,
        total_tokens,
        tracks_from_paths,
    )
    from gbsynth.trainer.train import TrainingRun

    rep = representation.get(config.representation)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        resuming = newest_checkpoint(out) is not None
        if resuming and (out / DATASET_FILE).exists():
            # Continuing: train on exactly the data the checkpoints were trained on.
            rep = _folder_representation(out) or rep
            train = load_tracks(out / DATASET_FILE, rep)
            heldout = load_tracks(out / HELDOUT_FILE, rep)
        else:
            if tracks is not None:
                train, heldout = tracks
            else:
                found = tracks_from_paths(data, rep, seconds=seconds, seed=seed, progress=not quiet)
                if heldout_paths:
                    train = found
                    heldout = tracks_from_paths(heldout_paths, rep, seconds=seconds, seed=seed)
                else:
                    train, heldout = split_tracks(found, heldout_percent)
            save_tracks(out / DATASET_FILE, train, rep)
            save_tracks(out / HELDOUT_FILE, heldout, rep)
    except DataError as exc:
        return str(exc)
    if not train:
        return "every source file fell in the held-out split"
    print(
        f"training on {len(train)} tracks ({total_tokens(train):,} tokens, "
        f"{total_seconds(train, rep) / 3600:.1f} h), held out {len(heldout)} tracks "
        f"({total_tokens(heldout):,} tokens, {total_seconds(heldout, rep) / 60:.1f} min)",
        file=sys.stderr,
    )
    try:
        trainer, resumed = TrainingRun.resume_or_start(out, config, settings, init=init)
    except CheckpointError as exc:
        return str(exc)
    if resumed is not None:
        print(f"resuming from {resumed.path.name} (step {resumed.step})", file=sys.stderr)
    run = TrainingRun(
        out, trainer, heldout, checkpoint_every=checkpoint_every, keep=keep,
        eval_tokens=eval_tokens, log_file=LOG_FILE,
    )  # fmt: skip
    windows = trainer.windows(train)
    first_step = trainer.step_count
    # --steps counts from the initial model's step when fine-tuning, else from 0.
    target = None if steps is None else trainer.origin_step + steps
    budget = None if minutes is None else minutes * 60.0
    started = time.monotonic()
    if target is not None and trainer.settings.decay_steps == 0:
        decay = max(1, target - trainer.origin_step - trainer.settings.warmup_steps)
        trainer.settings = dataclasses.replace(trainer.settings, decay_steps=decay)
    stale = 0

    def until() -> bool:
        if target is not None and trainer.step_count >= target:
            return True
        elapsed = time.monotonic() - started
        if budget is not None and elapsed >= budget:
            return True
        if budget is not None and trainer.settings.decay_steps == 0 and elapsed > 60:
            # Fit the cosine decay to the time left, from the speed so far.
            rate = (trainer.step_count - first_step) / max(elapsed, 1e-9)
            expected = trainer.step_count - trainer.origin_step + int(rate * (budget - elapsed))
            decay = max(1, expected - trainer.settings.warmup_steps)
            trainer.settings = dataclasses.replace(trainer.settings, decay_steps=decay)
        bar.update(trainer.step_count - bar.n)
        return patience > 0 and stale >= patience

    bar = tqdm(total=target, initial=trainer.step_count, unit="step", disable=quiet)
    try:
        for _ in run.train(windows, until):
            if run.last is not None:  # no validation music: no early stopping
                stale = 0 if run.best is run.last else stale + 1
            nll = run.last.nll_per_token if run.last else float("nan")
            bar.set_postfix(loss=f"{trainer.train_loss:.3f}", valid=f"{nll:.3f}")
    except KeyboardInterrupt:
        print("interrupted: saving a checkpoint", file=sys.stderr)
    finally:
        bar.close()
    if newest_checkpoint(out) != out / checkpoint_name(trainer.step_count):
        run.checkpoint()
    from gbsynth.trainer.checkpoint import best_checkpoint

    return {
        "checkpoint": str(newest_checkpoint(out)),
        "best_checkpoint": str(best_checkpoint(out)),
        "step": trainer.step_count,
        "train_loss": trainer.train_loss,
        "valid_nll_per_token": run.last.nll_per_token if run.last else None,
        "valid_nats_per_second": run.last.nats_per_second if run.last else None,
        "best_valid_nll_per_token": run.best.nll_per_token if run.best else None,
        "best_valid_nats_per_second": run.best.nats_per_second if run.best else None,
        "train_seconds": round(trainer.train_seconds, 1),
        "tokens_trained": trainer.tokens_trained,
        "tokens_per_second": round(trainer.tokens_trained / max(trainer.train_seconds, 1e-9)),
        "early_stopped": patience > 0 and stale >= patience,
    }


def _folder_representation(out: Path):
    """The representation of the tracks saved in a training folder (None if unknown)."""
    import numpy as np

    try:
        with np.load(out / DATASET_FILE) as data:
            return representation.get(str(data["representation"]))
    except (OSError, KeyError, ValueError):
        return None
