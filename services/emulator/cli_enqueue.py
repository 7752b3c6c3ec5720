"""``gbsynth enqueue DIR``: publish an emulation job for every file of a folder
(``gbsynth.emulator.enqueue.enqueue_folder``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gbsynth.common import config as cfg
from gbsynth.common.kafka import KafkaSetupError
from gbsynth.emulator.enqueue import enqueue_folder


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rom_dir", type=Path, help="the workers' ROM folder (GBSYNTH_ROM_DIR)")
    parser.add_argument("--seconds", type=float, default=None, help="emulated seconds per job")
    parser.add_argument("--seed", type=int, default=0, help="exploration seed of every job")
    parser.add_argument(
        "--no-explore", action="store_true", help="record ROMs without pressing buttons"
    )


def run(args: argparse.Namespace) -> int:
    from gbsynth.emulator.main import RECORD_SECONDS, explore_settings_from_env

    if not args.rom_dir.is_dir():
        print(f"gbsynth enqueue: {args.rom_dir} is not a folder", file=sys.stderr)
        return 2
    try:
        seconds = args.seconds if args.seconds is not None else RECORD_SECONDS.get()
        explore = None if args.no_explore else explore_settings_from_env()
        summary = enqueue_folder(args.rom_dir, seconds=seconds, seed=args.seed, explore=explore)
    except (cfg.SettingError, KafkaSetupError, ValueError) as exc:
        print(f"gbsynth enqueue: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0
