"""Standard MIDI files built byte by byte for tests (no test material needed)."""

from __future__ import annotations

import struct


def varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def track(events: list[tuple[int, bytes]], end: bool = True) -> bytes:
    """An MTrk chunk of (delta ticks, event bytes); running status is whatever the bytes say."""
    body = b"".join(varlen(delta) + data for delta, data in events)
    if end:
        body += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + body


def smf(tracks: list[bytes], division: int = 480, file_format: int = 1) -> bytes:
    header = b"MThd" + struct.pack(">IHHH", 6, file_format, len(tracks), division)
    return header + b"".join(tracks)


def tempo(bpm: float) -> bytes:
    return b"\xff\x51\x03" + round(60e6 / bpm).to_bytes(3, "big")


def meter(numerator: int, denominator: int) -> bytes:
    return bytes([0xFF, 0x58, 0x04, numerator, denominator.bit_length() - 1, 24, 8])


def notes_track(
    notes: list[tuple[float, float, int, int]], channel: int, ppq: int = 480, program=None
) -> bytes:
    """A track playing (start quarter, length quarters, key, velocity) notes on ``channel``."""
    messages: list[tuple[int, bytes]] = []
    for start, length, key, velocity in notes:
        on = round(start * ppq)
        messages.append((on, bytes([0x90 | channel, key, velocity])))
        messages.append((on + round(length * ppq), bytes([0x80 | channel, key, 0x40])))
    messages.sort(key=lambda m: (m[0], m[1][0] & 0xF0 == 0x90))  # offs before ons at a tick
    events: list[tuple[int, bytes]] = []
    if program is not None:
        events.append((0, bytes([0xC0 | channel, program])))
    tick = 0
    for at, data in messages:
        events.append((at - tick, data))
        tick = at
    return track(events)


# A 4/4 piece at 120 bpm: a melody, a chord track (lowest note the bass) and drums.
MELODY = [(0, 1, 76, 100), (1, 1, 74, 90), (2, 2, 72, 110), (4, 0.5, 71, 80), (4.5, 0.5, 72, 80),
          (5, 1, 74, 100), (6, 2, 67, 60)]  # fmt: skip
CHORDS = [(0, 2, 48, 80), (0, 2, 52, 80), (0, 2, 55, 80), (2, 2, 41, 80), (2, 2, 45, 80),
          (2, 2, 48, 80), (4, 4, 43, 80), (4, 4, 47, 80), (4, 4, 50, 80)]  # fmt: skip
DRUMS = [(q / 2, 0.25, 42, 70) for q in range(16)] + [
    (0, 0.25, 36, 100), (2, 0.25, 36, 100), (1, 0.25, 38, 100), (3, 0.25, 38, 100),
    (4, 0.25, 36, 100), (5, 0.25, 38, 100)]  # fmt: skip


def example_piece() -> bytes:
    conductor = track([(0, tempo(120)), (0, meter(4, 4)), (0, b"\xff\x59\x02\x00\x00")])
    return smf([
        conductor,
        notes_track(MELODY, 0, program=73),
        notes_track(CHORDS, 1, program=0),
        notes_track(DRUMS, 9),
    ])  # fmt: skip
