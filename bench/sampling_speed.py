"""Sampling speed: seconds of music per wall second, against plain torch decoding in the same run.

The peer is the same model sampled with torch's incremental decoding
(``GPT.step`` with its KV cache, ``torch.inference_mode``, one thread), the
straightforward way to sample a nanoGPT-style model; ours is
``gbsynth.trainer.sampling.Sampler`` (the compiled ``InferenceEngine``). Both
sample the same events from the same checkpoint (the default ``cpu`` model,
trained or not: the cost per event does not depend on the weights). Also
reports writes per second of music and peak memory.

    python bench/sampling_speed.py [--checkpoint CKPT] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def torch_peer(model, seconds: float, seed: int) -> tuple[int, float]:
    """Sample with torch ops only (greedy-free nucleus sampling as the Sampler does)."""
    from gbsynth.common.events import CPU_HZ
    from gbsynth.trainer import tokens
    from gbsynth.trainer.sampling import PREAMBLE

    rng = np.random.default_rng(seed)
    end = int(seconds * CPU_HZ)
    started = time.perf_counter()
    writes = 0
    with torch.inference_mode():
        cache = model.new_cache()
        for event in torch.from_numpy(tokens.encode(PREAMBLE)):
            h = model.step(event, cache)
        clock = 0
        heads = model.heads

        def pick(logits: torch.Tensor) -> int:
            probs = torch.softmax(logits, -1)
            sorted_probs, order = torch.sort(probs, descending=True)
            keep = int(torch.searchsorted(torch.cumsum(sorted_probs, 0), 0.95)) + 1
            kept = sorted_probs[:keep] / sorted_probs[:keep].sum()
            index = int(torch.searchsorted(torch.cumsum(kept, 0), float(rng.random())))
            return int(order[min(index, keep - 1)])

        while True:
            dt = pick(heads.dt_logits(h))
            clock += int(tokens.DT_CYCLES[dt])
            if clock >= end:
                break
            dt_t = torch.tensor(dt)
            reg = pick(heads.reg_logits(h, dt_t))
            val = pick(heads.val_logits(h, dt_t, torch.tensor(reg))) if reg != tokens.WAIT else 0
            writes += reg != tokens.WAIT
            h = model.step(torch.tensor([dt, reg, val]), cache)
    return writes, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: untrained cpu")
    parser.add_argument("--seconds", type=float, default=30.0, help="music per song")
    parser.add_argument("--songs", type=int, default=3)
    parser.add_argument("--peer-seconds", type=float, default=5.0, help="music the peer makes")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from gbsynth.trainer.checkpoint import load_checkpoint, newest_checkpoint, save_checkpoint
    from gbsynth.trainer.model import GPT, PRESETS
    from gbsynth.trainer.sampling import Sampler

    path = args.checkpoint
    if path is None:
        torch.manual_seed(0)
        path = save_checkpoint(Path(tempfile.mkdtemp()), GPT(PRESETS["cpu"]), step=0).path
    elif path.is_dir():
        path = newest_checkpoint(path)
    loaded = load_checkpoint(path)
    sampler = Sampler(loaded)
    sampler.sample(0.2)  # compile (cached on disk after the first run)

    ours_wall, ours_writes, first_piece = 0.0, 0, []
    for seed in range(args.songs):
        started = time.perf_counter()
        stream = sampler.stream(args.seconds, seed=seed)
        ours_writes += len(next(stream))  # the preamble
        ours_writes += len(next(stream, ()))  # the first sampled piece
        first_piece.append(time.perf_counter() - started)
        ours_writes += sum(len(p) for p in stream)
        ours_wall += time.perf_counter() - started
    rss_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peer_writes, peer_wall = torch_peer(loaded.model, args.peer_seconds, seed=0)
    ours_rate = args.songs * args.seconds / ours_wall
    ours_events = ours_writes / ours_wall
    peer_events = peer_writes / peer_wall
    density = ours_writes / (args.songs * args.seconds)
    # Songs differ in density, so the two are compared per event (the cost of a song is its
    # number of writes); the peer's music rate is at our songs' density.
    result = {
        "checkpoint": str(path),
        "step": loaded.step,
        "ours_music_seconds_per_wall_second": round(ours_rate, 2),
        "peer_torch_music_seconds_per_wall_second": round(peer_events / density, 2),
        "ours_events_per_wall_second": round(ours_events),
        "peer_events_per_wall_second": round(peer_events),
        "ratio": round(ours_events / peer_events, 1),
        "writes_per_music_second": round(density, 1),
        "first_piece_seconds": round(float(np.mean(first_piece)), 3),
        "peak_rss_mb": round(rss_ours, 1),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
