"""The generator's settings (``GBSYNTH_GENERATOR_*``) and the limits they make."""

from __future__ import annotations

from collections.abc import Mapping

from gbsynth.common.config import Setting, read_settings
from gbsynth.generator.service import Limits

DEFAULT_PORT = 8000

HOST = Setting("GBSYNTH_GENERATOR_HOST", str, "0.0.0.0", "address the generator's HTTP API binds")
PORT = Setting(
    "GBSYNTH_GENERATOR_PORT",
    int,
    DEFAULT_PORT,
    "port of the generator's HTTP API (and its /metrics, unless GBSYNTH_METRICS_PORT says "
    "otherwise); --port overrides it",
    minimum=1,
    maximum=65535,
)
WORKERS = Setting(
    "GBSYNTH_GENERATOR_WORKERS",
    int,
    Limits.workers,
    "songs sampled at the same time (threads; about one per CPU core)",
    minimum=1,
    maximum=256,
)
QUEUE = Setting(
    "GBSYNTH_GENERATOR_QUEUE",
    int,
    Limits.queue,
    "song requests that may wait for a sampling thread; beyond them the API answers 429",
    minimum=0,
)
TIMEOUT_SECONDS = Setting(
    "GBSYNTH_GENERATOR_TIMEOUT_SECONDS",
    float,
    Limits.timeout_seconds,
    "time a song request may take beyond its song's length, from its arrival (queueing "
    "included); then 504, or a stream cut short",
    minimum=1,
)
MAX_SECONDS = Setting(
    "GBSYNTH_GENERATOR_MAX_SECONDS",
    float,
    Limits.max_seconds,
    "longest song a request may ask for, in seconds of music",
    minimum=1,
    maximum=300,
)
CACHE_SONGS = Setting(
    "GBSYNTH_GENERATOR_CACHE_SONGS",
    int,
    Limits.cache_songs,
    "finished songs kept (as event logs) to serve the same song again in another format",
    minimum=0,
)
MAX_PRIME_WRITES = Setting(
    "GBSYNTH_GENERATOR_MAX_PRIME_WRITES",
    int,
    Limits.max_prime_writes,
    "most register writes a prime (music to continue) may hold",
    minimum=0,
)
MAX_EVENTS_PER_SECOND = Setting(
    "GBSYNTH_GENERATOR_MAX_EVENTS_PER_SECOND",
    float,
    Limits.max_events_per_second,
    "a song whose model writes more events per second of music than this is stopped "
    "(a model stuck on fast writes; real music writes about 1,000); then 500",
    minimum=1,
)
MAX_BODY_BYTES = Setting(
    "GBSYNTH_GENERATOR_MAX_BODY_BYTES",
    int,
    16 * 1024 * 1024,
    "largest request body (a prime file travels base64-encoded in it); beyond it 413",
    minimum=1024,
)
POLL_SECONDS = Setting(
    "GBSYNTH_GENERATOR_POLL_SECONDS",
    float,
    5.0,
    "how often the checkpoint folder is checked for a newer checkpoint",
    minimum=0.1,
)
WATCH_ANNOUNCEMENTS = Setting(
    "GBSYNTH_GENERATOR_WATCH_ANNOUNCEMENTS",
    bool,
    True,
    "also load checkpoints as soon as model.checkpoints announces them (needs Kafka; "
    "the folder poll works without it)",
)
TORCH_THREADS = Setting(
    "GBSYNTH_GENERATOR_TORCH_THREADS",
    int,
    1,
    "torch threads of the process (checkpoint loading); songs run in parallel on "
    "GBSYNTH_GENERATOR_WORKERS threads, one each",
    minimum=1,
)

# The pipeline dashboard (/dashboard, ``gbsynth.generator.dashboard``): where its charts
# read from. ``gbsynth run-local`` sets the first two.
PROMETHEUS_URL = Setting(
    "GBSYNTH_PROMETHEUS_URL",
    str,
    "",
    "Prometheus that scrapes the services (http://host:9090): the dashboard's charts query "
    "it through the generator; empty, or not answering: the generator reads the services' "
    "/metrics itself (GBSYNTH_DASHBOARD_METRICS_URLS)",
)
DASHBOARD_METRICS_URLS = Setting(
    "GBSYNTH_DASHBOARD_METRICS_URLS",
    str,
    "",
    "the other services' /metrics for the dashboard when there is no Prometheus, as "
    "job=url pairs, comma-separated (emulator=http://127.0.0.1:9101/metrics,...); the "
    "generator's own metrics are always read",
)
DASHBOARD_SCRAPE_SECONDS = Setting(
    "GBSYNTH_DASHBOARD_SCRAPE_SECONDS",
    float,
    5.0,
    "without Prometheus: how often the generator reads the services' /metrics for the "
    "dashboard (it keeps the last 30 minutes in memory)",
    minimum=1,
    maximum=300,
)

ALL = (
    HOST, PORT, WORKERS, QUEUE, TIMEOUT_SECONDS, MAX_SECONDS, CACHE_SONGS, MAX_PRIME_WRITES,
    MAX_EVENTS_PER_SECOND, MAX_BODY_BYTES, POLL_SECONDS, WATCH_ANNOUNCEMENTS, TORCH_THREADS,
)  # fmt: skip


def limits_from_env(environ: Mapping[str, str] | None = None) -> Limits:
    """``Limits`` from the environment (every bad value reported at once)."""
    values = read_settings(ALL, environ)
    return Limits(
        workers=values[WORKERS.name],
        queue=values[QUEUE.name],
        timeout_seconds=values[TIMEOUT_SECONDS.name],
        max_seconds=values[MAX_SECONDS.name],
        cache_songs=values[CACHE_SONGS.name],
        max_prime_writes=values[MAX_PRIME_WRITES.name],
        max_events_per_second=values[MAX_EVENTS_PER_SECOND.name],
    )
