"""``gbsynth emulate``: record a ROM, GBS rip or VGM file's sound-register writes.

    gbsynth emulate song.gbs --subsong 2 --seconds 60      # gbsplay-style I/O dump on stdout
    gbsynth emulate game.gb --seconds 300 --seed 7 --out rec.avro
    gbsynth emulate tune.vgm --seconds 120 --format iodump --out tune.txt
    gbsynth emulate piece.mxl --seconds 60 --out x.avro    # a score or module, arranged

GBS subsongs count from 1, as on gbsplay's command line; for a score (MusicXML, MIDI, MOD)
``--subsong`` is the part of a long piece (docs/corpus.md), and ``--seed`` varies its sounds.
ROMs are explored by a seeded search for music (``gbsynth.emulator.explore``; ``--no-explore``
runs them with no button pressed); only the first hearing of each song is recorded, and the
number of songs found is printed on stderr. The I/O dump uses the layout of
``gbsplay -o iodumper`` (``%08x ffXX=YY``, cycles since the previous write),
so it can be compared with gbsplay's output line by line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gbsynth.common.command import run_reporting_errors
from gbsynth.common.events import ApuWrites, Recording

FORMATS = ("iodump", "avro")


class EmulateError(Exception):
    """A problem with the user's input, reported as one line on stderr."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="Game Boy ROM (.gb), GBS rip or VGM file")
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="emulated seconds to record (default 60)"
    )
    parser.add_argument(
        "--subsong", type=int, default=None, help="GBS subsong, counting from 1 (default: first)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the ROM explorer's input")
    parser.add_argument(
        "--no-explore", action="store_true", help="run a ROM without pressing any button"
    )
    from gbsynth.emulator.explore import ExploreSettings

    defaults = ExploreSettings()
    for phase, meaning in (
        ("boot", "listening from power-on before the first input"),
        ("observe", "longest recorded window of one new song"),
        ("press", "longest wait macro"),
        (
            "settle",
            "quiet after each input, not judged (a window opening right after starts with it)",
        ),
    ):
        default = getattr(defaults, f"{phase}_seconds")
        parser.add_argument(
            f"--{phase}-seconds",
            type=float,
            default=default,
            help=f"exploration: {meaning} (default {default:g})",
        )
    parser.add_argument("--out", metavar="PATH", help="output file (default: stdout, iodump only)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="iodump (gbsplay's I/O dump text) or avro (recordings file); "
        "default: avro if PATH ends in .avro, else iodump",
    )


def _output_format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    if args.out and Path(args.out).suffix.lower() == ".avro":
        return "avro"
    return "iodump"


def record_file(args: argparse.Namespace) -> tuple[Recording, str | None]:
    """The recording of ``args.file``; on a hang, what was recorded until then and why."""
    from gbsynth.emulator.explore import ExploreSettings
    from gbsynth.emulator.sources import SourceError, open_session

    path = Path(args.file)
    if not path.is_file():
        raise EmulateError(f"{path}: no such file")
    try:
        explore = None
        if not args.no_explore:
            explore = ExploreSettings(
                args.boot_seconds, args.observe_seconds, args.press_seconds, args.settle_seconds
            )
        session = open_session(path, subsong=args.subsong, seed=args.seed, explore=explore)
    except (SourceError, ValueError) as exc:
        raise EmulateError(str(exc)) from exc
    parts, marks, problem = [], [], None
    try:
        for piece in session.pieces(args.seconds, piece_seconds=10.0):
            parts.append(piece.writes)
            marks.extend(piece.phases)
    except SourceError as exc:
        problem = str(exc)
    writes = ApuWrites.concat(parts)
    duration = max(session.cycle, int(writes.cycles[-1]) + 1 if len(writes) else 0)
    recording = Recording(
        recording_id=session.recording_id,
        source=session.source,
        writes=writes,
        duration_cycles=duration,
        seed=session.seed,
        phases=tuple(marks),
    )
    return recording, problem


def _run(args: argparse.Namespace) -> int:
    from gbsynth.common.formats import write_iodump, write_recordings

    if not args.seconds > 0:
        raise EmulateError("--seconds must be positive")
    if args.subsong is not None and args.subsong < 1:
        raise EmulateError("--subsong counts from 1")
    fmt = _output_format(args)
    if fmt == "avro" and not args.out:
        raise EmulateError("--format avro needs --out PATH (Avro is binary)")
    recording, problem = record_file(args)
    if recording.phases:
        from gbsynth.emulator.explore import songs_in

        print(f"gbsynth emulate: {songs_in(recording.phases)} songs found", file=sys.stderr)
    if fmt == "avro":
        from gbsynth import __version__

        write_recordings(args.out, [recording], emulator_version=__version__)
    elif args.out:
        write_iodump(recording, args.out)
    else:
        write_iodump(recording, sys.stdout)
        sys.stdout.flush()
    if problem:
        print(f"gbsynth emulate: stopped early: {problem}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    return run_reporting_errors("emulate", lambda: _run(args), {EmulateError: 2, OSError: 2})
