"""The pipeline dashboard's data (``gbsynth.generator.dashboard``): its panels are the Grafana
dashboards' (same metrics, PromQL that Prometheus' own parser accepts), and without Prometheus
the generator computes the same lines from the services' /metrics (rates across counter
resets, ``histogram_quantile``'s interpolation), with Prometheus it proxies its answers, and
a Prometheus that does not answer falls back to /metrics with a note."""

from __future__ import annotations

import json
import math
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from test_deploy import _tool, dashboard_metric_names, expr_metric_names

from gbsynth.common.broker import free_port
from gbsynth.generator import dashboard as dash
from gbsynth.generator.app import create_app
from gbsynth.generator.models import ModelHolder
from gbsynth.generator.service import Limits

EXPOSITION_LINES = """
# TYPE gbsynth_jobs_total counter
gbsynth_jobs_total{{service="emulator",outcome="done",origin="topic"}} {jobs}
gbsynth_jobs_total{{service="emulator",outcome="failed",origin="topic"}} 100
# TYPE gbsynth_generator_latency_seconds histogram
gbsynth_generator_latency_seconds_bucket{{service="generator",le="1.0"}} {fast}
gbsynth_generator_latency_seconds_bucket{{service="generator",le="2.0"}} {mid}
gbsynth_generator_latency_seconds_bucket{{service="generator",le="+Inf"}} {mid}
gbsynth_generator_latency_seconds_count{{service="generator"}} {mid}
"""


def _panel(answer: dict, panel_id: str) -> dict:
    return next(p for p in answer["panels"] if p["id"] == panel_id)


def test_the_panels_are_the_grafana_ones_and_cover_the_issue():
    grafana = dashboard_metric_names()
    for panel in dash.PANELS:
        for query in panel.queries:
            names = expr_metric_names(query.promql())
            assert names and names <= grafana, (panel.id, names - grafana)
    ids = {p.id for p in dash.PANELS}
    # issue 16: recordings and emulated seconds per replica, segments kept and rejected,
    # loss and held-out curve, checkpoint age, dataset size, songs, latency, errors, lag
    assert {"recordings", "emulated", "segments", "loss", "checkpoint", "dataset", "songs",
            "latency", "errors", "lag"} <= ids  # fmt: skip
    assert dash.PANELS[0].queries[0].promql() == (
        'sum by (instance) (rate(gbsynth_jobs_total{outcome="done"}[30s]))'
    )


def test_promtool_parses_every_panel_query(tmp_path):
    promtool = _tool("promtool", "run scripts/bootstrap.sh")
    rules = [
        {"record": f"gbsynth_panel:query_{i}", "expr": q.promql(step)}
        for i, (q, step) in enumerate(
            (q, step) for p in dash.PANELS for q in p.queries for step in (5, 90)
        )
    ]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _history(expositions: list[tuple[float, str]]) -> list[tuple[float, dash.Samples]]:
    wanted = {"gbsynth_jobs_total", "gbsynth_generator_latency_seconds_bucket"}
    return [(t, dash.parse_exposition(text, wanted, "job", "host:1")) for t, text in expositions]


def test_rates_count_across_a_counter_reset():
    query = dash.PANELS[0].queries[0]  # done jobs per second, by instance
    values = [0, 10, 20, 5, 15]  # the service restarted between t=10 and t=15
    history = _history(
        [(5.0 * i, EXPOSITION_LINES.format(jobs=v, fast=0, mid=0)) for i, v in enumerate(values)]
    )
    lines = dash.evaluate(query, history)
    assert list(lines) == [(("instance", "host:1"),)]
    line = lines[(("instance", "host:1"),)]
    assert math.isnan(line[0])  # one sample: no rate yet
    assert line[1] == pytest.approx(2.0)  # 10 in 5 s
    # over the 30 s window: 10 + 10 + 5 (reset: the new value) + 10 = 35 in 20 s
    assert line[4] == pytest.approx(35 / 20)
    # the failed jobs (100, never moving) are not selected
    failed = dash.Query("gbsynth_jobs_total", "x", "rate", (), match=(("outcome", "failed"),))
    assert dash.evaluate(failed, history)[()][4] == 0.0


