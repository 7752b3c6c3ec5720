"""``gbsynth make-demo-music``: compose demo songs and write them as GBS files and ROMs.

    gbsynth make-demo-music roms/ --songs 8 --seed 0

For each song, ``NN-title.gbs`` (a GBS rip: our driver and the song, played at
VBlank) and ``NN-title.gb`` (a 32 KiB ROM that plays it from its VBlank handler
and idles in HALT), plus ``index.json`` with each song's key, mode, tempo, form
and length. The same seed always gives the same files.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from gbsynth import __version__
from gbsynth.common.files import atomic_write
from gbsynth.music.composer import compose, song_summary
from gbsynth.music.rom import song_files
from gbsynth.music.song import module_source

MAX_SONGS = 999


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "song"


def write_demo(out_dir: Path, songs: int, seed: int, asm: bool = False) -> list[dict]:
    """Compose ``songs`` songs with ``seed`` into ``out_dir``; returns the index entries."""
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(songs):
        song = compose(seed, index)
        gbs, rom = song_files(song)
        stem = f"{index + 1:02d}-{slug(song.title)}"
        (out_dir / f"{stem}.gbs").write_bytes(gbs)
        (out_dir / f"{stem}.gb").write_bytes(rom)
        if asm:
            (out_dir / f"{stem}.asm").write_text(module_source([song]))
        entries.append({"index": index, "gbs": f"{stem}.gbs", "gb": f"{stem}.gb",
                        **song_summary(song)})  # fmt: skip
    index = {"generator": "gbsynth make-demo-music", "version": __version__, "seed": seed,
             "songs": entries}  # fmt: skip
    atomic_write(out_dir / "index.json", (json.dumps(index, indent=2) + "\n").encode())
    return entries


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
        print(f"{e['gbs']:<28} {e['key']:>2} {e['mode']:<14} {e['bpm']:5.1f} BPM "
              f"{e['meter']} {e['form']:<5} {e['seconds']:5.1f} s")  # fmt: skip
    print(
        f"{len(entries)} songs in {out_dir} ({time.perf_counter() - start:.2f} s)",
        file=sys.stderr,
    )
    return 0
