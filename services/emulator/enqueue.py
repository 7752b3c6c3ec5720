"""``gbsynth enqueue DIR``: publish an emulation job for every ROM, GBS subsong, VGM and
part of a score (each score is read and arranged here to know its parts and their length).

Job ids are deterministic (file, subsong, seed, length), so enqueueing a folder
twice publishes the same keys again rather than new work.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gbsynth.common import config as cfg
from gbsynth.common.avro import codec
from gbsynth.common.kafka import (
    TOPIC_JOBS,
    KafkaConfig,
    KafkaSetupError,
    Output,
    deliver,
    ensure_topics,
    make_producer,
)
from gbsynth.emulator.explore import ExploreSettings
from gbsynth.emulator.jobs import discover_jobs


def enqueue_folder(
    rom_dir: Path,
    *,
    seconds: float,
    seed: int = 0,
    explore: ExploreSettings | None = None,
    config: KafkaConfig | None = None,
) -> dict:
    """Publish the folder's jobs and wait for the broker to acknowledge them; a summary."""
    jobs, skipped = discover_jobs(rom_dir, seconds=seconds, seed=seed, explore=explore)
    config = config or KafkaConfig.from_env()
    ensure_topics(config, [TOPIC_JOBS], service="enqueue")
    producer = make_producer(config, "enqueue")
    job_codec = codec("Job")
    try:
        deliver(
            producer,
            (Output(TOPIC_JOBS, job_codec.encode(job.to_record()), job.job_id) for job in jobs),
            "enqueue",
        )
    finally:
        producer.close(timeout=10)
    by_kind: dict[str, int] = {}
    for job in jobs:
        by_kind[job.kind.value] = by_kind.get(job.kind.value, 0) + 1
    return {"enqueued": len(jobs), "by_kind": by_kind, "skipped": skipped}


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
