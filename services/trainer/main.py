"""The trainer service: segments in (``apu.segments``), checkpoints out (``model.checkpoints``).

It consumes segments continuously into a local dataset (``SegmentStore`` under
``GBSYNTH_TRAINER_DATA_DIR``; the held-out split is by source file) and, between
polls, trains for up to ``GBSYNTH_TRAINER_TICK_SECONDS``. Every
``GBSYNTH_TRAINER_CHECKPOINT_EVERY`` steps it scores the held-out segments,
writes a checkpoint atomically to ``GBSYNTH_CHECKPOINT_DIR`` (keeping the newest
``GBSYNTH_TRAINER_KEEP_CHECKPOINTS`` and the best held-out one) and announces
it on ``model.checkpoints`` with its SHA-256.

Restarts (a crash, SIGKILL, a new version) resume from the newest checkpoint:
weights, optimizer moments, step, the batch sampler's random state and the
consumer offsets the checkpoint had covered. Offsets are committed to Kafka
only up to what the newest checkpoint covers (``safe_offsets``), so after a crash
the segments since are read again; the store ignores the ones it already holds.
A clean stop (SIGTERM) saves a last checkpoint first.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from kafka import TopicPartition

from gbsynth.common import config as cfg
from gbsynth.common import metrics
from gbsynth.common.avro import CodecError, codec, decode_segment
from gbsynth.common.config import Setting
from gbsynth.common.kafka import TOPIC_CHECKPOINTS, TOPIC_SEGMENTS, Message, Output, Processor
from gbsynth.trainer.checkpoint import (
    CheckpointError,
    SavedCheckpoint,
    load_checkpoint,
    newest_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from gbsynth.trainer.data import track_from_segment
from gbsynth.trainer.model import PRESETS, GPTConfig
from gbsynth.trainer.store import SegmentStore
from gbsynth.trainer.train import Trainer, TrainSettings, Windows, heldout_nll

log = logging.getLogger(__name__)

SERVICE = "trainer"
DEFAULT_METRICS_PORT = 9103

DATA_DIR = Setting(
    "GBSYNTH_TRAINER_DATA_DIR", str, "var/trainer-data", "folder of the trainer's segment dataset"
)
PRESET = Setting(
    "GBSYNTH_TRAINER_PRESET",
    str,
    "cpu",
    "model size: tiny (tests), small, cpu (default, 0.5 M parameters), cpu-large or gpu",
    choices=tuple(PRESETS),
)
BATCH_SIZE = Setting("GBSYNTH_TRAINER_BATCH_SIZE", int, 16, "training windows per step", minimum=1)
LEARNING_RATE = Setting(
    "GBSYNTH_TRAINER_LR", float, 1e-3, "AdamW learning rate (after warm-up)", minimum=0
)
CHECKPOINT_EVERY = Setting(
    "GBSYNTH_TRAINER_CHECKPOINT_EVERY",
    int,
    200,
    "training steps between held-out evaluations and checkpoints",
    minimum=1,
)
KEEP_CHECKPOINTS = Setting(
    "GBSYNTH_TRAINER_KEEP_CHECKPOINTS",
    int,
    3,
    "newest checkpoints kept (the best held-out one is kept as well)",
    minimum=1,
)
HELDOUT_PERCENT = Setting(
    "GBSYNTH_TRAINER_HELDOUT_PERCENT",
    float,
    10.0,
    "share of source files whose segments are held out for evaluation (by file SHA-256)",
    minimum=0,
    maximum=100,
)
EVAL_EVENTS = Setting(
    "GBSYNTH_TRAINER_EVAL_EVENTS",
    int,
    20_000,
    "held-out events scored at each checkpoint (bounds evaluation time)",
    minimum=1,
)
MIN_EVENTS = Setting(
    "GBSYNTH_TRAINER_MIN_EVENTS",
    int,
    2_000,
    "training events needed before the first step",
    minimum=2,
)
MAX_EVENTS = Setting(
    "GBSYNTH_TRAINER_MAX_EVENTS",
    int,
    20_000_000,
    "training events kept in the dataset (about 6 bytes each on disk, 30 in memory); "
    "past it the oldest segments are deleted",
    minimum=1,
)
TICK_SECONDS = Setting(
    "GBSYNTH_TRAINER_TICK_SECONDS",
    float,
    2.0,
    "training time between two polls of the segments topic",
    minimum=0.01,
)
THREADS = Setting("GBSYNTH_TRAINER_THREADS", int, 1, "torch CPU threads for training", minimum=1)
SEED = Setting("GBSYNTH_TRAINER_SEED", int, 0, "seed of a fresh model and its batch sampler")

STEP = metrics.gauge("trainer_step", "optimizer steps taken (continues across restarts)")
LOSS = metrics.gauge("trainer_loss", "mean training loss of the last steps, nats per event")
HELDOUT_NLL = metrics.gauge(
    "trainer_heldout_nll", "held-out negative log-likelihood, nats per event"
)
EVENTS_PER_SECOND = metrics.gauge(
    "trainer_events_per_second", "events trained per second of training time (last tick)"
)
CHECKPOINT_AGE = metrics.gauge(
    "trainer_checkpoint_age_seconds", "seconds since the newest checkpoint was written"
)
DATASET_SEGMENTS = metrics.gauge(
    "trainer_dataset_segments", "segments in the local dataset", ["split"]
)
DATASET_EVENTS = metrics.gauge("trainer_dataset_events", "events in the local dataset", ["split"])
SEGMENTS_SKIPPED = metrics.counter(
    "trainer_segments_skipped", "segments not stored, by reason", ["reason"]
)


def _offset_key(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


def _parse_offset_key(key: str) -> TopicPartition:
    topic, partition = key.rsplit(":", 1)
    return TopicPartition(topic, int(partition))


class TrainerService(Processor):
    """Stores segments as they come and trains between polls (no Kafka inside)."""

    def __init__(
        self,
        store: SegmentStore,
        checkpoint_dir: Path,
        *,
        config: GPTConfig,
        settings: TrainSettings,
        checkpoint_every: int = 200,
        keep_checkpoints: int = 3,
        eval_events: int = 20_000,
        min_events: int = 2_000,
        tick_seconds: float = 2.0,
        clock=time.monotonic,
    ) -> None:
        self.store = store
        self.checkpoint_dir = Path(checkpoint_dir)
        self.checkpoint_every = checkpoint_every
        self.keep_checkpoints = keep_checkpoints
        self.eval_events = eval_events
        self.min_events = min_events
        self.tick_seconds = tick_seconds
        self.clock = clock
        self.trainer = Trainer(config, settings)
        self.consumed: dict[TopicPartition, int] = {}  # next offset after the last stored
        self.first_seen: dict[TopicPartition, int] = {}
        self.checkpointed: dict[TopicPartition, int] = {}  # offsets the newest checkpoint covers
        self.last_checkpoint: SavedCheckpoint | None = None
        self.last_checkpoint_at: float | None = None
        self.saved_step = 0
        """Step of the newest checkpoint (0: none yet)."""
        self._windows: Windows | None = None
        self._windows_version = -1
        self._resume()
        self._update_dataset_metrics()

    # -- resuming ------------------------------------------------------------------------
    def _resume(self) -> None:
        path = newest_checkpoint(self.checkpoint_dir)
        if path is None:
            log.info("no checkpoint in %s: starting a fresh model", self.checkpoint_dir)
            return
        try:
            loaded = load_checkpoint(path)
        except CheckpointError as exc:
            # Never train over a checkpoint we cannot read: it may be a newer format.
            raise CheckpointError(f"cannot resume: {exc}") from exc
        state = loaded.trainer_state
        if state is None:
            raise CheckpointError(f"cannot resume from {path}: it holds no training state")
        self.trainer = Trainer(loaded.config, TrainSettings(**state["settings"]))
        self.trainer.restore(loaded.model.state_dict(), loaded.step, state)
        self.saved_step = loaded.step
        self.checkpointed = {_parse_offset_key(k): int(v) for k, v in state["offsets"].items()}
        self.last_checkpoint_at = self.clock() - max(
            0.0, time.time() - loaded.created_unix_ms / 1000
        )
        STEP.labels(service=SERVICE).set(loaded.step)
        LOSS.labels(service=SERVICE).set(loaded.train_loss)
        if loaded.heldout_nll is not None:
            HELDOUT_NLL.labels(service=SERVICE).set(loaded.heldout_nll)
        log.info(
            "resumed from %s: step %d, training loss %.3f", path.name, loaded.step,
            loaded.train_loss,
        )  # fmt: skip

    # -- input -----------------------------------------------------------------------------
    def process(self, message: Message) -> Iterator[Output]:
        tp = message.topic_partition
        self.first_seen.setdefault(tp, message.offset)
        self.consumed[tp] = message.offset + 1
        segment = decode_segment(message.value or b"")  # CodecError -> dead letter
        if segment.segment_id in self.store:
            SEGMENTS_SKIPPED.labels(service=SERVICE, reason="duplicate").inc()
            return iter(())
        try:
            track = track_from_segment(segment)
        except ValueError as exc:
            raise CodecError(f"segment {segment.segment_id}: {exc}") from exc
        if track is None:
            SEGMENTS_SKIPPED.labels(service=SERVICE, reason="too_short").inc()
            return iter(())
        self.store.add(track)
        self._update_dataset_metrics()
        return iter(())

    def safe_offsets(self) -> Mapping[TopicPartition, int]:
        """Commit only what the newest checkpoint covers: the rest is read again after a crash."""
        return {tp: self.checkpointed.get(tp, self.first_seen[tp]) for tp in self.first_seen}

    def partitions_revoked(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self.consumed.pop(tp, None)
            self.first_seen.pop(tp, None)

    # -- training --------------------------------------------------------------------------
    def windows(self) -> Windows | None:
        if self.store.events("train") < self.min_events:
            return None
        if self._windows is None or self._windows_version != self.store.version:
            self._windows = Windows(self.store.train, self.trainer.config.block_size)
            self._windows_version = self.store.version
        return self._windows

    def tick(self) -> Iterator[Output]:
        if self.last_checkpoint_at is not None:
            CHECKPOINT_AGE.labels(service=SERVICE).set(self.clock() - self.last_checkpoint_at)
        windows = self.windows()
        if windows is None:
            return
        started = time.perf_counter()
        events_before = self.trainer.events_trained
        while time.perf_counter() - started < self.tick_seconds:
            self.trainer.step(windows)
            STEP.labels(service=SERVICE).set(self.trainer.step_count)
            if self.trainer.step_count % self.checkpoint_every == 0:
                yield self.checkpoint()
                break  # let the loop commit and poll before training on
        elapsed = time.perf_counter() - started
        LOSS.labels(service=SERVICE).set(self.trainer.train_loss)
        EVENTS_PER_SECOND.labels(service=SERVICE).set(
            (self.trainer.events_trained - events_before) / max(elapsed, 1e-9)
        )

    def checkpoint(self) -> Output:
        """Evaluate, write a checkpoint, prune old ones; the announcement to publish."""
        nll = heldout_nll(self.trainer.model, self.store.heldout, max_events=self.eval_events)
        offsets = {**self.checkpointed, **self.consumed}
        saved = save_checkpoint(
            self.checkpoint_dir,
            self.trainer.model,
            step=self.trainer.step_count,
            train_loss=self.trainer.train_loss,
            heldout_nll=nll,
            trainer_state=self.trainer.state(
                offsets={_offset_key(tp): int(o) for tp, o in offsets.items()},
                dataset_segments=len(self.store),
            ),
        )
        self.checkpointed = offsets
        self.last_checkpoint = saved
        self.saved_step = saved.step
        self.last_checkpoint_at = self.clock()
        prune_checkpoints(self.checkpoint_dir, keep_newest=self.keep_checkpoints)
        CHECKPOINT_AGE.labels(service=SERVICE).set(0)
        if nll is not None:
            HELDOUT_NLL.labels(service=SERVICE).set(nll)
        log.info(
            "checkpoint %s: step %d, training loss %.3f, held-out NLL %s", saved.path.name,
            saved.step, saved.train_loss, "n/a" if nll is None else f"{nll:.3f}",
        )  # fmt: skip
        return Output(TOPIC_CHECKPOINTS, encode_announcement(saved))

    def close(self) -> None:
        """A clean stop: keep the steps since the last checkpoint (not announced)."""
        if self.trainer.step_count != self.saved_step:
            self.checkpoint()

    def _update_dataset_metrics(self) -> None:
        for split in ("train", "heldout"):
            DATASET_SEGMENTS.labels(service=SERVICE, split=split).set(self.store.segments(split))
            DATASET_EVENTS.labels(service=SERVICE, split=split).set(self.store.events(split))


def encode_announcement(saved: SavedCheckpoint) -> bytes:
    """A CheckpointAnnouncement message for a checkpoint just written."""
    return codec("CheckpointAnnouncement").encode(
        {
            "path": str(saved.path.resolve()),
            "step": saved.step,
            "created_unix_ms": saved.created_unix_ms,
            "train_loss": saved.train_loss,
            "heldout_nll": saved.heldout_nll,
            "model_config": json.dumps(saved.config.to_dict(), sort_keys=True),
            "sha256": saved.sha256,
        }
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=None, help=f"dataset folder (default ${DATA_DIR.name})"
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help=f"checkpoint folder (default ${cfg.CHECKPOINT_DIR.name})",
    )


def build_service(args: argparse.Namespace) -> TrainerService:
    values = cfg.read_settings(
        [DATA_DIR, PRESET, BATCH_SIZE, LEARNING_RATE, CHECKPOINT_EVERY, KEEP_CHECKPOINTS,
         HELDOUT_PERCENT, EVAL_EVENTS, MIN_EVENTS, MAX_EVENTS, TICK_SECONDS, THREADS, SEED,
         cfg.CHECKPOINT_DIR]
    )  # fmt: skip
    torch.set_num_threads(values[THREADS.name])
    store = SegmentStore(
        Path(args.data_dir or values[DATA_DIR.name]),
        values[HELDOUT_PERCENT.name],
        max_events=values[MAX_EVENTS.name],
    )
    return TrainerService(
        store,
        Path(args.checkpoint_dir or values[cfg.CHECKPOINT_DIR.name]),
        config=PRESETS[values[PRESET.name]],
        settings=TrainSettings(
            batch_size=values[BATCH_SIZE.name],
            lr=values[LEARNING_RATE.name],
            seed=values[SEED.name],
        ),
        checkpoint_every=values[CHECKPOINT_EVERY.name],
        keep_checkpoints=values[KEEP_CHECKPOINTS.name],
        eval_events=values[EVAL_EVENTS.name],
        min_events=values[MIN_EVENTS.name],
        tick_seconds=values[TICK_SECONDS.name],
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from gbsynth.common.kafka import run_service

    cfg.configure_logging(SERVICE)
    try:
        service = build_service(args)
    except (cfg.SettingError, CheckpointError, OSError) as exc:
        print(f"gbsynth trainer: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, cfg.SettingError) else 1
    return run_service(
        service,
        service=SERVICE,
        topics=[TOPIC_SEGMENTS],
        output_topics=[TOPIC_CHECKPOINTS],
        default_metrics_port=DEFAULT_METRICS_PORT,
    )
