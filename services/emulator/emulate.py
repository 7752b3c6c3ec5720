"""``gbsynth emulate``: run a ROM and record every sound-register write.

    gbsynth emulate game.gb --seconds 60                  # gbsplay-style I/O dump on stdout
    gbsynth emulate game.gb --seconds 60 --out rec.avro   # Avro recordings file

The ROM runs from the post-boot state with no button pressed. The I/O dump
uses the layout of ``gbsplay -o iodumper`` (``%08x ffXX=YY``, cycles since the
previous write), so it can be compared with gbsplay's output line by line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gbsynth.common.events import (
    CPU_HZ,
    Recording,
    Source,
    SourceKind,
    make_recording_id,
    sha256_hex,
)

FORMATS = ("iodump", "avro")


class EmulateError(Exception):
    """A problem with the user's input, reported as one line on stderr."""


def record_rom(
    rom: bytes,
    seconds: float,
    *,
    file_name: str = "",
    seed: int | None = None,
) -> tuple[Recording, str | None]:
    """Run `rom` for `seconds` emulated seconds; returns the recording and a hang message.

    If the program hangs (see ``machine.EmulatorHang``), the recording covers the
    time up to the hang and the message says why.
    """
    from gbsynth.emulator.machine import EmulatorHang, GameBoy

    gb = GameBoy(rom)
    gb.start_recording()
    total = int(round(seconds * CPU_HZ))
    hang = None
    try:
        gb.run_cycles(total)
    except EmulatorHang as exc:
        hang = str(exc)
    writes = gb.take_writes()
    duration = gb.cycle - gb.recording_origin
    if len(writes):
        duration = max(duration, int(writes.cycles[-1]) + 1)
    source = Source(
        sha256=sha256_hex(rom), file_name=file_name, kind=SourceKind.ROM, title=gb.header.title
    )
    recording = Recording(
        recording_id=make_recording_id(source, seed),
        source=source,
        writes=writes,
        duration_cycles=duration,
        seed=seed,
    )
    return recording, hang


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="Game Boy ROM (.gb)")
    parser.add_argument(
        "--seconds", type=float, required=True, help="emulated seconds (4,194,304 cycles each)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed stored with the run (no random input yet)"
    )
    parser.add_argument("--out", metavar="PATH", help="output file (default: stdout, iodump only)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="iodump (gbsplay's I/O dump text) or avro (recordings file); "
        "default: avro if PATH ends in .avro, else iodump",
    )


def _output_format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    if args.out and Path(args.out).suffix.lower() == ".avro":
        return "avro"
    return "iodump"


def _run(args: argparse.Namespace) -> int:
    from gbsynth.common.formats import write_iodump, write_recordings
    from gbsynth.emulator.machine import RomError

    if not args.seconds > 0:
        raise EmulateError("--seconds must be positive")
    fmt = _output_format(args)
    if fmt == "avro" and not args.out:
        raise EmulateError("--format avro needs --out PATH (Avro is binary)")
    path = Path(args.file)
    try:
        rom = path.read_bytes()
    except OSError as exc:
        raise EmulateError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        recording, hang = record_rom(rom, args.seconds, file_name=path.name, seed=args.seed)
    except RomError as exc:
        raise EmulateError(f"{path}: {exc}") from exc

    if fmt == "avro":
        from gbsynth import __version__

        write_recordings(args.out, [recording], emulator_version=__version__)
    elif args.out:
        write_iodump(recording, args.out)
    else:
        write_iodump(recording, sys.stdout)
        sys.stdout.flush()
    if hang:
        print(f"gbsynth emulate: {path.name}: stopped early: {hang}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except EmulateError as exc:
        print(f"gbsynth emulate: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error worth a message.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        print(f"gbsynth emulate: cannot write output: {exc.strerror or exc}", file=sys.stderr)
        return 2
