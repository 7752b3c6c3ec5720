"""The trainer service: segments in (``apu.segments``), checkpoints out (``model.checkpoints``).

It starts from the pre-trained default model (``GBSYNTH_DEFAULT_MODEL``; the one the
generators serve before any checkpoint exists) and fine-tunes it on the stream: it
consumes segments continuously into a local dataset (``SegmentStore`` under
``GBSYNTH_TRAINER_DATA_DIR``; the held-out split is by source file) and, between
polls, trains for up to ``GBSYNTH_TRAINER_TICK_SECONDS``, with the loop ``gbsynth
train`` runs (``gbsynth.trainer.train.TrainingRun``). Every
``GBSYNTH_TRAINER_CHECKPOINT_EVERY`` steps it scores the held-out segments,
writes a checkpoint atomically to ``GBSYNTH_CHECKPOINT_DIR`` (keeping the newest
``GBSYNTH_TRAINER_KEEP_CHECKPOINTS``, the best held-out one and the served one)
and, only when it scores better on those segments than the model served so far,
*promotes* it and announces it on ``model.checkpoints`` with its SHA-256: the
generators never swap a good model for a worse one.

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
from gbsynth.trainer import representation
from gbsynth.trainer.checkpoint import (
    CheckpointError,
    SavedCheckpoint,
    default_model_path,
    load_checkpoint,
    read_metadata,
    served_checkpoints,
)
from gbsynth.trainer.data import track_from_segment
from gbsynth.trainer.model import PRESETS, GPTConfig
from gbsynth.trainer.store import SegmentStore
from gbsynth.trainer.train import TrainingRun, TrainSettings, Windows

log = logging.getLogger(__name__)

SERVICE = "trainer"

DATA_DIR = Setting(
    "GBSYNTH_TRAINER_DATA_DIR", str, "var/trainer-data", "folder of the trainer's segment dataset"
)
PRESET = Setting(
    "GBSYNTH_TRAINER_PRESET",
    str,
    "cpu",
    "model size of a new model (when GBSYNTH_DEFAULT_MODEL is none): tiny (tests), small, "
    "cpu or gpu",
    choices=tuple(PRESETS),
)
BATCH_SIZE = Setting(
    "GBSYNTH_TRAINER_BATCH_SIZE", int, TrainSettings.batch_size, "training windows per step",
    minimum=1,
)  # fmt: skip
LEARNING_RATE = Setting(
    "GBSYNTH_TRAINER_LR", float, TrainSettings.lr, "AdamW learning rate (after warm-up)",
    minimum=0,
)  # fmt: skip
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
EVAL_TOKENS = Setting(
    "GBSYNTH_TRAINER_EVAL_TOKENS",
    int,
    20_000,
    "held-out tokens scored at each checkpoint (bounds evaluation time)",
    minimum=1,
)
MIN_TOKENS = Setting(
    "GBSYNTH_TRAINER_MIN_TOKENS",
    int,
    2_000,
    "training tokens needed before the first step",
    minimum=2,
)
MAX_TOKENS = Setting(
    "GBSYNTH_TRAINER_MAX_TOKENS",
    int,
    20_000_000,
    "training tokens kept in the dataset (2 bytes each on disk, 10 in memory); "
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
WINDOW = Setting(
    "GBSYNTH_TRAINER_WINDOW",
    int,
    TrainSettings.window,
    "tokens per training window (0: the model's whole context); shorter is faster per step",
    minimum=0,
)
THREADS = Setting("GBSYNTH_TRAINER_THREADS", int, 1, "torch CPU threads for training", minimum=1)
SEED = Setting("GBSYNTH_TRAINER_SEED", int, 0, "seed of a fresh model and its batch sampler")

STEP = metrics.gauge("trainer_step", "optimizer steps taken (continues across restarts)")
LOSS = metrics.gauge("trainer_loss", "mean training loss of the last steps, nats per token")
HELDOUT_NLL = metrics.gauge(
    "trainer_heldout_nll", "held-out negative log-likelihood, nats per token"
)
TOKENS_PER_SECOND = metrics.gauge(
    "trainer_tokens_per_second", "tokens trained per second of training time (last tick)"
)
CHECKPOINT_AGE = metrics.gauge(
    "trainer_checkpoint_age_seconds", "seconds since the newest checkpoint was written"
)
DATASET_SEGMENTS = metrics.gauge(
    "trainer_dataset_segments", "segments in the local dataset", ["split"]
)
DATASET_TOKENS = metrics.gauge("trainer_dataset_tokens", "tokens in the local dataset", ["split"])
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
        init: Path | None = None,
        checkpoint_every: int = 200,
        keep_checkpoints: int = 3,
        eval_tokens: int = 20_000,
        min_tokens: int = 2_000,
        tick_seconds: float = 2.0,
        clock=time.monotonic,
    ) -> None:
        self.store = store
        self.checkpoint_dir = Path(checkpoint_dir)
        self.min_tokens = min_tokens
        self.tick_seconds = tick_seconds
        self.clock = clock
        self.consumed: dict[TopicPartition, int] = {}  # next offset after the last stored
        self.first_seen: dict[TopicPartition, int] = {}
        self.checkpointed: dict[TopicPartition, int] = {}  # offsets the newest checkpoint covers
        self.last_checkpoint: SavedCheckpoint | None = None
        self.last_checkpoint_at: float | None = None
        trainer, resumed = TrainingRun.resume_or_start(
            self.checkpoint_dir, config, settings, init=init
        )
        self.run = TrainingRun(
            self.checkpoint_dir, trainer, store.heldout, checkpoint_every=checkpoint_every,
            keep=keep_checkpoints, eval_tokens=eval_tokens,
            promote_against=self._served_model(init), extra_state=self._state_extra,
        )  # fmt: skip
        self._pending_offsets: dict[TopicPartition, int] = {}
        if store.representation != trainer.config.representation:
            raise CheckpointError(
                f"the dataset holds {store.representation!r} tokens, the model reads "
                f"{trainer.config.representation!r}"
            )
        if resumed is not None:
            self._resumed(resumed)
        else:
            log.info("starting from %s", init or "a new model")
        self._windows: Windows | None = None
        self._windows_version = -1
        self._update_dataset_metrics()

    @property
    def trainer(self):
        return self.run.trainer

    @property
    def saved_step(self) -> int:
        """Step of the newest checkpoint (or of the initial model)."""
        return self.run.saved_step

    def _served_model(self, init: Path | None):
        """The model generators serve now: the newest promoted checkpoint, else ``init``
        (None: nothing served yet, so every checkpoint is promoted)."""
        served = served_checkpoints(self.checkpoint_dir)
        path = served[-1][1] if served else init
        return None if path is None else load_checkpoint(path).model

    # -- resuming ------------------------------------------------------------------------
    def _resumed(self, loaded) -> None:
        state = loaded.trainer_state
        self.checkpointed = {_parse_offset_key(k): int(v) for k, v in state["offsets"].items()}
        self.last_checkpoint_at = self.clock() - max(
            0.0, time.time() - loaded.created_unix_ms / 1000
        )
        STEP.labels(service=SERVICE).set(loaded.step)
        LOSS.labels(service=SERVICE).set(loaded.train_loss)
        if loaded.heldout_nll is not None:
            HELDOUT_NLL.labels(service=SERVICE).set(loaded.heldout_nll)
        log.info(
            "resumed from %s: step %d, training loss %.3f", loaded.path.name, loaded.step,
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
            track = track_from_segment(segment, self.trainer.representation)
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
        if self.store.tokens("train") < self.min_tokens:
            return None
        if self._windows is None or self._windows_version != self.store.version:
            self._windows = self.trainer.windows(self.store.train)
            self.run.validation = list(self.store.heldout)
            self._windows_version = self.store.version
        return self._windows

    def tick(self) -> Iterator[Output]:
        if self.last_checkpoint_at is not None:
            CHECKPOINT_AGE.labels(service=SERVICE).set(self.clock() - self.last_checkpoint_at)
        windows = self.windows()
        if windows is None:
            return
        started = time.perf_counter()
        tokens_before = self.trainer.tokens_trained
        steps_before = self.trainer.step_count

        def until() -> bool:
            STEP.labels(service=SERVICE).set(self.trainer.step_count)
            return (
                self.trainer.step_count > steps_before
                and time.perf_counter() - started >= self.tick_seconds
            )

        for saved in self.run.train(windows, until):
            output = self._announce(saved)
            if output is not None:
                yield output
            break  # let the loop commit and poll before training on
        elapsed = time.perf_counter() - started
        LOSS.labels(service=SERVICE).set(self.trainer.train_loss)
        TOKENS_PER_SECOND.labels(service=SERVICE).set(
            (self.trainer.tokens_trained - tokens_before) / max(elapsed, 1e-9)
        )

    def checkpoint(self) -> Output | None:
        """Evaluate, write a checkpoint, prune old ones; the announcement to publish (None
        when the checkpoint does not beat the served model)."""
        return self._announce(self.run.checkpoint())

    def _state_extra(self) -> dict:
        """What the service adds to a checkpoint's training state: the offsets it covers."""
        offsets = {**self.checkpointed, **self.consumed}
        self._pending_offsets = offsets
        return {
            "offsets": {_offset_key(tp): int(o) for tp, o in offsets.items()},
            "dataset_segments": len(self.store),
        }

    def _announce(self, saved: SavedCheckpoint) -> Output | None:
        self.checkpointed = self._pending_offsets
        self.last_checkpoint = saved
        self.last_checkpoint_at = self.clock()
        CHECKPOINT_AGE.labels(service=SERVICE).set(0)
        nll = saved.heldout_nll
        if nll is not None:
            HELDOUT_NLL.labels(service=SERVICE).set(nll)
        promoted = bool((read_metadata(saved.path) or {}).get("promoted", True))
        log.info(
            "checkpoint %s: step %d, training loss %.3f, held-out NLL %s%s", saved.path.name,
            saved.step, saved.train_loss, "n/a" if nll is None else f"{nll:.3f}",
            " (promoted)" if promoted else " (not better than the served model)",
        )  # fmt: skip
        if not promoted:
            return None
        return Output(TOPIC_CHECKPOINTS, encode_announcement(saved))

    def close(self) -> None:
        """A clean stop: keep the steps since the last checkpoint (not announced)."""
        if self.trainer.step_count != self.saved_step:
            self.checkpoint()

    def _update_dataset_metrics(self) -> None:
        for split in ("train", "heldout"):
            DATASET_SEGMENTS.labels(service=SERVICE, split=split).set(self.store.segments(split))
            DATASET_TOKENS.labels(service=SERVICE, split=split).set(self.store.tokens(split))


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
         HELDOUT_PERCENT, EVAL_TOKENS, MIN_TOKENS, MAX_TOKENS, TICK_SECONDS, WINDOW, THREADS, SEED,
         cfg.CHECKPOINT_DIR]
    )  # fmt: skip
    torch.set_num_threads(values[THREADS.name])
    checkpoint_dir = Path(args.checkpoint_dir or values[cfg.CHECKPOINT_DIR.name])
    init = default_model_path()
    config = PRESETS[values[PRESET.name]]
    store = SegmentStore(
        Path(args.data_dir or values[DATA_DIR.name]),
        values[HELDOUT_PERCENT.name],
        max_tokens=values[MAX_TOKENS.name],
        representation=model_representation(checkpoint_dir, init, config),
    )
    return TrainerService(
        store,
        checkpoint_dir,
        config=config,
        settings=TrainSettings(
            batch_size=values[BATCH_SIZE.name],
            lr=values[LEARNING_RATE.name],
            seed=values[SEED.name],
            window=values[WINDOW.name],
        ),
        init=init,
        checkpoint_every=values[CHECKPOINT_EVERY.name],
        keep_checkpoints=values[KEEP_CHECKPOINTS.name],
        eval_tokens=values[EVAL_TOKENS.name],
        min_tokens=values[MIN_TOKENS.name],
        tick_seconds=values[TICK_SECONDS.name],
    )


def model_representation(checkpoint_dir: Path, init: Path | None, config: GPTConfig) -> str:
    """The representation the trainer will train in: its newest checkpoint's, else the
    initial model's, else the preset's."""
    from gbsynth.trainer.checkpoint import newest_checkpoint

    for path in (newest_checkpoint(checkpoint_dir), init):
        if path is not None:
            meta = read_metadata(path)
            if meta is None:
                return load_checkpoint(path).config.representation
            return str(meta["config"].get("representation", representation.DEFAULT))
    return config.representation


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
    )