def test_histogram_quantile_interpolates_like_prometheus():
    assert dash.histogram_quantile(0.5, [(1.0, 2), (2.0, 4), (math.inf, 4)]) == 1.0
    assert dash.histogram_quantile(0.75, [(1.0, 2), (2.0, 4), (math.inf, 4)]) == 1.5
    assert dash.histogram_quantile(0.5, [(1.0, 0), (math.inf, 4)]) == 1.0  # in +Inf: last bound
    assert math.isnan(dash.histogram_quantile(0.5, [(1.0, 0), (math.inf, 0)]))  # no requests
    assert math.isnan(dash.histogram_quantile(0.5, [(1.0, 3)]))  # no +Inf bucket
    query = dash.Query("gbsynth_generator_latency_seconds", "p50", "quantile", (), q=0.5)
    history = _history(
        [
            (0.0, EXPOSITION_LINES.format(jobs=0, fast=0, mid=0)),
            (5.0, EXPOSITION_LINES.format(jobs=0, fast=1, mid=4)),
        ]  # fmt: skip
    )
    # 1 song under 1 s and 3 between 1 and 2 s: the median is 1 + (2 - 1) * (2 - 1) / 3
    assert dash.evaluate(query, history)[()][1] == pytest.approx(1 + 1 / 3)


def test_without_prometheus_the_generator_reads_the_services_metrics(tmp_path):
    registry = CollectorRegistry()
    jobs = Counter("gbsynth_jobs", "jobs", ["service", "outcome", "origin"], registry=registry)
    lag = Gauge("gbsynth_consumer_lag", "lag", ["service", "topic", "partition"], registry=registry)
    Histogram("gbsynth_unused_seconds", "not on any panel", registry=registry).observe(1)
    # port 0: the system picks a free port, so no other test's server can answer here
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    port = server.server_port
    try:
        config = dash.DashboardConfig(
            targets=dash.parse_metrics_urls(
                f"emulator=http://127.0.0.1:{port}/metrics, trainer=http://127.0.0.1:1/metrics"
            ),
            scrape_seconds=5,
        )
        board = dash.Dashboard(config)
        clock = iter([1000.0, 1005.0, 1010.0])
        board.history.clock = lambda: next(clock)
        board.history.start = lambda: None  # this test scrapes by hand, no background thread
        # The generator's own series from a registry of this test's: other tests in the same
        # process leave gbsynth_* series in the global one.
        own = CollectorRegistry()
        ProcessCollector(registry=own)
        board.history._own = lambda: generate_latest(own).decode()
        for increase, now in ((0, 0), (5, 5), (10, 15)):
            jobs.labels(service="emulator", outcome="done", origin="topic").inc(increase)
            lag.labels(service="pruner", topic="apu.recordings", partition="0").set(now)
            board.history.scrape()
        answer = board.data(minutes=5, now=1010.0)
        assert board.data(minutes=5, now=1011.0) == answer  # no new snapshot: the same lines
    finally:
        server.shutdown()
    assert answer["source"] == "metrics" and answer["times"] == [1000.0, 1005.0, 1010.0]
    up = {t["job"]: t["up"] for t in answer["targets"]}
    assert up == {"generator": True, "emulator": True, "trainer": False}
    recordings = _panel(answer, "recordings")["series"]
    assert recordings == [{"name": f"127.0.0.1:{port}", "right": False, "values": [None, 1.0, 1.5]}]
    assert _panel(answer, "lag")["series"][0] == {
        "name": "pruner ← apu.recordings", "right": False, "values": [0.0, 5.0, 15.0]
    }  # fmt: skip
    # Only what the panels read is kept.
    assert not any("unused" in name for _, samples in board.history.snapshots
                   for name in samples)  # fmt: skip
    memory = _panel(answer, "memory")["series"]
    assert [s["name"] for s in memory] == ["generator"] and memory[0]["values"][-1] > 1e6


class FakePrometheus(BaseHTTPRequestHandler):
    """Answers query_range with one line per query: its value is the query's length."""

    queries: list[str] = []

    def do_GET(self):  # noqa: N802 (the http.server API)
        from urllib.parse import parse_qs, urlsplit

        params = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        if urlsplit(self.path).path == "/api/v1/query":  # the targets' `up`
            assert params["query"] == "up"
            up = [
                {"metric": {"job": "trainer", "instance": "t:9103"}, "value": [1, "0"]},
                {"metric": {"job": "emulator", "instance": "e:9101"}, "value": [1, "1"]},
            ]
            return self._answer({"resultType": "vector", "result": up})
        FakePrometheus.queries.append(params["query"])
        start, step = float(params["start"]), float(params["step"])
        result = [
            {
                "metric": {"instance": "10.0.0.7:9101", "status": "200", "job": "emulator"},
                "values": [[start + step, str(len(params["query"]))], [start + 3 * step, "1"]],
            }
        ]
        self._answer({"resultType": "matrix", "result": result})

    def _answer(self, data):
        body = json.dumps({"status": "success", "data": data})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


