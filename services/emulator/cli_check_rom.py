"""``gbsynth check-rom ROM...``: run test ROMs and print one ``PASS|FAIL|TIMEOUT <file>
<protocol> <detail>`` line each (``gbsynth.emulator.check_rom``). The exit code is 0 only if
every ROM passed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gbsynth.emulator.check_rom import DEFAULT_TIMEOUT_SECONDS, check_rom


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("roms", nargs="+", metavar="ROM", help="test ROM files (.gb)")
    parser.add_argument(
        "--timeout-seconds",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="emulated seconds before a ROM counts as TIMEOUT (default %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    if args.timeout_seconds <= 0:
        print("gbsynth check-rom: --timeout-seconds must be positive", file=sys.stderr)
        return 2
    all_passed = True
    for rom in args.roms:
        result = check_rom(Path(rom), args.timeout_seconds)
        print(result.line(), flush=True)
        all_passed &= result.verdict == "PASS"
    return 0 if all_passed else 1
