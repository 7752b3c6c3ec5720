"""Round trip of channel events (gbsynth.trainer.channel_events) on the issue-14 songs.

Records each song (nightmode.gbs, DevSound_demo.gbs subsongs 1-6, DevSoundX.gb and the 8
demo songs of ``gbsynth make-demo-music``) for ``--seconds``, encodes it, decodes it and
renders both; prints the 20 ms RMS envelope and log band energy correlations, tokens per
second against the write-level representation's events per second, and encoding time.

    python bench/channel_events_roundtrip.py [--seconds 60] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gbsynth.common.events import CPU_HZ
from gbsynth.emulator.sources import GbsSession, RomSession
from gbsynth.music.composer import compose
from gbsynth.music.rom import song_files
from gbsynth.trainer import channel_events, tokens
from gbsynth.trainer.data import recording_pieces


def songs(shared: Path):
    nightmode = (shared / "corpus/nightmode.gbs").read_bytes()
    yield "nightmode", lambda s: GbsSession(nightmode, "nightmode.gbs", 1).record(s)
    devsound = (shared / "corpus/DevSound_demo.gbs").read_bytes()
    for n in range(1, 7):
        yield f"DevSound {n}", lambda s, n=n: GbsSession(devsound, "DevSound_demo.gbs", n).record(s)
    rom = (shared / "roms/music/devsoundx/DevSoundX.gb").read_bytes()
    yield "DevSoundX", lambda s: RomSession(rom, "DevSoundX.gb", seed=0).record(s)
    for i in range(8):
        gbs, _ = song_files(compose(0, i))
        yield f"demo {i + 1}", lambda s, gbs=gbs: GbsSession(gbs, "demo.gbs", 1).record(s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared"
    )
    args = parser.parse_args()
    print("| song | envelopes | log bands | tokens/s | write events/s | encode s/min |")
    print("|---|---|---|---|---|---|")
    for name, record in songs(args.shared):
        recording = record(args.seconds)
        writes = recording_pieces(recording)[0]  # a ROM's first span: boot and observing
        spans = recording.observing_spans()
        duration = min(recording.duration_cycles, spans[0][1])
        writes = writes.between(0, duration)
        channel_events.encode(writes, duration)  # compile
        start = time.perf_counter()
        channel_events.encode(writes, duration)
        seconds_to_encode = time.perf_counter() - start
        envelopes, bands, toks = channel_events.round_trip_fidelity(writes, duration)
        music = duration / CPU_HZ
        events = len(tokens.encode(writes))
        print(
            f"| {name} | {envelopes:.3f} | {bands:.3f} | {len(toks) / music:.0f} | "
            f"{events / music:.0f} | {60 * seconds_to_encode / music:.2f} |"
        )


if __name__ == "__main__":
    main()
