"""The token representations a model can read and write, one token per position.

A model's checkpoint names its representation (``GPTConfig.representation``); the
rest of the trainer and the sampler go through ``get(name)``, so every part speaks
the representation the model was trained on.

- ``writes``: the register writes themselves (``gbsynth.trainer.tokens``), each as a
  dt, a reg and a val token: exact, but about 450 tokens per second of music and
  tied to each driver's register order and timing; no transposition.

Each representation gives: its vocabulary size; ``encode(writes, span_cycles)`` to
int16 tokens and ``decode(tokens)`` back to ``(ApuWrites, cycles)``; the cycles each
token moves the clock on (so time is the sum over tokens, and nats per second of
music compare across representations); a grammar as a finite automaton
(``allowed[state, token]``, ``next_state[state, token]``) that the sampler applies,
so sampled streams always decode; a streaming decoder; and the augmentations it
supports (``transpose`` by semitones, ``stretch`` of the tempo).
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
    allowed: np.ndarray
    """bool ``(states, vocab_size)``: the tokens the grammar allows in each state."""
    next_state: np.ndarray
    """int64 ``(states, vocab_size)``: the state after a token."""
    start_state: int
    max_tokens_per_frame: int
    """Sampling guard: no more tokens than this in any span of one frame."""
    stream_decoder: Callable[[], Any]
    """A fresh decoder: ``push(token) -> ApuWrites`` (the writes it completes)."""
    transpose: Callable[[np.ndarray, int], np.ndarray | None] | None = None
    stretch: Callable[[np.ndarray, float], np.ndarray] | None = None

    def cycles(self, tokens: np.ndarray) -> int:
        """Cycles of music ``tokens`` span."""
        return int(self.token_cycles[np.asarray(tokens, dtype=np.int64)].sum())

    def seconds(self, tokens: np.ndarray) -> float:
        return self.cycles(tokens) / CPU_HZ

    def final_state(self, tokens: np.ndarray, state: int | None = None) -> int:
        """The grammar state after ``tokens`` (from the start state, or ``state``)."""
        state = self.start_state if state is None else state
        for token in np.asarray(tokens, dtype=np.int64):
            state = int(self.next_state[state, token])
        return state

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

    allowed, next_state, start = tokens.flat_grammar()
    return Representation(
        name="writes",
        vocab_size=tokens.VOCAB_SIZE,
        encode=tokens.encode_flat,
        decode=tokens.decode_flat,
        token_cycles=tokens.flat_token_cycles(),
        allowed=allowed,
        next_state=next_state,
        start_state=start,
        max_tokens_per_frame=tokens.MAX_TOKENS_PER_FRAME,
        stream_decoder=tokens.FlatStreamDecoder,
        stretch=tokens.stretch_flat,
    )


_BUILDERS: dict[str, Callable[[], Representation]] = {"writes": _writes}
NAMES = tuple(_BUILDERS)
DEFAULT = "writes"
_built: dict[str, Representation] = {}


def get(name: str) -> Representation:
    """The representation called ``name``; ``RepresentationError`` for an unknown one."""
    if name not in _BUILDERS:
        raise RepresentationError(f"unknown representation {name!r} (known: {', '.join(NAMES)})")
    if name not in _built:
        _built[name] = _BUILDERS[name]()
    return _built[name]
