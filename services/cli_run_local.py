"""``gbsynth run-local`` (what ``make run`` starts): the whole pipeline as local processes
(``gbsynth.local``, which describes the stack)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gbsynth.local import (
    BROKER_PORT,
    GENERATOR_PORT,
    METRICS_PORTS,
    PROMETHEUS_PORT,
    Ports,
    run_stack,
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rom-dir", type=Path, default=None, help="ROM folder (default: $GBSYNTH_ROM_DIR or demo)"
    )
    parser.add_argument("--broker-port", type=int, default=BROKER_PORT, help="local broker port")
    parser.add_argument(
        "--generator-port", type=int, default=GENERATOR_PORT, help="generator HTTP + metrics port"
    )
    for name, port in METRICS_PORTS.items():
        parser.add_argument(
            f"--{name}-metrics-port", type=int, default=port, help=f"{name} /metrics port"
        )
    parser.add_argument(
        "--prometheus-port",
        type=int,
        default=PROMETHEUS_PORT,
        help="Prometheus port (0: do not start Prometheus)",
    )
    parser.add_argument(
        "--only", nargs="*", default=None, help="run only these services (names as printed)"
    )


def ports_of(args: argparse.Namespace) -> Ports:
    """The ports the parsed arguments ask for."""
    return Ports(
        args.broker_port,
        args.generator_port,
        args.emulator_metrics_port,
        args.pruner_metrics_port,
        args.trainer_metrics_port,
        args.prometheus_port,
    )


def run(args: argparse.Namespace) -> int:
    return run_stack(ports_of(args), args.rom_dir, args.only)
