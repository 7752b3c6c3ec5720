"""The token representations a model can read and write, one token per position.

A model's checkpoint names its representation (``GPTConfig.representation``); the
rest of the trainer and the sampler go through ``get(name)``, so every part speaks
the representation the model was trained on.

- ``channel_events`` (the default): what a listener hears change, channel by channel,
  on a quarter-frame grid (``gbsynth.trainer.channel_events``): notes as note numbers,
  instrument parameters, time shifts. It carries across drivers and transposes.
- ``writes``: the register writes themselves (``gbsynth.trainer.tokens``), each as a
  dt, a reg and a val token: exact, but 450-2,500 tokens per second of music and
  tied to each driver's register order and timing; no transposition.

Each representation gives: its vocabulary size; ``encode(writes, span_cycles)`` to
int16 tokens and ``decode(tokens)`` back to ``(ApuWrites, cycles)``; the cycles each
token moves the clock on (so time is the sum over tokens, and nats per second of
music compare across representations); a streaming decoder (``push(token)`` returns
the writes the token makes, ``valid_next()`` the grammar's mask of the tokens that
may follow, which the sampler applies so sampled streams always decode); and the
augmentations it supports (``transpose`` by semitones, ``stretch`` of the tempo).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gbsynth.common.events import CPU_HZ, ApuWrites

MAX_TRANSPOSE = 5
"""Augmentation: windows move up to 5 semitones down or 6 up (every key once)."""
MAX_STRETCH = 1.2
"""Augmentation: the tempo changes by a factor between 1/1.2 and 1.2 (log-uniform)."""


class RepresentationError(ValueError):
    """An unknown representation name."""


@dataclass(frozen=True, eq=False)
class Representation:
    name: str
    vocab_size: int
    encode: Callable[[ApuWrites, int | None], np.ndarray]
    """``(writes, span_cycles)`` -> 1-D int16 tokens from cycle 0 (span None: to the last write)."""
    decode: Callable[[np.ndarray], tuple[ApuWrites, int]]
    token_cycles: np.ndarray
    """int64 ``(vocab_size,)``: cycles each token moves the clock on."""
    max_tokens_per_frame: int
    """Sampling guard: no more tokens than this in any span of one frame."""
    stream_decoder: Callable[[], Any]
    """A fresh decoder: ``push(token) -> ApuWrites`` (the writes the token makes, from
    cycle 0 on) and ``valid_next() -> bool mask`` (the tokens that may come next)."""
    transpose: Callable[[np.ndarray, int], np.ndarray | None] | None = None
    stretch: Callable[[np.ndarray, float], np.ndarray] | None = None
    version: str = ""
    """A digest of the code that defines the tokens: caches of encoded music key on it."""
    sampled: np.ndarray | None = None
    """bool ``(vocab_size,)``: tokens a generated song may use (None: all). Recordings
    need a few that a composed song does not (an APU power cycle)."""
    onsets: np.ndarray | None = None
    """Bool mask ``(vocab_size,)`` of the tokens that start a note (None: unknown). The match
    model copies only passages that hold one (``gbsynth.trainer.match``)."""
    onset_channels: np.ndarray | None = None
    """int8 ``(vocab_size,)``: the channel an ``onsets`` token starts a note on (-1 for the
    other tokens). The sampler lets a channel start one note per instant."""
    on_rows: np.ndarray | None = None
    """Bool mask ``(vocab_size,)`` of the tokens that can start a sound a listener hears as a
    new note (a trigger, the fine pitch before one, an unmute): a song plan's rows hold them
    (``gbsynth.trainer.song_plan``). None: the representation cannot follow rows."""
    note_pitches: np.ndarray | None = None
    """int16 ``(vocab_size,)``: the MIDI note a token sets a tone channel to, -1 for tokens
    that set no absolute pitch; None: unknown (a song plan cannot keep a key)."""
    note_channels: np.ndarray | None = None
    """int8 ``(vocab_size,)``: the channel of ``note_pitches`` (-1 where it is -1)."""
    jump_offsets: np.ndarray | None = None
    """int8 ``(vocab_size,)``: semitones a token moves its channel from the pitch the last
    ``note_pitches`` token set (arpeggio steps); ``jump_channels`` the channel (-1: none)."""
    jump_channels: np.ndarray | None = None
    new_wave_shape: np.ndarray | None = None
    """Bool mask ``(vocab_size,)`` of the tokens that write a wave shape of their own (None:
    the representation has no shapes to reuse); ``recent_wave_shapes`` those that load one
    written before. A song plan keeps a song's first shapes as its instruments."""
    recent_wave_shapes: np.ndarray | None = None

    def cycles(self, tokens: np.ndarray) -> int:
        """Cycles of music ``tokens`` span."""
        return int(self.token_cycles[np.asarray(tokens, dtype=np.int64)].sum())

    def seconds(self, tokens: np.ndarray) -> float:
        return self.cycles(tokens) / CPU_HZ

    def augment(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A musically neutral variation of a training window: a random transposition and
        tempo, each where the representation supports it (and the result stays legal)."""
        out = tokens
        if self.transpose is not None:
            shifted = self.transpose(out, int(rng.integers(-MAX_TRANSPOSE, MAX_TRANSPOSE + 2)))
            out = out if shifted is None else shifted
        if self.stretch is not None:
            factor = float(np.exp(rng.uniform(-np.log(MAX_STRETCH), np.log(MAX_STRETCH))))
            out = self.stretch(out, factor)
        return out


def _writes() -> Representation:
    from gbsynth.trainer import tokens

    return Representation(
        name="writes",
        vocab_size=tokens.VOCAB_SIZE,
        encode=tokens.encode_flat,
        decode=tokens.decode_flat,
        token_cycles=tokens.flat_token_cycles(),
        max_tokens_per_frame=tokens.MAX_TOKENS_PER_FRAME,
        stream_decoder=tokens.FlatStreamDecoder,
        stretch=tokens.stretch_flat,
        version=_source_digest(tokens),
    )


def _channel_events() -> Representation:
    from gbsynth.trainer import channel_events as ce

    cycles = np.zeros(ce.VOCAB_SIZE, dtype=np.int64)
    cycles[ce.SHIFT : ce.SHIFT + ce.MAX_SHIFT] = np.arange(1, ce.MAX_SHIFT + 1) * ce.TICK_CYCLES
    sampled = np.ones(ce.VOCAB_SIZE, dtype=bool)
    sampled[ce.RESET : ce.RESET + 4] = False  # a composed song never powers the chip off
    onsets = np.zeros(ce.VOCAB_SIZE, dtype=bool)
    onsets[ce.NOTE : ce.NOTE + ce.TONE_CHANNELS * ce.N_NOTES] = True
    onsets[ce.HIT] = True
    note_pitches = np.full(ce.VOCAB_SIZE, -1, np.int16)
    note_channels = np.full(ce.VOCAB_SIZE, -1, np.int8)
    for start in (ce.NOTE, ce.PITCH):
        channel, note = np.divmod(np.arange(ce.TONE_CHANNELS * ce.N_NOTES), ce.N_NOTES)
        note_pitches[start : start + len(note)] = ce.MIDI_LOW + note
        note_channels[start : start + len(note)] = channel
    jump_offsets = np.zeros(ce.VOCAB_SIZE, np.int8)
    jump_channels = np.full(ce.VOCAB_SIZE, -1, np.int8)
    channel, index = np.divmod(np.arange(ce.TONE_CHANNELS * 2 * ce.MAX_JUMP), 2 * ce.MAX_JUMP)
    jump_offsets[ce.JUMP : ce.JUMP + len(index)] = index - ce.MAX_JUMP
    jump_channels[ce.JUMP : ce.JUMP + len(index)] = channel
    onset_channels = np.where(onsets, note_channels, -1).astype(np.int8)
    onset_channels[ce.HIT] = 3
    on_rows = onsets.copy()
    on_rows[ce.FINE : ce.FINE + ce.PITCH_STEPS - 1] = True  # comes just before a NOTE or PITCH
    on_rows[ce.LEVEL : ce.LEVEL + 4] = True  # unmutes the wave channel
    on_rows[ce.PAN : ce.PAN + 256] = True  # unmutes channels
    on_rows[ce.ARP : ce.ARP + ce.TONE_CHANNELS * 256] = True  # comes just before its NOTE
    new_wave_shape = np.zeros(ce.VOCAB_SIZE, dtype=bool)
    new_wave_shape[ce.WAVE_NEW] = True
    recent_wave_shapes = np.zeros(ce.VOCAB_SIZE, dtype=bool)
    recent_wave_shapes[ce.WAVE_RECENT : ce.WAVE_RECENT + ce.WAVE_SLOTS - 1] = True
    return Representation(
        name="channel_events",
        vocab_size=ce.VOCAB_SIZE,
        encode=_encode_span(ce.encode),
        decode=ce.decode,
        token_cycles=cycles,
        max_tokens_per_frame=MAX_CHANNEL_EVENTS_PER_FRAME,
        stream_decoder=ce.StreamDecoder,
        transpose=ce.transpose,
        stretch=ce.stretch,
        version=_source_digest(ce),
        sampled=sampled,
        onsets=onsets,
        onset_channels=onset_channels,
        on_rows=on_rows,
        note_pitches=note_pitches,
        note_channels=note_channels,
        jump_offsets=jump_offsets,
        jump_channels=jump_channels,
        new_wave_shape=new_wave_shape,
        recent_wave_shapes=recent_wave_shapes,
    )


MAX_CHANNEL_EVENTS_PER_FRAME = 160
"""Sampling guard for ``channel_events``: real music stays far below (every parameter of
every channel changing, plus a wave shape of 33 tokens, is under 80)."""


def _source_digest(module) -> str:
    import hashlib
    from pathlib import Path

    return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()[:12]


def _encode_span(encode: Callable[[ApuWrites, int], np.ndarray]):
    def encode_span(writes: ApuWrites, span_cycles: int | None) -> np.ndarray:
        # Without a span: up to just after the last write.
        span = (
            span_cycles
            if span_cycles is not None
            else (int(writes.cycles[-1]) + 1 if len(writes) else 0)
        )
        return encode(writes, span)

    return encode_span


_BUILDERS: dict[str, Callable[[], Representation]] = {
    "channel_events": _channel_events,
    "writes": _writes,
}
NAMES = tuple(_BUILDERS)
DEFAULT = "channel_events"
_built: dict[str, Representation] = {}


def get(name: str) -> Representation:
    """The representation called ``name``; ``RepresentationError`` for an unknown one."""
    if name not in _BUILDERS:
        raise RepresentationError(f"unknown representation {name!r} (known: {', '.join(NAMES)})")
    if name not in _built:
        _built[name] = _BUILDERS[name]()
    return _built[name]
