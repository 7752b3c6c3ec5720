"""The training loop shared by the service and ``gbsynth train``: batches, steps, evaluation.

``Trainer`` owns the model, the AdamW optimizer and the batch sampler's random
generator; ``state()`` / ``restore()`` carry all three (with the step count and
torch's random state, which draws the dropout masks) in a checkpoint, so a restarted
trainer continues exactly where the checkpoint was taken: same step, same optimizer
moments, same next batches.

Batches are windows of ``block_size + 1`` consecutive events drawn uniformly
from the training tracks (a window never straddles two tracks); the model
learns to predict events 1..T from events 0..T-1. The learning rate warms up
linearly, then follows a cosine from ``lr`` down to ``lr * min_lr_ratio``
over ``decay_steps`` (0: stays at ``lr``, for the endless service).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from gbsynth.trainer import tokens
from gbsynth.trainer.data import Track
from gbsynth.trainer.model import GPT, GPTConfig


@dataclass(frozen=True)
class TrainSettings:
    batch_size: int = 16
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    decay_steps: int = 0
    """Steps of cosine decay after warm-up; 0 keeps the learning rate constant."""
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    augment: bool = True
    """Randomly swap the two pulse channels and shift the tempo of training windows."""


class Windows:
    """Uniformly drawn training windows over a set of tracks (no window crosses tracks)."""

    def __init__(self, tracks: Sequence[Track], length: int) -> None:
        self.length = length
        usable = [t for t in tracks if len(t) >= 2]
        # int16 holds every token (< 256) at a quarter of the memory; batches widen to int64.
        self.events = (
            np.concatenate([t.events for t in usable]).astype(np.int16)
            if usable
            else np.empty((0, 3), np.int16)
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
    def event_count(self) -> int:
        return int(self.events.shape[0])

    def batch(
        self, rng: np.random.Generator, size: int, augment: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, each ``(size, T, 3)``; T is the shortest window drawn."""
        if not len(self.starts):
            raise ValueError("no training data")
        pick = rng.integers(0, len(self.starts), size)
        starts = self.starts[pick]
        span = int(min(self.length, (self.track_ends[pick] - starts).min() - 1))
        index = starts[:, None] + np.arange(span + 1)[None, :]
        windows = self.events[index].astype(np.int64)
        if augment:
            windows = augment_windows(windows, rng)
        windows = torch.from_numpy(windows)
        return windows[:, :-1], windows[:, 1:]


# Pulse channel 1 <-> 2 (NR11-NR14 <-> NR21-NR24; NR10, the sweep, has no twin) and the
# matching bits of NR51 (panning: bits 0/1 right, 4/5 left).
_SWAP_REGISTERS = np.arange(tokens.N_REG)
_SWAP_REGISTERS[[1, 2, 3, 4, 6, 7, 8, 9]] = [6, 7, 8, 9, 1, 2, 3, 4]
_NR51 = 0xFF25 - 0xFF10
_values = np.arange(256)
_SWAP_NR51 = (_values & 0xCC) | ((_values & 0x11) << 1) | ((_values & 0x22) >> 1)
_FIRST_LOG_DT = tokens.N_EXACT_DT + 1
MAX_TEMPO_SHIFT = 3
"""Tempo augmentation: gaps over 256 cycles move up to 3 log buckets (about +-18%)."""


def augment_windows(windows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Musically neutral variations of training windows ``(B, T, 3)``, each with p = 1/2:
    the two pulse channels trade places; the tempo changes (long gaps scale, short
    in-frame gaps between a driver's writes stay). Keeps memorising one recording's
    exact register order and timing from being enough, so the model must read the
    song in its context."""
    out = windows.copy()
    swap = rng.random(len(out)) < 0.5
    if swap.any():
        part = out[swap]
        nr51 = part[..., tokens.REG] == _NR51
        part[..., tokens.VAL] = np.where(nr51, _SWAP_NR51[part[..., tokens.VAL]], part[..., 2])
        part[..., tokens.REG] = _SWAP_REGISTERS[part[..., tokens.REG]]
        out[swap] = part
    shift = np.where(
        rng.random(len(out)) < 0.5, rng.integers(-MAX_TEMPO_SHIFT, MAX_TEMPO_SHIFT + 1, len(out)), 0
    )
    dt = out[..., tokens.DT]
    long_gap = dt >= _FIRST_LOG_DT
    out[..., tokens.DT] = np.where(
        long_gap, np.clip(dt + shift[:, None], _FIRST_LOG_DT, tokens.N_DT - 1), dt
    )
    return out


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
        self.step_count = 0
        self.train_seconds = 0.0
        self.events_trained = 0
        self.recent_losses: list[float] = []

    def learning_rate(self, step: int | None = None) -> float:
        s = self.settings
        step = self.step_count if step is None else step
        if step < s.warmup_steps:
            return s.lr * (step + 1) / s.warmup_steps
        if s.decay_steps <= 0:
            return s.lr
        progress = min(1.0, (step - s.warmup_steps) / s.decay_steps)
        floor = s.lr * s.min_lr_ratio
        return floor + (s.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def step(self, windows: Windows) -> float:
        """One update on a fresh batch; returns its loss (nats per event)."""
        started = time.perf_counter()
        self.model.train()
        inputs, targets = windows.batch(self.rng, self.settings.batch_size, self.settings.augment)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        loss, _ = self.model(inputs, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.optimizer.step()
        self.step_count += 1
        self.events_trained += targets.shape[0] * targets.shape[1]
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
            "events_trained": self.events_trained,
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
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.events_trained = int(state.get("events_trained", 0))
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


@torch.no_grad()
def model_event_nll(
    model: GPT, tracks: Sequence[Track], *, max_events: int | None = None, batch_size: int = 16
) -> np.ndarray:
    """NLL (nats) of every event but each track's first, as the n-gram baselines score.

    Long tracks are scored in windows of ``block_size`` overlapping by half, each
    event once and with at least half a window of context (all of it near the
    track start). ``max_events`` stops early (whole windows), for quick evaluations.
    """
    model.eval()
    block = model.config.block_size
    stride = max(1, block // 2)
    jobs: list[tuple[np.ndarray, int]] = []  # (window events, first position to score)
    total = 0
    for track in tracks:
        events = track.events
        n = len(events)
        start = 0
        while start < n - 1:
            end = min(start + block + 1, n)
            first = 0 if start == 0 else block - stride
            jobs.append((events[start:end], first))
            total += end - start - 1 - first
            if end == n or (max_events is not None and total >= max_events):
                break
            start += stride
        if max_events is not None and total >= max_events:
            break
    out: list[np.ndarray] = []
    # Batch windows of equal length together.
    by_length: dict[int, list[int]] = {}
    for i, (window, _) in enumerate(jobs):
        by_length.setdefault(len(window), []).append(i)
    results: dict[int, np.ndarray] = {}
    for indices in by_length.values():
        for lo in range(0, len(indices), batch_size):
            chunk = indices[lo : lo + batch_size]
            windows = torch.from_numpy(np.stack([jobs[i][0] for i in chunk]))
            nll = model.event_nll(windows[:, :-1], windows[:, 1:]).numpy()
            for row, i in zip(nll, chunk, strict=True):
                results[i] = row[jobs[i][1] :]
    for i in range(len(jobs)):
        out.append(results[i])
    return np.concatenate(out) if out else np.empty(0)


def heldout_nll(model: GPT, tracks: Sequence[Track], max_events: int | None = None) -> float | None:
    """Mean held-out NLL per event, or None without held-out events."""
    nll = model_event_nll(model, tracks, max_events=max_events)
    return float(nll.mean()) if len(nll) else None
