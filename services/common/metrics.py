"""Prometheus metrics shared by every service.

Every metric is named ``gbsynth_*`` and carries a ``service`` label, so one
Prometheus job can scrape all services and dashboards can split by service.
The generic Kafka loop (``gbsynth.common.kafka``) keeps the common ones up to
date; a service declares its own with ``counter``/``gauge``/``histogram``::

    SEGMENTS = metrics.counter("segments_emitted", "segments published", ["reason"])
    SEGMENTS.labels(service="pruner", reason="music").inc()

``start_metrics_server(port)`` serves ``/metrics`` over HTTP (port 0: off).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info, start_http_server

from gbsynth import __version__

PREFIX = "gbsynth_"

log = logging.getLogger(__name__)

_lock = threading.Lock()
_declared: dict[str, Any] = {}

# Latency buckets from 100 us (decoding one chunk) to 2 min (one training step on a big batch).
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip


def _full_name(name: str) -> str:
    name = name if name.startswith(PREFIX) else PREFIX + name
    if name.endswith("_total"):
        # prometheus-client appends _total to counters itself.
        name = name[: -len("_total")]
    return name


def _declare(kind: type, name: str, doc: str, labels: Sequence[str], **kwargs: Any) -> Any:
    full = _full_name(name)
    labelnames = ("service", *[label for label in labels if label != "service"])
    with _lock:
        existing = _declared.get(full)
        if existing is not None:
            metric, existing_kind, existing_labels = existing
            if existing_kind is not kind or existing_labels != labelnames:
                raise ValueError(f"metric {full} is already declared differently")
            return metric
        metric = kind(full, doc, labelnames, **kwargs)
        _declared[full] = (metric, kind, labelnames)
        return metric


def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
    """A counter ``gbsynth_<name>_total`` with a ``service`` label plus ``labels``.

    Declaring the same metric twice returns the first one (modules may be re-imported).
    """
    return _declare(Counter, name, doc, labels)


def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
    """A gauge ``gbsynth_<name>`` with a ``service`` label plus ``labels``."""
    return _declare(Gauge, name, doc, labels)


def histogram(
    name: str, doc: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
) -> Histogram:
    """A histogram ``gbsynth_<name>`` with a ``service`` label plus ``labels``."""
    return _declare(Histogram, name, doc, labels, buckets=tuple(buckets))


# -- the common metrics ------------------------------------------------------------------------

MESSAGES_IN = counter("messages_in", "Kafka messages consumed", ["topic"])
BYTES_IN = counter("bytes_in", "bytes of Kafka messages consumed (key + value)", ["topic"])
MESSAGES_OUT = counter("messages_out", "Kafka messages produced and acknowledged", ["topic"])
BYTES_OUT = counter("bytes_out", "bytes of Kafka messages produced (key + value)", ["topic"])
ERRORS = counter(
    "errors",
    "errors by kind: dead_letter (a message could not be processed), commit_failed, "
    "delivery_failed, processing (the service stopped on an unexpected error)",
    ["kind"],
)
PROCESSING_SECONDS = histogram(
    "processing_seconds", "time to process one consumed message", ["topic"]
)
COMMITS = counter("commits", "offset commits made by the consumer loop")
HELD_BACK = gauge(
    "held_back_messages",
    "messages processed but not yet committable (a stateful processor still needs them)",
)
CONSUMER_LAG = gauge(
    "consumer_lag",
    "messages not yet consumed per assigned partition (end offset minus the consumer's "
    "position), refreshed every few seconds",
    ["topic", "partition"],
)
BUILD_INFO = Info("gbsynth_build", "gbsynth version of the running service", ["service"])


def set_build_info(service: str) -> None:
    BUILD_INFO.labels(service=service).info({"version": __version__})


def start_metrics_server(port: int, address: str = "0.0.0.0", service: str | None = None) -> Any:
    """Serve ``/metrics`` on ``address:port`` in a daemon thread; port 0 means no server.

    Returns the HTTP server (``.shutdown()`` stops it) or ``None`` when off.
    """
    if service is not None:
        set_build_info(service)
    if port == 0:
        return None
    server, _thread = start_http_server(port, addr=address, registry=REGISTRY)
    log.info("metrics on http://%s:%d/metrics", address, port)
    return server
