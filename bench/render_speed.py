"""Emulate + render speed: gbsynth against gbsplay on the same GBS file and span.

    .venv/bin/python bench/render_speed.py                  # nightmode.gbs, 600 s vs 60 s
    .venv/bin/python bench/render_speed.py FILE.gbs --long 1200 --short 60 --rate 48000

Both sides turn a GBS subsong into 16-bit stereo PCM at the same rate with the DMG
high-pass filter and write it to /dev/null: ``gbsplay -o stdout -r RATE -H dmg`` against
a ``GbsSession`` recording streamed through ``gbsynth.synth.Synth`` in 10 s pieces (as
``gbsynth render`` does, so memory stays flat) and converted to int16.
Each side's speed is the difference of a long and a short run, (long - short) seconds of
audio / (t_long - t_short) wall seconds, so start-up cancels (process start and file
loading for gbsplay, numba's cache load for us). Runs alternate between the two sides and
the best of each is kept. Ratio > 1: gbsynth is faster.

Also printed: render-only speed (seconds of audio per wall second, from the same
recordings), and emulation-only speed for reference.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def time_gbsplay(path: Path, seconds: float, rate: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            "gbsplay",
            "-o",
            "stdout",
            "-t",
            str(int(seconds)),
            "-g",
            "0",
            "-f",
            "0",
            "-T",
            "0",
            "-r",
            str(rate),
            "-H",
            "dmg",
            str(path),
            "1",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - start


def time_gbsynth(data: bytes, seconds: float, rate: int) -> tuple[float, float]:
    """(emulate + render wall time, render-only wall time)."""
    from gbsynth.common.events import CPU_HZ
    from gbsynth.emulator.sources import GbsSession
    from gbsynth.synth import Synth, to_pcm16

    start = time.perf_counter()
    recording = GbsSession(data, "bench.gbs", 1).record(seconds)
    middle = time.perf_counter()
    synth = Synth(rate)
    writes, duration, step = recording.writes, recording.duration_cycles, 10 * CPU_HZ
    with open(os.devnull, "wb") as sink:
        for begin in range(0, duration, step):
            end = min(duration, begin + step)
            sink.write(to_pcm16(synth.render(writes.between(begin, end), end)).tobytes())
    end = time.perf_counter()
    return end - start, end - middle


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=SHARED / "corpus/nightmode.gbs")
    parser.add_argument("--long", type=float, default=600.0, help="long run, seconds of audio")
    parser.add_argument("--short", type=float, default=60.0, help="short run, seconds of audio")
    parser.add_argument("--rate", type=int, default=44_100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("gbsplay") is None:
        print("gbsplay is not installed (apt-get install gbsplay)", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"{args.file}: no such file", file=sys.stderr)
        return 2
    data = args.file.read_bytes()
    time_gbsynth(data, 1.0, args.rate)  # load the compiled code once

    ours = {"long": [], "short": []}
    render_only = {"long": [], "short": []}
    theirs = {"long": [], "short": []}
    for _ in range(args.repeats):
        for name, seconds in (("long", args.long), ("short", args.short)):
            total, rendering = time_gbsynth(data, seconds, args.rate)
            ours[name].append(total)
            render_only[name].append(rendering)
            theirs[name].append(time_gbsplay(args.file, seconds, args.rate))

    span = args.long - args.short
    ours_x = span / max(min(ours["long"]) - min(ours["short"]), 1e-9)
    theirs_x = span / max(min(theirs["long"]) - min(theirs["short"]), 1e-9)
    render_x = span / max(min(render_only["long"]) - min(render_only["short"]), 1e-9)
    emulate_long = min(o - r for o, r in zip(ours["long"], render_only["long"], strict=True))
    emulate_short = min(o - r for o, r in zip(ours["short"], render_only["short"], strict=True))
    emulate_x = span / max(emulate_long - emulate_short, 1e-9)
    print(
        f"{args.file.name}: {args.long:g} s vs {args.short:g} s of audio, {args.rate} Hz "
        f"stereo int16, best of {args.repeats}"
    )
    print(f"  gbsplay  emulate+render: {theirs_x:8.0f} x real time")
    print(f"  gbsynth  emulate+render: {ours_x:8.0f} x real time")
    print(f"  ratio gbsynth / gbsplay: {ours_x / theirs_x:8.1f}")
    print(f"  gbsynth  render only:    {render_x:8.0f} s of audio per wall second")
    print(f"  gbsynth  emulate only:   {emulate_x:8.0f} x real time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
