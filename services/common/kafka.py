"""Kafka wiring for every service: clients, topics and the at-least-once processing loop.

Delivery is *at least once*. ``ConsumeLoop`` consumes a batch, hands each
message to a processor (plain Python, testable without Kafka) that returns the
messages to produce, produces them, waits until the brokers acknowledged every
one (acks=all) and only then commits the input offsets. A crash anywhere before
the commit means the input is processed again, so outputs may be duplicated but
never lost. Making duplicates harmless is the caller's job: give outputs
deterministic keys and ids (``make_recording_id``, ``make_segment_id``, job ids)
so a consumer downstream can recognise a repeat, and make processors tolerate
seeing an input twice.

Stateful processors (the pruner reassembles recordings from chunks spread over
many messages) report per partition the first offset they still need
(``Processor.safe_offsets``); the loop never commits past it, so after a crash
or rebalance the new owner re-reads everything still in flight. The loop commits
everything committable after every batch, before it polls again, and a
rebalance only happens inside ``poll``: so when partitions are revoked nothing
committable is left uncommitted. Once the new assignment is known the processor
is told which partitions went to another consumer (``partitions_revoked``) to
drop their state; partitions assigned straight back keep their state and fetch
position. A consumer evicted from the group (``on_partitions_lost``) drops the
state at once and, if the partitions come back, re-reads from the committed
offsets.

A message the processor rejects with ``CodecError`` (or another configured
error type) is published to the dead-letter topic with the error, and the loop
goes on. Any other error stops the loop (after committing what was done) and
the service exits non-zero, to be restarted.

Topics and their keys: ``emulator.jobs`` (job id), ``apu.recordings``
(recording id: all chunks of a recording share a partition), ``apu.segments``
(segment id), ``model.checkpoints`` (none), ``dead.letters`` (original key).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kafka_errors
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from gbsynth.common import config as cfg
from gbsynth.common import metrics
from gbsynth.common.avro import CodecError, codec, now_unix_ms

log = logging.getLogger(__name__)

TOPIC_JOBS = "emulator.jobs"
TOPIC_RECORDINGS = "apu.recordings"
TOPIC_SEGMENTS = "apu.segments"
TOPIC_CHECKPOINTS = "model.checkpoints"
TOPIC_DEAD_LETTERS = "dead.letters"
ALL_TOPICS = (TOPIC_JOBS, TOPIC_RECORDINGS, TOPIC_SEGMENTS, TOPIC_CHECKPOINTS, TOPIC_DEAD_LETTERS)


class KafkaSetupError(RuntimeError):
    """Kafka could not be reached or configured (bad settings, brokers down)."""


class DeliveryError(RuntimeError):
    """Produced messages were not acknowledged; nothing was committed."""


# -- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaConfig:
    """Client settings, normally read from the ``GBSYNTH_KAFKA_*`` environment variables."""

    bootstrap: str = cfg.KAFKA_BOOTSTRAP.default
    client_id: str = ""
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    session_timeout_ms: int = cfg.KAFKA_SESSION_TIMEOUT_MS.default
    heartbeat_interval_ms: int = cfg.KAFKA_HEARTBEAT_INTERVAL_MS.default
    max_poll_interval_ms: int = cfg.KAFKA_MAX_POLL_INTERVAL_MS.default
    max_poll_records: int = cfg.KAFKA_MAX_POLL_RECORDS.default
    linger_ms: int = cfg.KAFKA_LINGER_MS.default
    compression: str = "none"
    max_request_bytes: int = cfg.KAFKA_MAX_REQUEST_BYTES.default
    idempotence: bool = True
    partitions: int = cfg.KAFKA_TOPIC_PARTITIONS.default
    replication_factor: int = cfg.KAFKA_REPLICATION_FACTOR.default

    def __post_init__(self) -> None:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise cfg.SettingError(
                f"GBSYNTH_KAFKA_HEARTBEAT_INTERVAL_MS ({self.heartbeat_interval_ms}) must be "
                f"below GBSYNTH_KAFKA_SESSION_TIMEOUT_MS ({self.session_timeout_ms})"
            )
        if self.security_protocol.startswith("SASL_") and not self.sasl_username:
            raise cfg.SettingError(
                f"GBSYNTH_KAFKA_SASL_USERNAME is required with {self.security_protocol}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> KafkaConfig:
        """Read every ``GBSYNTH_KAFKA_*`` setting (all bad values reported at once)."""
        names = {
            "bootstrap": cfg.KAFKA_BOOTSTRAP,
            "client_id": cfg.KAFKA_CLIENT_ID,
            "security_protocol": cfg.KAFKA_SECURITY_PROTOCOL,
            "sasl_mechanism": cfg.KAFKA_SASL_MECHANISM,
            "sasl_username": cfg.KAFKA_SASL_USERNAME,
            "sasl_password": cfg.KAFKA_SASL_PASSWORD,
            "ssl_cafile": cfg.KAFKA_SSL_CAFILE,
            "session_timeout_ms": cfg.KAFKA_SESSION_TIMEOUT_MS,
            "heartbeat_interval_ms": cfg.KAFKA_HEARTBEAT_INTERVAL_MS,
            "max_poll_interval_ms": cfg.KAFKA_MAX_POLL_INTERVAL_MS,
            "max_poll_records": cfg.KAFKA_MAX_POLL_RECORDS,
            "linger_ms": cfg.KAFKA_LINGER_MS,
            "compression": cfg.KAFKA_COMPRESSION,
            "max_request_bytes": cfg.KAFKA_MAX_REQUEST_BYTES,
            "idempotence": cfg.KAFKA_IDEMPOTENCE,
            "partitions": cfg.KAFKA_TOPIC_PARTITIONS,
            "replication_factor": cfg.KAFKA_REPLICATION_FACTOR,
        }
        values = cfg.read_settings(names.values(), environ)
        kwargs = {attr: values[setting.name] for attr, setting in names.items()}
        kwargs.update(overrides)
        return cls(**kwargs)

    def replace(self, **changes: Any) -> KafkaConfig:
        return replace(self, **changes)

    def client_options(self, service: str) -> dict[str, Any]:
        """Options every kafka-python client (producer, consumer, admin) shares."""
        options: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap.split(",") if s.strip()],
            "client_id": self.client_id or f"gbsynth-{service}",
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL_"):
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password
        if self.security_protocol.endswith("SSL") and self.ssl_cafile:
            options["ssl_cafile"] = self.ssl_cafile
        return options

    def producer_options(self, service: str) -> dict[str, Any]:
        return {
            **self.client_options(service),
            "acks": "all",
            "retries": 2**31 - 1,  # bounded by delivery_timeout_ms instead
            "delivery_timeout_ms": 120_000,
            "linger_ms": self.linger_ms,
            "compression_type": None if self.compression == "none" else self.compression,
            "max_request_size": self.max_request_bytes,
            "enable_idempotence": self.idempotence,
        }

    def consumer_options(self, service: str, group_id: str) -> dict[str, Any]:
        return {
            **self.client_options(service),
            "group_id": group_id,
            # Start from the beginning when the group has no committed offset; never rely
            # on "latest" (Tansu's latest-offset lookup is wrong after batched writes).
            "auto_offset_reset": "earliest",
            "enable_auto_commit": False,
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "max_poll_interval_ms": self.max_poll_interval_ms,
            "max_poll_records": self.max_poll_records,
            "fetch_max_bytes": max(52_428_800, self.max_request_bytes),
            "max_partition_fetch_bytes": max(1_048_576, self.max_request_bytes),
        }


def _no_brokers(config: KafkaConfig, exc: Exception) -> KafkaSetupError:
    return KafkaSetupError(
        f"cannot reach Kafka at {config.bootstrap} ({type(exc).__name__}: {exc}); "
        "is the broker running? (GBSYNTH_KAFKA_BOOTSTRAP)"
    )


def make_producer(config: KafkaConfig, service: str, **overrides: Any) -> KafkaProducer:
    """A producer with acks=all, retries and batching from ``config``."""
    try:
        return KafkaProducer(**{**config.producer_options(service), **overrides})
    except kafka_errors.NoBrokersAvailable as exc:
        raise _no_brokers(config, exc) from exc


def make_consumer(
    config: KafkaConfig, service: str, group_id: str | None = None, **overrides: Any
) -> KafkaConsumer:
    """A consumer in group ``group_id`` (default ``gbsynth-<service>``), not yet subscribed.

    Offsets are committed by hand (``ConsumeLoop``); a new group starts at the earliest offset.
    """
    options = config.consumer_options(service, group_id or f"gbsynth-{service}")
    try:
        return KafkaConsumer(**{**options, **overrides})
    except kafka_errors.NoBrokersAvailable as exc:
        raise _no_brokers(config, exc) from exc


def ensure_topics(
    config: KafkaConfig,
    topics: Iterable[str],
    *,
    partitions: int | None = None,
    replication_factor: int | None = None,
    service: str = "admin",
) -> list[str]:
    """Create the topics that do not exist yet; return the ones created.

    Existing topics are left as they are (no partition changes: not every broker
    supports CreatePartitions).
    """
    wanted = sorted(set(topics))
    try:
        admin = KafkaAdminClient(**config.client_options(service))
    except kafka_errors.NoBrokersAvailable as exc:
        raise _no_brokers(config, exc) from exc
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if not missing:
            return []
        spec = {
            "num_partitions": partitions or config.partitions,
            "replication_factor": replication_factor or config.replication_factor,
        }
        result = admin.create_topics({t: dict(spec) for t in missing}, raise_errors=False)
        created = []
        for topic in result.get("topics", []):
            code = topic.get("error_code", 0)
            if code == 0:
                created.append(topic["name"])
            elif code != kafka_errors.TopicAlreadyExistsError.errno:
                # Another service created it meanwhile is fine; anything else is not.
                raise KafkaSetupError(
                    f"cannot create topic {topic['name']}: error {code} "
                    f"{topic.get('error_message') or ''}".strip()
                )
        if created:
            log.info("created topics %s (%s)", ", ".join(created), spec)
        return created
    finally:
        admin.close()


# -- messages and processors -----------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A consumed message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = -1

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @classmethod
    def from_record(cls, record: Any) -> Message:
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            tuple(record.headers or ()),
            record.timestamp,
        )


@dataclass(frozen=True)
class Output:
    """A message to produce. A ``str`` key is sent as UTF-8."""

    topic: str
    value: bytes | None
    key: bytes | str | None = None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def key_bytes(self) -> bytes | None:
        return self.key.encode() if isinstance(self.key, str) else self.key

    @property
    def size(self) -> int:
        return len(self.value or b"") + len(self.key_bytes or b"")


class Processor:
    """What a service does with its input (subclass it, or wrap a function: ``FunctionProcessor``).

    Only ``process`` is required. It must not talk to Kafka itself: it returns
    outputs and the loop delivers them, which is what makes it testable alone.
    """

    def process(self, message: Message) -> Iterable[Output]:
        """Handle one message; raise ``CodecError`` to dead-letter it."""
        raise NotImplementedError

    def safe_offsets(self) -> Mapping[TopicPartition, int]:
        """Per partition, the first offset still needed (held back from commits).

        Partitions not in the mapping may be committed up to what was processed.
        """
        return {}

    def tick(self) -> Iterable[Output]:
        """Called once per loop iteration (at least every poll timeout): timers, expiry."""
        return ()

    def partitions_assigned(self, partitions: set[TopicPartition]) -> None:
        """The consumer now owns these partitions."""

    def partitions_revoked(self, partitions: set[TopicPartition]) -> None:
        """These partitions went to another consumer: drop any state kept for them."""

    def close(self) -> None:
        """The loop is stopping."""


class FunctionProcessor(Processor):
    """A stateless processor from a function ``message -> iterable of outputs``."""

    def __init__(self, function: Callable[[Message], Iterable[Output] | None]) -> None:
        self.function = function

    def process(self, message: Message) -> Iterable[Output]:
        return self.function(message) or ()


def dead_letter(message: Message, error: BaseException | str, service: str) -> Output:
    """The dead-letter message for a consumed message that could not be processed."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    record = {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": message.key,
        "value": message.value,
        "error": text,
        "service": service,
        "failed_unix_ms": now_unix_ms(),
    }
    return Output(TOPIC_DEAD_LETTERS, codec("DeadLetter").encode(record), message.key)


