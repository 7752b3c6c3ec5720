"""The whole pipeline as local processes (``gbsynth run-local``, what ``make run`` starts).

The same topology as ``deploy/docker-compose.yml`` without Docker: a local
in-memory Kafka-compatible broker (Tansu) instead of Apache Kafka, the embedded
demo music (composed on first run into ``var/roms`` unless ``GBSYNTH_ROM_DIR`` or
``--rom-dir`` names a folder), and each of the four services as its own process,
its output prefixed by its name:

- ``emulator``: ``gbsynth emulator-worker``, publishing a job per file first;
- ``pruner``: ``gbsynth pruner``; ``trainer``: ``gbsynth trainer``, checkpoints in
  ``var/checkpoints`` and its dataset in ``var/trainer``;
- ``generator``: ``gbsynth generator``, songs at http://127.0.0.1:8000/ and the pipeline
  dashboard at http://127.0.0.1:8000/dashboard.

Metrics: emulator 9101, pruner 9102, trainer 9103, generator 8000 (beside its API).
Prometheus (Debian's ``prometheus`` binary, beside the Python interpreter or on PATH) scrapes
them as ``deploy/prometheus/prometheus.yml`` does, on http://127.0.0.1:9090/, keeping its
data in ``var/prometheus``; the dashboard reads it. Without the binary (or with
``--prometheus-port 0``) the stack runs without it and the dashboard reads the services'
``/metrics`` itself.

A local run should give a song within minutes, so a few settings get local
defaults (``LOCAL_DEFAULTS``: the trainer checkpoints early and often); a value
set in the environment always wins. Ctrl-C (SIGINT) or SIGTERM stops the
services first (each finishes the message in hand and commits), then the broker.
If a service exits on its own, everything stops and the exit code says so.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO

from gbsynth.common.config import SERVICE_METRICS_PORTS, Setting

STATE_DIR = Setting(
    "GBSYNTH_STATE_DIR",
    str,
    "var",
    "run-local: folder for the demo ROMs, checkpoints and logs of a local run",
)
DEMO_SONGS = Setting("GBSYNTH_DEMO_SONGS", int, 8, "run-local: demo songs to compose", minimum=1)
DEMO_SEED = Setting("GBSYNTH_DEMO_SEED", int, 0, "run-local: seed of the demo songs")

# Default ports, as in the compose file and each service's own default.
BROKER_PORT = 9092
GENERATOR_PORT = 8000
METRICS_PORTS = SERVICE_METRICS_PORTS
PROMETHEUS_PORT = 9090

# Prometheus as deploy/prometheus/prometheus.yml sets it up (tests/test_local.py compares).
PROMETHEUS_GLOBAL = {"scrape_interval": "5s", "scrape_timeout": "4s", "evaluation_interval": "15s"}
PROMETHEUS_RETENTION = "7d"  # a local run's history; the compose stack keeps 15 days
PROMETHEUS_READY_WAIT_S = 5.0

# Settings whose service default suits a long-running deployment but not a first
# local run: the trainer checkpoints early and often so a song can be requested
# after a few minutes. Applied only where the environment leaves them unset.
LOCAL_DEFAULTS: dict[str, str] = {
    "GBSYNTH_TRAINER_CHECKPOINT_EVERY": "100",  # the service default is 200 steps
}

STOP_GRACE_S = 20.0  # each service gets this long to finish the message in hand


@dataclass
class ServiceSpec:
    """One service process of the local stack."""

    name: str
    command: list[str]
    module: str
    env: dict[str, str] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ports:
    broker: int = BROKER_PORT
    generator: int = GENERATOR_PORT
    emulator_metrics: int = METRICS_PORTS["emulator"]
    pruner_metrics: int = METRICS_PORTS["pruner"]
    trainer_metrics: int = METRICS_PORTS["trainer"]
    prometheus: int = PROMETHEUS_PORT
    """0: no Prometheus."""


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _pump(name: str, stream: IO[bytes], width: int) -> None:
    """Copy a child's output line by line, each line prefixed with its service name."""
    prefix = f"{name:>{width}} | ".encode()
    for line in iter(stream.readline, b""):
        sys.stdout.buffer.write(prefix + line)
        sys.stdout.buffer.flush()


def metrics_targets(ports: Ports) -> dict[str, int]:
    """Prometheus job name -> the port of its /metrics, for the four services."""
    return {
        "emulator": ports.emulator_metrics,
        "pruner": ports.pruner_metrics,
        "trainer": ports.trainer_metrics,
        "generator": ports.generator,  # beside its HTTP API
    }


