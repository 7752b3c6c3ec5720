"""Sampling songs from a checkpoint, event by event, with a sliding-window KV cache.

Every song opens with ``PREAMBLE`` (APU on, master volume up, every channel to
both speakers), so even an untrained model's output is audible, followed by
the optional ``prime`` (writes from cycle 0 on, e.g. the opening of a real
song); the model continues from there. Output is legal by construction: a
``reg`` token names one of 0xFF10-0xFF3F or a wait. Two constraints keep a
song playing: the sampler never picks the unused addresses 0xFF27-0xFF2F and
never writes NR52 with the power bit clear (which would silence the rest of
the song). And it never puts more than ``engine.MAX_WRITES_PER_FRAME`` (64)
writes in any frame, so a model stuck repeating one write every few cycles
can neither flood a song nor stall sampling (real music stays far below).

Determinism and threads: each ``stream`` call owns its random generator
(``numpy.random.Generator`` seeded with ``seed``) and its KV cache; the model is
only read. So calls may run in parallel threads, and the same checkpoint, seed
and arguments always give the same song.

Speed: the events are sampled by ``gbsynth.trainer.engine`` (compiled; the
first use on a machine compiles it, about 10 s, then it is cached on disk):
one core makes about 1,500 events per second with the ``cpu`` model, and a song
costs its number of writes, 150-200 per second of music, so 5-10 seconds of
music per wall second (``bench/sampling_speed.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from gbsynth.common.events import (
    CPU_HZ,
    CYCLE_DTYPE,
    REGISTER_DTYPE,
    REGISTER_FIRST,
    VALUE_DTYPE,
    ApuWrites,
)
from gbsynth.trainer import tokens
from gbsynth.trainer.checkpoint import LoadedCheckpoint
from gbsynth.trainer.engine import InferenceEngine

PREAMBLE = ApuWrites.from_arrays([0, 0, 0], [0xFF26, 0xFF24, 0xFF25], [0x80, 0x77, 0xFF])
"""NR52 = 0x80 (power on), NR50 = 0x77 (both master volumes full), NR51 = 0xFF (all panned on)."""

PIECE_EVENTS = 512
"""Events sampled between two yielded pieces (about half a second of typical music)."""


class SamplingError(ValueError):
    """Bad sampling arguments (negative length, temperature, top_p out of range)."""


class Sampler:
    """Samples songs from a loaded checkpoint (thread-safe: no shared mutable state)."""

    def __init__(self, checkpoint: LoadedCheckpoint, *, piece_events: int = PIECE_EVENTS) -> None:
        self.checkpoint = checkpoint
        self.config = checkpoint.config
        self.step = checkpoint.step
        self.piece_events = max(1, piece_events)
        self.engine = InferenceEngine(checkpoint.model)  # read-only once built

    def stream(
        self,
        seconds: float,
        *,
        temperature: float = 1.0,
        top_p: float = 0.95,
        seed: int = 0,
        prime: ApuWrites | None = None,
    ) -> Iterator[ApuWrites]:
        """Yield consecutive pieces of a song (cycles from 0) until ``seconds`` are covered.

        The song opens with ``PREAMBLE`` and then ``prime`` (if given), both part of
        the output; pieces hold up to ``piece_events`` writes each.
        """
        if not seconds >= 0 or seconds == float("inf"):
            raise SamplingError(f"seconds must be a finite number >= 0, not {seconds}")
        if not temperature >= 0 or temperature == float("inf"):
            raise SamplingError(f"temperature must be a finite number >= 0, not {temperature}")
        if not 0.0 < top_p <= 1.0:
            raise SamplingError(f"top_p must be in (0, 1], not {top_p}")
        end_cycle = int(round(seconds * CPU_HZ))
        rng = np.random.default_rng(seed)
        opening = PREAMBLE
        if prime is not None and len(prime):
            opening = ApuWrites.concat([PREAMBLE, prime])
        opening_events = tokens.encode(opening)
        state = self.engine.new_state()
        self.engine.feed(state, opening_events)
        yield tokens.decode(opening_events).between(0, end_cycle)
        while state.clock < end_cycle:
            uniforms = rng.random((self.piece_events, 3))
            out = self.engine.sample(state, uniforms, end_cycle, temperature, top_p)
            writes = out[out[:, 1] != tokens.WAIT]
            if len(writes):
                yield ApuWrites(
                    writes[:, 3].astype(CYCLE_DTYPE),
                    (writes[:, 1] + REGISTER_FIRST).astype(REGISTER_DTYPE),
                    writes[:, 2].astype(VALUE_DTYPE),
                )

    def sample(self, seconds: float, **options: Any) -> ApuWrites:
        """The whole song ``stream(seconds, **options)`` yields, as one ``ApuWrites``."""
        return ApuWrites.concat(list(self.stream(seconds, **options)))
