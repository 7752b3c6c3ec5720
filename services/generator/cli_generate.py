"""``gbsynth generate``: sample a song from a checkpoint to a file, without the service.

    gbsynth generate --seconds 30 --seed 7 --out song.wav      # the default model
    gbsynth generate --checkpoint var/checkpoints --seconds 30 --seed 7 --out song.wav
    gbsynth generate --checkpoint var/checkpoints/step-0000001000.pt --out song.vgm
    gbsynth generate --checkpoint CKPT_DIR --prime opening.avro --seconds 60 --out more.wav

``--checkpoint`` is a checkpoint file or a folder (its newest checkpoint); without it,
the default model (``GBSYNTH_DEFAULT_MODEL``, the pre-trained model in the package). The output
format follows the file name: ``.wav`` (16-bit stereo, streamed to the file while it
is sampled), ``.vgm``, ``.avro`` (the event log; ``gbsynth render`` plays it), ``.gb``
(a ROM that replays it) or ``.json`` (description and piano roll). The same checkpoint,
seed and parameters give the same bytes as ``POST /v1/songs``.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path
from typing import Any

# The output format, from the file name.
FORMATS = {".wav": "wav", ".vgm": "vgm", ".avro": "avro", ".gb": "gb", ".json": "json"}


class GenerateError(Exception):
    """A problem with the user's input, reported as one line on stderr."""