def service_specs(
    rom_dir: Path, state_dir: Path, ports: Ports | None = None, prometheus_url: str | None = None
) -> list[ServiceSpec]:
    """The four services with their commands, environment and URLs. ``prometheus_url``: the
    Prometheus the generator's dashboard asks (None: it reads the /metrics below itself)."""
    ports = ports or Ports()
    others = ",".join(
        f"{job}=http://127.0.0.1:{port}/metrics"
        for job, port in metrics_targets(ports).items()
        if job != "generator"
    )
    dashboard_env = {"GBSYNTH_DASHBOARD_METRICS_URLS": others}
    if prometheus_url:
        dashboard_env["GBSYNTH_PROMETHEUS_URL"] = prometheus_url
    python = [sys.executable, "-m", "gbsynth"]
    checkpoints = str(state_dir / "checkpoints")
    return [
        ServiceSpec(
            "emulator",
            [*python, "emulator-worker", "--rom-dir", str(rom_dir), "--enqueue-on-start"],
            "gbsynth.emulator.main",
            {"GBSYNTH_METRICS_PORT": str(ports.emulator_metrics)},
            [f"metrics http://127.0.0.1:{ports.emulator_metrics}/metrics"],
        ),
        ServiceSpec(
            "pruner",
            [*python, "pruner"],
            "gbsynth.pruner.main",
            {"GBSYNTH_METRICS_PORT": str(ports.pruner_metrics)},
            [f"metrics http://127.0.0.1:{ports.pruner_metrics}/metrics"],
        ),
        ServiceSpec(
            "trainer",
            [*python, "trainer"],
            "gbsynth.trainer.main",
            {
                "GBSYNTH_METRICS_PORT": str(ports.trainer_metrics),
                "GBSYNTH_CHECKPOINT_DIR": checkpoints,
                "GBSYNTH_TRAINER_DATA_DIR": str(state_dir / "trainer"),
            },
            [f"metrics http://127.0.0.1:{ports.trainer_metrics}/metrics"],
        ),
        ServiceSpec(
            "generator",
            [*python, "generator", "--port", str(ports.generator)],
            "gbsynth.generator.main",
            # The generator serves /metrics on its HTTP port.
            {"GBSYNTH_CHECKPOINT_DIR": checkpoints, **dashboard_env},
            [
                f"songs   http://127.0.0.1:{ports.generator}/",
                f"charts  http://127.0.0.1:{ports.generator}/dashboard",
                f"metrics http://127.0.0.1:{ports.generator}/metrics",
            ],
        ),
    ]


def stack_env(environ: dict[str, str], bootstrap: str) -> dict[str, str]:
    """The environment shared by every service of the local stack: ``environ`` with
    ``LOCAL_DEFAULTS`` for what it leaves unset, and the local broker."""
    env = dict(environ)
    for name, value in LOCAL_DEFAULTS.items():
        if not env.get(name, "").strip():
            env[name] = value
    env.update(
        GBSYNTH_KAFKA_BOOTSTRAP=bootstrap,
        # Tansu holds each group join for half the session timeout: keep it short.
        GBSYNTH_KAFKA_SESSION_TIMEOUT_MS="6000",
        GBSYNTH_KAFKA_HEARTBEAT_INTERVAL_MS="1000",
        PYTHONUNBUFFERED="1",
    )
    return env


