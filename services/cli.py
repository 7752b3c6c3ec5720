"""The `gbsynth` command: one subcommand per service and per offline tool.

Each subcommand lives in its own module, which provides
``configure(parser: argparse.ArgumentParser) -> None`` and
``run(args: argparse.Namespace) -> int``. Modules are imported only when their
subcommand runs, so ``gbsynth --help`` stays fast and a service does not pay for
another's imports (torch, numba).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# name -> (module, one-line help). Add a line here for each new subcommand.
COMMANDS: dict[str, tuple[str, str]] = {
    "broker": ("gbsynth.common.cli_broker", "run a local Kafka-compatible broker (Tansu)"),
    "check-rom": ("gbsynth.emulator.cli_check_rom", "run test ROMs and report PASS/FAIL/TIMEOUT"),
    "emulate": (
        "gbsynth.emulator.cli_emulate",
        "record a ROM, GBS, VGM, score or module's sound writes",
    ),
    "emulator-worker": ("gbsynth.emulator.main", "emulator service: jobs in, recordings out"),
    "enqueue": ("gbsynth.emulator.cli_enqueue", "publish emulation jobs for a folder of files"),
    "render": ("gbsynth.synth.cli_render", "render a recording to WAV"),
    "corpus": ("gbsynth.music.cli_corpus", "build a pre-training corpus from scores and modules"),
    "make-demo-music": (
        "gbsynth.music.cli_make_demo_music",
        "compose demo songs as GBS files and ROMs",
    ),
    "export-gb": ("gbsynth.music.cli_export_gb", "build a ROM that replays a recording"),
    "pruner": ("gbsynth.pruner.main", "pruner service: recordings in, segments out"),
    "prune": ("gbsynth.pruner.cli_prune", "prune recording files into segment files"),
    "trainer": ("gbsynth.trainer.main", "trainer service: segments in, checkpoints out"),
    "train": ("gbsynth.trainer.cli_train", "train a model from recording or segment files"),
    "evaluate": ("gbsynth.trainer.cli_evaluate", "held-out NLL of a checkpoint against baselines"),
    "generator": ("gbsynth.generator.main", "generator service: songs over HTTP"),
    "generate": ("gbsynth.generator.cli_generate", "sample a song from a checkpoint to WAV"),
    "run-local": ("gbsynth.cli_run_local", "run the whole pipeline as local processes"),
}


def available_commands() -> dict[str, tuple[str, str]]:
    """The registered subcommands whose modules exist in this installation."""
    found = {}
    for name, (module, help_text) in COMMANDS.items():
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            spec = None
        if spec is not None:
            found[name] = (module, help_text)
    return found


def build_parser(commands: dict[str, tuple[str, str]]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gbsynth", description="Machine-generated Game Boy music."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in sorted(commands.items()):
        sub.add_parser(name, help=help_text, description=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = available_commands()
    parser = build_parser(commands)
    if not argv or argv[0] not in commands:
        # Unknown or missing command, or --help: let argparse explain.
        args = parser.parse_args(argv)
        parser.print_help()
        return 2
    name = argv[0]
    module_name, help_text = commands[name]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"gbsynth {name}", description=help_text)
    module.configure(sub)
    args = sub.parse_args(argv[1:])
    args.command = name
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
