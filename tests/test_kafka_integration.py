"""The at-least-once Kafka loop: unit tests with stand-in clients, then against a real broker."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from gbsynth.common import metrics
from gbsynth.common.avro import (
    CodecError,
    RecordingAssembler,
    codec,
    decode_chunk,
    encode_recording,
)
from gbsynth.common.broker import BrokerError, LocalBroker, free_port, kafka_answers
from gbsynth.common.events import ApuWrites, Recording, Source, SourceKind
from gbsynth.common.kafka import (
    ConsumeLoop,
    DeliveryError,
    FunctionProcessor,
    KafkaConfig,
    Message,
    Output,
    Processor,
    _Listener,
    deliver,
    ensure_topics,
    install_signal_handlers,
    make_producer,
    run_service,
)

SRC = Source(sha256="ee" * 32, file_name="t.gbs", kind=SourceKind.GBS)


def make_recording(rid: str, n: int, seed: int) -> Recording:
    rng = np.random.default_rng(seed)
    cycles = np.cumsum(rng.integers(4, 2000, n))
    writes = ApuWrites.from_arrays(cycles, rng.integers(0xFF10, 0xFF40, n), rng.integers(0, 256, n))
    return Recording(rid, SRC, writes, int(cycles[-1]) + 1)


def digest(rec: Recording) -> bytes:
    w = rec.writes
    return hashlib.sha256(w.cycles.tobytes() + w.registers.tobytes() + w.values.tobytes()).digest()


class Reassembler(Processor):
    """A miniature pruner: chunks in, one message per complete recording out."""

    def __init__(self, out_topic: str) -> None:
        self.out_topic = out_topic
        self.assembler = RecordingAssembler()
        self.lost: list = []

    def process(self, message: Message):
        chunk = decode_chunk(message.value)
        rec = self.assembler.add(chunk, position=(message.topic_partition, message.offset))
        if rec is not None:
            yield Output(self.out_topic, digest(rec), key=rec.recording_id)

    def safe_offsets(self):
        return self.assembler.oldest_pending_offsets()

    def partitions_revoked(self, partitions):
        self.lost.extend(self.assembler.drop_partitions(partitions))


# -- stand-in clients ------------------------------------------------------------------------


class FakeFuture:
    def __init__(self, topic, partition, offset, error=None):
        self.meta = SimpleNamespace(topic=topic, partition=partition, offset=offset)
        self.error = error

    def get(self, timeout=None):
        if self.error:
            raise self.error
        return self.meta


class FakeProducer:
    def __init__(self, log, fail=False):
        self.log, self.fail, self.sent = log, fail, []

    def send(self, topic, value=None, key=None, headers=None):
        self.log.append(("send", topic))
        self.sent.append((topic, key, value))
        error = RuntimeError("broker down") if self.fail else None
        return FakeFuture(topic, 0, len(self.sent) - 1, error)

    def flush(self, timeout=None):
        self.log.append(("flush",))

    def close(self, timeout=None):
        pass


class FakeConsumer:
    """Serves scripted batches of records; records commits."""

    def __init__(self, log, batches):
        self.log, self.batches, self.commits = log, list(batches), []
        self.listener = None

    def subscribe(self, topics, listener=None):
        self.listener = listener

    def poll(self, timeout_ms=0, max_records=None):
        if not self.batches:
            return {}
        step = self.batches.pop(0)
        if callable(step):
            step(self)
            return {}
        batch = defaultdict(list)
        for topic, partition, offset, key, value in step:
            record = SimpleNamespace(
                topic=topic,
                partition=partition,
                offset=offset,
                key=key,
                value=value,
                headers=[],
                timestamp=0,
            )
            batch[TopicPartition(topic, partition)].append(record)
        return dict(batch)

    def committed(self, tp):
        done = [c[tp] for c in self.commits if tp in c]
        return done[-1] if done else None

    def seek(self, tp, offset):
        self.log.append(("seek", tp.partition, offset))

    def highwater(self, tp):
        return None  # no fetch responses: no lag to report

    def position(self, tp, timeout_ms=None):
        return None

    def seek_to_beginning(self, tp):
        self.log.append(("seek", tp.partition, 0))

    def commit(self, offsets):
        self.log.append(("commit",))
        self.commits.append({tp: om.offset for tp, om in offsets.items()})

    def close(self, autocommit=False):
        pass


def run_fake(processor, batches, fail=False, rounds=None):
    log: list = []
    consumer, producer = FakeConsumer(log, batches), FakeProducer(log, fail)
    loop = ConsumeLoop(
        processor,
        topics=["in"],
        service="test",
        consumer=consumer,
        producer=producer,
        config=KafkaConfig(),
    )
    consumer.subscribe(["in"], listener=None)
    for _ in range(rounds or len(batches)):
        loop.run_once()
    return loop, consumer, producer, log


def test_outputs_are_acknowledged_before_the_commit():
    double = FunctionProcessor(lambda m: [Output("out", m.value * 2, m.key)])
    batch = [("in", 0, i, b"k", b"v%d" % i) for i in range(5)]
    loop, consumer, producer, log = run_fake(double, [batch])
    assert [v for _, _, v in producer.sent] == [b"v%dv%d" % (i, i) for i in range(5)]
    assert log.index(("flush",)) < log.index(("commit",))
    assert consumer.commits == [{TopicPartition("in", 0): 5}]


def test_failed_delivery_commits_nothing():
    processor = FunctionProcessor(lambda m: [Output("out", m.value)])
    with pytest.raises(DeliveryError, match="broker down"):
        run_fake(processor, [[("in", 0, 0, None, b"x")]], fail=True)


def test_malformed_message_is_dead_lettered_and_the_loop_goes_on():
    rec = make_recording("r", 300, 1)
    good = encode_recording(rec, max_writes=100)
    batch = [("in", 0, i, b"r", v) for i, v in enumerate(good[:2])]
    batch.append(("in", 0, 2, b"bad", b"\x00not avro"))
    batch += [("in", 0, 3 + i, b"r", v) for i, v in enumerate(good[2:])]
    loop, consumer, producer, _ = run_fake(Reassembler("out"), [batch])
    letters = [
        (k, codec("DeadLetter").decode(v)) for t, k, v in producer.sent if t == "dead.letters"
    ]
    assert len(letters) == 1
    key, letter = letters[0]
    assert key == b"bad" and letter["value"] == b"\x00not avro" and letter["offset"] == 2
    assert letter["error"].startswith("CodecError: not a gbsynth message")
    assert letter["service"] == "test" and letter["topic"] == "in"
    assert [k for t, k, _ in producer.sent if t == "out"] == [b"r"]
    assert consumer.commits[-1] == {TopicPartition("in", 0): 3 + len(good) - 2}


def test_stateful_processor_holds_back_commits_until_complete():
    a = encode_recording(make_recording("a", 300, 1), max_writes=100)  # 3 chunks
    b = encode_recording(make_recording("b", 200, 2), max_writes=100)  # 2 chunks
    # Partition 0: a0 b0 a1 b1 | a2 ; recording b completes first, a holds offset 0 back.
    first = [
        ("in", 0, 0, b"a", a[0]),
        ("in", 0, 1, b"b", b[0]),
        ("in", 0, 2, b"a", a[1]),
        ("in", 0, 3, b"b", b[1]),
    ]
    second = [("in", 0, 4, b"a", a[2])]
    processor = Reassembler("out")
    loop, consumer, producer, _ = run_fake(processor, [first, second])
    assert consumer.commits == [{TopicPartition("in", 0): 5}]  # nothing committable after round 1
    assert [k for _, k, _ in producer.sent] == [b"b", b"a"]

    # Same again but chunk a2 never comes: the commit stays at a0's offset.
    processor = Reassembler("out")
    loop, consumer, _, _ = run_fake(processor, [first])
    assert consumer.commits == []
    assert loop.committable() == {}
    assert processor.safe_offsets() == {TopicPartition("in", 0): 0}


def test_only_partitions_that_went_elsewhere_are_forgotten():
    a = encode_recording(make_recording("a", 300, 1), max_writes=100)
    b = encode_recording(make_recording("b", 300, 2), max_writes=100)
    p0, p1 = TopicPartition("in", 0), TopicPartition("in", 1)
    processor = Reassembler("out")

    def rebalance(consumer):  # eager: revoke everything, then assign p1 again
        consumer.listener.on_partitions_revoked({p0, p1})
        consumer.listener.on_partitions_assigned({p1})

    log: list = []
    first = [("in", 0, 0, b"a", a[0]), ("in", 1, 0, b"b", b[0])]
    rest = [("in", 1, 1, b"b", b[1]), ("in", 1, 2, b"b", b[2])]
    consumer = FakeConsumer(log, [first, rebalance, rest])
    producer = FakeProducer(log)
    loop = ConsumeLoop(
        processor,
        topics=["in"],
        service="test",
        consumer=consumer,
        producer=producer,
        config=KafkaConfig(),
    )
    consumer.listener = _Listener(loop)
    for _ in range(3):
        loop.run_once()
    assert [(x.recording_id, x.reason) for x in processor.lost] == [("a", "revoked")]
    assert loop.assignment == {p1}
    # Recording b kept its first chunk across the rebalance and completed.
    assert [k for t, k, _ in producer.sent if t == "out"] == [b"b"]
    assert consumer.commits[-1] == {p1: 3}


def test_lost_partitions_are_reread_from_the_commit():
    a = encode_recording(make_recording("a", 300, 1), max_writes=100)
    b = encode_recording(make_recording("b", 200, 2), max_writes=100)
    p0 = TopicPartition("in", 0)
    processor = Reassembler("out")

    def evicted_then_back(consumer):
        consumer.listener.on_partitions_lost({p0})
        consumer.listener.on_partitions_assigned({p0})

    log: list = []
    first = [("in", 0, 0, b"b", b[0]), ("in", 0, 1, b"b", b[1]), ("in", 0, 2, b"a", a[0])]
    consumer = FakeConsumer(log, [first, evicted_then_back, [("in", 0, 3, b"a", a[1])]])
    loop = ConsumeLoop(
        processor,
        topics=["in"],
        service="test",
        consumer=consumer,
        producer=FakeProducer(log),
        config=KafkaConfig(),
    )
    consumer.listener = _Listener(loop)
    for _ in range(3):
        loop.run_once()
    assert [(x.recording_id, x.reason) for x in processor.lost] == [("a", "revoked")]
    # Reading restarts at the last commit (offset 2: recording a's first chunk).
    assert ("seek", 0, 2) in log


def test_sigterm_asks_the_loop_to_stop():
    stopped = threading.Event()
    before = signal.getsignal(signal.SIGTERM)
    restore = install_signal_handlers(stopped.set)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopped.wait(5)
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) is before


def test_service_with_bad_settings_exits_with_one_line(capsys):
    code = run_service(
        FunctionProcessor(lambda m: None),
        service="test",
        topics=["in"],
        environ={"GBSYNTH_KAFKA_SESSION_TIMEOUT_MS": "soon"},
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err == "gbsynth test: GBSYNTH_KAFKA_SESSION_TIMEOUT_MS must be an integer, got 'soon'\n"


def test_metrics_are_served_and_counted():
    port = free_port()
    server = metrics.start_metrics_server(port, "127.0.0.1", service="test")
    try:
        echo = FunctionProcessor(lambda m: [Output("out", m.value)])
        run_fake(echo, [[("in", 0, 0, None, b"x")]])
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    assert 'gbsynth_messages_in_total{service="test",topic="in"}' in body
    assert 'gbsynth_messages_out_total{service="test",topic="out"}' in body
    assert 'gbsynth_build_info{service="test",version=' in body
    assert "gbsynth_processing_seconds_bucket" in body
    assert metrics.start_metrics_server(0) is None


def test_declaring_service_metrics():
    c = metrics.counter("test_things", "things", ["kind"])
    assert metrics.counter("test_things_total", "things", ["kind"]) is c
    c.labels(service="test", kind="x").inc()
    with pytest.raises(ValueError, match="declared differently"):
        metrics.gauge("test_things", "things")


# -- against the local broker ----------------------------------------------------------------


@pytest.mark.integration
def test_broker_refuses_a_taken_port():
    with LocalBroker() as broker:
        assert kafka_answers("127.0.0.1", broker.port)
        with pytest.raises(BrokerError, match="already in use"):
            LocalBroker(broker.port).start()
    assert not kafka_answers("127.0.0.1", broker.port or 1)


@pytest.mark.integration
def test_broker_command_starts_and_stops_on_sigterm():
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gbsynth", "broker", "--port", str(port), "--quiet"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stderr.readline()
        assert f"listening on 127.0.0.1:{port}" in line
        assert kafka_answers("127.0.0.1", port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
    assert not kafka_answers("127.0.0.1", port)


@pytest.mark.integration
def test_three_producers_two_consumers_nothing_lost(kafka_bootstrap):
    """At-least-once end to end: chunks of 12 recordings from 3 producers, reassembled by a
    group of 2 consumers, one of which leaves half-way with recordings half assembled."""
    run = uuid.uuid4().hex[:8]
    in_topic, out_topic, dlq = f"it-{run}-chunks", f"it-{run}-done", f"it-{run}-dlq"
    group = f"it-{run}-group"
    config = KafkaConfig(
        bootstrap=kafka_bootstrap,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        partitions=4,
        max_poll_records=10,
        linger_ms=2,
    )
    assert ensure_topics(config, [in_topic, out_topic, dlq]) == sorted([in_topic, out_topic, dlq])
    assert ensure_topics(config, [in_topic]) == []  # already there: fine

    recordings = {
        f"rec-{p}-{i}": make_recording(f"rec-{p}-{i}", 3000, 10 * p + i)
        for p in range(3)
        for i in range(4)
    }
    expected = {rid: digest(rec) for rid, rec in recordings.items()}

    loops = [
        ConsumeLoop(
            Reassembler(out_topic),
            topics=[in_topic],
            service=f"it-consumer-{i}",
            group_id=group,
            config=config,
            dead_letter_topic=dlq,
            poll_timeout_ms=200,
        )
        for i in range(2)
    ]
    threads = [threading.Thread(target=loop.run, daemon=True) for loop in loops]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        owned = [loop.assignment for loop in loops]
        if all(owned) and len(owned[0] | owned[1]) == 4:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"consumers never shared the partitions: {[lp.assignment for lp in loops]}")

    sent_offsets: dict[int, int] = defaultdict(lambda: -1)
    sent_lock = threading.Lock()

    def produce(p: int) -> None:
        producer = make_producer(config, f"it-producer-{p}")
        mine = [encode_recording(recordings[f"rec-{p}-{i}"], max_writes=100) for i in range(4)]
        messages = [(f"rec-{p}-{i}", chunks[j]) for j in range(30) for i, chunks in enumerate(mine)]
        if p == 0:
            messages.insert(7, ("bad", b"\xb5\x01\x02garbage"))
        for n in range(0, len(messages), 6):
            outputs = [Output(in_topic, value, key) for key, value in messages[n : n + 6]]
            for meta in deliver(producer, outputs):
                with sent_lock:
                    sent_offsets[meta.partition] = max(sent_offsets[meta.partition], meta.offset)
            time.sleep(0.05)
        producer.close()

    producers = [threading.Thread(target=produce, args=(p,)) for p in range(3)]
    for t in producers:
        t.start()
    # Consumer 0 leaves half-way, with recordings half assembled.
    while loops[0].processed < 60 and time.monotonic() < deadline + 30:
        time.sleep(0.02)
    loops[0].stop()
    threads[0].join(timeout=20)
    assert not threads[0].is_alive()
    assert len(loops[0].processor.assembler) > 0  # it left with recordings half assembled
    for t in producers:
        t.join(timeout=30)

    # Everything is reassembled (perhaps twice: at least once) and published.
    reader = KafkaConsumer(
        out_topic,
        dlq,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"it-{run}-reader",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    done: dict[str, bytes] = {}
    letters = []
    deadline = time.monotonic() + 40
    while (len(done) < len(expected) or not letters) and time.monotonic() < deadline:
        for tp, records in reader.poll(500).items():
            for r in records:
                if tp.topic == dlq:
                    letters.append(codec("DeadLetter").decode(r.value))
                else:
                    assert r.key.decode() not in done or done[r.key.decode()] == r.value
                    done[r.key.decode()] = r.value
    reader.close()
    survivor = loops[1]
    assert done == expected, (
        f"missing {sorted(set(expected) - set(done))}; survivor owns {survivor.assignment}, "
        f"processed {survivor.processed}, pending {list(survivor.processor.assembler.pending())}, "
        f"sent {dict(sent_offsets)}, consumed {survivor._consumed}, committed {survivor._committed}"
    )
    assert len(letters) == 1
    assert letters[0]["value"] == b"\xb5\x01\x02garbage" and letters[0]["key"] == b"bad"
    assert "CodecError" in letters[0]["error"] and letters[0]["topic"] == in_topic

    # ...and once the survivor caught up, every input offset is committed.
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            committed = {
                tp.partition: om.offset
                for tp, om in admin.list_group_offsets(group)[group].items()
                if tp.topic == in_topic
            }
            if committed == {p: o + 1 for p, o in sent_offsets.items()}:
                break
            time.sleep(0.2)
        assert committed == {p: o + 1 for p, o in sent_offsets.items()}
    finally:
        admin.close()
        loops[1].stop()
        threads[1].join(timeout=20)
    assert not loops[1].processor.assembler.pending_writes
    with pytest.raises(CodecError):
        decode_chunk(b"\xb5\x01\x02garbage")
