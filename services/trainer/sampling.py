"""Sampling songs from a checkpoint, event by event, with a sliding-window KV cache.

Every song opens with ``PREAMBLE`` (APU on, master volume up, every channel to
both speakers), so even an untrained model's output is audible, followed by
the optional ``prime`` (writes from cycle 0 on, e.g. the opening of a real
song); the model continues from there. Output is legal by construction: a
``reg`` token names one of 0xFF10-0xFF3F or a wait. Two constraints keep a
song playing: the sampler never picks the unused addresses 0xFF27-0xFF2F and
never writes NR52 with the power bit clear (which would silence the rest of
the song).

Determinism and threads: each ``stream`` call owns its random generator
(``numpy.random.Generator`` seeded with ``seed``) and its KV cache; the model is
only read. So calls may run in parallel threads, and the same checkpoint, seed
and arguments always give the same song.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from gbsynth.common.events import CPU_HZ, REGISTER_FIRST, ApuWrites
from gbsynth.trainer import tokens
from gbsynth.trainer.checkpoint import LoadedCheckpoint

PREAMBLE = ApuWrites.from_arrays([0, 0, 0], [0xFF26, 0xFF24, 0xFF25], [0x80, 0x77, 0xFF])
"""NR52 = 0x80 (power on), NR50 = 0x77 (both master volumes full), NR51 = 0xFF (all panned on)."""

PIECE_EVENTS = 512
"""Events sampled between two yielded pieces (about half a second of typical music)."""


class SamplingError(ValueError):
    """Bad sampling arguments (negative length, temperature, top_p out of range)."""


def _pick(logits: torch.Tensor, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """One index from ``logits``: greedy at temperature 0, else nucleus (top-p) sampling."""
    if temperature <= 0.0:
        return int(torch.argmax(logits))
    scaled = logits.numpy().astype(np.float64) / temperature
    probs = np.exp(scaled - scaled.max())
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        ranked = probs[order]
        cumulative = np.cumsum(ranked)
        # Keep the smallest prefix whose mass reaches top_p (at least one entry).
        cut = int(np.searchsorted(cumulative, top_p * cumulative[-1])) + 1
        kept = np.cumsum(ranked[:cut])
        return int(order[min(int(np.searchsorted(kept, rng.random() * kept[-1], "right")),
                             cut - 1)])  # fmt: skip
    cumulative = np.cumsum(probs)
    index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    return min(index, len(probs) - 1)


class Sampler:
    """Samples songs from a loaded checkpoint (thread-safe: no shared mutable state)."""

    def __init__(self, checkpoint: LoadedCheckpoint, *, piece_events: int = PIECE_EVENTS) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self.model.eval()
        self.config = checkpoint.config
        self.step = checkpoint.step
        self.piece_events = max(1, piece_events)
        reg_mask = torch.zeros(self.config.n_reg)
        reg_mask[list(tokens.UNUSED_REGISTER_TOKENS)] = float("-inf")
        self._reg_mask = reg_mask
        nr52_mask = torch.zeros(self.config.n_val)
        nr52_mask[:0x80] = float("-inf")  # power bit clear
        self._nr52_mask = nr52_mask

    def stream(
        self,
        seconds: float,
        *,
        temperature: float = 1.0,
        top_p: float = 0.95,
        seed: int = 0,
        prime: ApuWrites | None = None,
    ) -> Iterator[ApuWrites]:
        """Yield consecutive pieces of a song (cycles from 0) until ``seconds`` are covered."""
        if not seconds >= 0 or seconds == float("inf"):
            raise SamplingError(f"seconds must be a finite number >= 0, not {seconds}")
        if not temperature >= 0:
            raise SamplingError(f"temperature must be >= 0, not {temperature}")
        if not 0.0 < top_p <= 1.0:
            raise SamplingError(f"top_p must be in (0, 1], not {top_p}")
        end_cycle = int(round(seconds * CPU_HZ))
        rng = np.random.default_rng(seed)
        opening = PREAMBLE if prime is None or not len(prime) else ApuWrites.concat(
            [PREAMBLE, prime]
        )
        opening_events = tokens.encode(opening)
        with torch.inference_mode():
            cache = self.model.new_cache()
            h = None
            for event in torch.from_numpy(opening_events):
                h = self.model.step(event, cache)
            clock = tokens.duration_cycles(opening_events)
            decoded = tokens.decode(opening_events)
            yield decoded.between(0, end_cycle)
            if clock >= end_cycle:
                return
            yield from self._continue(h, cache, clock, end_cycle, temperature, top_p, rng)

    def _continue(self, h, cache, clock, end_cycle, temperature, top_p, rng) -> Iterator[ApuWrites]:
        model, heads = self.model, self.model.heads
        dt_cycles = tokens.DT_CYCLES
        cycles: list[int] = []
        registers: list[int] = []
        values: list[int] = []
        event = torch.zeros(3, dtype=torch.long)
        while True:
            dt = _pick(heads.dt_logits(h), temperature, top_p, rng)
            clock += int(dt_cycles[dt])
            if clock >= end_cycle:
                break
            dt_t = torch.tensor(dt)
            reg_logits = heads.reg_logits(h, dt_t) + self._reg_mask
            reg = _pick(reg_logits, temperature, top_p, rng)
            val_logits = heads.val_logits(h, dt_t, torch.tensor(reg))
            if reg == tokens.NR52_TOKEN:
                val_logits = val_logits + self._nr52_mask
            val = _pick(val_logits, temperature, top_p, rng) if reg != tokens.WAIT else 0
            if reg != tokens.WAIT:
                cycles.append(clock)
                registers.append(REGISTER_FIRST + reg)
                values.append(val)
                if len(cycles) >= self.piece_events:
                    yield ApuWrites.from_arrays(cycles, registers, values, validate=False)
                    cycles, registers, values = [], [], []
            event[0], event[1], event[2] = dt, reg, val
            h = model.step(event, cache)
        if cycles:
            yield ApuWrites.from_arrays(cycles, registers, values, validate=False)

    def sample(self, seconds: float, **options) -> ApuWrites:
        """The whole song ``stream(seconds, **options)`` yields, as one ``ApuWrites``."""
        return ApuWrites.concat(list(self.stream(seconds, **options)))