def prometheus_config(ports: Ports) -> dict:
    """deploy/prometheus/prometheus.yml for one machine: the same global settings and job
    names, each job one static target on 127.0.0.1 instead of Docker DNS discovery."""
    jobs = [
        {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        for job, port in metrics_targets(ports).items()
    ]
    jobs.append(
        {
            "job_name": "prometheus",
            "static_configs": [{"targets": [f"127.0.0.1:{ports.prometheus}"]}],
        }
    )
    return {"global": dict(PROMETHEUS_GLOBAL), "scrape_configs": jobs}


def find_prometheus() -> str | None:
    """The ``prometheus`` binary: beside the Python interpreter (scripts/bootstrap.sh may put
    it in the virtualenv, as it does promtool), else on PATH."""
    beside = Path(sys.executable).parent / "prometheus"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("prometheus")


def prometheus_command(binary: str, state_dir: Path, ports: Ports) -> list[str]:
    """Write the configuration under ``state_dir/prometheus``; the command that runs it."""
    folder = state_dir / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    # JSON is YAML: no YAML writer needed.
    config.write_text(json.dumps(prometheus_config(ports), indent=1) + "\n")
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--storage.tsdb.retention.time={PROMETHEUS_RETENTION}",
        f"--web.listen-address=127.0.0.1:{ports.prometheus}",
        "--log.level=warn",
    ]
    # Debian's build reads its web UI from /usr/share/prometheus/web; a binary unpacked from
    # the package into a virtualenv (with the UI beside it in share/) is told where it is.
    prefix = Path(binary).resolve().parent.parent
    assets = prefix / "share" / "prometheus" / "web"
    if prefix != Path("/usr") and assets.is_dir():
        command.append(f"--web.local-assets={assets}")
    return command


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_ready(url: str, proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Poll Prometheus' /-/ready until it answers, it exits, or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def _start_prometheus(
    state_dir: Path, ports: Ports, width: int, death_signal: Callable[[], None] | None
) -> tuple[subprocess.Popen[bytes] | None, str | None]:
    """Start Prometheus if there is one (the process and its URL), else say so once and
    return (None, None): the stack runs without it."""
    if ports.prometheus == 0:
        return None, None
    binary = find_prometheus()
    if binary is None:
        print(
            f"{'prometheus':<11} not found (Debian: apt-get install prometheus); the dashboard "
            "reads the services' /metrics itself",
            flush=True,
        )
        return None, None
    url = f"http://127.0.0.1:{ports.prometheus}"
    if not _port_free(ports.prometheus):
        # Another Prometheus there would answer our readiness check: do not ask it.
        print(
            f"{'prometheus':<11} port {ports.prometheus} is taken (--prometheus-port picks "
            "another); going on without it",
            flush=True,
        )
        return None, None
    try:
        proc = subprocess.Popen(
            prometheus_command(binary, state_dir, ports),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=death_signal,
        )
    except OSError as exc:
        print(f"{'prometheus':<11} cannot start {binary}: {exc}; going on without it", flush=True)
        return None, None
    threading.Thread(target=_pump, args=("prometheus", proc.stdout, width), daemon=True).start()
    if not _wait_ready(url, proc, PROMETHEUS_READY_WAIT_S) and proc.poll() is not None:
        print(
            f"{'prometheus':<11} exited with code {proc.returncode} (its output is above; "
            "--prometheus-port picks another port); going on without it",
            flush=True,
        )
        return None, None
    print(f"{'prometheus':<11} {url}/ (data in {state_dir / 'prometheus'})", flush=True)
    return proc, url


def _stop_prometheus(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        print(f"prometheus did not stop in {STOP_GRACE_S:g} s; killing it", flush=True)
        proc.kill()
        proc.wait()


def ensure_demo_music(rom_dir: Path, songs: int, seed: int) -> None:
    if rom_dir.is_dir() and any(rom_dir.iterdir()):
        return
    print(f"composing {songs} demo songs into {rom_dir} ...", flush=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gbsynth",
            "make-demo-music",
            str(rom_dir),
            "--songs",
            str(songs),
            "--seed",
            str(seed),
        ],
        check=True,
    )


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM if run-local itself dies (even by
    SIGKILL), so no service outlives the stack. Linux only; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not after fork
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_in_child() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return set_in_child


