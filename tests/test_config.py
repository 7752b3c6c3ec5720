"""Settings from environment variables: parsing, errors, registry and generated docs."""

import re

import pytest

from gbsynth.common import config
from gbsynth.common.config import Setting, SettingError
from gbsynth.common.kafka import KafkaConfig

PORT = Setting("GBSYNTH_TEST_PORT", int, 8080, "a test port", minimum=1, maximum=65535)
RATIO = Setting("GBSYNTH_TEST_RATIO", float, 0.5, "a test ratio")
FLAG = Setting("GBSYNTH_TEST_FLAG", bool, False, "a test flag")
MODE = Setting("GBSYNTH_TEST_MODE", str, "fast", "a test mode", choices=("fast", "exact"))


def test_defaults_when_unset_or_empty():
    assert PORT.get({}) == 8080
    assert PORT.get({"GBSYNTH_TEST_PORT": "  "}) == 8080
    assert MODE.get({}) == "fast"


@pytest.mark.parametrize(
    "setting,text,value",
    [
        (PORT, "9092", 9092),
        (PORT, "0x10", 16),
        (RATIO, "1e-3", 0.001),
        (FLAG, "yes", True),
        (FLAG, "OFF", False),
        (MODE, "EXACT", "exact"),
    ],
)
def test_parses(setting, text, value):
    assert setting.get({setting.name: text}) == value


@pytest.mark.parametrize(
    "setting,text,message",
    [
        (PORT, "abc", "GBSYNTH_TEST_PORT must be an integer, got 'abc'"),
        (PORT, "70000", "GBSYNTH_TEST_PORT must be at most 65535, got '70000'"),
        (PORT, "0", "GBSYNTH_TEST_PORT must be at least 1"),
        (RATIO, "nan", "GBSYNTH_TEST_RATIO must be a finite number"),
        (FLAG, "maybe", "GBSYNTH_TEST_FLAG must be a boolean"),
        (MODE, "slow", "GBSYNTH_TEST_MODE must be one of fast, exact, got 'slow'"),
    ],
)
def test_bad_values_name_the_variable(setting, text, message):
    with pytest.raises(SettingError) as info:
        setting.get({setting.name: text})
    assert str(info.value).startswith(message)


def test_read_settings_reports_every_bad_value():
    with pytest.raises(SettingError, match="GBSYNTH_TEST_PORT.*; GBSYNTH_TEST_FLAG"):
        config.read_settings([PORT, FLAG], {"GBSYNTH_TEST_PORT": "x", "GBSYNTH_TEST_FLAG": "x"})


def test_registry_lists_declared_settings_once():
    names = [s.name for s in config.all_settings()]
    assert names == sorted(set(names))
    assert "GBSYNTH_KAFKA_BOOTSTRAP" in names and "GBSYNTH_TEST_PORT" in names
    # Declaring the same setting again (a module re-imported) is harmless...
    Setting("GBSYNTH_TEST_PORT", int, 8080, "a test port", minimum=1, maximum=65535)
    # ...but a conflicting declaration is a bug.
    with pytest.raises(ValueError, match="declared twice"):
        Setting("GBSYNTH_TEST_PORT", int, 1, "another meaning")


def test_bad_declarations():
    with pytest.raises(ValueError, match="GBSYNTH_"):
        Setting("KAFKA_THING", str, "", "no prefix")
    with pytest.raises(SettingError):
        Setting("GBSYNTH_TEST_BAD_DEFAULT", str, "c", "default not a choice", choices=("a", "b"))


def test_common_settings_and_defaults():
    expected = {
        "GBSYNTH_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
        "GBSYNTH_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        "GBSYNTH_KAFKA_SESSION_TIMEOUT_MS": 10000,
        "GBSYNTH_KAFKA_TOPIC_PARTITIONS": 6,
        "GBSYNTH_KAFKA_REPLICATION_FACTOR": 1,
        "GBSYNTH_LOG_LEVEL": "INFO",
    }
    registry = {s.name: s for s in config.all_settings()}
    for name, default in expected.items():
        assert registry[name].default == default
    for name in (
        "GBSYNTH_KAFKA_CLIENT_ID",
        "GBSYNTH_KAFKA_SASL_MECHANISM",
        "GBSYNTH_KAFKA_SASL_USERNAME",
        "GBSYNTH_KAFKA_SASL_PASSWORD",
        "GBSYNTH_KAFKA_HEARTBEAT_INTERVAL_MS",
        "GBSYNTH_KAFKA_MAX_POLL_INTERVAL_MS",
        "GBSYNTH_METRICS_PORT",
    ):
        assert name in registry
    assert registry["GBSYNTH_KAFKA_SASL_PASSWORD"].secret


