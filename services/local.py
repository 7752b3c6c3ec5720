"""``gbsynth run-local`` (what ``make run`` starts): the whole pipeline as local processes.

A local in-memory Kafka-compatible broker (Tansu), the embedded demo music
(composed on first run into ``var/roms`` unless ``GBSYNTH_ROM_DIR`` names a
folder), and every service as its own process with its output prefixed by its
name. Ctrl-C (SIGINT) or SIGTERM stops the services first, then the broker.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gbsynth.common.config import Setting

STATE_DIR = Setting(
    "GBSYNTH_STATE_DIR",
    str,
    "var",
    "run-local: folder for the demo ROMs, checkpoints and logs of a local run",
)
DEMO_SONGS = Setting("GBSYNTH_DEMO_SONGS", int, 8, "run-local: demo songs to compose", minimum=1)
DEMO_SEED = Setting("GBSYNTH_DEMO_SEED", int, 0, "run-local: seed of the demo songs")


@dataclass
class ServiceSpec:
    name: str
    command: list[str]
    module: str
    env: dict[str, str] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _pump(name: str, stream, width: int) -> None:
    """Copy a child's output line by line, each line prefixed with its service name."""
    prefix = f"{name:>{width}} | ".encode()
    for line in iter(stream.readline, b""):
        sys.stdout.buffer.write(prefix + line)
        sys.stdout.buffer.flush()


def service_specs(rom_dir: Path, state_dir: Path) -> list[ServiceSpec]:
    python = [sys.executable, "-m", "gbsynth"]
    checkpoints = state_dir / "checkpoints"
    return [
        ServiceSpec(
            "emulator",
            [*python, "emulator-worker", "--rom-dir", str(rom_dir), "--enqueue-on-start"],
            "gbsynth.emulator.worker",
            {"GBSYNTH_METRICS_PORT": "9101"},
            ["metrics http://127.0.0.1:9101/metrics"],
        ),
        ServiceSpec(
            "pruner",
            [*python, "pruner"],
            "gbsynth.pruner.main",
            {"GBSYNTH_METRICS_PORT": "9102"},
            ["metrics http://127.0.0.1:9102/metrics"],
        ),
        ServiceSpec(
            "trainer",
            [*python, "trainer"],
            "gbsynth.trainer.main",
            {"GBSYNTH_METRICS_PORT": "9103", "GBSYNTH_CHECKPOINT_DIR": str(checkpoints)},
            ["metrics http://127.0.0.1:9103/metrics"],
        ),
        ServiceSpec(
            "generator",
            [*python, "generator", "--port", "8000"],
            "gbsynth.generator.main",
            {"GBSYNTH_CHECKPOINT_DIR": str(checkpoints)},
            ["songs http://127.0.0.1:8000/", "metrics http://127.0.0.1:8000/metrics"],
        ),
    ]


def ensure_demo_music(rom_dir: Path, songs: int, seed: int) -> None:
    if rom_dir.is_dir() and any(rom_dir.iterdir()):
        return
    print(f"composing {songs} demo songs into {rom_dir} ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "gbsynth", "make-demo-music", str(rom_dir),
         "--songs", str(songs), "--seed", str(seed)],
        check=True,
    )  # fmt: skip


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rom-dir", type=Path, default=None, help="ROM folder (default: demo)")
    parser.add_argument("--broker-port", type=int, default=9092, help="local broker port")
    parser.add_argument(
        "--only", nargs="*", default=None, help="run only these services (names as printed)"
    )


def run(args: argparse.Namespace) -> int:
    from gbsynth.common.broker import BrokerError, LocalBroker

    state_dir = Path(STATE_DIR.get())
    env_rom_dir = os.environ.get("GBSYNTH_ROM_DIR", "").strip()
    rom_dir = args.rom_dir or (Path(env_rom_dir) if env_rom_dir else state_dir / "roms")
    state_dir.mkdir(parents=True, exist_ok=True)
    if not (args.rom_dir or env_rom_dir):
        ensure_demo_music(rom_dir, DEMO_SONGS.get(), DEMO_SEED.get())
    if not rom_dir.is_dir():
        print(f"gbsynth run-local: ROM folder {rom_dir} does not exist", file=sys.stderr)
        return 2

    specs = [
        s for s in service_specs(rom_dir, state_dir) if args.only is None or s.name in args.only
    ]
    missing = [s.name for s in specs if not _available(s.module)]
    specs = [s for s in specs if s.name not in missing]

    broker = LocalBroker(port=args.broker_port)
    try:
        broker.start()
    except BrokerError as exc:
        print(f"gbsynth run-local: cannot start the local broker: {exc}", file=sys.stderr)
        return 1
    print(f"broker      kafka://{broker.bootstrap} (Tansu, in memory)", flush=True)

    base_env = dict(os.environ)
    base_env.update(
        GBSYNTH_KAFKA_BOOTSTRAP=broker.bootstrap,
        GBSYNTH_KAFKA_SESSION_TIMEOUT_MS="6000",
        GBSYNTH_KAFKA_HEARTBEAT_INTERVAL_MS="1000",
        PYTHONUNBUFFERED="1",
    )
    width = max([len(s.name) for s in specs] + [8])
    procs: list[tuple[ServiceSpec, subprocess.Popen]] = []
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        stopping.set()

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for spec in specs:
            proc = subprocess.Popen(
                spec.command,
                env={**base_env, **spec.env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
            )
            pump = threading.Thread(target=_pump, args=(spec.name, proc.stdout, width), daemon=True)
            pump.start()
            procs.append((spec, proc))
            for url in spec.urls:
                print(f"{spec.name:<11} {url}", flush=True)
        if missing:
            print(f"not built yet, not started: {', '.join(missing)}", flush=True)
        print("Ctrl-C stops everything.", flush=True)
        while not stopping.is_set():
            for spec, proc in procs:
                if proc.poll() is not None:
                    print(f"{spec.name} exited with code {proc.returncode}; stopping", flush=True)
                    stopping.set()
            stopping.wait(0.5)
    finally:
        for _spec, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for _spec, proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
        print("stopped.", flush=True)
    failed = [s.name for s, p in procs if p.returncode not in (0, -signal.SIGTERM)]
    return 1 if failed else 0
