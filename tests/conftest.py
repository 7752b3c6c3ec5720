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


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """Bootstrap servers of a local in-memory Tansu broker, started once per test session.

    Integration tests should use unique topic and group names (the broker is shared).
    """
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