def add_sampling_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--temperature`` and ``--top-p``, with ``SongParams``' defaults, for the commands that
    sample songs (``gbsynth generate``, ``gbsynth evaluate --generate``)."""
    from gbsynth.generator.songs import SongParams

    parser.add_argument(
        "--temperature", type=float, default=SongParams.temperature,
        help="sampling temperature; 0 always picks the likeliest event "
        f"(default {SongParams.temperature:g})",
    )  # fmt: skip
    parser.add_argument(
        "--top-p", type=float, default=SongParams.top_p,
        help="nucleus sampling: pick among the likeliest events covering this mass "
        f"(default {SongParams.top_p:g})",
    )  # fmt: skip
    parser.add_argument(
        "--plan", default=SongParams.plan, metavar="PLAN",
        help="rows, form and key the sampler keeps: FORM[:PHRASES]@FRAMES such as AABA@6 "
        "(sections A, A, B, A of 64 rows of 6 frames, in the key the first notes choose) "
        "or AABA:aaba@6 (and bars a, a, b, a in each new section); /chromatic: no key; "
        "free: the network alone; default: drawn from the seed (docs/model.md)",
    )  # fmt: skip


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", type=Path, default=None, metavar="CKPT",
        help="checkpoint file, or a folder of checkpoints (the newest is used); "
        "default: the default model",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=30.0, help="song length (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_sampling_arguments(parser)
    parser.add_argument(
        "--prime", type=Path, default=None, metavar="FILE",
        help="music to continue: Avro recordings/segments file, VGM or I/O dump",
    )  # fmt: skip
    parser.add_argument(
        "--prime-index", type=int, default=0, help="which recording/segment of --prime (from 0)"
    )
    parser.add_argument("--rate", type=int, default=44_100, help="WAV sample rate (44100)")
    parser.add_argument(
        "--max-events-per-second", type=float, default=20_000.0,
        help="stop a model stuck on fast writes beyond this many events per second of music "
        "(default 20000; real music writes about 1000)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE",
        help="output file: .wav, .vgm, .avro, .gb or .json",
    )  # fmt: skip


def _checkpoint_path(path: Path | None) -> Path:
    from gbsynth.trainer.checkpoint import CheckpointError, default_model_path, newest_checkpoint

    if path is None:
        try:
            default = default_model_path()
        except CheckpointError as exc:
            raise GenerateError(str(exc)) from exc
        if default is None:
            raise GenerateError("give --checkpoint (GBSYNTH_DEFAULT_MODEL is none)")
        return default
    if path.is_dir():
        newest = newest_checkpoint(path)
        if newest is None:
            raise GenerateError(f"{path}: no checkpoint in this folder")
        return newest
    if not path.is_file():
        raise GenerateError(f"{path}: no such checkpoint file or folder")
    return path


def _check(args: argparse.Namespace) -> str:
    fmt = FORMATS.get(args.out.suffix.lower())
    if fmt is None:
        raise GenerateError(f"--out {args.out}: the name must end in {', '.join(FORMATS)}")
    if not 0 < args.seconds <= 3600 or args.seconds != args.seconds:
        raise GenerateError("--seconds must be above 0 and at most 3600")
    if not 0 <= args.temperature <= 10:
        raise GenerateError("--temperature must be between 0 and 10")
    if not 0 < args.top_p <= 1:
        raise GenerateError("--top-p must be above 0 and at most 1")
    if args.seed < 0:
        raise GenerateError("--seed must be 0 or more")
    if not 8_000 <= args.rate <= 384_000:
        raise GenerateError("--rate must be 8000-384000 Hz")
    if args.prime_index < 0:
        raise GenerateError("--prime-index counts from 0")
    check_plan(args.plan)
    return fmt


def check_plan(text: str) -> None:
    """``GenerateError`` for a ``--plan`` that ``SongPlan.parse`` refuses."""
    from gbsynth.trainer.song_plan import SongPlanError, checked_plan_text

    try:
        checked_plan_text(text)
    except SongPlanError as exc:
        raise GenerateError(f"--plan: {exc}") from exc


def _run(args: argparse.Namespace) -> int:
    fmt = _check(args)
    from gbsynth.generator.models import load_model
    from gbsynth.generator.prime import PrimeError, prime_from_file, prime_seconds
    from gbsynth.generator.songs import SongError, SongParams
    from gbsynth.trainer.checkpoint import CheckpointError

    path = _checkpoint_path(args.checkpoint)
    prime = None
    if args.prime is not None:
        try:
            encoded = base64.b64encode(args.prime.read_bytes()).decode()
            prime = prime_from_file(encoded, args.prime_index, max_writes=2**40)
        except OSError as exc:
            raise GenerateError(f"{args.prime}: cannot read: {exc.strerror or exc}") from exc
        except PrimeError as exc:
            raise GenerateError(f"{args.prime}: {exc}") from exc
        if prime_seconds(prime) >= args.seconds:
            raise GenerateError(
                f"{args.prime} lasts {prime_seconds(prime):.2f} s: ask for more --seconds"
            )
    try:
        model = load_model(path)
    except CheckpointError as exc:
        raise GenerateError(str(exc)) from exc
    params = SongParams(
        seconds=args.seconds, temperature=args.temperature, top_p=args.top_p, seed=args.seed,
        prime=prime, sample_rate=args.rate, plan=args.plan,
    )  # fmt: skip
    started = time.perf_counter()
    try:
        song = _write(args.out, fmt, model, params, args.max_events_per_second)
    except SongError as exc:
        raise GenerateError(str(exc)) from exc
    wall = time.perf_counter() - started
    print(
        f"{args.out}: {song.seconds:g} s of music, {len(song.writes)} events from "
        f"{path.name} (step {song.model_step}) in {wall:.2f} s "
        f"({song.seconds / max(wall, 1e-9):.1f}x real time)",
        file=sys.stderr,
    )
    return 0


def _write(out: Path, fmt: str, model: Any, params: Any, cap: float) -> Any:
    """Sample the song into ``out`` in format ``fmt``; return the ``Song``."""
    from gbsynth.common.files import atomic_output, atomic_write
    from gbsynth.generator.songs import generate, song_file_bytes

    if fmt == "wav":
        # Streamed into a temporary file beside the target, renamed when complete.
        with atomic_output(out) as stream:
            song = generate(model, params, sink=stream.write, max_events_per_second=cap)
        return song
    song = generate(model, params, max_events_per_second=cap)
    atomic_write(out, song_file_bytes(song, fmt))
    return song


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except GenerateError as exc:
        print(f"gbsynth generate: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gbsynth generate: {exc}", file=sys.stderr)
        return 1
