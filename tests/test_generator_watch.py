"""Checkpoint hot swap: the folder poll, and announcements on model.checkpoints read from a
real local broker (SHA-256 checked, undecodable messages skipped, stale ones ignored)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from gbsynth.common.avro import codec
from gbsynth.common.kafka import TOPIC_CHECKPOINTS, KafkaConfig, ensure_topics
from gbsynth.generator.models import AnnouncementWatcher, DirectoryWatcher, ModelHolder
from gbsynth.trainer.checkpoint import file_sha256
from gbsynth.trainer.testing import make_tiny_checkpoint


def wait_for(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def announcement(path: Path, step: int, sha256: str | None = None) -> bytes:
    return codec("CheckpointAnnouncement").encode(
        {
            # The trainer may mount the shared folder elsewhere: only the name counts.
            "path": f"/trainer/mount/{path.name}",
            "step": step,
            "created_unix_ms": int(time.time() * 1000),
            "train_loss": 3.5,
            "heldout_nll": None,
            "model_config": json.dumps({"n_layer": 1}),
            "sha256": sha256 or file_sha256(path),
        }
    )


def test_the_folder_poll_swaps_in_newer_checkpoints_only(tmp_path):
    holder = ModelHolder(tmp_path)
    assert not holder.refresh() and holder.current is None
    make_tiny_checkpoint(tmp_path, step=10)
    watcher = DirectoryWatcher(holder, interval=0.05).start()
    try:
        wait_for(lambda: holder.current is not None and holder.current.step == 10)
        make_tiny_checkpoint(tmp_path, step=12, seed=1)
        wait_for(lambda: holder.current.step == 12)
        swaps = holder.swaps
        time.sleep(0.3)
        assert holder.swaps == swaps  # an unchanged folder loads nothing again
        # A damaged newer file is refused once and the served model stays.
        (tmp_path / "step-0000000020.pt").write_bytes(b"not a checkpoint")
        wait_for(lambda: holder.last_error is not None)
        assert holder.current.step == 12 and "step-0000000020.pt" in holder.last_error
        time.sleep(0.3)
        assert holder.swaps == swaps
        # The folder was reset (training started over): a lower step is taken.
        for old in tmp_path.glob("step-*"):
            old.unlink()
        make_tiny_checkpoint(tmp_path, step=2, seed=2)
        wait_for(lambda: holder.current.step == 2)
    finally:
        watcher.stop()


@pytest.mark.integration
def test_announcements_are_loaded_after_their_sha256_is_checked(tmp_path, private_broker):
    make_tiny_checkpoint(tmp_path, step=1)
    holder = ModelHolder(tmp_path)
    assert holder.refresh()
    config = KafkaConfig(bootstrap=private_broker, session_timeout_ms=6000,
                         heartbeat_interval_ms=1000, partitions=1)  # fmt: skip
    ensure_topics(config, [TOPIC_CHECKPOINTS])
    producer = KafkaProducer(bootstrap_servers=private_broker)
    watcher = AnnouncementWatcher(holder, config, poll_timeout_ms=200).start()
    try:
        # A new checkpoint, announced (no folder poll runs here).
        second = make_tiny_checkpoint(tmp_path, step=2, seed=1)
        producer.send(TOPIC_CHECKPOINTS, announcement(second, 2)).get(10)
        wait_for(lambda: holder.current.step == 2)
        # Garbage on the topic is skipped; a file whose bytes differ from the announced
        # SHA-256 is refused; the watcher keeps going.
        producer.send(TOPIC_CHECKPOINTS, b"\x00garbage").get(10)
        third = make_tiny_checkpoint(tmp_path, step=3, seed=2)
        producer.send(TOPIC_CHECKPOINTS, announcement(third, 3, sha256="0" * 64)).get(10)
        wait_for(lambda: holder.last_error is not None)
        assert "SHA-256" in holder.last_error and holder.current.step == 2
        # A stale announcement (older step) changes nothing; a good one is taken.
        producer.send(TOPIC_CHECKPOINTS, announcement(second, 2)).get(10)
        fourth = make_tiny_checkpoint(tmp_path, step=4, seed=3)
        producer.send(TOPIC_CHECKPOINTS, announcement(fourth, 4)).get(10)
        wait_for(lambda: holder.current.step == 4)
        assert holder.current.sha256 == file_sha256(fourth)
        wait_for(lambda: watcher.seen >= 5)
    finally:
        watcher.stop()
        producer.close()


def test_the_default_model_is_served_until_a_promoted_checkpoint_exists(tmp_path: Path) -> None:
    from gbsynth.generator.models import load_model
    from gbsynth.trainer.checkpoint import save_checkpoint

    default = make_tiny_checkpoint(tmp_path / "default", step=5000)
    folder = tmp_path / "ckpt"
    holder = ModelHolder(folder, loader=lambda path, sha: load_model(path, sha), fallback=default)
    assert holder.refresh(trigger="start") and holder.current.path == default
    assert not holder.refresh()  # still nothing in the folder: keep serving it
    # A checkpoint the trainer did not promote (no better than the served model) is ignored.
    model = load_model(default).checkpoint.model
    save_checkpoint(folder, model, step=5100, promoted=False)
    assert not holder.refresh() and holder.current.path == default
    # A promoted one replaces the default model, whatever its step.
    promoted = save_checkpoint(folder, model, step=10, promoted=True).path
    assert holder.refresh() and holder.current.path == promoted