def run_stack(ports: Ports, rom_dir: Path | None = None, only: list[str] | None = None) -> int:
    """Run the broker, Prometheus and the services (``only`` these names, if given) until
    Ctrl-C, SIGTERM or a service's exit; the exit code (0, 1 or 2 for bad settings).
    ``rom_dir`` defaults to ``$GBSYNTH_ROM_DIR``, else demo music under the state folder."""
    from gbsynth.common.broker import BrokerError, LocalBroker
    from gbsynth.common.config import SettingError

    bad = [
        p
        for name, p in vars(ports).items()
        if not (1 <= p <= 65535 or (name == "prometheus" and p == 0))
    ]
    if bad:
        print(
            f"gbsynth run-local: ports must be 1-65535 (--prometheus-port also 0), got {bad}",
            file=sys.stderr,
        )
        return 2
    try:
        state_dir = Path(STATE_DIR.get())
        songs, seed = DEMO_SONGS.get(), DEMO_SEED.get()
    except SettingError as exc:
        print(f"gbsynth run-local: {exc}", file=sys.stderr)
        return 2
    env_rom_dir = os.environ.get("GBSYNTH_ROM_DIR", "").strip()
    demo_music = not (rom_dir or env_rom_dir)
    rom_dir = rom_dir or (Path(env_rom_dir) if env_rom_dir else state_dir / "roms")
    state_dir.mkdir(parents=True, exist_ok=True)
    if demo_music:
        ensure_demo_music(rom_dir, songs, seed)
    if not rom_dir.is_dir():
        print(f"gbsynth run-local: ROM folder {rom_dir} does not exist", file=sys.stderr)
        return 2

    def chosen(prometheus_url: str | None) -> list[ServiceSpec]:
        return [
            s
            for s in service_specs(rom_dir, state_dir, ports, prometheus_url)
            if (only is None or s.name in only) and s.name not in missing
        ]

    missing: list[str] = []
    missing = [s.name for s in chosen(None) if not _available(s.module)]
    specs = chosen(None)

    broker = LocalBroker(port=ports.broker)
    try:
        broker.start()
    except BrokerError as exc:
        print(
            f"gbsynth run-local: cannot start the local broker: {exc} (--broker-port picks "
            "another port)",
            file=sys.stderr,
        )
        return 1
    print(f"{'broker':<11} kafka://{broker.bootstrap} (Tansu, in memory)", flush=True)

    base_env = stack_env(dict(os.environ), broker.bootstrap)
    width = max([len(s.name) for s in specs] + [8])
    procs: list[tuple[ServiceSpec, subprocess.Popen[bytes]]] = []
    prometheus: subprocess.Popen[bytes] | None = None
    stopping = threading.Event()
    exited: list[str] = []
    death_signal = _parent_death_signal()

    def stop(signum: int, _frame: object) -> None:
        stopping.set()

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        prometheus, prometheus_url = _start_prometheus(state_dir, ports, width, death_signal)
        specs = chosen(prometheus_url)
        for spec in specs:
            proc = subprocess.Popen(
                spec.command,
                env={**base_env, **spec.env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
                preexec_fn=death_signal,
            )
            pump = threading.Thread(target=_pump, args=(spec.name, proc.stdout, width), daemon=True)
            pump.start()
            procs.append((spec, proc))
            for url in spec.urls:
                print(f"{spec.name:<11} {url}", flush=True)
        if missing:
            print(f"not built yet, not started: {', '.join(missing)}", flush=True)
        if any(s.name == "generator" for s in specs):
            print(
                f"a song (from the default model until the trainer promotes a better one): "
                f"curl -X POST "
                f"http://127.0.0.1:{ports.generator}/v1/songs -H 'content-type: application/json'"
                f" -d '{{\"seconds\": 30}}' -o song.wav",
                flush=True,
            )
        print("Ctrl-C stops everything.", flush=True)
        while not stopping.is_set():
            for spec, proc in procs:
                if proc.poll() is not None:
                    print(f"{spec.name} exited with code {proc.returncode}; stopping", flush=True)
                    exited.append(spec.name)
                    stopping.set()
            stopping.wait(0.5)
    finally:
        print("stopping ...", flush=True)
        for _spec, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for spec, proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{spec.name} did not stop in {STOP_GRACE_S:g} s; killing it", flush=True)
                proc.kill()
                proc.wait()
        if prometheus is not None:
            _stop_prometheus(prometheus)
        broker.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
        print("stopped.", flush=True)
    failed = [s.name for s, p in procs if p.returncode not in (0, -signal.SIGTERM)]
    if failed:
        print(f"gbsynth run-local: {', '.join(failed)} failed", file=sys.stderr)
    return 1 if failed or exited else 0


class LocalStack:
    """``gbsynth run-local`` as a child process on free ports, for the tests and benchmarks
    that need the whole stack running (``tests/test_end_to_end.py``,
    ``tests/test_dashboard_browser.py``, ``bench/local_stack.py``).

    Its environment is the caller's without any ``GBSYNTH_*`` setting, plus ``settings``
    and ``GBSYNTH_STATE_DIR=state_dir``; its output goes to ``log_path``. It runs in a
    process group of its own, so ``stop`` sends SIGINT to the whole group as a terminal's
    Ctrl-C does (the stack must still stop in order). As a context manager it starts on
    entry and is stopped on exit if still running.
    """

    def __init__(
        self, state_dir: Path, log_path: Path, settings: dict[str, str] | None = None
    ) -> None:
        from gbsynth.common.broker import free_port

        self.state_dir = Path(state_dir)
        self.log_path = Path(log_path)
        self.settings = dict(settings or {})
        self.ports = Ports(*(free_port() for _ in fields(Ports)))
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        """``time.monotonic()`` at the start."""

    @property
    def command(self) -> list[str]:
        ports = self.ports
        return [
            sys.executable, "-m", "gbsynth", "run-local",
            "--broker-port", str(ports.broker),
            "--generator-port", str(ports.generator),
            "--emulator-metrics-port", str(ports.emulator_metrics),
            "--pruner-metrics-port", str(ports.pruner_metrics),
            "--trainer-metrics-port", str(ports.trainer_metrics),
            "--prometheus-port", str(ports.prometheus),
        ]  # fmt: skip

    @property
    def generator_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.generator}"

    def metrics_urls(self) -> dict[str, str]:
        """Service name -> the URL of its /metrics."""
        return {
            job: f"http://127.0.0.1:{port}/metrics"
            for job, port in metrics_targets(self.ports).items()
        }

    def start(self) -> LocalStack:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GBSYNTH_")}
        env.update(self.settings, GBSYNTH_STATE_DIR=str(self.state_dir))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGINT to the stack's process group; its exit code, or None when it had not
        stopped within ``timeout`` seconds and was killed."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        if self.running():
            self.stop()
