"""``gbsynth run-local`` (``make run``) pieces that need no broker: ports, environment,
argument errors. The whole stack runs in tests/test_end_to_end.py."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_deploy import DEPLOY, _tool

from gbsynth import cli_run_local, local


def _args(**overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_run_local.configure(parser)
    args = parser.parse_args([])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_default_ports_are_the_contract():
    args = _args()
    assert args.broker_port == 9092
    assert args.generator_port == 8000
    assert (args.emulator_metrics_port, args.pruner_metrics_port, args.trainer_metrics_port) == (
        9101,
        9102,
        9103,
    )
    assert args.prometheus_port == 9090


def test_service_specs_wire_ports_and_shared_checkpoints(tmp_path):
    ports = local.Ports(
        broker=1, generator=2, emulator_metrics=3, pruner_metrics=4, trainer_metrics=5
    )
    specs = {s.name: s for s in local.service_specs(tmp_path / "roms", tmp_path, ports)}
    assert list(specs) == ["emulator", "pruner", "trainer", "generator"]
    assert specs["emulator"].env["GBSYNTH_METRICS_PORT"] == "3"
    assert specs["pruner"].env["GBSYNTH_METRICS_PORT"] == "4"
    assert specs["trainer"].env["GBSYNTH_METRICS_PORT"] == "5"
    assert specs["generator"].command[-2:] == ["--port", "2"]
    assert "GBSYNTH_METRICS_PORT" not in specs["generator"].env  # /metrics beside the API
    assert (
        specs["trainer"].env["GBSYNTH_CHECKPOINT_DIR"]
        == specs["generator"].env["GBSYNTH_CHECKPOINT_DIR"]
        == str(tmp_path / "checkpoints")
    )
    assert "--enqueue-on-start" in specs["emulator"].command
    assert str(tmp_path / "roms") in specs["emulator"].command
    urls = [u for s in specs.values() for u in s.urls]
    assert "songs   http://127.0.0.1:2/" in urls
    assert all(f"http://127.0.0.1:{p}/metrics" in " ".join(urls) for p in (2, 3, 4, 5))


def test_stack_env_local_defaults_yield_to_the_environment():
    name, default = next(iter(local.LOCAL_DEFAULTS.items()))
    env = local.stack_env({"GBSYNTH_KAFKA_BOOTSTRAP": "elsewhere:1", "OTHER": "x"}, "127.0.0.1:5")
    assert env[name] == default
    assert env["GBSYNTH_KAFKA_BOOTSTRAP"] == "127.0.0.1:5"  # always the local broker
    assert env["GBSYNTH_KAFKA_SESSION_TIMEOUT_MS"] == "6000"
    assert env["OTHER"] == "x"
    mine = local.stack_env({name: "7"}, "127.0.0.1:5")
    assert mine[name] == "7"
    blank = local.stack_env({name: "  "}, "127.0.0.1:5")
    assert blank[name] == default  # empty means unset, as for every setting


def test_demo_music_is_composed_once(tmp_path):
    roms = tmp_path / "roms"
    local.ensure_demo_music(roms, songs=1, seed=0)
    files = sorted(p.name for p in roms.iterdir())
    assert any(f.endswith(".gbs") for f in files) and any(f.endswith(".gb") for f in files)
    (roms / "mine.gbs").write_bytes(b"")
    local.ensure_demo_music(roms, songs=3, seed=1)  # not empty: left alone
    assert sorted(p.name for p in roms.iterdir()) == sorted([*files, "mine.gbs"])


def test_bad_arguments_are_clear_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GBSYNTH_STATE_DIR", str(tmp_path))
    assert cli_run_local.run(_args(generator_port=70000)) == 2
    assert "ports must be 1-65535" in capsys.readouterr().err
    assert cli_run_local.run(_args(rom_dir=tmp_path / "nowhere")) == 2
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.setenv("GBSYNTH_DEMO_SONGS", "zero")
    assert cli_run_local.run(_args()) == 2
    assert "GBSYNTH_DEMO_SONGS must be an integer" in capsys.readouterr().err


def test_the_generator_learns_where_the_dashboard_reads(tmp_path):
    ports = local.Ports(generator=2, emulator_metrics=3, pruner_metrics=4, trainer_metrics=5)
    specs = {s.name: s for s in local.service_specs(tmp_path / "roms", tmp_path, ports)}
    env = specs["generator"].env
    assert env["GBSYNTH_DASHBOARD_METRICS_URLS"] == (
        "emulator=http://127.0.0.1:3/metrics,pruner=http://127.0.0.1:4/metrics,"
        "trainer=http://127.0.0.1:5/metrics"
    )
    assert "GBSYNTH_PROMETHEUS_URL" not in env  # no Prometheus: it reads /metrics itself
    assert "charts  http://127.0.0.1:2/dashboard" in specs["generator"].urls
    with_prometheus = local.service_specs(tmp_path, tmp_path, ports, "http://127.0.0.1:7")
    assert with_prometheus[-1].env["GBSYNTH_PROMETHEUS_URL"] == "http://127.0.0.1:7"


def test_local_prometheus_is_the_deployed_one_on_localhost(tmp_path):
    """Same global settings and jobs as deploy/prometheus/prometheus.yml, static targets on
    127.0.0.1 instead of Docker DNS; promtool accepts the file run-local writes."""
    deployed = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    ports = local.Ports(prometheus=9999)
    command = local.prometheus_command("/usr/bin/prometheus", tmp_path, ports)
    config_path = Path(command[1].split("=", 1)[1])
    assert config_path == tmp_path / "prometheus" / "prometheus.yml"
    assert f"--storage.tsdb.path={tmp_path / 'prometheus' / 'data'}" in command
    assert "--web.listen-address=127.0.0.1:9999" in command
    written = yaml.safe_load(config_path.read_text())
    assert written["global"] == deployed["global"]
    jobs = {j["job_name"]: j for j in written["scrape_configs"]}
    assert list(jobs) == [j["job_name"] for j in deployed["scrape_configs"]]
    for job in deployed["scrape_configs"]:
        name = job["job_name"]
        if "dns_sd_configs" in job:
            port = job["dns_sd_configs"][0]["port"]
            assert jobs[name]["static_configs"] == [{"targets": [f"127.0.0.1:{port}"]}]
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["127.0.0.1:9999"]}]
    promtool = _tool("promtool", "run scripts/bootstrap.sh")
    result = subprocess.run(
        [promtool, "check", "config", str(config_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_prometheus_is_said_once_and_the_stack_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(local, "find_prometheus", lambda: None)
    assert local._start_prometheus(tmp_path, local.Ports(), 10, None) == (None, None)
    out = capsys.readouterr().out
    assert out.count("not found") == 1 and "apt-get install prometheus" in out
    # --prometheus-port 0: not even looked for.
    monkeypatch.setattr(local, "find_prometheus", lambda: pytest.fail("looked for it"))
    assert local._start_prometheus(tmp_path, local.Ports(prometheus=0), 10, None) == (None, None)


def test_a_prometheus_that_cannot_start_is_said_and_skipped(tmp_path, monkeypatch, capsys):
    (tmp_path / "bin").mkdir()
    broken = tmp_path / "bin" / "prometheus"
    broken.write_text("#!/bin/sh\necho 'err: address already in use'\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(local, "find_prometheus", lambda: str(broken))
    assert local._start_prometheus(tmp_path, local.Ports(), 10, None) == (None, None)
    out = capsys.readouterr().out
    assert "exited with code 1" in out and "going on without it" in out


def test_an_unpacked_debian_prometheus_is_told_where_its_ui_is(tmp_path):
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    binary = tmp_path / "venv" / "bin" / "prometheus"
    command = local.prometheus_command(str(binary), tmp_path, local.Ports())
    assert not any(flag.startswith("--web.local-assets") for flag in command)
    (tmp_path / "venv" / "share" / "prometheus" / "web").mkdir(parents=True)
    command = local.prometheus_command(str(binary), tmp_path, local.Ports())
    assert f"--web.local-assets={tmp_path / 'venv' / 'share' / 'prometheus' / 'web'}" in command


def test_prometheus_is_found_beside_python_first(tmp_path, monkeypatch):
    beside = tmp_path / "prometheus"
    beside.write_text("#!/bin/sh\n")
    beside.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    assert local.find_prometheus() == str(beside)


def test_a_taken_prometheus_port_is_said_and_skipped(tmp_path, monkeypatch, capsys):
    import socket

    monkeypatch.setattr(local, "find_prometheus", lambda: "/usr/bin/prometheus")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert local._start_prometheus(tmp_path, local.Ports(prometheus=port), 10, None) == (
            None,
            None,
        )
    assert f"port {port} is taken" in capsys.readouterr().out


def test_the_test_stack_runs_run_local_on_its_own_ports(tmp_path):
    # LocalStack starts run-local for the end-to-end tests and bench/local_stack.py: its
    # command must be one run-local parses to the very ports it reports.
    stack = local.LocalStack(tmp_path / "var", tmp_path / "log", {"GBSYNTH_DEMO_SONGS": "1"})
    assert stack.command[1:4] == ["-m", "gbsynth", "run-local"]
    parser = argparse.ArgumentParser()
    cli_run_local.configure(parser)
    ports = cli_run_local.ports_of(parser.parse_args(stack.command[4:]))
    assert ports == stack.ports
    assert len(set(vars(ports).values())) == len(vars(ports))
    assert stack.metrics_urls()["generator"] == f"{stack.generator_url}/metrics"
    assert stack.stop() is None and not stack.running()  # never started
