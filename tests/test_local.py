"""``gbsynth run-local`` (``make run``) pieces that need no broker: ports, environment,
argument errors. The whole stack runs in tests/test_end_to_end.py."""

from __future__ import annotations

import argparse

from gbsynth import local


def _args(**overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    local.configure(parser)
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
    assert local.run(_args(generator_port=70000)) == 2
    assert "ports must be 1-65535" in capsys.readouterr().err
    assert local.run(_args(rom_dir=tmp_path / "nowhere")) == 2
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.setenv("GBSYNTH_DEMO_SONGS", "zero")
    assert local.run(_args()) == 2
    assert "GBSYNTH_DEMO_SONGS must be an integer" in capsys.readouterr().err