def test_markdown_table_and_env_file():
    table = config.markdown_table([PORT, MODE])
    assert table.splitlines()[2] == "| `GBSYNTH_TEST_PORT` | int | `8080` | a test port |"
    assert "fast \\| exact" in table
    env = config.env_file([PORT])
    assert env == "# a test port\nGBSYNTH_TEST_PORT=8080\n"


def test_discover_imports_shared_modules():
    names = {s.name for s in config.discover_settings()}
    assert {"GBSYNTH_CHUNK_MAX_WRITES", "GBSYNTH_KAFKA_BOOTSTRAP"} <= names


def test_kafka_config_from_env():
    env = {
        "GBSYNTH_KAFKA_BOOTSTRAP": "a:1, b:2",
        "GBSYNTH_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "GBSYNTH_KAFKA_SASL_USERNAME": "u",
        "GBSYNTH_KAFKA_SASL_PASSWORD": "s3cret",
        "GBSYNTH_KAFKA_SESSION_TIMEOUT_MS": "6000",
    }
    kc = KafkaConfig.from_env(env)
    opts = kc.consumer_options("pruner", "g")
    assert opts["bootstrap_servers"] == ["a:1", "b:2"]
    assert opts["security_protocol"] == "SASL_SSL" and opts["sasl_plain_username"] == "u"
    assert opts["client_id"] == "gbsynth-pruner"
    assert opts["session_timeout_ms"] == 6000
    assert opts["enable_auto_commit"] is False and opts["auto_offset_reset"] == "earliest"
    assert "s3cret" not in repr(kc)
    prod = kc.producer_options("pruner")
    assert prod["acks"] == "all" and prod["enable_idempotence"] is True


def test_kafka_config_rejects_inconsistent_values():
    with pytest.raises(SettingError, match="HEARTBEAT"):
        KafkaConfig.from_env({"GBSYNTH_KAFKA_SESSION_TIMEOUT_MS": "1500"})
    with pytest.raises(SettingError, match="SASL_USERNAME"):
        KafkaConfig.from_env({"GBSYNTH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})


def test_configuration_page_matches_the_code():
    """The page's rows are real settings with the right defaults; shared settings are all listed.

    Regenerate with ``python -m gbsynth.common.config --docs``.
    """
    from conftest import REPO

    declared = {s.name: s for s in config.discover_settings()}
    rows = {}
    for line in (REPO / config.DOCS_PAGE).read_text().splitlines():
        if line.startswith("| `GBSYNTH_"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]
            rows[cells[0].strip("`")] = cells[2]
    assert rows, f"{config.DOCS_PAGE} has no settings table"
    for name, default in rows.items():
        assert name in declared, f"{config.DOCS_PAGE} documents {name}, which no module declares"
        setting = declared[name]
        shown = setting.shown_default
        if setting.default_text:
            expected = shown.replace("|", r"\|")
        else:
            expected = f"`{shown}`" if shown else "(empty)"
        assert default == expected, f"{name} default differs"
    shared = {n for n, s in declared.items() if s.declared_in.startswith("gbsynth.common.")}
    assert shared <= set(rows), f"{config.DOCS_PAGE} lacks {sorted(shared - set(rows))}"


def test_metrics_port_defaults_to_the_services_own_port():
    assert config.metrics_port(9102, {}) == 9102
    assert config.metrics_port(9102, {"GBSYNTH_METRICS_PORT": ""}) == 9102
    assert config.metrics_port(9102, {"GBSYNTH_METRICS_PORT": "9200"}) == 9200
    assert config.metrics_port(9102, {"GBSYNTH_METRICS_PORT": "0"}) == 0  # off
    assert "9101" in config.METRICS_PORT.shown_default
