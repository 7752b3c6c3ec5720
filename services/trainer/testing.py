"""Helpers for other services' tests: real checkpoints of tiny, untrained models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from gbsynth.trainer.checkpoint import save_checkpoint
from gbsynth.trainer.model import GPT, PRESETS


def make_tiny_checkpoint(
    directory: Path, step: int = 1, seed: int = 0, representation: str | None = None
) -> Path:
    """Write a real checkpoint of a tiny randomly initialised model; return its path.

    It loads with ``load_checkpoint`` and samples with ``Sampler`` like a trained
    one (the output is random but legal and audible); it takes a few milliseconds.
    Its representation is the default one unless named.
    """
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        config = PRESETS["tiny"]
        if representation is not None:
            config = dataclasses.replace(config, representation=representation, vocab_size=0)
        model = GPT(config)
    finally:
        torch.random.set_rng_state(generator_state)  # leave the caller's RNG alone
    saved = save_checkpoint(Path(directory), model, step=step, train_loss=float("nan"))
    return saved.path
