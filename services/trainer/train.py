"""The training loop shared by the service and ``gbsynth train``: batches, steps, checkpoints.

``Trainer`` owns the model, the AdamW optimizer and the batch sampler's random
generator; ``state()`` / ``restore()`` carry all three (with the step count and
torch's random state, which draws the dropout masks) in a checkpoint, so a restarted
trainer continues exactly where the checkpoint was taken: same step, same optimizer
moments, same next batches.

``TrainingRun`` is the one loop and resume path both ``gbsynth train`` and the
trainer service use: it opens a checkpoint folder (resuming from its newest
checkpoint, else starting from an initial model such as the pre-trained default,
else from scratch), trains, and every ``checkpoint_every`` steps scores the
validation tracks, writes a checkpoint and prunes old ones (keeping the best).

Batches are windows of ``block_size + 1`` consecutive tokens drawn uniformly
from the training tracks (a window never straddles two tracks), each varied by
the representation's augmentations (transposition, tempo); the model learns to
predict tokens 1..T from tokens 0..T-1. The learning rate warms up linearly,
then follows a cosine from ``lr`` down to ``lr * min_lr_ratio`` over
``decay_steps`` (0: stays at ``lr``, for the endless service).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gbsynth.trainer import representation
from gbsynth.trainer.data import Track
from gbsynth.trainer.model import GPT, GPTConfig
from gbsynth.trainer.representation import Representation


@dataclass(frozen=True)
class TrainSettings:
    """The one set of training defaults (``gbsynth train`` and the trainer service)."""

    batch_size: int = 8
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    decay_steps: int = 0
    """Steps of cosine decay after warm-up; 0 keeps the learning rate constant."""
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    augment: bool = True
    """Transpose and stretch training windows (where the representation supports it)."""
    window: int = 512
    """Tokens per training window (at most the model's context; 0: all of it). Shorter
    windows train faster per token (attention costs grow with the window) and keep a
    step short (the service polls Kafka between steps); the recipe fine-tunes the
    default model on its whole context."""


class Windows:
    """Uniformly drawn training windows over a set of tracks (no window crosses tracks)."""

    def __init__(self, tracks: Sequence[Track], length: int, rep: Representation) -> None:
        self.length = length
        self.representation = rep
        usable = [t for t in tracks if len(t) >= 2]
        # int16 holds every token at a quarter of the memory; batches widen to int64.
        self.tokens = (
            np.concatenate([t.tokens for t in usable]).astype(np.int16)
            if usable
            else np.empty(0, np.int16)
        )
        # Every start whose window fits in its track (a track shorter than a window gives
        # one start: a shorter window, see batch()), and the end of that track.
        starts, ends, offset = [], [], 0
        for t in usable:
            count = max(len(t) - length, 1)
            starts.append(np.arange(offset, offset + count))
            ends.append(np.full(count, offset + len(t)))
            offset += len(t)
        self.starts = np.concatenate(starts) if starts else np.empty(0, np.int64)
        self.track_ends = np.concatenate(ends) if ends else np.empty(0, np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def token_count(self) -> int:
        return int(self.tokens.shape[0])

    def batch(
        self, rng: np.random.Generator, size: int, augment: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, each ``(size, T)``; T is the shortest window drawn."""
        if not len(self.starts):
            raise ValueError("no training data")
        pick = rng.integers(0, len(self.starts), size)
        starts = self.starts[pick]
        span = int(min(self.length, (self.track_ends[pick] - starts).min() - 1))
        rows = []
        for start, end in zip(starts, self.track_ends[pick], strict=True):
            if augment:
                # A little more than a window: a slower tempo may merge time tokens.
                longer = self.tokens[start : min(end, start + span + 1 + span // 4)]
                varied = self.representation.augment(longer.astype(np.int64), rng)
                if len(varied) >= span + 1:
                    rows.append(varied[: span + 1])
                    continue
            rows.append(self.tokens[start : start + span + 1].astype(np.int64))
        windows = torch.from_numpy(np.stack(rows).astype(np.int64))
        return windows[:, :-1], windows[:, 1:]


class Trainer:
    """Model, optimizer and batch RNG; ``step()`` does one optimizer update."""

    def __init__(self, config: GPTConfig, settings: TrainSettings | None = None) -> None:
        self.config = config
        self.settings = settings or TrainSettings()
        torch.manual_seed(self.settings.seed)
        self.model = GPT(config)
        decay = [p for n, p in self.model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.settings.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.settings.lr,
            betas=(0.9, 0.98),
        )
        self.rng = np.random.default_rng(self.settings.seed)
        self.representation = representation.get(config.representation)
        self.step_count = 0
        self.origin_step = 0
        """Step the learning-rate schedule starts from (a fine-tuned model's initial step)."""
        self.train_seconds = 0.0
        self.tokens_trained = 0
        self.recent_losses: list[float] = []
        self.match_weights: list[float] | None = None
        """The match model's weights of the model this one started from: its checkpoints
        keep them (``gbsynth.trainer.match``)."""

    @property
    def window(self) -> int:
        """Tokens per training window."""
        w = self.settings.window
        return self.config.block_size if w <= 0 else min(w, self.config.block_size)

    def windows(self, tracks: Sequence[Track]) -> Windows:
        """Training windows over ``tracks`` for this trainer's model and settings."""
        return Windows(tracks, self.window, self.representation)

    def learning_rate(self, step: int | None = None) -> float:
        s = self.settings
        step = (self.step_count if step is None else step) - self.origin_step
        if step < s.warmup_steps:
            return s.lr * (step + 1) / s.warmup_steps
        if s.decay_steps <= 0:
            return s.lr
        progress = min(1.0, (step - s.warmup_steps) / s.decay_steps)
        floor = s.lr * s.min_lr_ratio
        return floor + (s.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def step(self, windows: Windows) -> float:
        """One update on a fresh batch; returns its loss (nats per token)."""
        started = time.perf_counter()
        self.model.train()
        inputs, targets = windows.batch(self.rng, self.settings.batch_size, self.settings.augment)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        loss = self.model(inputs, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.optimizer.step()
        self.step_count += 1
        self.tokens_trained += targets.shape[0] * targets.shape[1]
        self.train_seconds += time.perf_counter() - started
        value = float(loss.detach())
        self.recent_losses = (self.recent_losses + [value])[-50:]
        return value

    @property
    def train_loss(self) -> float:
        """Mean loss of the last (up to 50) steps."""
        return float(np.mean(self.recent_losses)) if self.recent_losses else float("nan")

    def state(self, **extra: Any) -> dict[str, Any]:
        """What a checkpoint needs to resume training (plain data for ``weights_only`` loads)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "rng": _rng_state(self.rng),
            "torch_rng": torch.get_rng_state(),  # dropout masks
            "settings": asdict(self.settings),
            "train_seconds": self.train_seconds,
            "origin_step": self.origin_step,
            "tokens_trained": self.tokens_trained,
            "recent_losses": list(self.recent_losses),
            **extra,
        }

    def restore(self, model_state: dict[str, Any], step: int, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's weights, step and trainer state."""
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng = _rng_from_state(state["rng"])
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        self.step_count = int(step)
        self.origin_step = int(state.get("origin_step", 0))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.tokens_trained = int(state.get("tokens_trained", 0))
        self.recent_losses = [float(x) for x in state.get("recent_losses", [])]


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    # PCG64's 128-bit integers as strings: checkpoints hold only plain, small types.
    state = rng.bit_generator.state
    return {
        "bit_generator": state["bit_generator"],
        "state": str(state["state"]["state"]),
        "inc": str(state["state"]["inc"]),
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def _rng_from_state(saved: dict[str, Any]) -> np.random.Generator:
    bits = np.random.PCG64()
    bits.state = {
        "bit_generator": saved["bit_generator"],
        "state": {"state": int(saved["state"]), "inc": int(saved["inc"])},
        "has_uint32": saved["has_uint32"],
        "uinteger": saved["uinteger"],
    }
    return np.random.Generator(bits)


SPREAD_TOKENS = 1024
"""Fewest tokens scored per track when an evaluation is capped (``model_token_nll``)."""


@torch.no_grad()
def model_token_nll(
    model: GPT, tracks: Sequence[Track], *, max_tokens: int | None = None, batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """NLL (nats) of every token but each track's first, as the n-gram baselines score,
    and the tokens scored (the targets), in track order.

    Long tracks are scored in windows of ``block_size`` overlapping by half, each
    token once and with at least half a window of context (all of it near the
    track start). ``max_tokens`` scores fewer, for quick evaluations: the starts (whole
    windows) of tracks spread evenly over the list, at least ``SPREAD_TOKENS`` each, so
    a validation split of many pieces is judged on many of them, not on its first.
    """
    model.eval()
    block = model.config.block_size
    stride = max(1, block // 2)
    per_track = None
    if max_tokens is not None and tracks:
        count = max(1, min(len(tracks), max_tokens // SPREAD_TOKENS))
        picked = np.unique(np.linspace(0, len(tracks) - 1, count).round().astype(int))
        tracks = [tracks[i] for i in picked]
        per_track = max(1, max_tokens // len(tracks))
    jobs: list[tuple[np.ndarray, int]] = []  # (window tokens, first position to score)
    for track in tracks:
        tokens = track.tokens if per_track is None else track.tokens[: per_track + 1]
        n = len(tokens)
        start = 0
        while start < n - 1:
            end = min(start + block + 1, n)
            first = 0 if start == 0 else block - stride
            jobs.append((tokens[start:end], first))
            if end == n:
                break
            start += stride
    # Batch windows of equal length together.
    by_length: dict[int, list[int]] = {}
    for i, (window, _) in enumerate(jobs):
        by_length.setdefault(len(window), []).append(i)
    results: dict[int, np.ndarray] = {}
    for indices in by_length.values():
        for lo in range(0, len(indices), batch_size):
            chunk = indices[lo : lo + batch_size]
            windows = torch.from_numpy(np.stack([jobs[i][0] for i in chunk]).astype(np.int64))
            nll = model.token_nll(windows[:, :-1], windows[:, 1:]).numpy()
            for row, i in zip(nll, chunk, strict=True):
                results[i] = row[jobs[i][1] :]
    if not jobs:
        return np.empty(0), np.empty(0, np.int64)
    nll = np.concatenate([results[i] for i in range(len(jobs))])
    targets = np.concatenate([window[1 + first :] for window, first in jobs]).astype(np.int64)
    return nll, targets


@dataclass(frozen=True)
class Score:
    """A model's (or baseline's) fit to music: nats per token and per second of music."""

    nll_per_token: float
    nats_per_second: float
    tokens: int
    seconds: float

    @classmethod
    def of(cls, nll: np.ndarray, targets: np.ndarray, rep: Representation) -> Score | None:
        """From per-token NLLs and the tokens they score (None without any)."""
        if not len(nll):
            return None
        seconds = rep.seconds(targets)
        total = float(np.sum(nll))
        return cls(total / len(nll), total / seconds if seconds > 0 else float("nan"),
                   int(len(nll)), seconds)  # fmt: skip


def score_model(model: GPT, tracks: Sequence[Track], max_tokens: int | None = None) -> Score | None:
    """The model's held-out score on ``tracks`` (None without tokens to score)."""
    nll, targets = model_token_nll(model, tracks, max_tokens=max_tokens)
    return Score.of(nll, targets, representation.get(model.config.representation))


class TrainingRun:
    """A trainer bound to a checkpoint folder and validation tracks: the one training loop.

    ``open`` resumes from the folder's newest checkpoint, else starts from ``init`` (a
    checkpoint file: its weights and step, a fresh optimizer), else from scratch.
    ``train`` steps until ``until()`` says stop, yielding each checkpoint written.
    With ``promote_against`` (a model), a checkpoint is *promoted* (offered for serving)
    only when it scores better than that model on the same validation tokens; the
    promoted checkpoint then becomes the model to beat.
    """

    def __init__(
        self,
        directory: Path,
        trainer: Trainer,
        validation: Sequence[Track],
        *,
        checkpoint_every: int = 200,
        keep: int = 3,
        eval_tokens: int | None = 20_000,
        promote_against: GPT | None = None,
        extra_state: Callable[[], dict[str, Any]] | None = None,
        log_file: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.trainer = trainer
        self.validation = list(validation)
        self.checkpoint_every = checkpoint_every
        self.keep = keep
        self.eval_tokens = eval_tokens
        self.promote_against = promote_against
        self.extra_state = extra_state
        """Called at each checkpoint: what to add to its training state (e.g. offsets)."""
        self.log_file = log_file
        self.saved_step = trainer.step_count
        self.best: Score | None = None
        self.last: Score | None = None

    @staticmethod
    def resume_or_start(
        directory: Path,
        config: GPTConfig,
        settings: TrainSettings,
        *,
        init: Path | None = None,
    ) -> tuple[Trainer, Any]:
        """A ``Trainer`` for ``directory`` and the checkpoint it resumed (or None).

        Raises ``CheckpointError`` for a newest checkpoint or ``init`` that cannot be
        used: never train over a checkpoint we cannot read (it may be a newer format).
        """
        from gbsynth.trainer.checkpoint import CheckpointError, load_checkpoint, newest_checkpoint

        path = newest_checkpoint(directory)
        if path is not None:
            loaded = load_checkpoint(path)
            state = loaded.trainer_state
            if state is None:
                raise CheckpointError(f"cannot resume from {path}: it holds no training state")
            trainer = Trainer(loaded.config, TrainSettings(**state["settings"]))
            trainer.restore(loaded.model.state_dict(), loaded.step, state)
            trainer.match_weights = loaded.match_weights
            return trainer, loaded
        if init is not None:
            start = load_checkpoint(init)
            # The initial model's network, with this run's dropout, context and settings
            # (rotary positions have no weights: a context can grow).
            run_config = dataclasses.replace(
                start.config, dropout=config.dropout, block_size=config.block_size
            )
            trainer = Trainer(run_config, settings)
            trainer.model.load_state_dict(start.model.state_dict())
            trainer.step_count = trainer.origin_step = start.step
            trainer.match_weights = start.match_weights
            return trainer, None
        return Trainer(config, settings), None

    def train(self, windows: Windows, until: Callable[[], bool]) -> Iterator[Any]:
        """Step until ``until()`` is true; every ``checkpoint_every`` steps, checkpoint and
        yield the ``SavedCheckpoint``."""
        while not until():
            self.trainer.step(windows)
            if self.trainer.step_count % self.checkpoint_every == 0:
                yield self.checkpoint()

    def checkpoint(self, **extra: Any) -> Any:
        """Score the validation tracks, write a checkpoint (``extra`` goes into its training
        state), prune old ones and log a line; return the ``SavedCheckpoint``."""
        from gbsynth.trainer.checkpoint import prune_checkpoints, save_checkpoint

        trainer = self.trainer
        score = score_model(trainer.model, self.validation, self.eval_tokens)
        promoted = True
        if self.promote_against is not None and score is not None:
            reference = score_model(self.promote_against, self.validation, self.eval_tokens)
            promoted = reference is None or score.nll_per_token < reference.nll_per_token
        elif self.promote_against is not None:
            promoted = False  # nothing to compare on: keep serving what is served
        saved = save_checkpoint(
            self.directory,
            trainer.model,
            step=trainer.step_count,
            train_loss=trainer.train_loss,
            heldout_nll=None if score is None else score.nll_per_token,
            heldout_nats_per_second=None if score is None else score.nats_per_second,
            promoted=promoted,
            match_weights=trainer.match_weights,
            trainer_state=trainer.state(
                **(self.extra_state() if self.extra_state else {}), **extra
            ),
        )
        if promoted and self.promote_against is not None:
            self.promote_against = _frozen_copy(trainer.model)
        self.saved_step = saved.step
        self.last = score
        if score is not None and (
            self.best is None or score.nll_per_token < self.best.nll_per_token
        ):
            self.best = score
        prune_checkpoints(self.directory, keep_newest=self.keep)
        if self.log_file:
            record = {
                "step": trainer.step_count,
                "train_loss": trainer.train_loss,
                "valid_nll_per_token": None if score is None else score.nll_per_token,
                "valid_nats_per_second": None if score is None else score.nats_per_second,
                "promoted": promoted,
                "train_seconds": round(trainer.train_seconds, 2),
                "lr": trainer.learning_rate(),
                "tokens_trained": trainer.tokens_trained,
                "unix_time": round(time.time(), 1),
            }
            with open(self.directory / self.log_file, "a") as log:
                log.write(json.dumps(record) + "\n")
        return saved


def _frozen_copy(model: GPT) -> GPT:
    copy = GPT(model.config)
    copy.load_state_dict(model.state_dict())
    copy.eval()
    copy.requires_grad_(False)
    return copy
