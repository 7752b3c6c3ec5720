"""Emulation speed: gbsynth's emulator against PyBoy on the same ROMs and spans, one core.

    .venv/bin/python bench/emulator_speed.py                # music ROMs + cpu_instrs
    .venv/bin/python bench/emulator_speed.py --startup      # also cold/warm start times

For each ROM both emulators first run a warm-up span (so numba's compile time
and PyBoy's start-up are excluded), then the same emulated span is timed; the
two alternate for ``--repeat`` runs and the best run of each counts.
Figures are emulated seconds per wall second (x real time); gbsynth captures
every APU write while it runs, PyBoy runs with sound emulation and rendering
off (``PyBoy(rom, window="null", sound_emulated=False)``,
``set_emulation_speed(0)``, ``tick(n, False)``). Ratio > 1: gbsynth is faster.
Besides the music ROMs and cpu_instrs, a generated ROM waits for VBlank by
polling LY, the busy-wait many games use.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CPU_HZ = 4_194_304
FRAME_CYCLES = 70_224
FRAMES_PER_SECOND = CPU_HZ / FRAME_CYCLES
WARMUP_SECONDS = 2.0


def ly_polling_rom(folder: Path) -> Path:
    """A ROM that waits for VBlank by polling LY, as many games do, and writes NR50 each frame."""
    from gbsynth.emulator.core.cartridge.header import build_rom

    code = bytes(
        [0xF0, 0x44, 0xFE, 0x90, 0x20, 0xFA]  # ldh a,(LY); cp 144; jr nz,-6
        + [0xF0, 0x44, 0xFE, 0x90, 0x28, 0xFA]  # ldh a,(LY); cp 144; jr z,-6
        + [0x3E, 0x77, 0xE0, 0x24, 0xC3, 0x50, 0x01]  # ld a,$77; ldh (NR50),a; jp $150
    )
    path = folder / "ly_polling.gb"
    path.write_bytes(build_rom({0x100: bytes([0x00, 0xC3, 0x50, 0x01]), 0x150: code}))
    return path


def default_roms(folder: Path) -> list[tuple[Path, float]]:
    music = sorted((SHARED / "roms" / "music").rglob("*.gb"))
    roms = [(p, 120.0) for p in music]
    roms.append((SHARED / "roms" / "blargg" / "cpu_instrs" / "cpu_instrs.gb", 30.0))
    roms.append((ly_polling_rom(folder), 30.0))
    return roms


def time_gbsynth(rom: bytes, seconds: float) -> tuple[float, int]:
    from gbsynth.emulator.core.machine import GameBoy

    gb = GameBoy(rom, watchdog_seconds=None)
    gb.run_seconds(WARMUP_SECONDS)
    gb.take_writes()
    cycles = int(seconds * FRAMES_PER_SECOND) * FRAME_CYCLES
    start = time.perf_counter()
    gb.run_cycles(cycles)
    elapsed = time.perf_counter() - start
    return cycles / CPU_HZ / elapsed, len(gb.take_writes())


def time_pyboy(path: Path, seconds: float) -> float:
    warnings.filterwarnings("ignore")  # PyBoy's note about its bundled SDL2
    from pyboy import PyBoy

    pyboy = PyBoy(str(path), window="null", sound_emulated=False, log_level="ERROR")
    pyboy.set_emulation_speed(0)
    pyboy.tick(int(WARMUP_SECONDS * FRAMES_PER_SECOND), False)
    frames = int(seconds * FRAMES_PER_SECOND)
    start = time.perf_counter()
    pyboy.tick(frames, False)
    elapsed = time.perf_counter() - start
    pyboy.stop(save=False)
    return frames * FRAME_CYCLES / CPU_HZ / elapsed


def startup_times() -> tuple[float, float]:
    """Wall seconds for a fresh process to run one frame: cold (empty JIT cache) and warm."""
    code = (
        "from gbsynth.emulator.core.machine import GameBoy\n"
        "from gbsynth.emulator.core.cartridge.header import build_rom\n"
        "GameBoy(build_rom({0x100: bytes([0x18, 0xFE])})).run_frames(1)\n"
    )
    times = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for _ in range(2):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            times.append(time.perf_counter() - start)
    return times[0], times[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roms", nargs="*", type=Path, help="ROMs (default: music ROMs, cpu_instrs)")
    parser.add_argument("--seconds", type=float, help="emulated seconds per ROM (default per ROM)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per emulator (best counts)")
    parser.add_argument("--startup", action="store_true", help="also time cold and warm starts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        roms = [(p, args.seconds or 60.0) for p in args.roms] or [
            (p, args.seconds or s) for p, s in default_roms(Path(folder))
        ]
        return measure(args, roms)


def measure(args: argparse.Namespace, roms: list[tuple[Path, float]]) -> int:
    missing = [str(p) for p, _ in roms if not p.is_file()]
    if missing:
        print(f"missing ROM(s): {', '.join(missing)}", file=sys.stderr)
        return 2

    print(f"{'ROM':<24} {'span s':>7} {'gbsynth x':>10} {'PyBoy x':>9} {'ratio':>6} {'writes':>8}")
    ratios = []
    for path, seconds in roms:
        # Interleaved repetitions, best of each: robust against other load on the machine.
        ours = peer = 0.0
        for _ in range(args.repeat):
            speed, writes = time_gbsynth(path.read_bytes(), seconds)
            ours = max(ours, speed)
            peer = max(peer, time_pyboy(path, seconds))
        ratios.append(ours / peer)
        print(
            f"{path.name:<24} {seconds:>7.0f} {ours:>10.0f} {peer:>9.0f} "
            f"{ours / peer:>6.2f} {writes:>8}",
            flush=True,
        )
    print(f"lowest ratio {min(ratios):.2f}")
    if args.startup:
        cold, warm = startup_times()
        print(f"start-up to first frame: cold (empty JIT cache) {cold:.1f} s, warm {warm:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
