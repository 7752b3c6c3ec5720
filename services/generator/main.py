"""``gbsynth generator``: the generator service (songs over HTTP, on uvicorn).

    gbsynth generator                       # http://0.0.0.0:8000/ (page), /docs, /metrics
    gbsynth generator --port 8080 --checkpoint-dir var/checkpoints

At start it loads the newest promoted checkpoint of ``GBSYNTH_CHECKPOINT_DIR``, or,
when there is none yet, the default model (``GBSYNTH_DEFAULT_MODEL``: the pre-trained
model shipped in the package), so it serves songs from the first second; then it keeps
watching the folder and ``model.checkpoints`` for newer ones
(``gbsynth.generator.models``). With ``GBSYNTH_DEFAULT_MODEL=none``, song requests
get 503 until the trainer writes a first checkpoint.
``/metrics`` is served on the API port, unless ``GBSYNTH_METRICS_PORT`` names another
port (its own server) or 0 (none). SIGINT/SIGTERM stop it after the requests in
hand are answered.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from gbsynth.common import config as cfg
from gbsynth.common import metrics
from gbsynth.generator import settings as gs
from gbsynth.generator.models import SERVICE, ModelHolder

log = logging.getLogger(__name__)

WARM_UP_SECONDS = 2.0
"""Music made at start: loads the compiled code and measures the first speed estimate."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=None, help=f"HTTP port (default ${gs.PORT.name}, 8000)"
    )
    parser.add_argument(
        "--host", default=None, help=f"address to bind (default ${gs.HOST.name}, 0.0.0.0)"
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help=f"folder of checkpoints (default ${cfg.CHECKPOINT_DIR.name}, var/checkpoints)",
    )


def warm_up(holder: ModelHolder, cap: float) -> tuple[float, float] | None:
    """Load the synthesizer's compiled code and make a short song with the model, so the
    first request does not pay for either; return (music seconds, wall seconds) of that
    song, the first estimate of the service's speed (None without a usable model)."""
    import time

    from gbsynth.common.events import ApuWrites
    from gbsynth.generator.songs import PieceRenderer, SongError, SongParams, generate, piano_roll

    renderer = PieceRenderer(4096, 44_100)
    renderer.feed(ApuWrites.from_arrays([0], [0xFF26], [0x80]))
    renderer.finish()
    piano_roll(ApuWrites.empty(), 70_224)
    model = holder.current
    if model is None:
        return None
    try:
        # A first tiny song loads the sampler's compiled code; the next one is timed.
        generate(model, SongParams(seconds=0.1, seed=0), max_events_per_second=cap)
        started = time.perf_counter()
        params = SongParams(seconds=WARM_UP_SECONDS, seed=0)
        generate(model, params, sink=lambda _pcm: None, max_events_per_second=cap)
    except SongError as exc:
        log.warning("the model's warm-up song failed: %s", exc)
        return None
    return WARM_UP_SECONDS, time.perf_counter() - started


def run(args: argparse.Namespace) -> int:
    cfg.configure_logging(SERVICE)
    try:
        limits = gs.limits_from_env()
        host = args.host or gs.HOST.get()
        port = args.port if args.port is not None else gs.PORT.get()
        if not 0 < port < 65536:
            raise cfg.SettingError(f"--port must be 1-65535, got {port}")
        checkpoint_dir = args.checkpoint_dir or Path(cfg.CHECKPOINT_DIR.get())
        metrics_port = cfg.metrics_port(port)
        metrics_address = cfg.METRICS_ADDRESS.get()
        poll_seconds = gs.POLL_SECONDS.get()
        watch = gs.WATCH_ANNOUNCEMENTS.get()
        torch_threads = gs.TORCH_THREADS.get()
        max_body = gs.MAX_BODY_BYTES.get()
        from gbsynth.trainer.checkpoint import CheckpointError, default_model_path

        try:
            default_model = default_model_path()
        except CheckpointError as exc:
            raise cfg.SettingError(str(exc)) from exc
        kafka_config = None
        if watch:
            from gbsynth.common.kafka import KafkaConfig

            kafka_config = KafkaConfig.from_env()
    except cfg.SettingError as exc:
        print(f"gbsynth generator: {exc}", file=sys.stderr)
        return 2

    import torch
    import uvicorn

    from gbsynth.generator.app import create_app
    from gbsynth.generator.models import AnnouncementWatcher, DirectoryWatcher

    torch.set_num_threads(torch_threads)
    metrics.set_build_info(SERVICE)
    holder = ModelHolder(checkpoint_dir, fallback=default_model)
    if not holder.refresh(trigger="start"):
        log.warning(
            "no checkpoint in %s yet and no default model: songs get 503 until the trainer "
            "writes one", checkpoint_dir,
        )  # fmt: skip
    first_speed = warm_up(holder, limits.max_events_per_second)
    watchers: list = [DirectoryWatcher(holder, poll_seconds).start()]
    if kafka_config is not None:
        watchers.append(AnnouncementWatcher(holder, kafka_config).start())
    separate_metrics = None
    if metrics_port not in (0, port):
        separate_metrics = metrics.start_metrics_server(metrics_port, metrics_address)
    app = create_app(holder, limits, metrics_endpoint=metrics_port == port, max_body_bytes=max_body)
    if first_speed is not None:
        app.state.service.note_speed(*first_speed)
        log.info("warm-up: %.1f s of music in %.2f s", *first_speed)
    log.info(
        "generator on http://%s:%d/ (API docs /docs), %d sampling threads, checkpoints from %s",
        host, port, limits.workers, checkpoint_dir,
    )  # fmt: skip
    # uvicorn stops gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler
    # that was there before it; this one lets run() return 0 after a clean stop.
    stopped_by: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stopped_by.append(signum))
    try:
        # uvicorn exits 1 itself (with a log line) if the port is taken.
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=cfg.LOG_LEVEL.get().lower(),
            timeout_graceful_shutdown=10,
        )
    finally:
        for watcher in watchers:
            watcher.stop()
        if separate_metrics is not None:
            separate_metrics.shutdown()
    log.info("generator stopped%s", f" (signal {stopped_by[0]})" if stopped_by else "")
    return 0
