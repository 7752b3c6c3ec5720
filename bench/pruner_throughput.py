"""Pruner throughput: sound-register writes per second per core, against the emulator's output.

    .venv/bin/python bench/pruner_throughput.py               # 300 s of each piece of music
    .venv/bin/python bench/pruner_throughput.py --seconds 120 --repeats 5

For each piece of music (the GBS rips in ../shared/corpus, a music ROM explored with
button presses as the emulator service does, and two songs of the embedded demo
music) the emulator records ``--seconds`` of it; that is the peer: the writes per
CPU second one emulator core produces. The recording is then cut into the
``apu.recordings`` chunk messages the service consumes, and a separate process (so
its memory is the pruner's alone) runs the whole service path on one core: decode
each chunk, reassemble, prune, encode each segment. Its writes per CPU second, over
the emulator's, is how many emulator cores one pruner core keeps up with (> 1: the
pruner is not the bottleneck). The goal is >= 1,000,000 writes/s per core.

CPU time (``time.process_time``) is what is compared, so other work on the machine
moves the figures less; wall figures are printed too. Each side is timed
``--repeats`` times after a warm-up and the best kept. Memory: peak and steady
(after pruning, everything released) resident set of the pruning process.
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def rss_mb() -> float:
    with open("/proc/self/statm") as fo:
        pages = int(fo.read().split()[1])
    return pages * resource.getpagesize() / 1e6


def emulate(path: Path, seconds: float, subsong: int | None, explore: bool):
    from gbsynth.emulator.explore import ExploreSettings
    from gbsynth.emulator.sources import open_session

    settings = ExploreSettings() if explore else None
    session = open_session(path, subsong=subsong, seed=1, explore=settings)
    cpu, wall = time.process_time(), time.perf_counter()
    recording = session.record(seconds)
    return recording, time.process_time() - cpu, time.perf_counter() - wall


def pieces(seconds: float, workdir: Path) -> list[tuple[str, Path, int | None, bool]]:
    from gbsynth.music.composer import compose
    from gbsynth.music.rom import song_files

    found = [(f"{p.name} #1", p, 1, False) for p in sorted((SHARED / "corpus").glob("*.gbs"))]
    devsound = SHARED / "corpus/DevSound_demo.gbs"
    if devsound.is_file():
        found.append(("DevSound_demo.gbs #4", devsound, 4, False))
    rom = SHARED / "roms/music/devsoundx/DevSoundX.gb"
    if rom.is_file():
        found.append(("DevSoundX.gb explored", rom, None, True))
    for index in (0, 1):
        gbs, _rom = song_files(compose(seed=0, index=index))
        demo = workdir / f"demo{index}.gbs"
        demo.write_bytes(gbs)
        found.append((f"demo song {index}", demo, 1, False))
    return found


def prune_only(messages_path: Path, repeats: int) -> dict:
    """The service path over pickled chunk messages; runs in its own process."""
    from gbsynth.common.avro import RecordingAssembler, decode_chunk, encode_segment
    from gbsynth.pruner.prune import PruneConfig, prune_recording

    messages: list[bytes] = pickle.loads(messages_path.read_bytes())
    config = PruneConfig()

    def once() -> tuple[float, float, int, int]:
        assembler = RecordingAssembler()
        cpu, wall = time.process_time(), time.perf_counter()
        writes = segments = 0
        for value in messages:
            recording = assembler.add(decode_chunk(value))
            if recording is None:
                continue
            writes += len(recording.writes)
            for segment in prune_recording(recording, config).segments:
                encode_segment(segment)
                segments += 1
        return time.process_time() - cpu, time.perf_counter() - wall, writes, segments

    once()  # load the compiled kernels
    runs = [once() for _ in range(repeats)]
    cpu, wall, writes, segments = min(runs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    return {
        "cpu": cpu,
        "wall": wall,
        "writes": writes,
        "segments": segments,
        "peak_rss_mb": peak,
        "steady_rss_mb": rss_mb(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="emulated seconds per piece")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prune-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prune_only:
        print(json.dumps(prune_only(args.prune_only, args.repeats)))
        return 0

    from gbsynth.common.avro import encode_recording

    print(
        f"{'music':24} {'writes':>9} {'emulator w/s':>13} {'pruner w/s':>12} {'ratio':>6} "
        f"{'pruner wall w/s':>15} {'segments':>8}"
    )
    total_writes = total_emu_cpu = total_prune_cpu = 0.0
    peaks, steadies = [], []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name, path, subsong, explore in pieces(args.seconds, workdir):
            emulate(path, 1.0, subsong, explore)  # load the compiled emulator
            runs = [emulate(path, args.seconds, subsong, explore) for _ in range(args.repeats)]
            recording, emu_cpu, _ = min(runs, key=lambda r: r[1])
            messages = encode_recording(recording)
            dump = workdir / "messages.pickle"
            dump.write_bytes(pickle.dumps(messages))
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--prune-only",
                    str(dump),
                    "--repeats",
                    str(args.repeats),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            pruned = json.loads(out.stdout)
            writes = len(recording.writes)
            emu_rate = writes / emu_cpu
            prune_rate = writes / pruned["cpu"]
            print(
                f"{name[:24]:24} {writes:9d} {emu_rate:13,.0f} {prune_rate:12,.0f} "
                f"{prune_rate / emu_rate:6.2f} {writes / pruned['wall']:15,.0f} "
                f"{pruned['segments']:8d}"
            )
            total_writes += writes
            total_emu_cpu += emu_cpu
            total_prune_cpu += pruned["cpu"]
            peaks.append(pruned["peak_rss_mb"])
            steadies.append(pruned["steady_rss_mb"])
    emu_rate = total_writes / total_emu_cpu
    prune_rate = total_writes / total_prune_cpu
    print(
        f"{'all':24} {int(total_writes):9d} {emu_rate:13,.0f} {prune_rate:12,.0f} "
        f"{prune_rate / emu_rate:6.2f}"
    )
    print(
        f"pruner: {prune_rate:,.0f} writes per CPU second (goal 1,000,000): one pruner core "
        f"keeps up with {prune_rate / emu_rate:.1f} emulator cores; pruning process peak RSS "
        f"{max(peaks):.0f} MB, steady {max(steadies):.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
