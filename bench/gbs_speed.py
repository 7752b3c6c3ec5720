"""GBS playback speed: gbsynth against gbsplay's iodumper on the same files and spans.

    .venv/bin/python bench/gbs_speed.py                 # the GBS files in ../shared/corpus
    .venv/bin/python bench/gbs_speed.py --long 3600 --short 60

Both sides produce the same thing: every sound-register write with its cycle
(gbsplay: ``-o iodumper`` text to /dev/null; gbsynth: a ``GbsSession``
recording as numpy columns). Each side's speed is the difference of a long and
a short run, (long - short) emulated seconds / (t_long - t_short) wall seconds,
so start-up (gbsplay's process start, our numba load) cancels. Runs are
repeated and the best kept. Ratio > 1: gbsynth is faster.

Only each file's first subsong is timed: gbsplay's iodumper always starts at
subsong 1 (``FILE 3 3`` dumps subsongs 1 to 3), so later ones cannot be timed
alone on its side.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def time_gbsplay(path: Path, subsong: int, seconds: float) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            "gbsplay",
            "-o",
            "iodumper",
            "-t",
            str(int(seconds)),
            "-f",
            "0",
            "-T",
            "0",
            str(path),
            str(subsong),
            str(subsong),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - start


def time_gbsynth(data: bytes, subsong: int, seconds: float) -> tuple[float, int]:
    from gbsynth.emulator.sources import GbsSession

    start = time.perf_counter()
    recording = GbsSession(data, "bench.gbs", subsong).record(seconds)
    return time.perf_counter() - start, len(recording.writes)


def best(fn, repeats: int):
    return min((fn() for _ in range(repeats)), key=lambda r: r if isinstance(r, float) else r[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--long", type=float, default=1200.0, help="long run, emulated seconds")
    parser.add_argument("--short", type=float, default=60.0, help="short run, emulated seconds")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("gbsplay") is None:
        print("gbsplay is not installed (apt-get install gbsplay)", file=sys.stderr)
        return 2
    files = args.files or sorted((SHARED / "corpus").glob("*.gbs"))
    span = args.long - args.short
    print(f"{'file':28} {'gbsynth x':>10} {'gbsplay x':>10} {'ratio':>7} {'writes/s':>10}")
    ratios = []
    for path in files:
        data = path.read_bytes()
        time_gbsynth(data, 1, 1.0)  # load the compiled code once
        ours_long, writes = best(lambda d=data: time_gbsynth(d, 1, args.long), args.repeats)
        ours_short, _ = best(lambda d=data: time_gbsynth(d, 1, args.short), args.repeats)
        theirs_long = best(lambda p=path: time_gbsplay(p, 1, args.long), args.repeats)
        theirs_short = best(lambda p=path: time_gbsplay(p, 1, args.short), args.repeats)
        ours = span / max(ours_long - ours_short, 1e-9)
        theirs = span / max(theirs_long - theirs_short, 1e-9)
        ratios.append(ours / theirs)
        print(
            f"{path.name[:28]:28} {ours:10.0f} {theirs:10.0f} "
            f"{ours / theirs:7.1f} {writes / max(ours_long, 1e-9):10.0f}"
        )
    geo = 1.0
    for r in ratios:
        geo *= r
    print(f"geometric mean ratio (gbsynth / gbsplay): {geo ** (1 / len(ratios)):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
