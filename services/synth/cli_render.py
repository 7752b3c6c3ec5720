"""``gbsynth render``: render a recording to a WAV file as a DMG sounds.

    gbsynth render song.avro --out song.wav                  # 44.1 kHz stereo, 16-bit PCM
    gbsynth render song.iodump --out song.wav --rate 48000 --mono
    gbsynth render segments.avro --index 3 --seconds 30 --out piece.wav

RECORDING is an Avro recordings or segments file (``gbsynth emulate --out x.avro``, the
pruner's segment files) or a gbsplay-style I/O dump (``gbsynth emulate``'s text output or
``gbsplay -o iodumper``; gbsplay's register set-up block is not replayed: every recording
starts from the DMG's post-boot sound state). ``--index`` picks the recording, segment or
dump section (counting from 0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gbsynth.common.command import run_reporting_errors

SUBTYPES = {"pcm16": "PCM_16", "pcm24": "PCM_24", "float": "FLOAT"}


class RenderError(Exception):
    """A problem with the user's input, reported as one line on stderr."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "recording", metavar="RECORDING", help="Avro recordings/segments file or I/O dump"
    )
    parser.add_argument("--out", metavar="FILE.wav", required=True, help="WAV file to write")
    parser.add_argument("--rate", type=int, default=44_100, help="sample rate in Hz (44100)")
    parser.add_argument("--mono", action="store_true", help="one channel (mean of both sides)")
    parser.add_argument(
        "--no-highpass",
        action="store_true",
        help="leave out the DMG's output high-pass filter (keeps the DC offset)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="length to render (default: the whole recording; longer pads with what the "
        "chip keeps playing)",
    )
    parser.add_argument(
        "--index",
        type=int,
        default=0,
        help="which recording, segment or dump section of the file (from 0; default 0)",
    )
    parser.add_argument(
        "--format",
        choices=sorted(SUBTYPES),
        default="pcm16",
        help="sample format of the WAV file (default pcm16)",
    )


def load_recording(path: Path, index: int):
    """The ``index``-th recording, segment or I/O dump section of ``path``."""
    from gbsynth.common.avro import Segment
    from gbsynth.common.formats import EventFileError, is_avro_file, read_event_file

    if index < 0:
        raise RenderError("--index counts from 0")
    try:
        items = read_event_file(path)
    except EventFileError as exc:
        raise RenderError(str(exc)) from exc
    if items and isinstance(items[0], Segment):
        kind = "segments"
    else:
        kind = "recordings" if is_avro_file(path) else "dump sections"
    if not items:
        raise RenderError(f"{path}: holds no recordings")
    if index >= len(items):
        raise RenderError(f"{path}: --index {index}, but the file holds {len(items)} {kind}")
    return items[index]


CHUNK_SECONDS = 10
"""Audio rendered and written per step, so memory stays flat however long the recording."""


def _run(args: argparse.Namespace) -> int:
    import numpy as np
    import soundfile

    from gbsynth.common.events import CPU_HZ
    from gbsynth.common.files import atomic_output
    from gbsynth.synth.render import (
        MAX_RATE,
        MIN_RATE,
        Synth,
        channel_activity,
        samples_before,
        to_pcm16,
    )

    if not MIN_RATE <= args.rate <= MAX_RATE:
        raise RenderError(f"--rate must be within {MIN_RATE}..{MAX_RATE} Hz")
    if args.seconds is not None and not 0 < args.seconds <= 7 * 86400:
        raise RenderError("--seconds must be positive (and at most a week)")
    path = Path(args.recording)
    recording = load_recording(path, args.index)
    writes = recording.writes
    if args.seconds is not None:
        duration = int(round(args.seconds * CPU_HZ))
    else:
        duration = int(recording.duration_cycles)
    if len(writes) == 0:
        raise RenderError(f"{path}: the recording has no sound-register writes (silent)")
    if duration <= 0:
        raise RenderError(f"{path}: the recording is empty (zero length)")
    writes = writes.between(0, duration)
    if not np.any(channel_activity(writes, duration, frame_cycles=CPU_HZ) > 0):
        # Clicks from DAC switches may be there, but no channel ever plays a sound.
        raise RenderError(f"{path}: the recording is silent (no channel ever sounds)")
    channels = 1 if args.mono else 2
    subtype = SUBTYPES[args.format]
    frames = samples_before(duration, args.rate)
    bytes_per_sample = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}[subtype]
    # Plain WAV stops at 4 GiB; larger files are RF64 (WAV with 64-bit sizes).
    container = "RF64" if frames * channels * bytes_per_sample > 0xFFFF0000 else "WAV"
    out = Path(args.out)
    synth = Synth(args.rate, highpass=not args.no_highpass)
    step = CHUNK_SECONDS * CPU_HZ
    peak = 0.0
    try:
        with (
            atomic_output(out) as stream,
            soundfile.SoundFile(
                stream, "w", args.rate, channels, subtype=subtype, format=container
            ) as sink,
        ):
            for start in range(0, duration, step):
                stop = min(duration, start + step)
                audio = synth.render(writes.between(start, stop), stop)
                if args.mono:
                    audio = audio.mean(axis=1, dtype=np.float32)
                if audio.size:
                    peak = max(peak, float(np.max(np.abs(audio))))
                sink.write(to_pcm16(audio) if subtype == "PCM_16" else audio)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as exc:
        raise RenderError(f"cannot write {out}: {exc}") from exc
    clipped = " (peaks clipped)" if peak > 1.0 and subtype != "FLOAT" else ""
    print(
        f"gbsynth render: {out}: {frames / args.rate:.2f} s, {args.rate} Hz, "
        f"{'mono' if args.mono else 'stereo'}, peak {20 * np.log10(peak):.1f} dBFS{clipped}",
        file=sys.stderr,
    )
    return 0


def run(args: argparse.Namespace) -> int:
    return run_reporting_errors("render", lambda: _run(args), {RenderError: 2})
