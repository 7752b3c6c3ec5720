"""Exploration: songs found, segments kept, speed and memory, music-seeking search against the
random-button explorer it replaced, on the same ROMs, seed and emulated time.

    .venv/bin/python bench/exploration.py                 # 600 emulated s, seed 3
    .venv/bin/python bench/exploration.py --seconds 300 --seed 5 --baseline-ref ae3abfa

ROMs: the music ROMs in ../shared/roms/music and the test ROMs of
``gbsynth.music.test_roms`` (their songs are known, so songs *found* are checked
against them). The peer is the explorer at ``--baseline-ref`` (the last commit with
random buttons), extracted with ``git archive`` into a temporary folder and run from
there, so both sides go through the same command lines:

1. ``gbsynth emulate ROM --seconds S --seed N --out x.avro`` (wall time, and the
   emulated-to-wall speed ratio of the search over the peer's);
2. ``gbsynth prune x.avro`` (musical segments kept);
3. songs: for a test ROM, a song of it counts as found when the recording's observing
   spans hold at least ``FOUND_WINDOWS`` of its note windows (the same test for both
   sides); for the others, the songs the search reports (the peer reports none);
4. music heard: of the note windows the ROM plays in ``ALONE_SECONDS`` with no input
   (power-on music and whatever follows it by itself), how many the recording's
   observing spans hold (a ROM that reads no buttons has no other music);
5. worker memory: a separate process runs the emulator service's ``run_job`` (no
   Kafka) on every ROM in turn, as an idle worker does, and reports its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BASELINE_REF = "ae3abfa"
"""The last commit whose ROM explorer re-rolled random buttons every frame."""
FOUND_WINDOWS = 8
ALONE_SECONDS = 300
TEST_ROM_BUILDERS = ("sound_test_rom", "game_rom", "combo_rom")

WORKER_SNIPPET = r"""
import resource, sys
from pathlib import Path
from gbsynth.common.events import SourceKind
from gbsynth.emulator.jobs import EmulationJob
try:  # the baseline tree predates emulator/worker.py's move to emulator/main.py
    from gbsynth.emulator.main import EmulatorWorker
except ModuleNotFoundError:
    from gbsynth.emulator.worker import EmulatorWorker
