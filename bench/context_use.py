"""How much of its context does a model use? NLL per token of the last 512 tokens of
2,048-token windows, scored with the whole window before them and with shorter contexts.

    python bench/context_use.py CKPT DATASET.npz [DATASET.npz ...]

DATASET: a ``dataset.npz`` or ``heldout.npz`` that ``gbsynth train`` writes (tokens of the
checkpoint's representation). A model that uses its context scores better with more of
it; docs/model.md reports the default model's figures (why the sampler follows song plans).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

WINDOW = 2048
SCORED = 512
CONTEXTS = (2048, 1024, 256, 64, 16)
"""Longest context of each run; a scored token has between half of it and all of it before
it (the whole window for 2,048)."""


def nll_with_context(model, window: torch.Tensor, context: int) -> torch.Tensor:
    """NLL of the last ``SCORED`` targets of ``window`` (``WINDOW + 1`` tokens)."""
    if context >= WINDOW:
        return model.token_nll(window[None, :WINDOW], window[None, 1:])[0, -SCORED:]
    step = max(context // 2, 8)
    parts = []
    for first in range(WINDOW - SCORED, WINDOW, step):
        end = min(first + step, WINDOW)
        begin = max(0, end - context)
        nll = model.token_nll(window[None, begin:end], window[None, begin + 1 : end + 1])[0]
        parts.append(nll[first - begin :])
    return torch.cat(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("datasets", type=Path, nargs="+")
    parser.add_argument("--windows", type=int, default=12)
    args = parser.parse_args()

    from gbsynth.trainer.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    model = load_checkpoint(args.checkpoint).model.eval()
    for path in args.datasets:
        data = np.load(path)
        tokens, lengths = data["tokens"].astype(np.int64), data["lengths"]
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        rng = np.random.default_rng(0)
        long_enough = [i for i in range(len(lengths)) if lengths[i] > WINDOW + 1]
        rng.shuffle(long_enough)
        scores: dict[int, list[float]] = {c: [] for c in CONTEXTS}
        for i in long_enough[: args.windows]:
            at = starts[i] + rng.integers(0, lengths[i] - WINDOW - 1)
            window = torch.from_numpy(tokens[at : at + WINDOW + 1])
            for context in CONTEXTS:
                scores[context].append(float(nll_with_context(model, window, context).mean()))
        cells = "  ".join(f"{c}: {np.mean(v):.3f}" for c, v in scores.items())
        print(f"{path} ({len(scores[CONTEXTS[0]])} windows) nats/token by context  {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
