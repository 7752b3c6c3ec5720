"""``gbsynth export-gb``: a Game Boy ROM that replays a recording on real hardware.

    gbsynth export-gb song.avro --out song.gb               # the first recording in the file
    gbsynth export-gb dump.txt --out song.gb --loop         # gbsplay iodumper text, looping
    gbsynth export-gb song.avro --index 2 --start 30 --seconds 60 --out part.gb
    gbsynth export-gb song.avro --out fine.gb --tick-hz 240 # timer ticks, ~4 a frame

The ROM and its byte stream are described in ``gbsynth.music.replay_rom``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gbsynth.common.events import CPU_HZ
from gbsynth.music.replay_rom import (
    VBLANK_TICK,
    WRITE_CYCLES,
    ExportError,
    export_writes,
    read_input,
    timer_tick,
    window,
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "recording",
        metavar="RECORDING",
        help="Avro recordings or segments file, or gbsplay iodumper text",
    )
    parser.add_argument("--out", required=True, metavar="SONG.gb", help="ROM file to write")
    parser.add_argument(
        "--index",
        type=int,
        default=0,
        help="which recording/segment of the file (iodump: which subsong), from 0 (default 0)",
    )
    parser.add_argument("--start", type=float, default=0.0, help="start at this second")
    parser.add_argument("--seconds", type=float, default=None, help="export this many seconds")
    parser.add_argument("--loop", action="store_true", help="start again at the end")
    parser.add_argument(
        "--tick-hz",
        type=float,
        default=None,
        help="replay from the timer at about this rate (default: VBlank, 59.73 Hz)",
    )
    parser.add_argument("--title", default=None, help="cartridge title (default: the song's)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.start < 0 or (args.seconds is not None and args.seconds <= 0):
            raise ExportError("--start must be >= 0 and --seconds > 0")
        writes, duration, title = read_input(Path(args.recording), args.index)
        writes, duration = window(
            writes,
            duration,
            int(round(args.start * CPU_HZ)),
            None if args.seconds is None else int(round(args.seconds * CPU_HZ)),
        )
        if len(writes) == 0:
            raise ExportError(f"{args.recording}: no sound-register writes to export")
        tick = VBLANK_TICK if args.tick_hz is None else timer_tick(args.tick_hz)
        rom, stream = export_writes(
            writes, duration, title=args.title or title, tick=tick, loop=args.loop
        )
        Path(args.out).write_bytes(rom)
    except (ExportError, OSError) as exc:
        print(f"gbsynth export-gb: {exc}", file=sys.stderr)
        return 1
    budget = tick.cycles // WRITE_CYCLES
    print(
        f"{args.out}: {len(writes)} writes over {duration / CPU_HZ:.1f} s, "
        f"{tick.hz:.2f} ticks a second, {len(stream.banks)} data bank(s), {len(rom) // 1024} KiB",
        file=sys.stderr,
    )
    if stream.busiest_tick > budget:
        print(
            f"gbsynth export-gb: warning: one tick has {stream.busiest_tick} writes, more than "
            f"the ~{budget} a tick has time for; later writes of it arrive late",
            file=sys.stderr,
        )
    return 0
