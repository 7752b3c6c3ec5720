"""Bytes on the wire of the generator's two pages: the song page (``/``) and the pipeline
dashboard (``/dashboard``), each with everything it loads on opening (HTML, scripts, styles,
and its first JSON answers), gzipped as served against the same bytes uncompressed (peer).

    .venv/bin/python bench/page_weight.py

The generator runs in process on a free port with a tiny checkpoint; the dashboard reads the
generator's own metrics (no Prometheus), so its JSON is about the size of a quiet stack's.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import uvicorn

from gbsynth.common.broker import free_port
from gbsynth.generator.app import create_app
from gbsynth.generator.models import ModelHolder
from gbsynth.generator.service import Limits
from gbsynth.trainer.testing import make_tiny_checkpoint

PAGES = {
    "song page (/)": [
        "/",
        "/static/style.css",
        "/static/app.js",
        "/healthz",
        "/v1/model",
    ],
    "dashboard (/dashboard)": [
        "/dashboard",
        "/static/vendor/uPlot.min.css",
        "/static/style.css",
        "/static/vendor/uPlot.iife.min.js",
        "/static/dashboard.js",
        "/v1/dashboard?minutes=15",
    ],
}


def fetch(url: str, gzip: bool) -> tuple[int, str]:
    """(bytes received, content-encoding)."""
    headers = {"accept-encoding": "gzip"} if gzip else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
        return len(r.read()), r.headers.get("content-encoding", "identity")


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="gbsynth-weight-"))
    make_tiny_checkpoint(folder, step=1)
    holder = ModelHolder(folder)
    holder.refresh()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(holder, Limits()), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:
        fetch(base + "/v1/dashboard", gzip=False)  # starts the history: later answers have lines
        time.sleep(6)
        print(f"{'page':<24} {'gzipped':>9} {'plain (peer)':>13} {'ratio':>6}")
        for page, paths in PAGES.items():
            wire = plain = 0
            for path in paths:
                wire += fetch(base + path, gzip=True)[0]
                plain += fetch(base + path, gzip=False)[0]
            print(f"{page:<24} {wire:>9,} {plain:>13,} {plain / wire:>5.1f}x")
        for path in ("/static/vendor/uPlot.iife.min.js", "/v1/dashboard?minutes=15"):
            size, encoding = fetch(base + path, gzip=True)
            print(f"  {path}: {size:,} bytes ({encoding})")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
