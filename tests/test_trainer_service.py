"""The trainer service: its processor alone, then the real process on a local broker."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import service_env
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from gbsynth.common.avro import CodecError, Segment, SegmentFeatures, codec, encode_segment
from gbsynth.common.events import CPU_HZ
from gbsynth.common.kafka import TOPIC_CHECKPOINTS, TOPIC_SEGMENTS, Message
from gbsynth.emulator.sources import open_session
from gbsynth.trainer.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    newest_checkpoint,
    read_metadata,
)
from gbsynth.trainer.data import Track
from gbsynth.trainer.main import TrainerService
from gbsynth.trainer.model import PRESETS
from gbsynth.trainer.store import SegmentStore
from gbsynth.trainer.testing import make_tiny_checkpoint
from gbsynth.trainer.train import TrainSettings

FEATURES = SegmentFeatures(10.0, 100, 15, 12, -12.0)
TRAIN_SHA = "f" * 64  # is_heldout: 0xffffffff % 10000 = 7295 -> training at 50 %
HELDOUT_SHA = "0" * 64  # bucket 0 -> held out


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def segments(shared_dir: Path) -> list[Segment]:
    """Ten 4-second segments of DevSound subsongs: six for training, four held out."""
    out = []
    for subsong in (1, 3):
        rec = open_session(shared_dir / "corpus/DevSound_demo.gbs", subsong=subsong).record(20.0)
        sha = TRAIN_SHA if subsong == 1 else HELDOUT_SHA
        rec = replace(rec, source=replace(rec.source, sha256=sha))
        for i in range(5 if subsong == 1 else 4):
            start = i * 4 * CPU_HZ
            out.append(Segment.cut(rec, start, start + 4 * CPU_HZ, FEATURES))
    return out


def message(segment: Segment, offset: int) -> Message:
    return Message(TOPIC_SEGMENTS, 0, offset, segment.segment_id.encode(), encode_segment(segment))


def make_service(tmp_path: Path, **overrides) -> TrainerService:
    options = dict(
        config=PRESETS["tiny"], settings=TrainSettings(batch_size=4, warmup_steps=2),
        checkpoint_every=4, eval_tokens=500, min_tokens=100, tick_seconds=0.2,
    )  # fmt: skip
    options.update(overrides)
    store = SegmentStore(tmp_path / "data", heldout_percent=50, representation="channel_events")
    return TrainerService(store, tmp_path / "ckpt", **options)


def test_service_stores_trains_checkpoints_and_resumes_exactly(tmp_path, segments):
    service = make_service(tmp_path)
    for offset, segment in enumerate(segments):
        assert list(service.process(message(segment, offset))) == []
    assert list(service.process(message(segments[0], 99))) == []  # a duplicate: ignored
    with pytest.raises(CodecError):
        service.process(Message(TOPIC_SEGMENTS, 0, 100, None, b"\xb5\x02\x01junk"))
    assert (service.store.segments("train"), service.store.segments("heldout")) == (5, 4)
    tp = TopicPartition(TOPIC_SEGMENTS, 0)
    assert service.safe_offsets() == {tp: 0}  # nothing committed before a checkpoint

    outputs = []
    while not outputs:
        outputs = list(service.tick())
    (announcement,) = outputs
    assert announcement.topic == TOPIC_CHECKPOINTS
    record = codec("CheckpointAnnouncement").decode(announcement.value)
    assert record["step"] == 4 and record["heldout_nll"] > 0
    path = Path(record["path"])
    assert path == newest_checkpoint(tmp_path / "ckpt").resolve()
    assert load_checkpoint(path).sha256 == record["sha256"]
    assert service.safe_offsets() == {tp: 101}

    # A second service on the same folders resumes: step, optimizer, batch sampler, offsets.
    resumed = make_service(tmp_path)
    assert resumed.trainer.step_count == 4
    assert resumed.checkpointed == {tp: 101}
    assert resumed.store.segments("train") == 5
    windows = service.windows()
    assert resumed.trainer.step(resumed.windows()) == pytest.approx(
        service.trainer.step(windows), rel=1e-5
    )

    # A clean stop keeps the steps since the last checkpoint.
    service.close()
    assert [s for s, _ in list_checkpoints(tmp_path / "ckpt")] == [4, 5]


def test_service_starts_from_the_initial_model_and_announces_only_better_ones(tmp_path, segments):
    init = make_tiny_checkpoint(tmp_path / "default", step=7)
    service = make_service(tmp_path, init=init)
    assert service.trainer.step_count == 7
    # The learning rate warms up again from the initial model's step.
    settings = service.trainer.settings
    assert service.trainer.learning_rate() == pytest.approx(settings.lr / settings.warmup_steps)
    torch.testing.assert_close(
        service.trainer.model.state_dict(), load_checkpoint(init).model.state_dict()
    )
    for offset, segment in enumerate(segments):
        service.process(message(segment, offset))
    service.run.promote_against = service.trainer.model  # the same weights: not better
    assert service.checkpoint() is None
    assert read_metadata(newest_checkpoint(tmp_path / "ckpt"))["promoted"] is False
    assert service.safe_offsets() == {TopicPartition(TOPIC_SEGMENTS, 0): len(segments)}


def test_service_waits_for_enough_training_data(tmp_path, segments):
    service = make_service(tmp_path, min_tokens=10**9)
    service.process(message(segments[0], 0))
    assert list(service.tick()) == [] and service.trainer.step_count == 0
    service.close()
    assert newest_checkpoint(tmp_path / "ckpt") is None


def start_trainer(bootstrap: str, tmp_path: Path, log_name: str) -> subprocess.Popen:
    env = service_env(
        bootstrap,
        GBSYNTH_CHECKPOINT_DIR=str(tmp_path / "ckpt"),
        GBSYNTH_TRAINER_DATA_DIR=str(tmp_path / "data"),
        GBSYNTH_TRAINER_PRESET="tiny",
        GBSYNTH_TRAINER_BATCH_SIZE="4",
        GBSYNTH_TRAINER_CHECKPOINT_EVERY="5",
        GBSYNTH_TRAINER_TICK_SECONDS="0.3",
        GBSYNTH_TRAINER_MIN_TOKENS="100",
        GBSYNTH_DEFAULT_MODEL="none",
        GBSYNTH_TRAINER_HELDOUT_PERCENT="50",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "gbsynth", "trainer"],
        env=env, stdout=open(tmp_path / log_name, "ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


@pytest.mark.integration
def test_trainer_process_survives_sigkill(private_broker, tmp_path, segments):
    producer = KafkaProducer(bootstrap_servers=private_broker)
    for segment in segments:
        producer.send(TOPIC_SEGMENTS, encode_segment(segment), key=segment.segment_id.encode())
    producer.flush()
    producer.close()
    reader = KafkaConsumer(
        TOPIC_CHECKPOINTS, bootstrap_servers=private_broker, group_id="test-checkpoints",
        auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=1000,
    )  # fmt: skip
    announcements: list[dict] = []

    def wait_for(condition, proc, timeout=90.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            for records in reader.poll(200).values():
                for record in records:
                    announcements.append(codec("CheckpointAnnouncement").decode(record.value))
            assert proc.poll() is None, (tmp_path / "trainer.log").read_text()[-2000:]
        assert condition(), f"announcements: {[a['step'] for a in announcements]}"

    first = start_trainer(private_broker, tmp_path, "trainer.log")
    try:
        wait_for(lambda: len(announcements) >= 2, first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    killed_at = max(a["step"] for a in announcements)
    newest = load_checkpoint(newest_checkpoint(tmp_path / "ckpt"))
    assert newest.step >= killed_at
    assert all(a["heldout_nll"] is not None for a in announcements)

    second = start_trainer(private_broker, tmp_path, "trainer.log")
    try:
        wait_for(lambda: max(a["step"] for a in announcements) > newest.step, second)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    log = (tmp_path / "trainer.log").read_text()
    assert f"resumed from {newest.path.name}: step {newest.step}" in log
    after = [a for a in announcements if a["step"] > newest.step]
    assert after[0]["step"] == newest.step + 5  # counting on, not from zero
    # The loss carries on from where it was, far below an untrained model's ~14.7 nats.
    assert after[0]["train_loss"] < announcements[0]["train_loss"] + 1.0
    assert np.isfinite(after[0]["train_loss"])
    # The dataset was not stored twice although the segments were read again.
    assert len(list((tmp_path / "data").glob("*.npz"))) == len(segments)


def test_store_keeps_the_newest_training_music_within_its_bound(tmp_path):
    def track(i: int) -> Track:
        return Track(f"seg-{i}", "f" * 64, np.full(100, i % 40, dtype=np.int64))

    store = SegmentStore(tmp_path, heldout_percent=0, max_tokens=250, representation="writes")
    for i in range(5):
        assert store.add(track(i))
    assert [t.name for t in store.train] == ["seg-3", "seg-4"]
    assert len(list(tmp_path.glob("*.npz"))) == 2
    reopened = SegmentStore(tmp_path, heldout_percent=0, max_tokens=250, representation="writes")
    assert [t.name for t in reopened.train] == ["seg-3", "seg-4"]
    assert reopened.add(track(5)) and [t.name for t in reopened.train] == ["seg-4", "seg-5"]
