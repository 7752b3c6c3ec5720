"""The pipeline dashboard the generator serves at ``/dashboard``: the Grafana panels on one page.

Each panel is a list of ``Query`` objects, one per line family, written once and read two
ways:

* with Prometheus (``GBSYNTH_PROMETHEUS_URL``, which ``gbsynth run-local`` sets when it runs
  one): ``Query.promql`` is sent to Prometheus' ``/api/v1/query_range`` by the generator, so
  the browser talks to the generator only (no CORS, no second address);
* without it (unset, or not answering): ``MetricsHistory`` reads the services' own
  ``/metrics`` (``GBSYNTH_DASHBOARD_METRICS_URLS``, plus the generator's own registry) every
  few seconds, keeps the last ``HISTORY_SECONDS`` in memory, and ``Query.evaluate`` computes
  the same sums, rates and quantiles from it, with Prometheus' rules (counter resets,
  ``histogram_quantile``'s linear interpolation inside a bucket).

``GET /v1/dashboard?minutes=15`` answers every panel's lines on one time axis
(``Dashboard.data``); the page (``static/dashboard.html``) draws them with uPlot.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gbsynth.common.config import SettingError
from gbsynth.generator import settings as gs

log = logging.getLogger(__name__)

HISTORY_SECONDS = 1800.0
"""How much the generator keeps of the services' metrics when it reads them itself."""
RATE_WINDOW_SECONDS = 30
"""Window of rates (``rate(x[30s])``): six scrapes at the 5-second scrape interval."""
MAX_POINTS = 240
"""Points per line at most: the step of a long range grows to keep the answer small."""
RANGES_MINUTES = (5, 15, 60, 360)
HTTP_TIMEOUT_SECONDS = 4.0
SELF_JOB = "generator"
SELF_INSTANCE = "self"


class DashboardError(RuntimeError):
    """A source could not answer (Prometheus down, a bad answer)."""