from gbsynth.emulator.explore import ExploreSettings
folder, seconds, seed = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
worker = EmulatorWorker(folder, record_seconds=seconds)
for rom in sorted(folder.glob("*.gb")):
    job = EmulationJob(rom.name, SourceKind.ROM, seed, seconds, explore=ExploreSettings())
    for _ in worker.run_job(job, origin="idle"):
        pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def gbsynth(pythonpath: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    cmd = [sys.executable, "-m", "gbsynth", *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)


def baseline_tree(ref: str, into: Path) -> str:
    """The explorer at ``ref``: its services/ and schemas/, and the PYTHONPATH to import it."""
    data = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "services", "schemas"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    shim = into / ".pyshim"
    shim.mkdir()
    (shim / "gbsynth").symlink_to(into / "services")
    return str(shim)


def explore(tree: str, rom: Path, seconds: float, seed: int, out: Path) -> dict:
    started = time.perf_counter()
    run = gbsynth(tree, "emulate", rom, "--seconds", seconds, "--seed", seed, "--out", out)
    wall = time.perf_counter() - started
    if run.returncode not in (0, 1):
        raise RuntimeError(f"{rom.name}: emulate failed: {run.stderr.strip()}")
    songs = re.search(r"(\d+) songs found", run.stderr)
    pruned = gbsynth(tree, "prune", out, "--out", out.with_suffix(""))
    summary = json.loads(pruned.stdout.strip().splitlines()[-1])
    return {
        "wall": wall,
        "speed": seconds / wall,
        "kept": summary["kept"],
        "songs": int(songs.group(1)) if songs else None,
    }


def heard_windows(avro: Path) -> set[int]:
    """The note windows the recording's observing spans hold."""
    from gbsynth.common.events import register_snapshot
    from gbsynth.common.formats import read_recordings
    from gbsynth.pruner.analysis import note_starts
    from gbsynth.pruner.songs import NoteStream

    [recording] = read_recordings(avro)
    heard: set[int] = set()
    for start, end in recording.observing_spans():
        before = register_snapshot(recording.writes, start)
        writes = recording.writes.between(start, end)
        notes = note_starts(writes.shifted(-start), before if start else None)
        heard |= {int(h) for h in NoteStream().feed(notes)}
    return heard


def played_windows(rom: bytes, seconds: float) -> set[int]:
    """The note windows a ROM plays from power-on with no input."""
    from gbsynth.common.events import CPU_HZ
    from gbsynth.emulator.core.machine import GameBoy
    from gbsynth.pruner.analysis import note_starts
    from gbsynth.pruner.songs import NoteStream

    gb = GameBoy(rom)
    gb.start_recording()
    gb.run_cycles(int(seconds * CPU_HZ))
    return {int(h) for h in NoteStream().feed(note_starts(gb.take_writes()))}


def song_truths(rom) -> list[set[int]]:
    """Each song's note windows, played alone for two passes."""
    from gbsynth.music.rom import song_rom

    return [
        played_windows(song_rom([song], title="truth"), 2 * song.seconds + 1) for song in rom.songs
    ]


def worker_memory(tree: str, folder: Path, seconds: float, seed: int) -> float:
    env = {**os.environ, "PYTHONPATH": tree}
    run = subprocess.run(
        [sys.executable, "-c", WORKER_SNIPPET, str(folder), str(seconds), str(seed)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(run.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="emulated seconds per ROM")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--baseline-ref", default=BASELINE_REF, help="git ref of the peer")
    args = parser.parse_args(argv)
    from gbsynth.music import test_roms

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        roms = tmp / "roms"
        roms.mkdir()
        truths: dict[str, list[set[int]] | None] = {}
        alone: dict[str, set[int]] = {}
        for path in sorted((SHARED / "roms/music").glob("*/*.gb")):
            (roms / path.name).write_bytes(path.read_bytes())
            truths[path.name] = None
        for builder in TEST_ROM_BUILDERS:
            rom = getattr(test_roms, builder)()
            name = f"test-{builder.removesuffix('_rom').replace('_', '-')}.gb"
            (roms / name).write_bytes(rom.rom)
            truths[name] = song_truths(rom)
        for name in truths:
            alone[name] = played_windows((roms / name).read_bytes(), ALONE_SECONDS)
        sides = {
            "random buttons": baseline_tree(args.baseline_ref, tmp / "baseline"),
            "music search": os.environ.get("PYTHONPATH", ""),  # this checkout, as imported
        }
        rows = []
        for name, truth in truths.items():
            row = {"rom": name, "holds": len(truth) if truth else None}
            for side, tree in sides.items():
                out = tmp / f"{side.split()[0]}-{name}.avro"
                result = explore(tree, roms / name, args.seconds, args.seed, out)
                heard = heard_windows(out)
                if truth:
                    result["songs"] = sum(len(t & heard) >= FOUND_WINDOWS for t in truth)
                result["alone"] = f"{len(alone[name] & heard)}/{len(alone[name])}"
                row[side] = result
            rows.append(row)
        memory = {
            side: worker_memory(tree, roms, args.seconds, args.seed) for side, tree in sides.items()
        }

    print(
        f"{args.seconds:g} emulated s per ROM, seed {args.seed}, peer: explorer at "
        f"{args.baseline_ref}"
    )
    print(
        f"music heard: of the note windows each ROM plays in {ALONE_SECONDS} s with no input, "
        "those the recording's observing spans hold"
    )
    print(f"{'ROM':<24} {'songs':>5} | {'random buttons':^42} | {'music search':^42} | speed")
    head = f"{'songs':>6} {'kept':>6} {'heard':>9} {'wall s':>8} {'x real':>8}"
    print(f"{'':<24} {'held':>5} | {head} | {head} | ratio")
    for row in rows:
        old, new = row["random buttons"], row["music search"]
        cells = []
        for r in (old, new):
            songs = "-" if r["songs"] is None else str(r["songs"])
            cells.append(
                f"{songs:>6} {r['kept']:>6} {r['alone']:>9} {r['wall']:>8.2f} {r['speed']:>8.0f}"
            )
        holds = "?" if row["holds"] is None else str(row["holds"])
        print(
            f"{row['rom']:<24} {holds:>5} | {cells[0]} | {cells[1]} | "
            f"{new['speed'] / old['speed']:.2f}"
        )
    print(
        "worker peak RSS (every ROM in turn, one process): "
        + ", ".join(f"{side} {mb:.0f} MB" for side, mb in memory.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
