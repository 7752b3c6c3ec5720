"""Demo music: songs composed and written as GBS files and ROMs (``gbsynth make-demo-music``).

For each song, ``NN-title.gbs`` (a GBS rip: our driver and the song, played at
VBlank) and ``NN-title.gb`` (a 32 KiB ROM that plays it from its VBlank handler
and idles in HALT), plus ``index.json`` with each song's key, mode, tempo, form
and length. The same seed always gives the same files.
"""

from __future__ import annotations

import json
import re
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
        entries.append(
            {"index": index, "gbs": f"{stem}.gbs", "gb": f"{stem}.gb", **song_summary(song)}
        )
    index = {
        "generator": "gbsynth make-demo-music",
        "version": __version__,
        "seed": seed,
        "songs": entries,
    }
    atomic_write(out_dir / "index.json", (json.dumps(index, indent=2) + "\n").encode())
    return entries
