"""``gbsynth broker``: run a local Kafka-compatible broker (Tansu) in the foreground
(``gbsynth.common.broker.LocalBroker``)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from gbsynth.common.broker import DEFAULT_PORT, BrokerError, LocalBroker

# -- `gbsynth broker` ------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--quiet", action="store_true", help="hide the broker's own log (it goes to a file)"
    )


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        print(f"gbsynth broker: --port must be 0-65535, got {args.port}", file=sys.stderr)
        return 2
    broker = LocalBroker(args.port or None, args.host, inherit_output=not args.quiet)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        broker.start()
    except BrokerError as exc:
        print(f"gbsynth broker: {exc}", file=sys.stderr)
        return 1
    print(
        f"gbsynth broker: Tansu listening on {broker.bootstrap} (in memory; Ctrl-C stops it)\n"
        f"  export GBSYNTH_KAFKA_BOOTSTRAP={broker.bootstrap} "
        "GBSYNTH_KAFKA_SESSION_TIMEOUT_MS=6000",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            if not broker.running():
                print("gbsynth broker: the broker exited unexpectedly", file=sys.stderr)
                return 1
    finally:
        broker.stop()
    return 0
