"""A training folder and one training run into it.

A training folder holds the two splits of the music (``dataset.npz``: training,
``heldout.npz``: validation, so that ``gbsynth evaluate`` fits its baselines on
exactly the training data), the checkpoints (``gbsynth.trainer.checkpoint``) and
``training_log.jsonl`` (one line per evaluation: step, losses, time). ``train_stage``
runs ``gbsynth.trainer.train.TrainingRun`` (the loop the trainer service runs too)
into one, continuing from its newest checkpoint; ``gbsynth train`` and the default
model's recipe call it.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from gbsynth.trainer import representation
from gbsynth.trainer.train import TrainSettings

DATASET_FILE = "dataset.npz"
HELDOUT_FILE = "heldout.npz"
LOG_FILE = "training_log.jsonl"


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
            rep = folder_representation(out) or rep
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


def folder_representation(out: Path):
    """The representation of the tracks saved in a training folder (None if unknown)."""
    import numpy as np

    try:
        with np.load(out / DATASET_FILE) as data:
            return representation.get(str(data["representation"]))
    except (OSError, KeyError, ValueError):
        return None
