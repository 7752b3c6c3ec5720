"""Declarative configuration from environment variables.

Every tunable of every service is a ``Setting`` declared at module level::

    BATCH_SIZE = Setting("GBSYNTH_TRAINER_BATCH_SIZE", int, 32, "sequences per training step",
                         minimum=1)
    ...
    batch = BATCH_SIZE.get()          # reads os.environ, or the default

Declaring a setting registers it (``all_settings()``), so the table in
docs/configuration.md (``python -m gbsynth.common.config --docs``) and the
deployment files can be checked against the code instead of drifting from it.
A bad value fails fast with a one-line message naming the variable, e.g.
``GBSYNTH_KAFKA_TOPIC_PARTITIONS must be an integer, got 'abc'``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SettingError(ValueError):
    """An environment variable holds a value its setting does not accept."""


_REGISTRY: dict[str, Setting[Any]] = {}


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable: its name, type, default and a one-line doc.

    ``kind`` is ``int``, ``float``, ``bool`` or ``str``; ``choices`` restricts a
    string to a fixed set (matched case-insensitively, returned as listed);
    ``minimum``/``maximum`` bound numbers; ``secret`` hides the value in listings.
    ``default_text`` describes a default that is not one value (``default=None``:
    each user of the setting supplies its own), for the generated documentation.
    """

    name: str
    kind: type
    default: T
    doc: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    secret: bool = False
    default_text: str = ""
    declared_in: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.name.startswith("GBSYNTH_") or not self.name.replace("_", "").isalnum():
            raise ValueError(f"setting names look like GBSYNTH_SOME_THING, not {self.name!r}")
        if self.kind not in (int, float, bool, str):
            raise TypeError(f"{self.name}: unsupported setting type {self.kind!r}")
        if not self.declared_in:
            # Record the declaring module for the generated documentation.
            frame = sys._getframe(2)
            object.__setattr__(self, "declared_in", frame.f_globals.get("__name__", ""))
        existing = _REGISTRY.get(self.name)
        if existing is not None and existing != self:
            raise ValueError(f"setting {self.name} is declared twice with different definitions")
        _REGISTRY[self.name] = self
        if self.default is not None:
            # The default must itself be acceptable: catches typos at import time.
            self.parse(self.format(self.default))

    def parse(self, text: str) -> T:
        """Convert the text of an environment variable, or raise ``SettingError``."""
        raw = text.strip()
        value: Any
        if self.kind is bool:
            lowered = raw.lower()
            if lowered in _TRUE:
                value = True
            elif lowered in _FALSE:
                value = False
            else:
                raise SettingError(f"{self.name} must be a boolean (true/false), got {text!r}")
        elif self.kind is int:
            try:
                value = int(raw, 0) if raw.lower().startswith(("0x", "0o", "0b")) else int(raw)
            except ValueError:
                raise SettingError(f"{self.name} must be an integer, got {text!r}") from None
        elif self.kind is float:
            try:
                value = float(raw)
            except ValueError:
                raise SettingError(f"{self.name} must be a number, got {text!r}") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise SettingError(f"{self.name} must be a finite number, got {text!r}")
        else:
            value = text
            if self.choices is not None:
                by_lower = {c.lower(): c for c in self.choices}
                if raw.lower() not in by_lower:
                    raise SettingError(
                        f"{self.name} must be one of {', '.join(self.choices)}, got {text!r}"
                    )
                value = by_lower[raw.lower()]
        if self.kind in (int, float):
            if self.minimum is not None and value < self.minimum:
                raise SettingError(f"{self.name} must be at least {self.minimum:g}, got {text!r}")
            if self.maximum is not None and value > self.maximum:
                raise SettingError(f"{self.name} must be at most {self.maximum:g}, got {text!r}")
        return value

    def get(self, environ: Mapping[str, str] | None = None) -> T:
        """The value from ``environ`` (default ``os.environ``), or the default if unset/empty."""
        env = os.environ if environ is None else environ
        text = env.get(self.name)
        if text is None or text.strip() == "":
            return self.default
        return self.parse(text)

    def format(self, value: Any) -> str:
        """The environment-variable text for ``value`` (inverse of ``parse``)."""
        if self.kind is bool:
            return "true" if value else "false"
        return "" if value is None else str(value)

    @property
    def type_name(self) -> str:
        if self.choices is not None:
            return " \\| ".join(self.choices)
        return {int: "int", float: "float", bool: "bool", str: "string"}[self.kind]

    @property
    def shown_default(self) -> str:
        if self.default_text:
            return self.default_text
        if self.secret and self.default:
            return "(secret)"
        return self.format(self.default)


