"""The model the generator serves, and how a newer checkpoint replaces it.

``ModelHolder.current`` is the model new requests use. A newer checkpoint is loaded
beside it (requests go on meanwhile) and swapped in with one reference assignment;
a request holds on to the model it started with, so in-flight songs finish on the
old model and nothing is dropped.

Before the trainer has promoted any checkpoint, the holder serves the default model
(``GBSYNTH_DEFAULT_MODEL``: the pre-trained model shipped in the package), so songs
can be asked for from the first second; the first promoted checkpoint replaces it.
Two things offer checkpoints to the holder:

* ``DirectoryWatcher`` polls ``GBSYNTH_CHECKPOINT_DIR`` for the newest promoted
  checkpoint (``gbsynth.trainer.checkpoint.served_checkpoints``: the trainer
  promotes a checkpoint only when it scores better than the model served before),
  so a generator needs nothing but the shared folder;
* ``AnnouncementWatcher`` reads ``model.checkpoints`` and loads an announced file as
  soon as it is announced, after checking its SHA-256 against the announcement.
  Every generator replica must see every announcement, so it reads without a
  consumer group, from the beginning of the topic (old announcements are skipped
  by their step without touching the file).

Announced paths are resolved by file name inside the checkpoint folder: the trainer
and the generators may mount the shared storage at different places, and a message
can never make the generator read a file outside the folder.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from gbsynth.common import metrics
from gbsynth.common.events import ApuWrites

log = logging.getLogger(__name__)

SERVICE = "generator"

SAMPLER_PIECE_TOKENS = 64
"""Tokens per sampled piece: small, so the first audio leaves early (the song is the same
whatever the piece size: the sampler draws its random numbers in one sequence)."""

MODEL_STEP = metrics.gauge("generator_model_step", "training step of the model being served")
MODEL_LOADS = metrics.counter(
    "generator_model_loads",
    "checkpoint loads by outcome (loaded, failed) and trigger (start, poll, announcement, default)",
    ["outcome", "trigger"],
)


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A loaded checkpoint and its sampler: a ``SongSource``."""

    checkpoint: Any  # gbsynth.trainer.checkpoint.LoadedCheckpoint
    sampler: Any  # gbsynth.trainer.sampling.Sampler
    loaded_at: float

    @property
    def step(self) -> int:
        return int(self.checkpoint.step)

    @property
    def sha256(self) -> str:
        return str(self.checkpoint.sha256)

    @property
    def path(self) -> Path:
        return Path(self.checkpoint.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def stream(self) -> Callable[..., Iterator[ApuWrites]]:
        """``SongSource.stream``: the sampler's (``gbsynth.trainer.sampling.Sampler.stream``)."""
        return self.sampler.stream


def load_model(path: Path, expected_sha256: str | None = None) -> LoadedModel:
    """Load a checkpoint file for sampling; ``CheckpointError`` if it is not a valid one."""
    from gbsynth.trainer.checkpoint import load_checkpoint
    from gbsynth.trainer.sampling import Sampler

    checkpoint = load_checkpoint(Path(path), expected_sha256=expected_sha256)
    sampler = Sampler(checkpoint, piece_tokens=SAMPLER_PIECE_TOKENS)
    return LoadedModel(checkpoint, sampler, time.time())


def _file_id(path: Path) -> tuple[int, int, int] | None:
    """What tells a rewritten file apart (inode, size, modification time), or None if gone."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class ModelHolder:
    """Holds the model being served and swaps in newer checkpoints.

    A candidate is taken when there is no model yet, when the default model (``fallback``)
    is served, when its step is higher, when it is the same file rewritten, or when the
    served model's file is gone (the checkpoint folder was reset and training started over).
    """

    def __init__(
        self,
        checkpoint_dir: Path,
        loader: Callable[[Path, str | None], LoadedModel] = load_model,
        fallback: Path | None = None,
    ) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.fallback = None if fallback is None else Path(fallback)
        """The default model, served until the folder holds a promoted checkpoint."""
        self._loader = loader
        self._current: LoadedModel | None = None
        self._current_id: tuple[int, int, int] | None = None
        self._load_lock = threading.Lock()  # one load at a time: a load holds a model in memory
        self._failed: dict[Path, tuple[Any, str | None]] = {}
        self.swaps = 0
        self.last_error: str | None = None

    @property
    def current(self) -> LoadedModel | None:
        """The model for a new request (a plain read: the swap is one assignment)."""
        return self._current

    def _wanted(self, path: Path, step: int | None) -> bool:
        current = self._current
        if current is None:
            return True
        if not current.path.exists():
            return True
        if path == current.path:
            return _file_id(path) != self._current_id
        if self._serving_fallback():
            return True  # any promoted checkpoint beat the model it started from
        return step is None or step > current.step

    def _serving_fallback(self) -> bool:
        current = self._current
        return current is not None and current.path == self.fallback

    def offer(
        self,
        path: Path,
        *,
        step: int | None = None,
        expected_sha256: str | None = None,
        trigger: str = "poll",
    ) -> bool:
        """Load ``path`` and serve it if it is newer than the current model; True if swapped.

        ``step`` (when known, e.g. from an announcement) skips stale candidates without
        reading the file. A file that failed to load is not retried until it changes.
        """
        path = Path(path)
        with self._load_lock:
            if not self._wanted(path, step):
                return False
            file_id = _file_id(path)
            if file_id is None:
                log.debug("checkpoint %s is not there (yet)", path)
                return False
            if self._failed.get(path) == (file_id, expected_sha256):
                return False
            try:
                model = self._loader(path, expected_sha256)
            except Exception as exc:  # CheckpointError, OSError, torch errors: keep serving
                self._failed[path] = (file_id, expected_sha256)
                self.last_error = f"{path.name}: {exc}"
                MODEL_LOADS.labels(service=SERVICE, outcome="failed", trigger=trigger).inc()
                log.warning("cannot load checkpoint %s: %s", path, exc)
                return False
            self._failed.pop(path, None)
            current = self._current
            if (
                current is not None
                and current.path.exists()
                and path != current.path
                and not self._serving_fallback()
                and model.step <= current.step
            ):
                return False  # the file said less than its name: keep the newer one
            self._current_id = file_id
            self._current = model
            self.swaps += 1
            self.last_error = None
            MODEL_LOADS.labels(service=SERVICE, outcome="loaded", trigger=trigger).inc()
            MODEL_STEP.labels(service=SERVICE).set(model.step)
            log.info(
                "serving checkpoint %s (step %d, sha256 %s)", path.name, model.step,
                model.sha256[:12],
            )  # fmt: skip
            return True

    def refresh(self, trigger: str = "poll") -> bool:
        """Offer the newest promoted checkpoint of the folder (none there yet: the default
        model, if not served already); True if it was swapped in."""
        from gbsynth.trainer.checkpoint import served_checkpoints

        found = served_checkpoints(self.checkpoint_dir)  # (step, path), highest step last
        if not found:
            if self.fallback is None or self._current is not None:
                return False
            return self.offer(self.fallback, trigger="default")
        step, newest = found[-1]
        return self.offer(newest, step=step, trigger=trigger)

    def offer_announcement(self, announcement: dict[str, Any]) -> bool:
        """Load an announced checkpoint (verified against its SHA-256) if it is newer."""
        name = Path(str(announcement.get("path", ""))).name
        if not name:
            log.warning("checkpoint announcement without a path: %s", announcement)
            return False
        return self.offer(
            self.checkpoint_dir / name,
            step=int(announcement["step"]),
            expected_sha256=str(announcement["sha256"]),
            trigger="announcement",
        )


class _Watcher:
    """Offers checkpoints to ``holder`` from ``_run`` in a daemon thread, until ``stop``."""

    THREAD_NAME = "checkpoint-watch"
    STOP_SECONDS = 10.0
    """How long ``stop`` waits for the thread to end."""

    def __init__(self, holder: ModelHolder) -> None:
        self.holder = holder
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.THREAD_NAME, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.STOP_SECONDS)

    def _run(self) -> None:
        raise NotImplementedError


class DirectoryWatcher(_Watcher):
    """Polls the checkpoint folder every ``interval`` seconds in a daemon thread."""

    THREAD_NAME = "checkpoint-poll"

    def __init__(self, holder: ModelHolder, interval: float) -> None:
        self.interval = interval
        super().__init__(holder)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.holder.refresh()
            except Exception:  # the folder vanished, a permission changed: try again later
                log.exception("polling %s failed", self.holder.checkpoint_dir)


class AnnouncementWatcher(_Watcher):
    """Reads ``model.checkpoints`` in a daemon thread and offers each announcement.

    Kafka being down is not fatal: the folder poll still finds checkpoints, and the
    watcher reconnects with a growing pause (up to a minute).
    """

    THREAD_NAME = "checkpoint-news"
    STOP_SECONDS = 15.0

    def __init__(self, holder: ModelHolder, config: Any, poll_timeout_ms: int = 1000) -> None:
        self.config = config  # gbsynth.common.kafka.KafkaConfig
        self.poll_timeout_ms = poll_timeout_ms
        self.seen = 0
        super().__init__(holder)

    def _run(self) -> None:
        pause = 1.0
        while not self._stop.is_set():
            try:
                self._consume()
                pause = 1.0
            except Exception as exc:  # brokers down, topic missing: keep trying
                log.warning("checkpoint announcements: %s; retrying in %.0f s", exc, pause)
                self._stop.wait(pause)
                pause = min(pause * 2, 60.0)

    def _consume(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from gbsynth.common.avro import CodecError, codec
        from gbsynth.common.kafka import TOPIC_CHECKPOINTS, ensure_topics

        ensure_topics(self.config, [TOPIC_CHECKPOINTS], service=SERVICE)
        options = self.config.consumer_options(SERVICE, "unused")
        # No group: every replica reads every announcement and commits nothing.
        options.update(group_id=None, enable_auto_commit=False)
        for group_only in ("session_timeout_ms", "heartbeat_interval_ms", "max_poll_interval_ms"):
            options.pop(group_only, None)
        consumer = KafkaConsumer(**options)
        try:
            partitions = None
            while partitions is None and not self._stop.is_set():
                partitions = consumer.partitions_for_topic(TOPIC_CHECKPOINTS)
                if partitions is None:
                    self._stop.wait(1.0)
            if partitions is None:
                return
            assigned = [TopicPartition(TOPIC_CHECKPOINTS, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            consumer.seek_to_beginning(*assigned)
            log.info("watching %s for checkpoints", TOPIC_CHECKPOINTS)
            announcements = codec("CheckpointAnnouncement")
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=self.poll_timeout_ms)
                for records in batch.values():
                    for record in records:
                        self.seen += 1
                        try:
                            announcement = announcements.decode(record.value or b"")
                        except CodecError as exc:
                            metrics.ERRORS.labels(service=SERVICE, kind="bad_announcement").inc()
                            log.warning("undecodable checkpoint announcement: %s", exc)
                            continue
                        self.holder.offer_announcement(announcement)
        finally:
            consumer.close(autocommit=False)