def deliver(producer: KafkaProducer, outputs: Iterable[Output], service: str = "") -> list[Any]:
    """Send outputs and wait until every one is acknowledged; raise ``DeliveryError`` if not.

    Returns the record metadata (topic, partition, offset) of each, in order.
    """
    sent = [(out, _send(producer, out)) for out in outputs]
    return _await_delivery(producer, sent, service)


def _send(producer: KafkaProducer, out: Output) -> Any:
    return producer.send(
        out.topic, value=out.value, key=out.key_bytes, headers=list(out.headers) or None
    )


def _await_delivery(producer: KafkaProducer, sent: list[tuple[Output, Any]], service: str) -> list:
    if not sent:
        return []
    producer.flush()
    results = []
    for out, future in sent:
        try:
            results.append(future.get(timeout=0))
        except Exception as exc:
            metrics.ERRORS.labels(service=service, kind="delivery_failed").inc()
            raise DeliveryError(
                f"message to {out.topic} was not acknowledged: {type(exc).__name__}: {exc}"
            ) from exc
        metrics.MESSAGES_OUT.labels(service=service, topic=out.topic).inc()
        metrics.BYTES_OUT.labels(service=service, topic=out.topic).inc(out.size)
    return results


# -- the loop --------------------------------------------------------------------------------


