"""Scores through the emulator service on a real local broker: ``enqueue`` publishes one job
per part, a worker records them as offline, and a broken score becomes a dead letter."""

from __future__ import annotations

import signal
import time

import pytest
from kafka import KafkaConsumer
from test_emulator_service import RecordingReader, start_worker

from gbsynth.common.avro import chunks_to_recording, codec
from gbsynth.common.events import SourceKind
from gbsynth.common.kafka import (
    TOPIC_DEAD_LETTERS,
    TOPIC_JOBS,
    KafkaConfig,
    Output,
    deliver,
    make_producer,
)
from gbsynth.emulator.enqueue import enqueue_folder
from gbsynth.emulator.jobs import EmulationJob
from gbsynth.emulator.score_source import ScoreSession

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def score_dir(tmp_path, shared_dir):
    folder = tmp_path / "scores"
    folder.mkdir()
    pretrain = shared_dir / "pretrain"
    (folder / "tune.mid").write_bytes((pretrain / "nottingham/MIDI/ashover11.mid").read_bytes())
    (folder / "menu.mod").write_bytes(
        (pretrain / "gbstudio-mods/Music/Menu_Themes/MBR_Settings.mod").read_bytes()
    )
    midi = (folder / "tune.mid").read_bytes()
    (folder / "cut.mid").write_bytes(midi[: len(midi) // 3])
    return folder


def test_enqueued_scores_are_recorded_and_a_broken_one_is_a_dead_letter(
    private_broker, score_dir, tmp_path
):
    config = KafkaConfig.from_env({"GBSYNTH_KAFKA_BOOTSTRAP": private_broker})
    summary = enqueue_folder(score_dir, seconds=20.0, config=config)
    assert summary["by_kind"] == {"midi": 1, "mod": 1}
    assert [s.split(":")[0] for s in summary["skipped"]] == ["cut.mid"]
    # a job for the broken file anyway (published by hand): the worker must dead-letter it
    bad = EmulationJob("cut.mid", SourceKind.MIDI, 0, 20.0)
    producer = make_producer(config, "test")
    try:
        deliver(
            producer, [Output(TOPIC_JOBS, codec("Job").encode(bad.to_record()), bad.job_id)], "test"
        )
    finally:
        producer.close(timeout=10)
    worker = start_worker(private_broker, score_dir, tmp_path / "worker.log")
    letters = KafkaConsumer(
        TOPIC_DEAD_LETTERS,
        bootstrap_servers=private_broker,
        group_id="test-letters",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    try:
        reader = RecordingReader(private_broker)
        reader.wait_complete(2, 120, [worker])
        dead = []
        deadline = time.monotonic() + 60
        while not dead and time.monotonic() < deadline:
            for records in letters.poll(200).values():
                dead += [codec("DeadLetter").decode(r.value) for r in records]
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
        letters.close()
    assert len(dead) == 1 and dead[0]["error"].startswith("invalid_file: ")
    for name in ("tune.mid", "menu.mod"):
        data = (score_dir / name).read_bytes()
        kind = SourceKind.MIDI if name.endswith(".mid") else SourceKind.MOD
        offline = ScoreSession(data, name, kind)
        chunks = reader.chunks[offline.recording_id]
        recording = chunks_to_recording(chunks)
        assert recording.writes == offline.record(offline.seconds).writes
        assert recording.source.kind is kind
