"""Sampling speed: seconds of music per wall second, against plain torch decoding in the same run.

The peer is the same model sampled with torch's incremental decoding
(``GPT.step`` with its KV cache, ``torch.inference_mode``, one thread, the same
grammar mask and nucleus sampling), the straightforward way to sample a
nanoGPT-style model; ours is ``gbsynth.trainer.sampling.Sampler`` (the compiled
``InferenceEngine``). Both sample from the same checkpoint (by default the shipped
default model: an untrained one spreads its mass over every token, which is neither
realistic music nor realistic cost), and are compared per token (a song costs its
number of tokens). Also reports the wall time of a whole song, the time to its
first sampled piece and peak memory.

    python bench/sampling_speed.py [--checkpoint CKPT] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch


def torch_peer(model, seconds: float, seed: int) -> tuple[int, float]:
    """Tokens sampled with torch ops only (nucleus sampling under the grammar mask, as the
    Sampler does) for ``seconds`` of music, and the wall time."""
    from gbsynth.common.events import CPU_HZ
    from gbsynth.trainer import representation
    from gbsynth.trainer.sampling import PREAMBLE

    rep = representation.get(model.config.representation)
    rng = np.random.default_rng(seed)
    end = int(seconds * CPU_HZ)
    started = time.perf_counter()
    count = 0
    decoder = rep.stream_decoder()
    with torch.inference_mode():
        cache = model.new_cache()
        for token in rep.encode(PREAMBLE, None).tolist():
            logits = model.step(token, cache)
            decoder.push(token)
        clock = 0
        while True:
            allowed = torch.from_numpy(np.asarray(decoder.valid_next()))
            probs = torch.softmax(logits.masked_fill(~allowed, float("-inf")), -1)
            sorted_probs, order = torch.sort(probs, descending=True)
            keep = int(torch.searchsorted(torch.cumsum(sorted_probs, 0), 0.95)) + 1
            kept = sorted_probs[:keep] / sorted_probs[:keep].sum()
            index = int(torch.searchsorted(torch.cumsum(kept, 0), float(rng.random())))
            token = int(order[min(index, keep - 1)])
            clock += int(rep.token_cycles[token])
            if clock >= end:
                break
            decoder.push(token)
            logits = model.step(token, cache)
            count += 1
    return count, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the default model")
    parser.add_argument("--seconds", type=float, default=30.0, help="music per song")
    parser.add_argument("--songs", type=int, default=3)
    parser.add_argument("--peer-seconds", type=float, default=5.0, help="music the peer makes")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from gbsynth.trainer.checkpoint import (
        BUILTIN_MODEL,
        load_checkpoint,
        newest_checkpoint,
    )
    from gbsynth.trainer.sampling import Sampler

    path = args.checkpoint or BUILTIN_MODEL
    if path.is_dir():
        path = newest_checkpoint(path)
    loaded = load_checkpoint(path)
    sampler = Sampler(loaded)
    rep = sampler.representation
    sampler.sample(0.2)  # compile (cached on disk after the first run)

    song_walls, first_piece, ours_tokens = [], [], 0
    for seed in range(args.songs):
        started = time.perf_counter()
        stats: dict[str, int] = {}
        stream = sampler.stream(args.seconds, seed=seed, stats=stats)
        next(stream)  # the opening
        next(stream, None)  # the first sampled piece
        first_piece.append(time.perf_counter() - started)
        for _ in stream:
            pass
        song_walls.append(time.perf_counter() - started)
        ours_tokens += stats["tokens"]
    rss_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peer_tokens, peer_wall = torch_peer(loaded.model, args.peer_seconds, seed=0)
    ours_wall = float(np.sum(song_walls))
    ours_rate = ours_tokens / ours_wall
    peer_rate = peer_tokens / peer_wall
    density = ours_tokens / (args.songs * args.seconds)
    result = {
        "checkpoint": str(path),
        "representation": rep.name,
        "step": loaded.step,
        "song_seconds": args.seconds,
        "song_wall_seconds_median": round(float(np.median(song_walls)), 2),
        "ours_music_seconds_per_wall_second": round(args.songs * args.seconds / ours_wall, 2),
        "peer_torch_music_seconds_per_wall_second": round(peer_rate / density, 2),
        "ours_tokens_per_wall_second": round(ours_rate),
        "peer_tokens_per_wall_second": round(peer_rate),
        "ratio": round(ours_rate / peer_rate, 1),
        "tokens_per_music_second": round(density, 1),
        "first_piece_seconds": round(float(np.mean(first_piece)), 3),
        "peak_rss_mb": round(rss_ours, 1),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
