"""Shared test fixtures. Test material lives in ../shared (never copied here)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"test material not found at {SHARED}")
    return SHARED


def _running_broker():
    """Yield a running local Tansu broker's bootstrap string; skip when none can start."""
    from gbsynth.common.broker import BrokerError, LocalBroker

    broker = LocalBroker()
    try:
        broker.start()
    except BrokerError as exc:
        pytest.skip(f"no local Kafka broker: {exc}")
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """Bootstrap servers of a local in-memory Tansu broker, started once per test session.

    Integration tests should use unique topic and group names (the broker is shared).
    """
    yield from _running_broker()


@pytest.fixture
def private_broker():
    """A broker of the test's own (it starts in well under a second), for tests of services
    that use the fixed production topic names."""
    yield from _running_broker()


def service_env(bootstrap: str, **extra: str) -> dict[str, str]:
    """Environment for a service process under test: local broker, short group timeouts."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("GBSYNTH_")}
    env.update(
        GBSYNTH_KAFKA_BOOTSTRAP=bootstrap,
        GBSYNTH_KAFKA_SESSION_TIMEOUT_MS="6000",
        GBSYNTH_KAFKA_HEARTBEAT_INTERVAL_MS="1000",
        GBSYNTH_METRICS_PORT="0",
        GBSYNTH_LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


@pytest.fixture
def one_torch_thread():
    """One torch thread, as the services run: small ops on a shared CPU are slower with more.
    (torch is imported here, not at the top, so tests without it do not pay for it.)"""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
