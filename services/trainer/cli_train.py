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
from pathlib import Path

from gbsynth.trainer import representation
from gbsynth.trainer.model import PRESETS
from gbsynth.trainer.train import TrainSettings
from gbsynth.trainer.training_folder import train_stage

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
