"""Round trip of channel events (gbsynth.trainer.channel_events) on the issue-14 songs.

Records each song (nightmode.gbs, DevSound_demo.gbs subsongs 1-6, DevSoundX.gb and the 8
demo songs of ``gbsynth make-demo-music``) for ``--seconds``, encodes it, decodes it and
renders both; prints the 20 ms RMS envelope and log band energy correlations, tokens per
second against the write-level representation's events per second, and encoding time.

Beside them, a control: the recorded writes themselves, each driver update (burst) moved
by a random 0-64 cycles (at most 15 microseconds, far below what anyone hears), scored the
same way. Where the control falls below 0.97 the measure follows the channels' relative
phase, not what a listener hears, and no representation coarser than a few cycles passes.
``--voices`` adds each channel rendered alone (its NR51 bits only), decoded and control:
relative phase between channels no longer counts.

    python bench/channel_events_roundtrip.py [--seconds 60] [--voices] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from gbsynth.common.events import CPU_HZ, ApuWrites
from gbsynth.emulator.sources import GbsSession, RomSession
from gbsynth.music.composer import compose
from gbsynth.music.rom import song_files
from gbsynth.synth.render import render, sounds_alike
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


CONTROL_CYCLES = 64


def jittered(writes: ApuWrites, cycles: int, seed: int = 0) -> ApuWrites:
    """``writes`` with each burst (writes under 2,048 cycles apart) moved by the same random
    0..``cycles`` cycles: its order kept, so only the timing between updates changes."""
    at = writes.cycles.astype(np.int64)
    burst = np.cumsum(np.r_[True, np.diff(at) >= channel_events.BURST_GAP_CYCLES]) - 1
    moved = at + np.random.default_rng(seed).integers(0, cycles + 1, burst[-1] + 1)[burst]
    order = np.argsort(moved, kind="stable")
    return ApuWrites.from_arrays(moved[order], writes.registers[order], writes.values[order])


def voice(writes: ApuWrites, channel: int) -> ApuWrites:
    """``writes`` with NR51 routing only ``channel`` to either side: that voice alone."""
    values = writes.values.copy()
    values[writes.registers == 0xFF25] &= 0x11 << channel
    return ApuWrites.from_arrays(writes.cycles, writes.registers, values)


def voices(reference: ApuWrites, other: ApuWrites, duration: int) -> str:
    """Each channel's envelope / log band correlation alone (``-`` for a silent one)."""
    out = []
    for channel in range(4):
        alone = voice(reference, channel)
        if not np.any(render(alone, duration, stereo=False)):
            out.append("-")
            continue
        envelopes, bands = sounds_alike(alone, voice(other, channel), duration)
        out.append(f"{envelopes:.3f}/{bands:.3f}")
    return " ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--voices", action="store_true", help="also each channel alone")
    parser.add_argument(
        "--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared"
    )
    args = parser.parse_args()
    print(
        "| song | envelopes | log bands | control: envelopes | control: log bands "
        "| tokens/s | write events/s | encode s/min |"
    )
    print("|---|---|---|---|---|---|---|---|")
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
        moved = jittered(writes, CONTROL_CYCLES).between(0, duration)
        control_envelopes, control_bands = sounds_alike(writes, moved, duration)
        music = duration / CPU_HZ
        events = len(tokens.encode(writes))
        print(
            f"| {name} | {envelopes:.3f} | {bands:.3f} | {control_envelopes:.3f} | "
            f"{control_bands:.3f} | {len(toks) / music:.0f} | "
            f"{events / music:.0f} | {60 * seconds_to_encode / music:.2f} |"
        )
        if args.voices:
            decoded, _ = channel_events.decode(toks)
            decoded = decoded.between(0, duration)
            alone = voices(writes, decoded, duration)
            print(f"|   pulse 1, pulse 2, wave, noise alone: decoded {alone}")
            print(f"|   control {voices(writes, moved, duration)}")


if __name__ == "__main__":
    main()
