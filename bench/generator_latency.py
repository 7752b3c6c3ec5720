"""Generator latency: songs over HTTP from the real service, against real time and gbsplay.

    .venv/bin/python bench/generator_latency.py                     # fresh default-size model
    .venv/bin/python bench/generator_latency.py --checkpoint var/checkpoints

Starts ``gbsynth generator`` as its own process (default settings: 2 sampling
threads, one torch thread each) on a checkpoint: the newest in ``--checkpoint`` (a
folder or a file), else a freshly initialised model of the trainer's default size
(``cpu`` preset; the cost of an event does not depend on the weights, but an untrained
model writes fewer events per second of music than a trained one, so the events per
second of music are printed too). Then, over HTTP:

1. **one client**: ``--requests`` songs of ``--seconds`` one after the other (distinct
   seeds), each streamed (``GET /v1/songs/{seed}.wav``): seconds of music per wall
   second, and time to first audio (the first PCM bytes after the WAV header); medians;
2. **``--clients`` concurrent clients**, ``--rounds`` songs each (``POST /v1/songs``):
   p50/p95 latency and errors (any answer but a complete 200 WAV);
3. the generator's memory: peak (``VmHWM``) and steady (``VmRSS`` after the run).

Peers in the same run: real time (a song must come at least as fast as it plays for
streaming never to stall), and ``gbsplay`` rendering the same seconds of
``nightmode.gbs`` to 16-bit PCM (a player of existing music: no model to run), best of 3.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from gbsynth.common.broker import free_port

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
HEADER = 44


def prepare_checkpoints(given: Path | None, folder: Path) -> str:
    """A folder whose newest checkpoint the service loads; returns a description."""
    if given is not None:
        if given.is_dir():
            return str(given)
        target = folder / given.name
        target.symlink_to(given.resolve())
        return str(folder)
    import torch

    from gbsynth.trainer.checkpoint import save_checkpoint
    from gbsynth.trainer.model import GPT, PRESETS

    torch.manual_seed(0)
    model = GPT(PRESETS["cpu"])
    save_checkpoint(folder, model, step=0)
    return str(folder)


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def streamed_song(client: httpx.Client, seed: int, seconds: float) -> tuple[float, float, int]:
    """(time to first audio, total time, bytes) of one streamed WAV song."""
    started = time.perf_counter()
    first = None
    size = 0
    with client.stream("GET", f"/v1/songs/{seed}.wav", params={"seconds": seconds}) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            size += len(chunk)
            if first is None and size > HEADER:
                first = time.perf_counter() - started
    total = time.perf_counter() - started
    return first or total, total, size


def gbsplay_speed(seconds: float, rate: int = 44_100) -> float | None:
    """gbsplay's rendering speed (x real time) on nightmode.gbs, best of 3."""
    path = SHARED / "corpus" / "nightmode.gbs"
    if shutil.which("gbsplay") is None or not path.is_file():
        return None
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(
            ["gbsplay", "-o", "stdout", "-t", str(int(seconds)), "-f", "0", "-T", "0",
             "-r", str(rate), "-H", "dmg", str(path), "1", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
        )  # fmt: skip
        best = min(best, time.perf_counter() - started)
    return seconds / best


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="folder or file")
    parser.add_argument("--seconds", type=float, default=30.0, help="song length (30)")
    parser.add_argument("--requests", type=int, default=10, help="one-client songs (10)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--rounds", type=int, default=2, help="songs per concurrent client (2)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gbsynth-bench-"))
    checkpoints = prepare_checkpoints(args.checkpoint, work)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GBSYNTH_")}
    env.update(
        GBSYNTH_CHECKPOINT_DIR=checkpoints,
        GBSYNTH_GENERATOR_WATCH_ANNOUNCEMENTS="false",
        GBSYNTH_LOG_LEVEL="WARNING",
    )
    log = open(work / "generator.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "gbsynth", "generator", "--port", str(port), "--host", "127.0.0.1"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                print((work / "generator.log").read_text(), file=sys.stderr)
                return 1
            try:
                health = httpx.get(f"{base}/healthz", timeout=2).json()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("the generator did not start") from None
                time.sleep(0.2)
        if not health["model_loaded"]:
            raise SystemExit(f"no checkpoint in {checkpoints}")
        print(f"generator pid {server.pid}: {health['checkpoint']} (step {health['step']}), "
              f"{os.cpu_count()} CPUs")  # fmt: skip

        timeout = httpx.Timeout(600.0)
        with httpx.Client(base_url=base, timeout=timeout) as client:
            streamed_song(client, 999_999, 5.0)  # warm-up, not timed
            firsts, totals = [], []
            for seed in range(args.requests):
                first, total, size = streamed_song(client, seed, args.seconds)
                firsts.append(first)
                totals.append(total)
            song = client.get("/v1/songs/0.json", params={"seconds": args.seconds}).json()
        events_per_music_second = song["song"]["events"] / args.seconds
        speed = args.seconds / statistics.median(totals)

        latencies: list[float] = []
        errors: list[str] = []
        peak_rss = [0.0]
        done = threading.Event()

        def watch_memory() -> None:
            while not done.is_set():
                peak_rss[0] = max(peak_rss[0], memory_mb(server.pid)[0])
                done.wait(0.2)

        def client_loop(index: int) -> None:
            with httpx.Client(base_url=base, timeout=timeout) as client:
                for round_ in range(args.rounds):
                    seed = 10_000 + index * 100 + round_
                    started = time.perf_counter()
                    try:
                        response = client.post(
                            "/v1/songs", json={"seconds": args.seconds, "seed": seed}
                        )
                        elapsed = time.perf_counter() - started
                        if response.status_code != 200:
                            errors.append(str(response.status_code))
                        elif len(response.content) != int(response.headers["content-length"]):
                            errors.append("short body")
                        else:
                            latencies.append(elapsed)
                    except httpx.RemoteProtocolError:
                        errors.append("stream cut short")  # the time limit passed mid-stream
                    except httpx.HTTPError as exc:
                        errors.append(type(exc).__name__)

        watcher = threading.Thread(target=watch_memory, daemon=True)
        watcher.start()
        started = time.perf_counter()
        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        done.set()
        watcher.join()
        steady, hwm = memory_mb(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    peer = gbsplay_speed(args.seconds)
    songs = args.clients * args.rounds
    print()
    print(f"one client, {args.requests} songs of {args.seconds:g} s (medians):")
    print(f"  music per wall second   {speed:8.2f} s/s   (real time 1.00: {speed:.1f}x; "
          f"{args.seconds:g} s of music in {statistics.median(totals):.2f} s)")  # fmt: skip
    if peer is not None:
        print(f"  gbsplay, nightmode.gbs  {peer:8.2f} s/s   (ours / gbsplay: {speed / peer:.3f})")
    print(f"  time to first audio     {statistics.median(firsts):8.3f} s    "
          f"(min {min(firsts):.3f}, max {max(firsts):.3f})")  # fmt: skip
    print(f"  register writes per second of music (seed 0): {events_per_music_second:.0f}")
    print(f"{args.clients} concurrent clients, {songs} songs of {args.seconds:g} s:")
    if latencies:
        print(f"  latency p50 {percentile(latencies, 0.5):.2f} s, p95 "
              f"{percentile(latencies, 0.95):.2f} s, max {max(latencies):.2f} s")  # fmt: skip
    print(f"  throughput {len(latencies) * args.seconds / wall:.2f} s of music per wall second")
    kinds = ", ".join(f"{kind}: {errors.count(kind)}" for kind in sorted(set(errors)))
    print(f"  errors {len(errors)}" + (f" ({kinds})" if errors else ""))
    print(f"generator memory: peak {max(hwm, peak_rss[0]):.0f} MB (VmHWM), "
          f"steady {steady:.0f} MB (budget 1,536 MB)")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
