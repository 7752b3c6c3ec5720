"""gbsynth_consumer_lag{topic,partition}: the consume loop's view of how far behind it is."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from kafka import TopicPartition

from gbsynth.common import metrics
from gbsynth.common.kafka import (
    ConsumeLoop,
    FunctionProcessor,
    KafkaConfig,
    _Listener,
    ensure_topics,
    make_producer,
)


def lag_value(service: str, topic: str, partition: int) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "gbsynth_consumer_lag", {"service": service, "topic": topic, "partition": str(partition)}
    )


class LagConsumer:
    """Stand-in consumer: fixed high watermarks and positions."""

    def __init__(self, highwater: dict, position: dict) -> None:
        self._highwater, self._position = highwater, position

    def highwater(self, tp):
        return self._highwater.get(tp)

    def position(self, tp, timeout_ms=None):
        return self._position.get(tp)

    def close(self, autocommit=False):
        pass


def test_lag_is_highwater_minus_position_and_goes_with_the_partition():
    a, b, c = (TopicPartition("lag-in", p) for p in range(3))
    consumer = LagConsumer({a: 120, b: 7}, {a: 100, b: 7, c: 3})
    producer = SimpleNamespace(flush=lambda timeout=None: None, close=lambda timeout=None: None)
    loop = ConsumeLoop(
        FunctionProcessor(lambda m: ()),
        topics=["lag-in"],
        service="lagtest",
        consumer=consumer,
        producer=producer,
        config=KafkaConfig(),
    )
    loop._assigned({a, b, c})
    # c has not been fetched from: no high watermark yet, so no series for it.
    assert loop.refresh_lag() == {a: 20, b: 0}
    assert lag_value("lagtest", "lag-in", 0) == 20
    assert lag_value("lagtest", "lag-in", 1) == 0
    assert lag_value("lagtest", "lag-in", 2) is None
    # A rebalance that takes a away removes its series (no stale lag on dashboards).
    loop._revoked({a, b, c})
    loop._assigned({b, c})
    assert lag_value("lagtest", "lag-in", 0) is None
    assert lag_value("lagtest", "lag-in", 1) == 0
    loop._lost({b})
    assert lag_value("lagtest", "lag-in", 1) is None


@pytest.mark.integration
def test_lag_on_a_real_broker(kafka_bootstrap):
    topic = f"lag-{uuid.uuid4().hex[:8]}"
    config = KafkaConfig.from_env(
        {
            "GBSYNTH_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "GBSYNTH_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "GBSYNTH_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
            "GBSYNTH_KAFKA_MAX_POLL_RECORDS": "10",
        }
    )
    ensure_topics(config, [topic], partitions=1)
    producer = make_producer(config, "lagtest-producer")
    for i in range(50):
        producer.send(topic, value=b"x%d" % i)
    producer.flush()
    producer.close()
    seen = []
    loop = ConsumeLoop(
        FunctionProcessor(lambda m: seen.append(m.offset)),
        topics=[topic],
        service="lagtest-real",
        group_id=f"g-{topic}",
        config=config,
        lag_interval_s=0.0,
    )
    loop.consumer.subscribe([topic], listener=_Listener(loop))
    try:
        for _ in range(100):
            loop.run_once()
            if seen:
                break
        assert seen, "nothing consumed"
        value = lag_value("lagtest-real", topic, 0)
        assert value == 50 - (seen[-1] + 1)
        for _ in range(100):
            loop.run_once()
            if len(seen) == 50:
                break
        loop.refresh_lag()
        assert lag_value("lagtest-real", topic, 0) == 0
    finally:
        loop.consumer.close(autocommit=False)
        loop.producer.close(timeout=5)
