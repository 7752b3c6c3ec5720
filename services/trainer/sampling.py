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

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES, ApuWrites, register_snapshot
from gbsynth.trainer import representation
from gbsynth.trainer.checkpoint import LoadedCheckpoint
from gbsynth.trainer.engine import InferenceEngine, probability_share
from gbsynth.trainer.match import MatchModel, length_bucket
from gbsynth.trainer.song_plan import (
    KEY_NOTES,
    REGISTER_NOTES,
    SongPlan,
    key_bias,
    register_bias,
)

PREAMBLE = ApuWrites.from_arrays([0, 0, 0], [0xFF26, 0xFF24, 0xFF25], [0x80, 0x77, 0xFF])
"""NR52 = 0x80 (power on), NR50 = 0x77 (both master volumes full), NR51 = 0xFF (all panned on)."""

END_OF_TIME = 2**62
"""A cycle after any song's end."""
PIECE_TOKENS = 512
"""Tokens sampled between two yielded pieces."""
FIRST_PIECE_TOKENS = 32
"""Tokens of the first sampled piece; each next piece is twice as long up to
``PIECE_TOKENS``, so the first sound comes out after a few milliseconds of sampling."""
MAX_ONSET_SHARE = 0.9
"""At a row start, owed onsets raise the onsets' probability up to this share."""


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
        plan: SongPlan | None = None,
        stats: dict[str, int] | None = None,
    ) -> Iterator[ApuWrites]:
        """Yield consecutive pieces of a song (cycles from 0) until ``seconds`` are covered.

        ``plan`` (``gbsynth.trainer.song_plan``): rows and form; None: the seed's default
        (``SongPlan.for_seed``) for a representation that marks onsets, without a prime, else
        ``SongPlan.free()``. ``stats``, if given, gets ``tokens`` (tokens sampled so far)
        and ``owed_onsets`` (the onsets, in expectation, the network would have played off
        the rows and was offered again at the next row start).

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
        rep = self.representation
        primed = prime is not None and len(prime) > 0
        if plan is None:
            plan = SongPlan.default(seed, primed=primed, rows=rep.on_rows is not None)
        if plan.row_frames and rep.on_rows is None:
            raise SamplingError(f"the {rep.name} representation has no note onsets to put on rows")
        end_cycle = int(round(seconds * CPU_HZ))
        opening = ApuWrites.concat([PREAMBLE, prime]) if primed else PREAMBLE
        rng = np.random.default_rng(seed)
        composer = _Composer(self, opening, plan, rng, temperature, top_p, stats)
        yield composer.opening_writes.between(0, end_cycle)
        if not plan.form:
            for piece in composer.run_until(end_cycle):
                yield piece.between(0, end_cycle)
            return
        # Parts (sections, or their phrases): a new one continues the composed stream, one
        # heard before replays what was composed for it (module docstring of song_plan).
        length, origin = plan.part_cycles, composer.origin
        history = [composer.opening_writes]  # the composed stream, for replays
        carry = ApuWrites.empty()  # composed beyond the part being played
        composed = 0
        index = 0
        while origin + index * length < end_cycle:
            start = origin + index * length
            part = plan.part_of(index)
            if part == composed:
                lo = origin + composed * length
                hi, shift = lo + length, start - lo
                tails = []
                for piece in itertools.chain(
                    [carry], composer.run_until(min(hi, end_cycle - shift))
                ):
                    if piece is not carry:
                        history.append(piece)
                    here = piece.between(lo, hi)
                    if len(here):
                        yield here.shifted(shift).between(0, end_cycle)
                    tails.append(piece.between(hi, END_OF_TIME))
                carry = ApuWrites.concat(tails)
                composed += 1
            else:
                played = ApuWrites.concat(history)
                lo = origin + part * length
                snapshot = register_snapshot(played, lo).shifted(start)
                body = played.between(lo, lo + length).shifted(start - lo)
                yield ApuWrites.concat([snapshot, body]).between(0, end_cycle)
            index += 1

    def sample(self, seconds: float, **options: Any) -> ApuWrites:
        """The whole song ``stream(seconds, **options)`` yields, as one ``ApuWrites``."""
        return ApuWrites.concat(list(self.stream(seconds, **options)))


class _Composer:
    """One song's network stream: decoder, KV cache, match model, clock and rows."""

    def __init__(
        self, sampler: Sampler, opening: ApuWrites, plan: SongPlan, rng: np.random.Generator,
        temperature: float, top_p: float, stats: dict[str, int] | None,
    ) -> None:  # fmt: skip
        rep = sampler.representation
        self.rep, self.engine, self.rng, self.stats = rep, sampler.engine, rng, stats
        self.temperature, self.top_p = float(temperature), float(top_p)
        self.decoder = rep.stream_decoder()
        opening_tokens = rep.encode(opening, None)
        self.opening_writes = ApuWrites.concat([self.decoder.push(t) for t in opening_tokens])
        self.state = self.engine.new_state()
        self.engine.feed(self.state, opening_tokens)
        self.weights = sampler.checkpoint.match_weights
        self.matcher = MatchModel(rep.onsets) if self.weights else None
        if self.matcher is not None:
            for token in opening_tokens.tolist():
                self.matcher.push(token)
        self.clock = self.origin = rep.cycles(opening_tokens)
        self.cycles = rep.token_cycles
        self.longest = int(min(FRAME_CYCLES, self.cycles.max()))
        self.recent = np.zeros(rep.max_tokens_per_frame, np.int64)  # clocks of the last tokens
        self.row_cycles = plan.row_cycles
        timed = np.flatnonzero(self.cycles > 0)
        self.time_token = {int(self.cycles[t]): int(t) for t in timed[::-1]}
        self.sampled = 0
        self.owed = 0.0  # onsets (expected) the network would have played off the row
        self.owed_total = 0.0
        pitched = plan.keep_key and rep.note_pitches is not None
        self.key_notes = np.zeros(12) if pitched else None  # notes per pitch class so far
        self.channel_notes: dict[int, list[int]] | None = {} if pitched else None
        self.biases: dict[str, np.ndarray] = {}  # the key's, each channel register's
        self.registers: dict[int, float] = {}  # each tone channel's register centre (MIDI)
        # The key and registers choose among a channel's notes, or among its pitch moves
        # (arpeggio steps, slides), not between playing a note and not: each channel's
        # onsets are one group, its other pitch tokens another (one group for both moved
        # the mass of out-of-key notes to pitch moves without a trigger: fewer notes).
        self.bias_groups = None
        if pitched:
            channels = rep.note_channels.astype(np.int64)
            if rep.jump_channels is not None:
                channels = np.where(channels >= 0, channels, rep.jump_channels)
            groups = np.where(channels >= 0, 2 * channels + rep.onsets, -1)
            self.bias_groups = groups.astype(np.int8)
        self.bias: np.ndarray | None = None
        self.shapes_left: int | None = None  # new wave shapes the plan still allows; None: any
        self.new_shape = -1  # the token that writes one
        if plan.wave_shapes and rep.new_wave_shape is not None:
            self.new_shape = int(np.flatnonzero(rep.new_wave_shape)[0])
            self.recent_shapes = np.flatnonzero(rep.recent_wave_shapes)  # tokens that reload one
            written = int(np.count_nonzero(opening_tokens == self.new_shape))
            self.shapes_left = plan.wave_shapes - written
        # Channels that started a note at the current instant: a second start there would
        # replace the first unheard (recordings hardly hold one; sampled songs did).
        self.started = 0  # bit c: channel c
        self.onset_channels = rep.onset_channels
        self.started_masks: dict[int, np.ndarray] = {}
        self.piece_tokens = min(FIRST_PIECE_TOKENS, sampler.piece_tokens)
        self.max_piece_tokens = sampler.piece_tokens

    def _rows(self, allowed: np.ndarray) -> np.ndarray:
        """What may come next under the plan's rows: off a row's first frame, no onset (the
        probability the network gave them is owed to the next row start); in it, the
        owed onsets offered again, on top of what the network gives them now."""
        rep, state = self.rep, self.state
        into_row = (self.clock - self.origin) % self.row_cycles
        if into_row < FRAME_CYCLES and self.owed <= 0:
            return allowed  # most steps: on a row with nothing owed
        onsets = rep.onsets & allowed
        if into_row < FRAME_CYCLES and not onsets.any():
            return allowed
        onset_share = probability_share(state.logits, allowed, onsets)
        if into_row >= FRAME_CYCLES:
            self.owed += onset_share
            self.owed_total += onset_share
            kept = allowed & ~rep.on_rows
            return kept if kept.any() else allowed
        want = min(MAX_ONSET_SHARE, onset_share + self.owed)
        if 0.0 < onset_share < want:  # raise the onsets' odds so they hold ``want``
            odds = want * (1.0 - onset_share) / (onset_share * (1.0 - want))
            state.logits[onsets] += np.float32(np.log(odds))
        return allowed

    def _one_start_per_channel(self, allowed: np.ndarray) -> np.ndarray:
        """``allowed`` without the onsets of the channels that started a note at this instant."""
        mask = self.started_masks.get(self.started)
        if mask is None:
            channels = [c for c in range(self.started.bit_length()) if self.started >> c & 1]
            mask = ~np.isin(self.onset_channels, channels)
            self.started_masks[self.started] = mask
        kept = allowed & mask
        return kept if kept.any() else allowed

    def _instruments(self, allowed: np.ndarray) -> np.ndarray:
        """With the song's wave shapes all written, no new one: the probability the network
        gives one goes to loading a shape written before (those keep their odds among
        themselves; when there is none to load, it is spread over everything else)."""
        if not allowed[self.new_shape]:
            return allowed
        kept = allowed.copy()
        kept[self.new_shape] = False
        recent = self.recent_shapes[kept[self.recent_shapes]]
        if len(recent):
            logits = self.state.logits
            top = max(float(logits[recent].max()), float(logits[self.new_shape]))
            reuse = np.exp(logits[recent].astype(np.float64) - top).sum()
            new = np.exp(float(logits[self.new_shape]) - top)
            logits[recent] += np.float32(np.log1p(new / reuse))
        return kept if kept.any() else allowed

    def _row_step(self, token: int, allowed: np.ndarray) -> int:
        """``token``, or if it moves time past the next row start, the step to that start
        (each row start is a decision, as in a tracker); settles what is owed."""
        if self.rep.onsets[token]:
            self.owed = max(0.0, self.owed - 1.0)
        step = int(self.cycles[token])
        if step <= 0:
            return token
        into_row = (self.clock - self.origin) % self.row_cycles
        to_start = self.row_cycles - into_row
        if step > to_start:
            stop = self.time_token.get(to_start, -1)
            if stop >= 0 and allowed[stop]:
                token, step = stop, to_start
        if into_row < FRAME_CYCLES <= into_row + step < self.row_cycles:
            self.owed = 0.0  # the row start is over: what it did not play is forgotten
        return token

    def run_until(self, stop_cycle: int) -> Iterator[ApuWrites]:
        """Sample until the clock reaches ``stop_cycle``; yield the writes in pieces."""
        rep, engine, state, decoder = self.rep, self.engine, self.state, self.decoder
        cycles = self.cycles
        temperature, top_p = self.temperature, self.top_p
        recent = self.recent
        piece: list[ApuWrites] = []
        count = 0
        while self.clock < stop_cycle:
            allowed = decoder.valid_next()
            if rep.sampled is not None:
                allowed = allowed & rep.sampled
            if self.sampled >= len(recent):
                # The token len(recent) tokens ago must be a frame back: a model stuck
                # on tokens that do not move time cannot flood the song (or the CPU).
                need = min(
                    int(recent[self.sampled % len(recent)]) + FRAME_CYCLES - self.clock,
                    self.longest,
                )
                if need > 0:
                    later = allowed & (cycles >= need)
                    allowed = later if later.any() else allowed
            guess, weight = -1, 0.0
            if self.matcher is not None:
                guess, length = self.matcher.prediction()
                weight = self.weights[length_bucket(length)] if guess >= 0 else 0.0
            u = self.rng.random()  # drawn even when unused: a seed's draws stay in step
            if self.started:
                allowed = self._one_start_per_channel(allowed)
            if self.row_cycles:
                allowed = self._rows(allowed)
            if self.shapes_left is not None and self.shapes_left <= 0:
                allowed = self._instruments(allowed)
            token = engine.pick(
                state, allowed, u, temperature, top_p, guess, weight, self.bias,
                self.bias_groups,
            )  # fmt: skip
            if self.row_cycles:
                token = self._row_step(token, allowed)
            if token == self.new_shape and self.shapes_left is not None:
                self.shapes_left -= 1
            if self.channel_notes is not None and self.rep.note_pitches[token] >= 0:
                self._settle_pitch(token)
            if cycles[token] > 0:
                self.started = 0
            elif self.onset_channels is not None and self.onset_channels[token] >= 0:
                self.started |= 1 << int(self.onset_channels[token])
            self.clock += int(cycles[token])
            recent[self.sampled % len(recent)] = self.clock
            self.sampled += 1
            piece.append(decoder.push(token))
            engine.feed_one(state, token)
            if self.matcher is not None:
                self.matcher.push(token)
            count += 1
            if count == self.piece_tokens or self.clock >= stop_cycle:
                self._report()
                self.piece_tokens = min(2 * self.piece_tokens, self.max_piece_tokens)
                count = 0
                writes = ApuWrites.concat(piece)
                piece = []
                if len(writes):
                    yield writes

    def _settle_pitch(self, token: int) -> None:
        """Count the network's first notes: after ``KEY_NOTES`` fix the key, after a
        channel's first ``REGISTER_NOTES`` its register (``song_plan``)."""
        rep = self.rep
        pitch = int(rep.note_pitches[token])
        channel = int(rep.note_channels[token])
        if "key" not in self.biases:
            self.key_notes[pitch % 12] += 1
            if self.key_notes.sum() >= KEY_NOTES and np.count_nonzero(self.key_notes) >= 2:
                self.biases["key"], _ = key_bias(self.key_notes, rep.note_pitches)
        notes = self.channel_notes.setdefault(channel, [])
        if len(notes) < REGISTER_NOTES:
            notes.append(pitch)
            if len(notes) == REGISTER_NOTES:
                self.registers[channel] = float(np.median(notes))
                self.biases[f"register {channel}"] = register_bias(
                    channel, self.registers[channel], rep.note_pitches, rep.note_channels
                )
        if channel in self.registers and rep.jump_offsets is not None:
            # Arpeggio steps count from this note until the channel's next one.
            self.biases[f"steps {channel}"] = register_bias(
                channel, self.registers[channel] - pitch, rep.jump_offsets, rep.jump_channels
            )
        self.bias = sum(self.biases.values()) if self.biases else None

    def _report(self) -> None:
        if self.stats is not None:
            self.stats.update(tokens=self.sampled, owed_onsets=round(self.owed_total, 2))