def all_settings() -> list[Setting[Any]]:
    """Every setting declared so far (by imported modules), sorted by name."""
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def discover_settings() -> list[Setting[Any]]:
    """Import every gbsynth module that may declare settings, then list them all.

    Covers the shared modules and every subcommand module in the CLI registry,
    so the list matches what a deployment can configure.
    """
    from gbsynth.cli import available_commands

    modules = [f"gbsynth.common.{name}" for name in ("config", "kafka", "avro", "metrics")]
    modules += [module for module, _ in available_commands().values()]
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            # A subcommand whose optional dependencies are missing declares nothing here.
            continue
    return all_settings()


def read_settings(
    settings: Iterable[Setting[Any]], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Read several settings at once; every bad value is reported in one error."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    for setting in settings:
        try:
            values[setting.name] = setting.get(environ)
        except SettingError as exc:
            errors.append(str(exc))
    if errors:
        raise SettingError("; ".join(errors))
    return values


def markdown_table(settings: Iterable[Setting[Any]] | None = None) -> str:
    """A Markdown table of settings (variable, type, default, meaning) for the docs."""
    rows = ["| variable | type | default | meaning |", "| --- | --- | --- | --- |"]
    for s in all_settings() if settings is None else settings:
        default = s.shown_default
        doc = s.doc.replace("|", r"\|")  # a pipe would end the cell
        if s.default_text:
            shown = default.replace("|", r"\|")
        else:
            shown = f"`{default}`" if default else "(empty)"
        rows.append(f"| `{s.name}` | {s.type_name} | {shown} | {doc} |")
    return "\n".join(rows) + "\n"


def env_file(settings: Iterable[Setting[Any]] | None = None) -> str:
    """``NAME=default`` lines with the docs as comments: a starting point for a ``.env`` file."""
    lines = []
    for s in all_settings() if settings is None else settings:
        lines.append(f"# {s.doc}")
        lines.append(f"{s.name}={'' if s.secret else s.format(s.default)}")
    return "\n".join(lines) + "\n"


# -- settings shared by every service -------------------------------------------------------

KAFKA_BOOTSTRAP = Setting(
    "GBSYNTH_KAFKA_BOOTSTRAP", str, "127.0.0.1:9092", "Kafka bootstrap servers, comma-separated"
)
KAFKA_CLIENT_ID = Setting(
    "GBSYNTH_KAFKA_CLIENT_ID",
    str,
    "",
    "Kafka client id; empty means gbsynth-SERVICE",
)
KAFKA_SECURITY_PROTOCOL = Setting(
    "GBSYNTH_KAFKA_SECURITY_PROTOCOL",
    str,
    "PLAINTEXT",
    "how clients talk to the brokers",
    choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
)
KAFKA_SASL_MECHANISM = Setting(
    "GBSYNTH_KAFKA_SASL_MECHANISM",
    str,
    "PLAIN",
    "SASL mechanism when the protocol is SASL_*",
    choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
)
KAFKA_SASL_USERNAME = Setting(
    "GBSYNTH_KAFKA_SASL_USERNAME", str, "", "SASL user name when the protocol is SASL_*"
)
KAFKA_SASL_PASSWORD = Setting(
    "GBSYNTH_KAFKA_SASL_PASSWORD",
    str,
    "",
    "SASL password when the protocol is SASL_*",
    secret=True,
)
KAFKA_SSL_CAFILE = Setting(
    "GBSYNTH_KAFKA_SSL_CAFILE",
    str,
    "",
    "CA bundle (PEM) to verify the brokers with SSL; empty uses the system store",
)
KAFKA_SESSION_TIMEOUT_MS = Setting(
    "GBSYNTH_KAFKA_SESSION_TIMEOUT_MS",
    int,
    10_000,
    "consumer group session timeout (local Tansu runs use 6000: it holds joins for half of it)",
    minimum=1000,
)
KAFKA_HEARTBEAT_INTERVAL_MS = Setting(
    "GBSYNTH_KAFKA_HEARTBEAT_INTERVAL_MS",
    int,
    2_000,
    "consumer heartbeat interval; keep it below a third of the session timeout",
    minimum=100,
)
KAFKA_MAX_POLL_INTERVAL_MS = Setting(
    "GBSYNTH_KAFKA_MAX_POLL_INTERVAL_MS",
    int,
    300_000,
    "longest a consumer may spend processing one batch before it leaves the group",
    minimum=1000,
)
KAFKA_MAX_POLL_RECORDS = Setting(
    "GBSYNTH_KAFKA_MAX_POLL_RECORDS",
    int,
    200,
    "most messages a consumer processes between two commits",
    minimum=1,
)
KAFKA_LINGER_MS = Setting("GBSYNTH_KAFKA_LINGER_MS", int, 5, "producer batching delay", minimum=0)
KAFKA_COMPRESSION = Setting(
    "GBSYNTH_KAFKA_COMPRESSION",
    str,
    "none",
    "producer compression",
    choices=("none", "gzip"),
)
KAFKA_MAX_REQUEST_BYTES = Setting(
    "GBSYNTH_KAFKA_MAX_REQUEST_BYTES",
    int,
    4 * 1024 * 1024,
    "largest message batch a producer sends (brokers must accept it: message.max.bytes)",
    minimum=1024,
)
KAFKA_IDEMPOTENCE = Setting(
    "GBSYNTH_KAFKA_IDEMPOTENCE",
    bool,
    True,
    "idempotent producer (no duplicates on retry); turn off against an in-memory broker "
    "that may restart",
)
KAFKA_TOPIC_PARTITIONS = Setting(
    "GBSYNTH_KAFKA_TOPIC_PARTITIONS",
    int,
    6,
    "partitions of topics created at start-up (existing topics are left alone)",
    minimum=1,
)
KAFKA_REPLICATION_FACTOR = Setting(
    "GBSYNTH_KAFKA_REPLICATION_FACTOR",
    int,
    1,
    "replication factor of topics created at start-up",
    minimum=1,
)
SERVICE_METRICS_PORTS = {"emulator": 9101, "pruner": 9102, "trainer": 9103}
"""Each Kafka-consuming service's own /metrics port (the compose file's and run-local's too);
the generator serves /metrics on its HTTP port."""
METRICS_PORT: Setting[int | None] = Setting(
    "GBSYNTH_METRICS_PORT",
    int,
    None,
    "port of the Prometheus /metrics endpoint; 0 turns it off",
    minimum=0,
    maximum=65535,
    default_text="the service's own: "
    + ", ".join(f"{name} {port}" for name, port in SERVICE_METRICS_PORTS.items())
    + ", generator its HTTP port (8000)",
)


def metrics_port(service_default: int, environ: Mapping[str, str] | None = None) -> int:
    """``GBSYNTH_METRICS_PORT`` when set, else the service's own default port."""
    port = METRICS_PORT.get(environ)
    return service_default if port is None else port


CHECKPOINT_DIR = Setting(
    "GBSYNTH_CHECKPOINT_DIR",
    str,
    "var/checkpoints",
    "folder of model checkpoints, shared by the trainer (writes) and the generators (read)",
)
DEFAULT_MODEL = Setting(
    "GBSYNTH_DEFAULT_MODEL",
    str,
    "builtin",
    "the model the trainer starts from and the generators serve until the trainer promotes "
    "a better checkpoint: builtin (the pre-trained model shipped in the package), a "
    "checkpoint file, or none (a new model, and no songs before a first checkpoint)",
)

METRICS_ADDRESS = Setting(
    "GBSYNTH_METRICS_ADDRESS", str, "0.0.0.0", "address the /metrics endpoint listens on"
)
LOG_LEVEL = Setting(
    "GBSYNTH_LOG_LEVEL",
    str,
    "INFO",
    "log level",
    choices=("DEBUG", "INFO", "WARNING", "ERROR"),
)


def configure_logging(service: str, environ: Mapping[str, str] | None = None) -> None:
    """Log to stderr at ``GBSYNTH_LOG_LEVEL`` with the service name on every line."""
    import logging

    logging.basicConfig(
        level=LOG_LEVEL.get(environ),
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # kafka-python is chatty at INFO (every connection and rebalance step).
    if LOG_LEVEL.get(environ) != "DEBUG":
        logging.getLogger("kafka").setLevel(logging.WARNING)


DOCS_PAGE = "docs/configuration.md"
TABLE_BEGIN = "<!-- settings:begin (generated: python -m gbsynth.common.config --docs) -->"
TABLE_END = "<!-- settings:end -->"


def update_page(text: str, settings: Iterable[Setting[Any]] | None = None) -> str:
    """``text`` with the settings table between the markers regenerated."""
    begin, end = text.find(TABLE_BEGIN), text.find(TABLE_END)
    if begin < 0 or end < begin:
        raise ValueError(f"the page has no {TABLE_BEGIN!r} ... {TABLE_END!r} block")
    table = markdown_table(settings)
    return text[: begin + len(TABLE_BEGIN)] + "\n" + table + text[end:]


def main(argv: list[str] | None = None, out: Callable[[str], Any] = sys.stdout.write) -> int:
    """``python -m gbsynth.common.config [--env | --docs [PATH]]``.

    Prints every setting as a Markdown table (default) or as a ``.env`` file, or
    regenerates the table in the configuration page (default: the repository's
    docs/configuration.md).
    """
    argv = sys.argv[1:] if argv is None else argv
    settings = discover_settings()
    if argv[:1] == ["--docs"]:
        from pathlib import Path

        repo = Path(__file__).resolve().parents[2]
        path = Path(argv[1]) if len(argv) > 1 else repo / DOCS_PAGE
        path.write_text(update_page(path.read_text(), settings))
        out(f"updated {path}\n")
    elif argv[:1] == ["--env"]:
        out(env_file(settings))
    else:
        out(markdown_table(settings))
    return 0


if __name__ == "__main__":
    # Run the imported module's main: settings register in *its* registry, not __main__'s.
    from gbsynth.common import config as _config

    sys.exit(_config.main())
