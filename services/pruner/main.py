"""The pruner service: recordings in (``apu.recordings``), musical segments out (``apu.segments``).

``gbsynth pruner`` reassembles each recording from its chunks (keyed by recording
id, so a recording's chunks share a partition), prunes it (``prune.prune_recording``)
and publishes each kept segment keyed by its segment id.

Delivery is at least once and never loses a segment: the consume loop commits an
input offset only after the segments it produced are acknowledged, and never past
the first chunk of a recording still being assembled (``safe_offsets``), so after a
crash, restart or rebalance every recording in flight is read again from its first
chunk. Segment ids are the recording id plus the start cycle and pruning is
deterministic, so a recording pruned twice publishes the same segments again,
which consumers recognise by id. (After a restart the tail of a recording already
pruned may be read again without its head; it never completes, publishes nothing
and is dropped after ``GBSYNTH_ASSEMBLY_IDLE_SECONDS``.)

A chunk that cannot be decoded, contradicts the chunks already held, or completes
a recording that cannot be pruned goes to the dead-letter topic with the error,
and the pruner goes on.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator

from kafka import TopicPartition

from gbsynth.common import metrics
from gbsynth.common.avro import CodecError, RecordingAssembler, decode_chunk, encode_segment
from gbsynth.common.config import SettingError
from gbsynth.common.events import (
    CPU_HZ,
    ApuWrites,
    Recording,
    RecordingError,
    Source,
    SourceKind,
)
from gbsynth.common.kafka import (
    TOPIC_RECORDINGS,
    TOPIC_SEGMENTS,
    Message,
    Output,
    Processor,
    run_service,
)
from gbsynth.pruner.prune import PruneConfig, PruneConfigError, PruneResult, prune_recording

log = logging.getLogger(__name__)

SERVICE = "pruner"

RECORDINGS_IN = metrics.counter("pruner_recordings_in", "complete recordings pruned")
WRITES_IN = metrics.counter("pruner_writes_in", "sound-register writes of the recordings pruned")
SEGMENTS_OUT = metrics.counter("pruner_segments_out", "segments kept and published")
REJECTIONS = metrics.counter(
    "pruner_rejections",
    "stretches of recordings dropped, by reason (see gbsynth.pruner.prune; 'incomplete': a "
    "recording whose chunks stopped coming)",
    ["reason"],
)
PRUNE_SECONDS = metrics.histogram("pruner_seconds", "time to prune one recording")


class PrunerProcessor(Processor):
    """Chunks in, segments out, with the reassembly state the consume loop must respect."""

    def __init__(
        self, config: PruneConfig | None = None, assembler: RecordingAssembler | None = None
    ) -> None:
        self.config = config or PruneConfig()
        self.assembler = assembler or RecordingAssembler()

    def process(self, message: Message) -> Iterator[Output]:
        chunk = decode_chunk(message.value or b"")
        rid = chunk["recording_id"]
        if message.key is not None and message.key != rid.encode():
            # Chunks keyed otherwise may sit on another partition than their siblings.
            raise CodecError(f"chunk of {rid} arrived with key {message.key[:80]!r}")
        recording = self.assembler.add(chunk, position=(message.topic_partition, message.offset))
        if recording is None:
            return
        result = self.prune(recording)
        for segment in result.segments:
            yield Output(TOPIC_SEGMENTS, encode_segment(segment), key=segment.segment_id)
        SEGMENTS_OUT.labels(service=SERVICE).inc(len(result.segments))

    def prune(self, recording: Recording) -> PruneResult:
        started = time.perf_counter()
        try:
            result = prune_recording(recording, self.config)
        except (RecordingError, ValueError) as exc:
            # A recording the pruner cannot read is bad input, not a reason to crash-loop.
            raise CodecError(f"recording {recording.recording_id}: cannot prune: {exc}") from exc
        elapsed = time.perf_counter() - started
        PRUNE_SECONDS.labels(service=SERVICE).observe(elapsed)
        RECORDINGS_IN.labels(service=SERVICE).inc()
        WRITES_IN.labels(service=SERVICE).inc(len(recording.writes))
        for reason, count in result.rejected_by_reason().items():
            REJECTIONS.labels(service=SERVICE, reason=reason).inc(count)
        log.info(
            "%s (%s, %.0f s, %d writes): %d segments kept, rejected %s in %.3f s",
            recording.recording_id,
            recording.source.file_name,
            recording.seconds,
            len(recording.writes),
            len(result.segments),
            result.rejected_by_reason() or "nothing",
            elapsed,
        )
        return result

    def warm_up(self) -> None:
        """Load the compiled analysis kernels now, not while the first recording waits."""
        silence = Recording(
            "warm-up", Source("0" * 64, "warm-up", SourceKind.GENERATED), ApuWrites.empty(), CPU_HZ
        )
        prune_recording(silence, self.config)

    def safe_offsets(self) -> dict[TopicPartition, int]:
        return self.assembler.oldest_pending_offsets()

    def tick(self) -> Iterator[Output]:
        for lost in self.assembler.expire():
            REJECTIONS.labels(service=SERVICE, reason="incomplete").inc()
            log.warning(
                "dropped incomplete recording %s (%s): chunks %s of %s, %d writes",
                lost.recording_id,
                lost.reason,
                list(lost.received),
                lost.expected_chunks or "?",
                lost.write_count,
            )
        return iter(())

    def partitions_revoked(self, partitions: set[TopicPartition]) -> None:
        # Their recordings are now another consumer's, which reads them from the commit.
        for lost in self.assembler.drop_partitions(partitions):
            log.info("handing over incomplete recording %s", lost.recording_id)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Settings come from GBSYNTH_* environment variables (Kafka: GBSYNTH_KAFKA_*; "
        "pruning: GBSYNTH_PRUNE_*; python -m gbsynth.common.config lists them)."
    )


def run(args: argparse.Namespace) -> int:
    try:
        processor = PrunerProcessor(PruneConfig.from_env())
    except (SettingError, PruneConfigError) as exc:
        print(f"gbsynth pruner: {exc}", file=sys.stderr)
        return 2
    processor.warm_up()
    return run_service(
        processor,
        service=SERVICE,
        topics=[TOPIC_RECORDINGS],
        output_topics=[TOPIC_SEGMENTS],
    )
