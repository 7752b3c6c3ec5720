"""The pipeline dashboard in headless Chromium on a running stack: ``gbsynth run-local`` (a real
local broker, the four services, and Prometheus when its binary is installed) with small
settings; /dashboard must draw charts with data (not only empty axes) within two minutes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from test_generator_browser import browser, wait_until  # noqa: F401 (fixture)

from gbsynth.common.broker import free_port
from gbsynth.local import find_prometheus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMALL = {
    "GBSYNTH_DEMO_SONGS": "1",
    "GBSYNTH_RECORD_SECONDS": "30",
    "GBSYNTH_EXPLORE_WHEN_IDLE": "false",
    "GBSYNTH_TRAINER_PRESET": "tiny",
    "GBSYNTH_TRAINER_BATCH_SIZE": "8",
}
# Panels that must show data early: memory (every process, first scrape) and the emulator's
# throughput (its first recording is under way within seconds).
EARLY_PANELS = ("memory", "emulated")

POINTS = """
const out = {};
for (const box of document.querySelectorAll('.dash-panel')) {
  const canvas = box.querySelector('canvas');
  let lit = 0;
  if (canvas) {
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) lit++;
  }
  out[box.id.replace('panel-', '')] = [Number(box.dataset.points || 0), lit];
}
return out;
"""


def _tail(path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def test_the_dashboard_draws_the_running_stack(browser, tmp_path):  # noqa: F811
    ports = {name: free_port() for name in ("broker", "generator", "e", "p", "t", "prometheus")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("GBSYNTH_")}
    env.update(SMALL, GBSYNTH_STATE_DIR=str(tmp_path / "var"))
    command = [
        sys.executable,
        "-m",
        "gbsynth",
        "run-local",
        "--broker-port",
        str(ports["broker"]),
        "--generator-port",
        str(ports["generator"]),
        "--emulator-metrics-port",
        str(ports["e"]),
        "--pruner-metrics-port",
        str(ports["p"]),
        "--trainer-metrics-port",
        str(ports["t"]),
        "--prometheus-port",
        str(ports["prometheus"]),
    ]
    log_path = tmp_path / "run-local.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{ports['generator']}/dashboard"
        while True:
            assert proc.poll() is None, f"run-local exited:\n{_tail(log_path)}"
            assert time.monotonic() - started < 90, f"no generator:\n{_tail(log_path)}"
            try:
                browser.get(url)
                if browser.find_elements("id", "panels"):
                    break
            except Exception:  # not listening yet
                pass
            time.sleep(1)
        deadline = time.monotonic() + 120
        while True:
            drawn = browser.execute_script(POINTS)
            with_data = {k for k, (points, lit) in drawn.items() if points > 0 and lit > 500}
            if set(EARLY_PANELS) <= with_data:
                break
            assert time.monotonic() < deadline, (
                f"charts without data: {drawn}\n{browser.find_element('id', 'source').text}\n"
                f"{_tail(log_path)}"
            )
            time.sleep(1)
        print(f"\nfirst charts with data {time.monotonic() - started:.1f} s after run-local")
        source = browser.find_element("id", "source").text
        if find_prometheus():
            assert source.startswith("from Prometheus at http://127.0.0.1:"), source
        else:
            assert source.startswith("from the services' /metrics"), source
        assert len(drawn) >= 12  # every panel is there, with data or "no data yet"
        browser.save_screenshot(str(tmp_path / "dashboard.png"))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=60)
    printed = log_path.read_text(errors="replace")
    assert code == 0, _tail(log_path)
    assert "stopped." in printed
    if find_prometheus():
        assert f"prometheus  http://127.0.0.1:{ports['prometheus']}/" in printed