def test_with_prometheus_the_generator_proxies_its_answers_on_one_time_axis():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePrometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        board = dash.Dashboard(dash.DashboardConfig(prometheus_url=url))
        answer = board.data(minutes=60, now=10_000.0)
        board.close()
    finally:
        server.shutdown()
    assert answer["source"] == "prometheus" and answer["prometheus_url"] == url
    step = answer["step"]
    assert step == 15  # an hour in at most 240 points
    assert len(answer["times"]) == 241 and answer["times"][-1] == 10_000 - 10_000 % 15
    queries = [q.promql(step) for p in dash.PANELS for q in p.queries]
    assert sorted(FakePrometheus.queries) == sorted(queries)
    line = _panel(answer, "recordings")["series"][0]
    assert line["name"] == "10.0.0.7:9101"
    assert line["values"][1] == len(queries[0]) and line["values"][3] == 1.0
    assert line["values"][0] is None and line["values"][2] is None
    assert _panel(answer, "songs")["series"][0]["name"] == "200"
    assert answer["targets"] == [
        {"job": "emulator", "instance": "e:9101", "up": True},
        {"job": "trainer", "instance": "t:9103", "up": False},
    ]


def test_a_silent_prometheus_falls_back_to_metrics_and_says_so(tmp_path):
    config = dash.DashboardConfig(prometheus_url=f"http://127.0.0.1:{free_port()}")
    board = dash.Dashboard(config)
    answer = board.data(minutes=5)
    board.close()
    assert answer["source"] == "metrics"
    assert "did not answer" in answer["note"] and "/metrics instead" in answer["note"]
    assert board.history.running  # it reads /metrics from now on


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"GBSYNTH_PROMETHEUS_URL": "localhost:9090"}, "not an http"),
        ({"GBSYNTH_DASHBOARD_METRICS_URLS": "http://127.0.0.1:9101/metrics"}, "job=url"),
        ({"GBSYNTH_DASHBOARD_METRICS_URLS": "emulator=ftp://x/metrics"}, "not an http"),
        ({"GBSYNTH_DASHBOARD_SCRAPE_SECONDS": "0"}, "at least 1"),
    ],
)
def test_bad_settings_are_shown_on_the_dashboard(tmp_path, environ, message):
    config = dash.config_from_env(environ)
    assert message in config.error
    with TestClient(
        create_app(ModelHolder(tmp_path), Limits(), dashboard=dash.Dashboard(config))
    ) as client:
        answer = client.get("/v1/dashboard").json()
        assert message in answer["note"]
        assert client.get("/v1/dashboard", params={"minutes": 0}).status_code == 422
        page = client.get("/dashboard", headers={"accept-encoding": "gzip"})
        assert page.status_code == 200 and "/static/vendor/uPlot.iife.min.js" in page.text
        script = client.get("/static/vendor/uPlot.iife.min.js", headers={"accept-encoding": "gzip"})
        assert script.headers["content-encoding"] == "gzip"
        # Songs are not gzipped (a WAV stream keeps its Content-Length); no model: 503.
        assert "content-encoding" not in client.get("/v1/songs/1.wav").headers
        assert client.get("/v1/model").status_code == 503


def test_the_pages_polls_stay_out_of_the_access_log():
    import logging

    from gbsynth.generator.app import PollingFilter

    def line(path: str, status: int) -> logging.LogRecord:
        return logging.LogRecord(
            "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:5", "GET", path, "1.1", status), None,
        )  # fmt: skip

    polls = PollingFilter()
    assert not polls.filter(line("/v1/dashboard?minutes=15", 200))
    assert not polls.filter(line("/healthz", 200))
    assert polls.filter(line("/v1/dashboard?minutes=0", 422))  # failures are still logged
    assert polls.filter(line("/v1/songs/1.wav?seconds=2", 200))
