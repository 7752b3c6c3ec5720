"""The pipeline dashboard in headless Chromium on a running stack: ``gbsynth run-local`` (a real
local broker, the four services, and Prometheus when its binary is installed) with small
settings; /dashboard must draw charts with data (not only empty axes) within two minutes."""

from __future__ import annotations

import time

import pytest
from test_generator_browser import browser, wait_until  # noqa: F401 (fixture)

from gbsynth.local import LocalStack, find_prometheus

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


def test_the_dashboard_draws_the_running_stack(browser, tmp_path):  # noqa: F811
    stack = LocalStack(tmp_path / "var", tmp_path / "run-local.log", SMALL).start()
    log_path, started = stack.log_path, stack.started
    try:
        url = f"{stack.generator_url}/dashboard"
        while True:
            assert stack.running(), f"run-local exited:\n{stack.log_tail()}"
            assert time.monotonic() - started < 90, f"no generator:\n{stack.log_tail(40)}"
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
                f"{stack.log_tail(40)}"
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
        code = stack.stop(timeout=60)
    printed = log_path.read_text(errors="replace")
    assert code == 0, stack.log_tail(40)
    assert "stopped." in printed
    if find_prometheus():
        assert f"prometheus  http://127.0.0.1:{stack.ports.prometheus}/" in printed
