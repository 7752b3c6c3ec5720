"""Sampling songs from a checkpoint, token by token, with a sliding-window KV cache.

Every song opens with ``PREAMBLE`` (APU on, master volume up, every channel to
both speakers), so even an untrained model's output is audible, followed by
the optional ``prime`` (writes from cycle 0 on, e.g. the opening of a real
song); the model continues from there, in its own representation
(``gbsynth.trainer.representation``), mixed with the match model when the checkpoint
has its weights (``gbsynth.trainer.match``: what followed the last time the song played
its recent tokens). Output is legal by construction: the
sampler follows the representation's grammar, which also keeps a song playing
(never the unused addresses 0xFF27-0xFF2F, never NR52 with the power bit clear).
And it never puts more than the representation's ``max_tokens_per_frame`` tokens
in any frame, so a model stuck repeating a token can neither flood a song nor
stall sampling (real music stays far below).

Determinism and threads: each ``stream`` call owns its random generator
(``numpy.random.Generator`` seeded with ``seed``) and its KV cache; the model is
only read. So calls may run in parallel threads, and the same checkpoint, seed
and arguments always give the same song.

Speed: the tokens are sampled by ``gbsynth.trainer.engine`` (compiled; the first
use on a machine compiles it, about 10 s, then it is cached on disk);
``bench/sampling_speed.py`` measures it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES, ApuWrites
from gbsynth.trainer import representation
from gbsynth.trainer.checkpoint import LoadedCheckpoint
from gbsynth.trainer.engine import InferenceEngine
from gbsynth.trainer.match import MatchModel, length_bucket

PREAMBLE = ApuWrites.from_arrays([0, 0, 0], [0xFF26, 0xFF24, 0xFF25], [0x80, 0x77, 0xFF])
"""NR52 = 0x80 (power on), NR50 = 0x77 (both master volumes full), NR51 = 0xFF (all panned on)."""

PIECE_TOKENS = 512
"""Tokens sampled between two yielded pieces."""
FIRST_PIECE_TOKENS = 32
"""Tokens of the first sampled piece; each next piece is twice as long up to
``PIECE_TOKENS``, so the first sound comes out after a few milliseconds of sampling."""


class SamplingError(ValueError):
    """Bad sampling arguments (negative length, temperature, top_p out of range)."""


class Sampler:
    """Samples songs from a loaded checkpoint (thread-safe: no shared mutable state)."""

    def __init__(self, checkpoint: LoadedCheckpoint, *, piece_tokens: int = PIECE_TOKENS) -> None:
        self.checkpoint = checkpoint
        self.config = checkpoint.config
        self.step = checkpoint.step
        self.piece_tokens = max(1, piece_tokens)
        self.representation = representation.get(self.config.representation)
        self.engine = InferenceEngine(checkpoint.model)  # read-only once built

    def stream(
        self,
        seconds: float,
        *,
        temperature: float = 1.0,
        top_p: float = 0.95,
        seed: int = 0,
        prime: ApuWrites | None = None,
        stats: dict[str, int] | None = None,
    ) -> Iterator[ApuWrites]:
        """Yield consecutive pieces of a song (cycles from 0) until ``seconds`` are covered.

        ``stats``, if given, gets ``tokens``: the tokens sampled so far.

        The song opens with ``PREAMBLE`` and then ``prime`` (if given), both part of
        the output; pieces hold what ``FIRST_PIECE_TOKENS``, then twice as many, ... up to
        ``piece_tokens`` tokens decode to (the random draws do not depend on the sizes).
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
        rep = self.representation
        decoder = rep.stream_decoder()
        opening_tokens = rep.encode(opening, None)
        yield ApuWrites.concat([decoder.push(t) for t in opening_tokens]).between(0, end_cycle)
        engine = self.engine
        state = engine.new_state()
        engine.feed(state, opening_tokens)
        weights = self.checkpoint.match_weights
        matcher = MatchModel(rep.onsets) if weights else None
        if matcher is not None:
            for token in opening_tokens.tolist():
                matcher.push(token)
        clock = rep.cycles(opening_tokens)
        cycles = rep.token_cycles
        longest = int(min(FRAME_CYCLES, cycles.max()))
        recent = np.zeros(rep.max_tokens_per_frame, np.int64)  # clocks of the last tokens
        sampled = 0
        piece: list[ApuWrites] = []
        piece_tokens = min(FIRST_PIECE_TOKENS, self.piece_tokens)
        while clock < end_cycle:
            uniforms = rng.random(piece_tokens)
            piece_tokens = min(2 * piece_tokens, self.piece_tokens)
            for u in uniforms:
                allowed = decoder.valid_next()
                if rep.sampled is not None:
                    allowed = allowed & rep.sampled
                if sampled >= len(recent):
                    # The token len(recent) tokens ago must be a frame back: a model stuck
                    # on tokens that do not move time cannot flood the song (or the CPU).
                    need = min(int(recent[sampled % len(recent)]) + FRAME_CYCLES - clock, longest)
                    if need > 0:
                        later = allowed & (cycles >= need)
                        allowed = later if later.any() else allowed
                guess, weight = -1, 0.0
                if matcher is not None:
                    guess, length = matcher.prediction()
                    weight = weights[length_bucket(length)] if guess >= 0 else 0.0
                token = engine.pick(state, allowed, u, temperature, top_p, guess, weight)
                if clock + cycles[token] >= end_cycle:
                    clock = end_cycle
                    break
                clock += int(cycles[token])
                recent[sampled % len(recent)] = clock
                sampled += 1
                piece.append(decoder.push(token))
                engine.feed_one(state, token)
                if matcher is not None:
                    matcher.push(token)
            if stats is not None:
                stats["tokens"] = sampled
            writes = ApuWrites.concat(piece)
            piece = []
            if len(writes):
                yield writes.between(0, end_cycle)

    def sample(self, seconds: float, **options: Any) -> ApuWrites:
        """The whole song ``stream(seconds, **options)`` yields, as one ``ApuWrites``."""
        return ApuWrites.concat(list(self.stream(seconds, **options)))