# -- panels ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One family of lines: a metric, what is done to it, and how its lines are named.

    ``fn`` is ``value`` (the samples), ``rate`` (per second over ``RATE_WINDOW_SECONDS``) or
    ``quantile`` (``histogram_quantile(q, ...)`` of a histogram's buckets). ``by`` sums the
    series by those labels (``()``: one sum); None keeps each series. ``legend`` names a line
    from its labels, e.g. ``"{service} {topic}"``. ``right`` draws it on a second axis.
    """

    metric: str
    legend: str
    fn: str = "value"
    by: tuple[str, ...] | None = None
    match: tuple[tuple[str, str], ...] = ()
    q: float = 0.5
    right: bool = False
    window: int = RATE_WINDOW_SECONDS
    """Seconds a rate looks back (at least two steps of a long range)."""

    def __post_init__(self) -> None:
        if self.fn not in ("value", "rate", "quantile"):
            raise ValueError(f"{self.metric}: unknown function {self.fn!r}")
        if self.fn == "quantile" and self.by is None:
            raise ValueError(f"{self.metric}: a quantile needs `by` (its buckets are summed)")

    def promql(self, step: float = 0) -> str:
        window_seconds = self.window_for(step)
        matchers = ",".join(f'{k}="{v}"' for k, v in self.match)
        selector = self.sample_names[0] + (f"{{{matchers}}}" if matchers else "")
        if self.fn == "value":
            inner = selector
        elif self.fn == "rate":
            inner = f"rate({selector}[{window_seconds}s])"
        else:
            by = ", ".join(("le", *(self.by or ())))
            rates = f"rate({selector}[{window_seconds}s])"
            return f"histogram_quantile({self.q:g}, sum by ({by}) ({rates}))"
        if self.by is None:
            return inner
        return f"sum by ({', '.join(self.by)}) ({inner})" if self.by else f"sum({inner})"

    def window_for(self, step: float) -> int:
        return int(max(self.window, 2 * step))

    @property
    def sample_names(self) -> tuple[str, ...]:
        """The sample names this query reads from an exposition."""
        return (f"{self.metric}_bucket",) if self.fn == "quantile" else (self.metric,)

    def name_line(self, labels: Mapping[str, str]) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: str(labels.get(m.group(1), "")), self.legend).strip()


@dataclass(frozen=True)
class Panel:
    id: str
    title: str
    section: str
    unit: str
    queries: tuple[Query, ...]
    right_unit: str = ""


def _rate(metric: str, legend: str, by: tuple[str, ...] | None = (), **kw: Any) -> Query:
    return Query(metric, legend, "rate", by, **kw)


PANELS: tuple[Panel, ...] = (
    Panel("recordings", "Recordings finished per second, per replica", "Emulator", "/s", (
        _rate("gbsynth_jobs_total", "{instance}", ("instance",), match=(("outcome", "done"),)),
    )),
    Panel("emulated", "Emulated seconds per second, per replica", "Emulator", "x", (
        _rate("gbsynth_emulated_seconds_total", "{instance}", ("instance",)),
    )),
    Panel("segments", "Segments kept, and rejected by reason (/s)", "Pruner", "/s", (
        _rate("gbsynth_pruner_segments_out_total", "kept"),
        _rate("gbsynth_pruner_rejections_total", "rejected: {reason}", ("reason",)),
    )),
    Panel("loss", "Training loss and held-out NLL (nats/event)", "Trainer", "nats", (
        Query("gbsynth_trainer_loss", "training loss"),
        Query("gbsynth_trainer_heldout_nll", "held-out NLL"),
    )),
    Panel("checkpoint", "Training step and checkpoint age", "Trainer", "", (
        Query("gbsynth_trainer_step", "step"),
        Query("gbsynth_trainer_checkpoint_age_seconds", "checkpoint age (s)", right=True),
    ), right_unit="s"),
    Panel("dataset", "Dataset size", "Trainer", "", (
        Query("gbsynth_trainer_dataset_segments", "segments {split}", by=("split",)),
        Query("gbsynth_trainer_dataset_tokens", "tokens {split}", by=("split",), right=True),
    )),
    Panel("songs", "Songs served, by HTTP status (/s)", "Generator", "/s", (
        _rate("gbsynth_generator_requests_total", "{status}", ("status",)),
    )),
    # Songs are few: quantiles over 5 minutes, so a song's latency stays on the chart.
    Panel("latency", "Song latency (over 5 minutes)", "Generator", "s", (
        Query("gbsynth_generator_latency_seconds", "p50", "quantile", (), q=0.5, window=300),
        Query("gbsynth_generator_latency_seconds", "p95", "quantile", (), q=0.95, window=300),
        Query("gbsynth_generator_first_audio_seconds", "first audio p50", "quantile", (), q=0.5,
              window=300),
    )),
    Panel("errors", "Errors by service and kind (/s)", "All services", "/s", (
        _rate("gbsynth_errors_total", "{service} {kind}", ("service", "kind")),
    )),
    Panel("lag", "Consumer lag per topic (messages)", "Kafka", "", (
        Query("gbsynth_consumer_lag", "{service} ← {topic}", by=("service", "topic")),
    )),
    Panel("throughput", "Messages produced per topic (/s)", "Kafka", "/s", (
        _rate("gbsynth_messages_out_total", "{topic}", ("topic",)),
    )),
    Panel("memory", "Resident memory per process", "All services", "bytes", (
        Query("process_resident_memory_bytes", "{job}", by=("job",)),
    )),
)  # fmt: skip


# -- reading /metrics ourselves --------------------------------------------------------------

Labels = tuple[tuple[str, str], ...]
Samples = dict[str, dict[Labels, float]]
"""One scrape of every target: sample name -> each series' labels -> its value."""


def parse_exposition(text: str, wanted: set[str], job: str, instance: str) -> Samples:
    """The samples of ``text`` (Prometheus text format) whose names are ``wanted``, labelled
    with ``job`` and ``instance`` as Prometheus labels what it scrapes."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name not in wanted:
                continue
            labels = {**sample.labels, "job": job, "instance": instance}
            samples.setdefault(sample.name, {})[tuple(sorted(labels.items()))] = float(sample.value)
    return samples


@dataclass(frozen=True)
class Target:
    job: str
    url: str | None
    """None: the generator's own registry, read in process."""

    @property
    def instance(self) -> str:
        if self.url is None:
            return SELF_INSTANCE
        return urllib.parse.urlsplit(self.url).netloc


def parse_metrics_urls(text: str) -> list[Target]:
    """``job=url,job=url`` (``GBSYNTH_DASHBOARD_METRICS_URLS``) as targets; SettingError if bad."""
    targets = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        job, sep, url = item.partition("=")
        job, url = job.strip(), url.strip()
        if not sep or not re.fullmatch(r"[A-Za-z][\w-]*", job):
            raise SettingError(
                f"{gs.DASHBOARD_METRICS_URLS.name}: {item!r} is not job=url (e.g. "
                "emulator=http://127.0.0.1:9101/metrics)"
            )
        _check_http_url(gs.DASHBOARD_METRICS_URLS.name, url)
        targets.append(Target(job, url))
    return targets


def _check_http_url(setting: str, url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingError(f"{setting}: {url!r} is not an http:// or https:// URL")


@dataclass
class TargetStatus:
    job: str
    instance: str
    up: bool = False
    error: str | None = None


class MetricsHistory:
    """Reads the targets every ``interval`` seconds in a daemon thread; keeps
    ``HISTORY_SECONDS`` of the samples the panels need."""

    def __init__(
        self,
        targets: Sequence[Target],
        interval: float,
        wanted: set[str],
        *,
        own_exposition: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.targets = [Target(SELF_JOB, None), *targets]
        self.interval = interval
        self.wanted = wanted
        self.clock = clock
        self._own = own_exposition or _own_exposition
        self.snapshots: deque[tuple[float, Samples]] = deque(
            maxlen=max(2, int(HISTORY_SECONDS / interval) + 1)
        )
        self.status = [TargetStatus(t.job, t.instance) for t in self.targets]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="dashboard-scrape", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=HTTP_TIMEOUT_SECONDS * 2)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.scrape()
            except Exception:  # a bug here must not end the thread: the page would freeze
                log.exception("reading the services' metrics failed")
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def scrape(self) -> None:
        """Read every target once and keep the snapshot."""
        now = self.clock()
        samples: Samples = {}
        status = []
        for target in self.targets:
            state = TargetStatus(target.job, target.instance)
            try:
                text = self._own() if target.url is None else _fetch_text(target.url)
                parsed = parse_exposition(text, self.wanted, target.job, target.instance)
                for name, series in parsed.items():
                    samples.setdefault(name, {}).update(series)
                state.up = True
            except (OSError, ValueError, DashboardError) as exc:
                state.error = str(exc)
            status.append(state)
        with self._lock:
            self.snapshots.append((now, samples))
            self.status = status

    def window(self, since: float) -> list[tuple[float, Samples]]:
        with self._lock:
            return [s for s in self.snapshots if s[0] >= since]


def _own_exposition() -> str:
    from prometheus_client import REGISTRY, generate_latest

    return generate_latest(REGISTRY).decode()


def _fetch_text(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECONDS) as response:
            return response.read().decode("utf-8", errors="replace")
    except urllib.error.URLError as exc:
        raise DashboardError(f"{url}: {getattr(exc, 'reason', exc)}") from None


# -- evaluating queries on the history -------------------------------------------------------


def _group(labels: Labels, by: tuple[str, ...] | None) -> Labels:
    if by is None:
        return labels
    have = dict(labels)
    return tuple((k, have.get(k, "")) for k in by)


def _matches(labels: Labels, match: tuple[tuple[str, str], ...]) -> bool:
    have = dict(labels)
    return all(have.get(k) == v for k, v in match)


def _select(samples: Samples, name: str, match: tuple[tuple[str, str], ...]) -> dict[Labels, float]:
    series = samples.get(name, {})
    if not match:
        return series
    return {labels: value for labels, value in series.items() if _matches(labels, match)}


def _rates(
    history: Sequence[tuple[float, Samples]],
    name: str,
    match: tuple[tuple[str, str], ...],
    window: float,
) -> list[dict[Labels, float]]:
    """Per snapshot, each series' per-second increase over the last ``window`` seconds of
    consecutive snapshots holding it (a counter that went down was reset: its new value
    counts as the increase). One pass per series: reset-corrected running totals, and the
    window's first snapshot found by a pointer that only moves forward."""
    points: dict[Labels, list[tuple[int, float]]] = {}
    for i, (_, samples) in enumerate(history):
        for labels, value in _select(samples, name, match).items():
            points.setdefault(labels, []).append((i, value))
    out: list[dict[Labels, float]] = [{} for _ in history]
    for labels, series in points.items():
        totals: list[float] = []
        run_start = first = 0
        for k, (i, value) in enumerate(series):
            if k == 0 or series[k - 1][0] != i - 1:  # a gap: a new run of snapshots
                run_start = first = k
                totals.append(0.0)
            else:
                before = series[k - 1][1]
                totals.append(totals[-1] + (value - before if value >= before else value))
            now = history[i][0]
            first = max(first, run_start)
            while first < k and history[series[first][0]][0] < now - window - 1e-6:
                first += 1
            if first < k:
                begin = history[series[first][0]][0]
                out[i][labels] = (totals[k] - totals[first]) / (now - begin)
    return out


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Prometheus' ``histogram_quantile``: ``buckets`` are (upper bound, cumulative count)."""
    if not buckets:
        return math.nan
    buckets = sorted(buckets)
    if buckets[-1][0] != math.inf:
        return math.nan
    total = buckets[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    for i, (upper, count) in enumerate(buckets):
        if count >= rank:
            if upper == math.inf:
                return buckets[i - 1][0] if i > 0 else math.nan
            lower, below = (buckets[i - 1][0], buckets[i - 1][1]) if i > 0 else (0.0, 0.0)
            if i == 0 and upper <= 0:
                return upper
            span = count - below
            return upper if span <= 0 else lower + (upper - lower) * (rank - below) / span
    return math.nan


def evaluate(query: Query, history: Sequence[tuple[float, Samples]]) -> dict[Labels, list[float]]:
    """The query's lines over ``history``: group labels -> one value per snapshot (NaN where
    there is none)."""
    n = len(history)
    if query.fn == "value":
        per_snapshot = [_select(samples, query.metric, query.match) for _, samples in history]
    else:
        per_snapshot = _rates(history, query.sample_names[0], query.match, query.window)
    lines: dict[Labels, list[float]] = {}
    # The same series recur in every snapshot: work out each one's group (and bucket) once.
    keys: dict[Labels, tuple[Labels, float | None]] = {}

    def key(labels: Labels) -> tuple[Labels, float | None]:
        known = keys.get(labels)
        if known is None:
            le = dict(labels).get("le") if query.fn == "quantile" else None
            by = (query.by or ()) if query.fn == "quantile" else query.by
            known = keys[labels] = (_group(labels, by), None if le is None else float(le))
        return known

    if query.fn == "quantile":
        for i, series in enumerate(per_snapshot):
            groups: dict[Labels, dict[float, float]] = {}
            for labels, rate in series.items():
                group, upper = key(labels)
                if upper is None:
                    continue
                buckets = groups.setdefault(group, {})
                buckets[upper] = buckets.get(upper, 0.0) + rate
            for group, buckets in groups.items():
                line = lines.setdefault(group, [math.nan] * n)
                line[i] = histogram_quantile(query.q, list(buckets.items()))
        return lines
    for i, series in enumerate(per_snapshot):
        for labels, value in series.items():
            line = lines.setdefault(key(labels)[0], [math.nan] * n)
            line[i] = value if math.isnan(line[i]) else line[i] + value
    return lines


# -- Prometheus ------------------------------------------------------------------------------


def _prometheus_api(base_url: str, path: str, params: dict[str, Any]) -> list[dict]:
    """The ``result`` of a Prometheus HTTP API query at ``base_url``."""
    url = f"{base_url.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    query = params.get("query")
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECONDS) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        raise DashboardError(f"Prometheus answered {exc.code} to {query!r}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DashboardError(f"Prometheus at {base_url} did not answer: {reason}") from None
    except ValueError as exc:
        raise DashboardError(f"Prometheus at {base_url}: not JSON ({exc})") from None
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else body
        raise DashboardError(f"Prometheus refused {query!r}: {error}")
    result = (body.get("data") or {}).get("result", [])
    return [r for r in result if isinstance(r, dict)] if isinstance(result, list) else []


def query_range(base_url: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    """``/api/v1/query_range`` of Prometheus at ``base_url``: its result (a matrix)."""
    params = {"query": expr, "start": start, "end": end, "step": step}
    return _prometheus_api(base_url, "/api/v1/query_range", params)


def scrape_targets(base_url: str) -> list[dict[str, Any]]:
    """Whether Prometheus' last scrape of each target worked (its ``up`` series)."""
    result = _prometheus_api(base_url, "/api/v1/query", {"query": "up"})
    targets = []
    for series in result:
        labels, value = series.get("metric", {}), series.get("value", [0, "0"])
        up = len(value) == 2 and value[1] == "1"
        targets.append(
            {"job": labels.get("job", "?"), "instance": labels.get("instance", "?"), "up": up}
        )
    return sorted(targets, key=lambda t: (t["job"], t["instance"]))


# -- the dashboard ---------------------------------------------------------------------------


@dataclass
class DashboardConfig:
    prometheus_url: str = ""
    targets: list[Target] = field(default_factory=list)
    scrape_seconds: float = 5.0
    error: str | None = None
    """A bad setting: the dashboard says so instead of stopping the generator."""


def config_from_env(environ: Mapping[str, str] | None = None) -> DashboardConfig:
    try:
        prometheus = gs.PROMETHEUS_URL.get(environ).strip()
        if prometheus:
            _check_http_url(gs.PROMETHEUS_URL.name, prometheus)
        return DashboardConfig(
            prometheus_url=prometheus,
            targets=parse_metrics_urls(gs.DASHBOARD_METRICS_URLS.get(environ)),
            scrape_seconds=gs.DASHBOARD_SCRAPE_SECONDS.get(environ),
        )
    except SettingError as exc:
        log.error("dashboard: %s", exc)
        return DashboardConfig(error=str(exc))


def _clean(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else round(value, 6)


class Dashboard:
    """Answers ``/v1/dashboard``: every panel's lines, from Prometheus or from the history."""

    def __init__(self, config: DashboardConfig, panels: Sequence[Panel] = PANELS) -> None:
        self.config = config
        self.panels = tuple(panels)
        wanted = {name for p in self.panels for q in p.queries for name in q.sample_names}
        self.history = MetricsHistory(config.targets, config.scrape_seconds, wanted)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dashboard-query")
        self._answers: dict[float, tuple[tuple, dict[str, Any]]] = {}

    def start(self) -> None:
        """Begin reading the services' /metrics now if there are services to read and no
        Prometheus to ask, so the history has data by the time someone opens the page.
        Otherwise the first request that needs the history starts it."""
        if self.config.targets and not self.config.prometheus_url:
            self.history.start()

    def close(self) -> None:
        self.history.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def data(self, minutes: float = 15.0, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        seconds = max(60.0, min(float(minutes), max(RANGES_MINUTES)) * 60.0)
        answer: dict[str, Any] = {
            "prometheus_url": self.config.prometheus_url or None,
            "note": self.config.error,
            "ranges_minutes": list(RANGES_MINUTES),
        }
        if self.config.prometheus_url:
            try:
                answer.update(self._from_prometheus(now, seconds))
                return answer
            except DashboardError as exc:
                answer["note"] = f"{exc}; reading the services' /metrics instead"
        self.history.start()
        answer.update(self._from_history(now, seconds))
        return answer

    def _panel_json(self, panel: Panel, lines: list[tuple[str, bool, list[float]]]) -> dict:
        seen: dict[str, int] = {}
        series = []
        for name, right, values in lines:
            seen[name] = seen.get(name, 0) + 1
            label = name if seen[name] == 1 else f"{name} #{seen[name]}"
            series.append({"name": label, "right": right, "values": [_clean(v) for v in values]})
        return {
            "id": panel.id,
            "title": panel.title,
            "section": panel.section,
            "unit": panel.unit,
            "right_unit": panel.right_unit,
            "series": series,
        }

    def _from_prometheus(self, now: float, seconds: float) -> dict[str, Any]:
        step = max(self.config.scrape_seconds, math.ceil(seconds / MAX_POINTS))
        end = math.floor(now / step) * step
        start = end - seconds
        times = [start + k * step for k in range(int(seconds // step) + 1)]
        queries = [(p, q) for p in self.panels for q in p.queries]
        results = self._pool.map(
            lambda pq: query_range(
                self.config.prometheus_url, pq[1].promql(step), start, end, step
            ),
            queries,
        )
        by_panel: dict[str, list[tuple[str, bool, list[float]]]] = {p.id: [] for p in self.panels}
        for (panel, query), result in zip(queries, results, strict=True):
            for series in sorted(result, key=lambda s: query.name_line(s.get("metric", {}))):
                values = [math.nan] * len(times)
                for t, text in series.get("values", []):
                    index = round((float(t) - start) / step)
                    if 0 <= index < len(times):
                        values[index] = float(text)
                name = query.name_line(series.get("metric", {}))
                by_panel[panel.id].append((name, query.right, values))
        return {
            "source": "prometheus",
            "times": times,
            "step": step,
            "targets": scrape_targets(self.config.prometheus_url),
            "panels": [self._panel_json(p, by_panel[p.id]) for p in self.panels],
        }

    def _from_history(self, now: float, seconds: float) -> dict[str, Any]:
        # Rates need the snapshots of one window before the first point shown.
        longest = max(q.window for p in self.panels for q in p.queries)
        history = self.history.window(now - seconds - longest)
        shown = [i for i, (t, _) in enumerate(history) if t >= now - seconds]
        first = shown[0] if shown else len(history)
        # Pages poll about as often as the history grows: the same snapshots, the same answer.
        key = (seconds, first, len(history), history[-1][0] if history else None)
        cached = self._answers.get(seconds)
        if cached is not None and cached[0] == key:
            return {**cached[1], "targets": [vars(s) for s in self.history.status]}
        panels = []
        for panel in self.panels:
            lines = []
            for query in panel.queries:
                evaluated = evaluate(query, history)
                for labels in sorted(evaluated, key=lambda lab: query.name_line(dict(lab))):
                    name = query.name_line(dict(labels))
                    lines.append((name, query.right, evaluated[labels][first:]))
            panels.append(self._panel_json(panel, lines))
        answer = {
            "source": "metrics",
            "times": [t for t, _ in history[first:]],
            "step": self.config.scrape_seconds,
            "targets": [vars(s) for s in self.history.status],
            "panels": panels,
        }
        self._answers[seconds] = (key, answer)
        return answer
