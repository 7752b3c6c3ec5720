"""Corpus building speed: hours of music per wall second, against real time and against the
emulator alone playing the same GBS files.

    .venv/bin/python bench/corpus_build.py              # 4 files a folder of ../shared/pretrain
    .venv/bin/python bench/corpus_build.py --per-folder 10 --seed 3
    .venv/bin/python bench/corpus_build.py --summary /work/data/corpus/summary.json

On one core, for a seeded sample of files from each folder, it times the corpus builder's
whole per-file work (``corpus.build_file``: read, arrange, assemble, record every part,
decode the notes) and then only the emulator playing the very GBS files the arranger made
(``GbsSession.record`` over the same seconds). Both print music seconds per wall second (x
real time); their ratio is the share of the emulator in the builder's time. With
``--summary`` it also prints what a full ``gbsynth corpus build`` measured (all cores).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="*", type=Path, default=[SHARED / "pretrain"])
    parser.add_argument("--per-folder", type=int, default=4, help="files sampled per folder")
    parser.add_argument("--seed", type=int, default=0, help="which files are sampled")
    parser.add_argument("--summary", type=Path, help="a corpus build's summary.json to report")
    args = parser.parse_args()

    from gbsynth.common.events import SourceKind
    from gbsynth.emulator.score_source import arrange_file
    from gbsynth.emulator.sources import GbsSession, SourceError
    from gbsynth.music.corpus import build_file, discover

    tasks, _ = discover(args.sources, ((0, 1.0),), 300.0, 0)
    by_folder = defaultdict(list)
    for task in tasks:
        by_folder[task.folder].append(task)
    rng = random.Random(args.seed)
    sample = [t for f in sorted(by_folder) for t in rng.sample(by_folder[f],
              min(args.per_folder, len(by_folder[f])))]  # fmt: skip
    build_file(sample[0])  # load the compiled code once
    print(f"{'folder':20} {'files':>5} {'music h':>8} {'build x':>9} {'emulator x':>11} "
          f"{'emu share':>9}")  # fmt: skip
    total = {"music": 0.0, "build": 0.0, "emulate": 0.0}
    for folder in sorted(by_folder):
        music = build_wall = emulate_wall = 0.0
        count = 0
        for task in (t for t in sample if t.folder == folder):
            start = time.perf_counter()
            result = build_file(task)["result"]
            build_wall += time.perf_counter() - start
            if result["status"] != "recorded":
                continue
            count += 1
            data = Path(task.path).read_bytes()
            try:
                _, parts = arrange_file(data, Path(task.path).name, SourceKind(task.kind))
            except SourceError:
                continue
            for part in parts:
                gbs = part.gbs()
                start = time.perf_counter()
                GbsSession(gbs, "bench.gbs", 1).record(part.seconds)
                emulate_wall += time.perf_counter() - start
                music += part.seconds
        total["music"] += music
        total["build"] += build_wall
        total["emulate"] += emulate_wall
        print(f"{folder[:20]:20} {count:5d} {music / 3600:8.2f} {music / build_wall:9.0f} "
              f"{music / emulate_wall:11.0f} {emulate_wall / build_wall:9.2f}")  # fmt: skip
    print(f"{'all, one core':20} {len(sample):5d} {total['music'] / 3600:8.2f} "
          f"{total['music'] / total['build']:9.0f} {total['music'] / total['emulate']:11.0f} "
          f"{total['emulate'] / total['build']:9.2f}")  # fmt: skip
    print(f"hours of music per wall second, one core: {total['music'] / 3600 / total['build']:.3f}")
    if args.summary:
        summary = json.loads(args.summary.read_text())
        run = summary["run"]
        hours = run["music_hours_recorded_this_run"]
        wall = run["wall_seconds_this_run"]
        print(f"full build ({run['jobs']} workers, load {run['load_average_before']} before): "
              f"{hours:.1f} h of music in {wall:.0f} s = {hours / wall:.3f} h per wall second "
              f"({hours * 3600 / wall:.0f}x real time)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
