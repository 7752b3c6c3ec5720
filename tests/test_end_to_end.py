"""End to end: ``gbsynth run-local`` (``make run``'s topology) on the real local broker.

One run of the whole stack with small settings: the embedded demo songs are
emulated into recordings, pruned into segments, trained on until a checkpoint
appears, and the generator serves a WAV from it for ``POST /v1/songs``. Then
each service's ``/metrics`` must answer with ``gbsynth_`` metrics showing the
flow (recordings, segments, checkpoints, songs), the Grafana dashboards must
query only metric names those endpoints export, and SIGINT (Ctrl-C) must stop
everything cleanly.
"""

from __future__ import annotations

import io
import json
import re
import socket
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile
from test_deploy import dashboard_metric_names, exported_metric_names

from gbsynth.local import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEADLINE_S = 540.0  # the issue allows 10 minutes for source files -> WAV

# Small settings so the pipeline reaches a checkpoint in a few minutes on 2 cores:
# short recordings of two demo songs, the tiny model, an early first checkpoint.
SMALL = {
    "GBSYNTH_DEMO_SONGS": "2",
    "GBSYNTH_RECORD_SECONDS": "45",  # per enqueued file (2 songs: 2 GBS + 2 ROMs)
    "GBSYNTH_EXPLORE_WHEN_IDLE": "false",  # the four jobs are enough; keep CPUs free
    "GBSYNTH_EXPLORE_BOOT_SECONDS": "2",
    "GBSYNTH_EXPLORE_OBSERVE_SECONDS": "20",
    "GBSYNTH_EXPLORE_PRESS_SECONDS": "5",
    "GBSYNTH_EXPLORE_SETTLE_SECONDS": "1",
    "GBSYNTH_TRAINER_PRESET": "tiny",
    "GBSYNTH_TRAINER_BATCH_SIZE": "8",
    "GBSYNTH_TRAINER_CHECKPOINT_EVERY": "10",
    "GBSYNTH_TRAINER_EVAL_TOKENS": "2000",
    "GBSYNTH_DEFAULT_MODEL": "none",
}


def _lower(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(), _lower(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), _lower(exc.headers)


def _post_json(url: str, body: dict, timeout: float = 120.0) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), _lower(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), _lower(exc.headers)


def _sample_value(exposition: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in exposition.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if not match:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_make_run_topology_from_source_files_to_a_wav(tmp_path):
    state = tmp_path / "var"
    log_path = tmp_path / "run-local.log"
    stack = LocalStack(state, log_path, {**SMALL, "GBSYNTH_LOG_LEVEL": "INFO"}).start()
    ports = vars(stack.ports)
    generator = stack.generator_url
    metrics_urls = stack.metrics_urls()
    started = stack.started
    try:
        # -- a checkpoint reaches the generator ----------------------------------------------
        health: dict = {}
        while time.monotonic() - started < DEADLINE_S:
            assert stack.running(), f"run-local exited early:\n{stack.log_tail()}"
            if _port_open(stack.ports.generator):
                status, body, _ = _get(f"{generator}/healthz")
                if status == 200:
                    health = json.loads(body)
                    if health.get("model_loaded"):
                        break
            time.sleep(3)
        else:
            pytest.fail(
                f"no model served within {DEADLINE_S:.0f} s (last /healthz: {health}):\n"
                f"{stack.log_tail()}"
            )
        checkpoints = sorted((state / "checkpoints").glob("step-*.pt"))
        assert checkpoints, "the generator serves a model, so a checkpoint file must exist"

        # -- a song ------------------------------------------------------------------------
        status, body, headers = _post_json(f"{generator}/v1/songs", {"seconds": 4, "seed": 7})
        assert status == 200, body[:500]
        assert headers.get("content-type", "").startswith("audio/wav"), headers
        audio, rate = soundfile.read(io.BytesIO(body))
        assert rate == 44100 and audio.shape[0] >= 4 * 44100 * 0.9
        assert float(np.abs(audio).max()) > 0.01, "the song is silent"
        to_wav = time.monotonic() - started

        # -- every service's metrics ---------------------------------------------------------
        # The generator counts a streamed song once the stream ends: poll briefly.
        flow_deadline = time.monotonic() + 20
        while True:
            expositions = {}
            for service, url in metrics_urls.items():
                status, body, _ = _get(url)
                assert status == 200, f"{service} /metrics answered {status}"
                text = body.decode()
                assert re.search(r"^gbsynth_\w+", text, re.MULTILINE), f"{service}: no gbsynth_"
                assert f'service="{service}"' in text
                expositions[service] = text
            flow = {
                "recordings": _sample_value(
                    expositions["emulator"], "gbsynth_messages_out_total", topic="apu.recordings"
                ),
                "segments": _sample_value(
                    expositions["pruner"], "gbsynth_messages_out_total", topic="apu.segments"
                ),
                "checkpoints": _sample_value(
                    expositions["trainer"], "gbsynth_messages_out_total", topic="model.checkpoints"
                ),
                # Any status: whether a fully read stream counts as 200 or "aborted" depends
                # on how fast the client hangs up (the generator's business, not this test's).
                "songs": _sample_value(
                    expositions["generator"], "gbsynth_generator_requests_total"
                ),
            }
            if all(count >= 1 for count in flow.values()) or time.monotonic() > flow_deadline:
                break
            time.sleep(1)
        requests = [
            line
            for line in expositions["generator"].splitlines()
            if line.startswith("gbsynth_generator_requests_total")
        ]
        assert all(count >= 1 for count in flow.values()), (flow, requests)

        # The dashboards read only names the live services export.
        exported = set().union(*(exported_metric_names(t) for t in expositions.values()))
        missing = dashboard_metric_names() - exported
        assert not missing, f"dashboards query metrics no live service exports: {sorted(missing)}"

        # run-local printed where everything is.
        printed = log_path.read_text(errors="replace")
        for url in [f"{generator}/", *metrics_urls.values()]:
            assert url in printed, f"run-local did not print {url}"
        print(f"\nsource files -> WAV in {to_wav:.0f} s; flow {flow}")
    finally:
        # -- Ctrl-C stops everything ---------------------------------------------------------
        # A terminal sends SIGINT to its whole foreground process group: the services and
        # the broker must still stop in order (services first, so they can commit).
        code = stack.stop(timeout=60)
        if code is None:
            pytest.fail(f"run-local did not stop within 60 s of SIGINT:\n{stack.log_tail()}")
    assert code == 0, f"run-local exited {code}:\n{stack.log_tail()}"
    printed = log_path.read_text(errors="replace")
    assert "stopped." in printed
    # The broker outlived its clients: none lost its connection while stopping.
    stopping = printed[printed.index("stopping ...") :]
    assert "KafkaConnectionError" not in stopping, stopping[-3000:]
    for service in ("emulator", "pruner", "trainer"):
        assert f"{service} stopped (clean)" in stopping, service
    still_open = [name for name, port in ports.items() if _port_open(port)]
    assert not still_open, f"still listening after Ctrl-C: {still_open}"
