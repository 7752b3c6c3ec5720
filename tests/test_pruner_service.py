"""The pruner service on a real local broker: SIGKILL mid-stream loses and invents nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from conftest import service_env
from kafka import KafkaConsumer

from gbsynth.common.avro import codec, decode_segment, encode_chunk, recording_to_chunks
from gbsynth.common.kafka import (
    ALL_TOPICS,
    TOPIC_DEAD_LETTERS,
    TOPIC_RECORDINGS,
    TOPIC_SEGMENTS,
    KafkaConfig,
    ensure_topics,
    make_producer,
)
from gbsynth.emulator.sources import open_session
from gbsynth.pruner.prune import prune_recording

pytestmark = pytest.mark.integration

GARBAGE = b"\xb5\x01\x02 not a recording chunk"


@pytest.fixture(scope="module")
def music(shared_dir):
    devsound = shared_dir / "corpus/DevSound_demo.gbs"
    made = [open_session(devsound, subsong=n).record(30) for n in (1, 2, 3, 4, 6)]
    made.append(open_session(shared_dir / "corpus/nightmode.gbs").record(40))
    made.append(open_session(shared_dir / "roms/music/gbt-player/range_test.gb").record(30))
    return made


def start_pruner(bootstrap: str, log_path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gbsynth", "pruner"],
        env=service_env(bootstrap),
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
    )


class Reader:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"test-{topic}",
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        self.records: list = []

    def poll(self) -> list:
        for records in self.consumer.poll(200).values():
            self.records.extend(records)
        return self.records

    def close(self) -> None:
        self.consumer.close()


def wait_for(condition, timeout: float, procs=(), poll=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for reader in poll:
            reader.poll()
        if condition():
            return
        for proc in procs:
            assert proc.poll() is None, "the pruner exited"
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_sigkill_mid_stream_publishes_the_same_segment_ids(private_broker, music, tmp_path):
    config = KafkaConfig.from_env({"GBSYNTH_KAFKA_BOOTSTRAP": private_broker})
    ensure_topics(config, ALL_TOPICS)
    producer = make_producer(config, "test")

    def send(recording, chunks):
        for chunk in chunks:
            producer.send(
                TOPIC_RECORDINGS, encode_chunk(chunk), key=recording.recording_id.encode()
            )

    # An uninterrupted run publishes exactly what pruning each recording gives.
    expected = {s.segment_id for r in music for s in prune_recording(r).segments}
    assert len(expected) >= len(music)

    # Before the kill: whole recordings, the first halves of others (held back by the
    # pruner: their offsets must not be committed), and a message that is not a chunk.
    whole, halves = music[:4], music[4:]
    chunked = {r.recording_id: recording_to_chunks(r) for r in music}
    for r in whole:
        send(r, chunked[r.recording_id])
    for r in halves:
        send(r, chunked[r.recording_id][: len(chunked[r.recording_id]) // 2])
    producer.send(TOPIC_RECORDINGS, GARBAGE, key=b"garbage")
    producer.flush()

    segments = Reader(private_broker, TOPIC_SEGMENTS)
    letters = Reader(private_broker, TOPIC_DEAD_LETTERS)
    first = start_pruner(private_broker, tmp_path / "first.log")
    try:
        wait_for(lambda: len(segments.records) > 0, 60, [first], [segments])
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # The rest of the stream arrives while no pruner runs.
        for r in halves:
            send(r, chunked[r.recording_id][len(chunked[r.recording_id]) // 2 :])
        producer.flush()
        second = start_pruner(private_broker, tmp_path / "second.log")
        try:
            ids = lambda: {record.key.decode() for record in segments.records}  # noqa: E731
            wait_for(lambda: ids() >= expected, 90, [second], [segments, letters])
            time.sleep(1.0)
            segments.poll()  # anything more would be a segment nobody expected
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0
        assert ids() == expected
        for record in segments.records:
            segment = decode_segment(record.value)
            assert segment.segment_id == record.key.decode()
        # The malformed message went to the dead-letter topic, with the reason.
        wait_for(lambda: letters.records, 10, poll=[letters])
        letter = codec("DeadLetter").decode(letters.records[0].value)
        assert letter["value"] == GARBAGE and letter["service"] == "pruner"
        assert letter["topic"] == TOPIC_RECORDINGS and letter["error"]
    finally:
        if first.poll() is None:
            first.kill()
        producer.close()
        segments.close()
        letters.close()
