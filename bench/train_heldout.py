"""Acceptance run of the trainer: train on our music except nightmode.gbs, score nightmode.gbs.

Not part of the tests (it trains for up to 20 minutes). It

1. collects the training music: every subsong of ../shared/corpus/DevSound_demo.gbs,
   the four music ROMs under ../shared/roms/music, and the embedded demo songs
   (``gbsynth make-demo-music``, GBS files), each recorded for ``--seconds``;
2. runs ``gbsynth train`` for ``--minutes`` with nightmode.gbs as the held-out music
   (so the training curve shows its NLL), one torch thread (the CPU is shared);
3. runs ``gbsynth evaluate`` on nightmode.gbs: the model's NLL per event against the
   unigram and Witten-Bell n-gram baselines (joint and factorized) fitted on the same
   training data;
4. samples 30 s songs from the final checkpoint: seconds of music per wall second and
   the share of legal register writes;
5. plots the training curve (PNG) and prints one JSON summary.

    python bench/train_heldout.py --minutes 20 --plot /work/notes/training_curve.png
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GBSYNTH = [sys.executable, "-m", "gbsynth"]


def training_music(work: Path, demo_songs: int) -> list[Path]:
    music = [SHARED / "corpus" / "DevSound_demo.gbs"]
    music += sorted((SHARED / "roms" / "music").rglob("*.gb"))
    if demo_songs:
        demo = work / "demo"
        subprocess.run(
            [*GBSYNTH, "make-demo-music", str(demo), "--songs", str(demo_songs), "--seed", "0"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        music += sorted(demo.glob("*.gbs"))
    return music


def plot(log_file: Path, baseline: tuple[str, float], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_file.read_text().splitlines()]
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(steps, [r["train_loss"] for r in rows], label="training loss (last 50 steps)")
    held = [(r["step"], r["heldout_nll"]) for r in rows if r["heldout_nll"] is not None]
    ax.plot(*zip(*held, strict=True), marker="o", label="nightmode.gbs (held out)")
    ax.axhline(baseline[1], color="grey", linestyle="--", label=f"best baseline ({baseline[0]})")
    ax.set_xlabel("optimizer step (16 windows of 256 events)")
    ax.set_ylabel("NLL per event (nats)")
    ax.set_ylim(0, max(baseline[1] * 1.1, 6))
    ax.set_title("gbsynth trainer: CPU preset, one core")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def sampling_speed(checkpoint_dir: Path, seconds: float, songs: int) -> dict[str, float]:
    import numpy as np
    import torch

    from gbsynth.common.events import CPU_HZ
    from gbsynth.trainer.checkpoint import load_checkpoint, newest_checkpoint
    from gbsynth.trainer.sampling import Sampler

    torch.set_num_threads(1)
    sampler = Sampler(load_checkpoint(newest_checkpoint(checkpoint_dir)))
    sampler.sample(0.5)  # compile
    legal = total = 0
    wall = 0.0
    for seed in range(songs):
        started = time.perf_counter()
        song = sampler.sample(seconds, seed=seed)
        wall += time.perf_counter() - started
        regs = song.registers
        legal += int(np.count_nonzero((regs >= 0xFF10) & (regs <= 0xFF3F)))
        total += len(song)
        assert song.cycles[-1] < seconds * CPU_HZ
    return {
        "music_seconds_per_wall_second": round(songs * seconds / wall, 2),
        "writes_per_second_of_music": round(total / (songs * seconds), 1),
        "legal_write_share": legal / max(total, 1),
        "sampled_writes": total,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=120.0, help="recorded per file/subsong")
    parser.add_argument("--heldout-seconds", type=float, default=150.0)
    parser.add_argument("--demo-songs", type=int, default=40)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="checkpoint folder (default: temp)")
    parser.add_argument("--plot", type=Path, default=Path("training_curve.png"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gbsynth-train-"))
    out = args.out or work / "checkpoints"
    music = training_music(work, args.demo_songs)
    nightmode = SHARED / "corpus" / "nightmode.gbs"
    print(f"training music: {', '.join(p.name for p in music)}", file=sys.stderr)
    started = time.perf_counter()
    subprocess.run(
        [*GBSYNTH, "train", *map(str, music), "--out", str(out), "--minutes", str(args.minutes),
         "--seconds", str(args.seconds), "--heldout", str(nightmode), "--preset", args.preset,
         "--checkpoint-every", "100", "--threads", "1"],
        check=True,
    )  # fmt: skip
    train_wall = time.perf_counter() - started
    evaluation = json.loads(
        subprocess.run(
            [*GBSYNTH, "evaluate", str(out), str(nightmode), "--seconds",
             str(args.heldout_seconds)],
            check=True, capture_output=True, text=True,
        ).stdout
    )  # fmt: skip
    best = evaluation["best_baseline"]
    plot(out / "training_log.jsonl", (best, evaluation["baselines"][best]), args.plot)
    speed = sampling_speed(out, 30.0, 3)
    summary = {
        "train_wall_seconds": round(train_wall, 1),
        "evaluation": evaluation,
        "sampling": speed,
        "peak_rss_mb_children": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        ),
        "peak_rss_mb_sampling": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "checkpoints": str(out),
        "plot": str(args.plot),
    }
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
