"""The ``make run`` stack as a user meets it: time to the first song, and its memory.

    .venv/bin/python bench/local_stack.py                  # default settings, 300 s
    .venv/bin/python bench/local_stack.py --seconds 600 --song-seconds 30

Starts ``gbsynth run-local`` with its default settings (demo songs, the ``cpu``
model preset) in a fresh state folder on free ports, and measures:

- wall time from the start to the first chart with data on the dashboard
  (``/v1/dashboard`` answers a line with a value), to the first checkpoint file, to the
  first model the generator serves, and to the first WAV of ``POST /v1/songs``;
- the latency of a ``--song-seconds`` song from that model, as seconds of music
  per wall second: the peer is real-time playback (1x), which a streaming player
  must stay ahead of;
- the resident memory of every process of the stack (the four services, the broker
  and Prometheus when its binary is installed): peak (``VmHWM``) and steady (the median
  of the samples taken over the last half of the run, every 5 s), and their sum.

Everything is stopped with SIGINT (what Ctrl-C sends) at the end, and the time the
stack takes to stop is printed too. The stack is started and stopped by
``gbsynth.local.LocalStack``, as the end-to-end tests do.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from gbsynth.local import LocalStack

SERVICES = {
    "emulator-worker": "emulator",
    " pruner": "pruner",
    " trainer": "trainer",
    " generator": "generator",
    "tansu": "broker",
    "prometheus --config.file": "prometheus",
}


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fo:
                ppid = int(fo.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found.append(int(entry))
    return found


def service_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fo:
            cmdline = " " + fo.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    for needle, name in SERVICES.items():
        if needle in cmdline:
            return name
    return None


def memory_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set in MB."""
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as fo:
        for line in fo:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None


def post_song(url: str, seconds: float, seed: int) -> tuple[int, int, float]:
    body = json.dumps({"seconds": seconds, "seed": seed}).encode()
    request = urllib.request.Request(
        url, data=body, headers={"content-type": "application/json"}, method="POST"
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            data = response.read()
            return response.status, len(data), time.perf_counter() - started
    except urllib.error.HTTPError as exc:
        return exc.code, 0, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="how long the stack runs")
    parser.add_argument("--song-seconds", type=float, default=30.0, help="length of the song")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="gbsynth-stack-"))
    stack = LocalStack(state, state / "run-local.log").start()
    generator, started, proc = stack.generator_url, stack.started, stack.proc
    marks: dict[str, float] = {}
    song: tuple[int, int, float] | None = None
    samples: dict[str, list[tuple[float, float]]] = {}
    peaks: dict[str, float] = {}
    try:
        while (elapsed := time.monotonic() - started) < args.seconds:
            if proc.poll() is not None:
                print(
                    f"run-local exited with {proc.returncode}; log: {stack.log_path}",
                    file=sys.stderr,
                )
                return 1
            for pid in children(proc.pid):
                name = service_of(pid)
                if name is None:
                    continue
                try:
                    rss, hwm = memory_mb(pid)
                except OSError:
                    continue
                samples.setdefault(name, []).append((elapsed, rss))
                peaks[name] = max(peaks.get(name, 0.0), hwm)
            if "chart" not in marks:
                board = get_json(f"{generator}/v1/dashboard?minutes=5")
                if board and any(
                    v is not None for p in board["panels"] for s in p["series"] for v in s["values"]
                ):
                    marks["chart"] = time.monotonic() - started
                    marks["chart source"] = board["source"]
            if "checkpoint" not in marks and list((state / "checkpoints").glob("step-*.pt")):
                marks["checkpoint"] = elapsed
            if "model" not in marks:
                health = get_json(f"{generator}/healthz")
                if health and health.get("model_loaded"):
                    marks["model"] = time.monotonic() - started
                    song = post_song(f"{generator}/v1/songs", args.song_seconds, seed=1)
                    marks["song"] = time.monotonic() - started
            time.sleep(5 if "chart" in marks else 1)
    finally:
        stop_started = time.monotonic()
        code = stack.stop(timeout=90)
        stop_seconds = time.monotonic() - stop_started

    print(f"make run stack, default settings, {args.seconds:.0f} s (state: {state})")
    for mark in ("chart", "checkpoint", "model", "song"):
        value = marks.get(mark)
        print(f"  first {mark:<10} {'-' if value is None else f'{value:6.0f} s after start'}")
    if "chart source" in marks:
        print(f"  (the first chart read from {marks['chart source']})")
    if song is not None:
        status, size, wall = song
        print(
            f"  {args.song_seconds:g} s song: HTTP {status}, {size / 1e6:.1f} MB WAV in "
            f"{wall:.2f} s = {args.song_seconds / wall:.1f}x real time "
            "(peer: real-time playback, 1x)"
        )
    print(f"  {'process':<10} {'steady RSS':>11} {'peak RSS':>9}")
    total_steady = total_peak = 0.0
    for name in ("emulator", "pruner", "trainer", "generator", "broker", "prometheus"):
        points = samples.get(name, [])
        late = [rss for t, rss in points if t >= args.seconds / 2] or [rss for _, rss in points]
        steady = statistics.median(late) if late else 0.0
        total_steady += steady
        total_peak += peaks.get(name, 0.0)
        print(f"  {name:<10} {steady:8.0f} MB {peaks.get(name, 0.0):6.0f} MB")
    print(f"  {'total':<10} {total_steady:8.0f} MB {total_peak:6.0f} MB (sum of peaks)")
    stopped = "killed: not stopped within 90 s" if code is None else f"exit code {code}"
    print(f"  stopped by SIGINT in {stop_seconds:.1f} s, {stopped}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