class _Listener(ConsumerRebalanceListener):
    def __init__(self, loop: ConsumeLoop) -> None:
        self.loop = loop

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.loop._revoked(set(revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.loop._assigned(set(assigned))

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.loop._lost(set(lost))


class ConsumeLoop:
    """Consume ``topics`` in a group, process, produce, then commit: at least once.

    ``consumer`` and ``producer`` are normally built from ``config``; pass your own
    to share them or for tests. ``run()`` returns when ``stop()`` is called (or a
    signal arrives, see ``install_signal_handlers``) after committing what is safe.
    Every ``lag_interval_s`` it refreshes ``gbsynth_consumer_lag`` (``refresh_lag``).
    """

    def __init__(
        self,
        processor: Processor,
        *,
        topics: Sequence[str],
        service: str,
        group_id: str | None = None,
        config: KafkaConfig | None = None,
        consumer: KafkaConsumer | None = None,
        producer: KafkaProducer | None = None,
        dead_letter_topic: str = TOPIC_DEAD_LETTERS,
        dead_letter_on: tuple[type[BaseException], ...] = (CodecError,),
        poll_timeout_ms: int = 500,
        lag_interval_s: float = 5.0,
    ) -> None:
        self.processor = processor
        self.topics = list(topics)
        self.service = service
        self.config = config or KafkaConfig.from_env()
        self.group_id = group_id or f"gbsynth-{service}"
        self._own_clients = []
        if consumer is None:
            consumer = make_consumer(self.config, service, self.group_id)
            self._own_clients.append(consumer)
        if producer is None:
            producer = make_producer(self.config, service)
            self._own_clients.append(producer)
        self.consumer = consumer
        self.producer = producer
        self.dead_letter_topic = dead_letter_topic
        self.dead_letter_on = dead_letter_on
        self.poll_timeout_ms = poll_timeout_ms
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._consumed: dict[TopicPartition, int] = {}  # next offset after the last processed
        self._committed: dict[TopicPartition, int] = {}
        self.assignment: set[TopicPartition] = set()
        self._revoking: set[TopicPartition] = set()
        self._lost_partitions: set[TopicPartition] = set()
        self._needs_seek: set[TopicPartition] = set()
        self.processed = 0
        self.dead_lettered = 0
        self.lag_interval_s = lag_interval_s
        self._lag_refreshed_at = float("-inf")
        self._lag_labelled: set[TopicPartition] = set()

    # Rebalance callbacks: kafka-python calls them inside poll(), while run() waits in it.
    # With the eager protocol a rebalance revokes every partition and then assigns, often
    # the same ones again; kafka-python then keeps their fetch positions, so their state
    # must be kept too. Revocations are therefore settled when the assignment arrives:
    # only partitions that really went elsewhere are forgotten.
    def _revoked(self, partitions: set[TopicPartition]) -> None:
        with self._lock:
            self._revoking |= partitions
            self.assignment -= partitions
        log.info("partitions revoked: %s", _describe(partitions))

    def _assigned(self, partitions: set[TopicPartition]) -> None:
        with self._lock:
            gone = self._revoking - partitions
            kept = self._revoking & partitions
            self._revoking = set()
            self.assignment |= partitions
            # A partition lost earlier and now back must restart from the committed offset.
            self._needs_seek |= partitions & self._lost_partitions
            self._lost_partitions -= partitions
            for tp in gone:
                self._consumed.pop(tp, None)
                self._committed.pop(tp, None)
        self._forget_lag(gone)
        log.info("partitions assigned: %s", _describe(partitions))
        if gone:
            self.processor.partitions_revoked(gone)
        if partitions - kept:
            self.processor.partitions_assigned(partitions - kept)

    def _lost(self, partitions: set[TopicPartition]) -> None:
        """Evicted from the group (e.g. a batch took longer than max_poll_interval_ms)."""
        with self._lock:
            self.assignment -= partitions
            self._revoking -= partitions
            self._lost_partitions |= partitions
            for tp in partitions:
                self._consumed.pop(tp, None)
                self._committed.pop(tp, None)
        self._forget_lag(partitions)
        log.warning("partitions lost: %s", _describe(partitions))
        self.processor.partitions_revoked(partitions)

    def _seek_to_committed(self) -> set[TopicPartition]:
        with self._lock:
            partitions, self._needs_seek = self._needs_seek, set()
        for tp in partitions:
            offset = self.consumer.committed(tp)
            if offset is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)
        return partitions

    def stop(self) -> None:
        """Ask the loop to finish the message in hand, commit and return."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Run until ``stop()``; an unexpected processing error is raised after a safe commit."""
        self.consumer.subscribe(self.topics, listener=_Listener(self))
        metrics.set_build_info(self.service)
        log.info("%s consuming %s as group %s", self.service, ", ".join(self.topics), self.group_id)
        clean = False
        try:
            while not self._stop.is_set():
                self.run_once()
            clean = True
        except Exception:
            metrics.ERRORS.labels(service=self.service, kind="processing").inc()
            raise
        finally:
            self._shutdown(clean)

    def run_once(self) -> int:
        """One poll -> process -> produce -> acknowledge -> commit round; returns messages done."""
        batch = self.consumer.poll(
            timeout_ms=self.poll_timeout_ms, max_records=self.config.max_poll_records
        )
        sent: list[tuple[Output, Any]] = []
        done = 0
        if self._needs_seek:
            # Records fetched before the seek are stale: read them again from the commit.
            for tp in self._seek_to_committed():
                batch.pop(tp, None)
        try:
            for tp, records in batch.items():
                for record in records:
                    if self._stop.is_set():
                        break
                    with self._lock:
                        # The first record after an assignment sits at the committed position.
                        self._committed.setdefault(tp, record.offset)
                    sent.extend(self._process(Message.from_record(record)))
                    with self._lock:
                        self._consumed[tp] = record.offset + 1
                    done += 1
            sent.extend((out, _send(self.producer, out)) for out in self.processor.tick())
        finally:
            # Whatever was processed gets delivered and committed, even if a later message failed.
            _await_delivery(self.producer, sent, self.service)
            self.commit()
        if time.monotonic() - self._lag_refreshed_at >= self.lag_interval_s:
            self.refresh_lag()
        return done

    def refresh_lag(self) -> dict[TopicPartition, int]:
        """Set ``gbsynth_consumer_lag{topic,partition}`` for each assigned partition.

        Lag is the high watermark the brokers reported in the last fetch minus the
        consumer's position (both are "next offset"), so it costs no extra request;
        partitions not fetched from yet are left out. Returns the lags it set.
        """
        self._lag_refreshed_at = time.monotonic()
        with self._lock:
            assigned = set(self.assignment) - self._revoking
        lags: dict[TopicPartition, int] = {}
        for tp in sorted(assigned):
            try:
                end = self.consumer.highwater(tp)
                if end is None:
                    continue
                position = self.consumer.position(tp, timeout_ms=1000)
            except kafka_errors.KafkaError as exc:
                # A rebalance under way or a slow broker: try again at the next refresh.
                log.debug("no lag for %s[%d]: %s", tp.topic, tp.partition, exc)
                continue
            if position is None:
                continue
            lags[tp] = max(0, end - position)
            metrics.CONSUMER_LAG.labels(
                service=self.service, topic=tp.topic, partition=str(tp.partition)
            ).set(lags[tp])
            self._lag_labelled.add(tp)
        return lags

    def _forget_lag(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the lag series of partitions this consumer no longer owns."""
        for tp in set(partitions) & self._lag_labelled:
            self._lag_labelled.discard(tp)
            try:
                metrics.CONSUMER_LAG.remove(self.service, tp.topic, str(tp.partition))
            except KeyError:
                pass

    def _process(self, message: Message) -> list[tuple[Output, Any]]:
        """Process one message, sending each output as soon as the processor yields it.

        A processor that yields as it works (the emulator worker, a chunk per emulated
        second) thus streams instead of holding a whole recording in memory.
        """
        size = len(message.value or b"") + len(message.key or b"")
        metrics.MESSAGES_IN.labels(service=self.service, topic=message.topic).inc()
        metrics.BYTES_IN.labels(service=self.service, topic=message.topic).inc(size)
        started = time.perf_counter()
        sent: list[tuple[Output, Any]] = []
        try:
            for out in self.processor.process(message):
                sent.append(self._send_or_park(message, out))
        except self.dead_letter_on as exc:
            log.warning(
                "dead-lettering %s[%d]@%d: %s",
                message.topic,
                message.partition,
                message.offset,
                exc,
            )
            metrics.ERRORS.labels(service=self.service, kind="dead_letter").inc()
            self.dead_lettered += 1
            letter = replace(dead_letter(message, exc, self.service), topic=self.dead_letter_topic)
            sent.append((letter, _send(self.producer, letter)))
        finally:
            metrics.PROCESSING_SECONDS.labels(service=self.service, topic=message.topic).observe(
                time.perf_counter() - started
            )
        self.processed += 1
        return sent

    def _send_or_park(self, message: Message, out: Output) -> tuple[Output, Any]:
        try:
            return out, _send(self.producer, out)
        except kafka_errors.MessageSizeTooLargeError as exc:
            # The output can never be delivered: park the input instead of crash-looping.
            metrics.ERRORS.labels(service=self.service, kind="dead_letter").inc()
            self.dead_lettered += 1
            letter = replace(
                dead_letter(message, f"output to {out.topic} too large: {exc}", self.service),
                topic=self.dead_letter_topic,
            )
            return letter, _send(self.producer, letter)

    def committable(self) -> dict[TopicPartition, int]:
        """Offsets that may be committed now: processed, bounded by the processor's holds."""
        safe = self.processor.safe_offsets()
        with self._lock:
            offsets = {}
            held = 0
            for tp, consumed in self._consumed.items():
                if tp in self._revoking:
                    continue  # mid-rebalance: it may belong to another consumer already
                offset = min(consumed, safe[tp]) if tp in safe else consumed
                held += consumed - offset
                if offset > self._committed.get(tp, -1):
                    offsets[tp] = offset
        metrics.HELD_BACK.labels(service=self.service).set(held)
        return offsets

    def commit(self) -> bool:
        """Commit what is safe; False if the group moved on (a rebalance: it will be re-read)."""
        offsets = self.committable()
        if not offsets:
            return True
        try:
            self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        except (
            kafka_errors.CommitFailedError,
            kafka_errors.RebalanceInProgressError,
            kafka_errors.IllegalGenerationError,
            kafka_errors.UnknownMemberIdError,
        ) as exc:
            metrics.ERRORS.labels(service=self.service, kind="commit_failed").inc()
            log.warning("commit failed (%s); those messages will be processed again", exc)
            return False
        with self._lock:
            for tp, offset in offsets.items():
                if tp in self._consumed:
                    self._committed[tp] = offset
        metrics.COMMITS.labels(service=self.service).inc()
        return True

    def _shutdown(self, clean: bool) -> None:
        try:
            self.processor.close()
        finally:
            for client in self._own_clients:
                try:
                    if isinstance(client, KafkaConsumer):
                        client.close(autocommit=False)
                    else:
                        client.close(timeout=10)
                except Exception as exc:  # closing must not hide the real error
                    log.warning("closing %s: %s", type(client).__name__, exc)
        log.info("%s stopped (%s)", self.service, "clean" if clean else "after an error")


def _describe(partitions: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions)) or "none"


def install_signal_handlers(stop: Callable[[], None]) -> Callable[[], None]:
    """Call ``stop`` on SIGTERM and SIGINT (main thread only); returns a function restoring
    the previous handlers. A second signal while stopping raises ``KeyboardInterrupt``."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    seen = []

    def handler(signum: int, _frame: Any) -> None:
        if seen:
            raise KeyboardInterrupt
        seen.append(signum)
        log.info("signal %d: stopping after the message in hand", signum)
        stop()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def run_service(
    processor: Processor,
    *,
    service: str,
    topics: Sequence[str],
    output_topics: Sequence[str] = (),
    group_id: str | None = None,
    config: KafkaConfig | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Everything a consuming service's ``run(args)`` needs: logging, metrics server,
    topic creation, signal handling and the loop. Returns the exit code; configuration
    and connection problems are one line on stderr.

    The metrics server listens on ``GBSYNTH_METRICS_PORT`` when set, else on the
    service's own port (``SERVICE_METRICS_PORTS``; none for a service not listed)."""
    import sys

    cfg.configure_logging(service, environ)
    try:
        config = config or KafkaConfig.from_env(environ)
        metrics.start_metrics_server(
            cfg.metrics_port(cfg.SERVICE_METRICS_PORTS.get(service, 0), environ),
            cfg.METRICS_ADDRESS.get(environ),
            service=service,
        )
        ensure_topics(config, [*topics, *output_topics, TOPIC_DEAD_LETTERS], service=service)
        loop = ConsumeLoop(
            processor, topics=topics, service=service, group_id=group_id, config=config
        )
    except (cfg.SettingError, KafkaSetupError, OSError) as exc:
        print(f"gbsynth {service}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, cfg.SettingError) else 1
    except kafka_errors.KafkaError as exc:
        print(f"gbsynth {service}: Kafka error: {exc}", file=sys.stderr)
        return 1
    restore = install_signal_handlers(loop.stop)
    try:
        loop.run()
    except DeliveryError as exc:
        print(f"gbsynth {service}: {exc}", file=sys.stderr)
        return 1
    finally:
        restore()
    return 0
