"""``gbsynth make-demo-music``: compose demo songs and write them as GBS files and ROMs.

    gbsynth make-demo-music roms/ --songs 8 --seed 0

What is written is described in ``gbsynth.music.demo``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gbsynth.music.demo import MAX_SONGS, write_demo


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the songs into")
    parser.add_argument("--songs", type=int, default=8, help="how many songs (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="composer seed (default 0)")
    parser.add_argument(
        "--asm", action="store_true", help="also write each song's driver source (NN-title.asm)"
    )


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.songs <= MAX_SONGS:
        print(f"gbsynth make-demo-music: --songs must be 1..{MAX_SONGS}", file=sys.stderr)
        return 2
    if args.seed < 0:
        print("gbsynth make-demo-music: --seed must be >= 0", file=sys.stderr)
        return 2
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        print(f"gbsynth make-demo-music: {out_dir} is not a folder", file=sys.stderr)
        return 1
    start = time.perf_counter()
    try:
        entries = write_demo(out_dir, args.songs, args.seed, args.asm)
    except OSError as exc:
        print(f"gbsynth make-demo-music: {exc}", file=sys.stderr)
        return 1
    for e in entries:
        print(
            f"{e['gbs']:<28} {e['key']:>2} {e['mode']:<14} {e['bpm']:5.1f} BPM "
            f"{e['meter']} {e['form']:<5} {e['seconds']:5.1f} s"
        )
    print(
        f"{len(entries)} songs in {out_dir} ({time.perf_counter() - start:.2f} s)",
        file=sys.stderr,
    )
    return 0
