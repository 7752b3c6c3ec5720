"""Publish an emulation job (``gbsynth enqueue DIR``) for every ROM, GBS subsong, VGM and
part of a score (each score is read and arranged here to know its parts and their length).

Job ids are deterministic (file, subsong, seed, length), so enqueueing a folder
twice publishes the same keys again rather than new work.
"""

from __future__ import annotations

from pathlib import Path

from gbsynth.common.avro import codec
from gbsynth.common.kafka import (
    TOPIC_JOBS,
    KafkaConfig,
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
