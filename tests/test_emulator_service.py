"""The emulator service on a real local broker: job sharing, streaming, SIGKILL recovery."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest
from conftest import service_env
from kafka import KafkaConsumer

from gbsynth.common.avro import chunks_to_recording, decode_chunk
from gbsynth.common.kafka import TOPIC_RECORDINGS, KafkaConfig
from gbsynth.emulator.enqueue import enqueue_folder
from gbsynth.emulator.sources import GbsSession

pytestmark = pytest.mark.integration


@pytest.fixture
def rom_dir(tmp_path, shared_dir):
    folder = tmp_path / "roms"
    folder.mkdir()
    (folder / "devsound.gbs").write_bytes((shared_dir / "corpus/DevSound_demo.gbs").read_bytes())
    return folder


def start_worker(bootstrap: str, rom_dir, log_path) -> subprocess.Popen:
    env = service_env(bootstrap, GBSYNTH_EXPLORE_WHEN_IDLE="false", GBSYNTH_ROM_DIR=str(rom_dir))
    return subprocess.Popen(
        [sys.executable, "-m", "gbsynth", "emulator-worker"],
        env=env,
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
    )


class RecordingReader:
    def __init__(self, bootstrap: str) -> None:
        self.consumer = KafkaConsumer(
            TOPIC_RECORDINGS,
            bootstrap_servers=bootstrap,
            group_id="test-reader",
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        self.chunks: dict[str, list[dict]] = defaultdict(list)

    def poll(self) -> None:
        for records in self.consumer.poll(200).values():
            for record in records:
                chunk = decode_chunk(record.value)
                assert record.key.decode() == chunk["recording_id"]
                self.chunks[chunk["recording_id"]].append(chunk)

    def complete(self) -> set[str]:
        done = set()
        for rid, chunks in self.chunks.items():
            sequences = {c["sequence"] for c in chunks}
            last = [c["sequence"] for c in chunks if c["last"]]
            if last and sequences == set(range(last[0] + 1)):
                done.add(rid)
        return done

    def wait_complete(self, count: int, timeout: float, procs) -> None:
        deadline = time.monotonic() + timeout
        while len(self.complete()) < count and time.monotonic() < deadline:
            self.poll()
            for proc in procs:
                assert proc.poll() is None, "a worker exited"
        assert len(self.complete()) == count, f"{len(self.complete())} of {count} complete"


def expected_recordings(rom_dir, seconds):
    data = (rom_dir / "devsound.gbs").read_bytes()
    return {
        (rec := GbsSession(data, "devsound.gbs", n).record(seconds)).recording_id: rec
        for n in range(1, 7)
    }


def test_two_workers_share_six_jobs(private_broker, rom_dir, tmp_path):
    config = KafkaConfig.from_env({"GBSYNTH_KAFKA_BOOTSTRAP": private_broker})
    workers = [start_worker(private_broker, rom_dir, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        summary = enqueue_folder(rom_dir, seconds=20.0, config=config)
        assert summary["enqueued"] == 6
        reader = RecordingReader(private_broker)
        reader.wait_complete(6, 90, workers)
        time.sleep(1.0)
        reader.poll()  # anything more would be a job done twice
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            assert w.wait(20) == 0
    expected = expected_recordings(rom_dir, 20.0)
    assert set(reader.chunks) == set(expected)
    for rid, chunks in reader.chunks.items():
        sequences = [c["sequence"] for c in chunks]
        assert sorted(sequences) == list(range(len(sequences))), "duplicate chunks: job redone"
        assert sequences == sorted(sequences), "chunks out of order"
        assert chunks_to_recording(chunks).writes == expected[rid].writes


def test_killed_worker_job_is_redone(private_broker, rom_dir, tmp_path):
    config = KafkaConfig.from_env({"GBSYNTH_KAFKA_BOOTSTRAP": private_broker})
    seconds = 900.0  # long jobs, so the kill lands mid-job
    enqueue_folder(rom_dir, seconds=seconds, config=config)
    reader = RecordingReader(private_broker)
    first = start_worker(private_broker, rom_dir, tmp_path / "first.log")
    deadline = time.monotonic() + 60
    while not reader.chunks and time.monotonic() < deadline:
        reader.poll()
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert reader.chunks, "the first worker published nothing"
    reader.poll()
    unfinished = set(reader.chunks) - reader.complete()
    assert unfinished, "the kill did not land mid-job"
    second = start_worker(private_broker, rom_dir, tmp_path / "second.log")
    try:
        reader.wait_complete(6, 120, [second])
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
    expected = expected_recordings(rom_dir, seconds)
    assert set(reader.chunks) == set(expected)
    for rid, chunks in reader.chunks.items():
        assert chunks_to_recording(chunks).writes == expected[rid].writes
