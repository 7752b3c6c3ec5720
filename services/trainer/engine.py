"""Fast incremental inference for ``GPT``: the same network, one token at a time, in numba.

A torch step for one position costs microseconds per operator call and there
are ~60 calls per token; here the whole step (embedding, every layer against a
ring-buffer KV cache, the tied output head) and the sampling loop, with the
representation's grammar automaton, are one compiled function over float32
weight arrays.

``InferenceEngine`` copies the weights out of a ``GPT`` once (it is read-only
afterwards, so threads may share it); each song owns a ``DecodeState`` (cache,
position, clock, grammar state, last logits). Random numbers come in as arrays
drawn by the caller's own generator, so results do not depend on any global RNG.
``GPT.step`` (torch) is the reference the tests compare this against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from gbsynth.common.events import FRAME_CYCLES
from gbsynth.trainer import representation
from gbsynth.trainer.model import GPT

_F = np.float32
_LN_EPS = 1e-5
_GELU_C = math.sqrt(2.0 / math.pi)


@numba.njit(cache=True, fastmath=True, nogil=True, inline="always")
def _matvec(w, b, x, out):  # pragma: no cover - compiled
    for i in range(w.shape[0]):
        acc = np.float32(0.0)
        for j in range(w.shape[1]):
            acc += w[i, j] * x[j]
        out[i] = acc + b[i]


@numba.njit(cache=True, fastmath=True, nogil=True)
def _layernorm(x, w, b, out):  # pragma: no cover - compiled
    n = x.shape[0]
    mean = np.float32(0.0)
    for i in range(n):
        mean += x[i]
    mean /= n
    var = np.float32(0.0)
    for i in range(n):
        var += (x[i] - mean) * (x[i] - mean)
    inv = np.float32(1.0) / np.sqrt(var / n + np.float32(_LN_EPS))
    for i in range(n):
        out[i] = (x[i] - mean) * inv * w[i] + b[i]


@numba.njit(cache=True, fastmath=True, nogil=True)
def _gelu(x):  # pragma: no cover - compiled
    for i in range(x.shape[0]):
        v = x[i]
        x[i] = (
            np.float32(0.5)
            * v
            * (
                np.float32(1.0)
                + np.tanh(np.float32(_GELU_C) * (v + np.float32(0.044715) * v * v * v))
            )
        )


@numba.njit(cache=True, fastmath=True, nogil=True)
def _step(
    token, position, window,
    wte,
    ln1_w, ln1_b, w_qkv, b_qkv, w_o, b_o, ln2_w, ln2_b, w_fc, b_fc, w_proj, b_proj,
    lnf_w, lnf_b, inv_freq, cache_k, cache_v, h_out,
):  # fmt: skip  # pragma: no cover - compiled
    """Feed one token at ``position``; write the final hidden state into ``h_out``."""
    n_layer, n_head, head_dim, _ = cache_k.shape
    d = wte.shape[1]
    half = head_dim // 2
    x = wte[token].copy()
    xn = np.empty(d, _F)
    qkv = np.empty(3 * d, _F)
    y = np.empty(d, _F)
    o = np.empty(d, _F)
    hidden = np.empty(w_fc.shape[1], _F)
    cos = np.empty(half, _F)
    sin = np.empty(half, _F)
    for i in range(half):
        angle = position * inv_freq[i]  # float64: exact for long songs
        cos[i] = math.cos(angle)
        sin[i] = math.sin(angle)
    slot = position % window
    n = min(position + 1, window)
    scale = np.float32(1.0 / math.sqrt(head_dim))
    scores = np.empty(window, _F)
    for layer in range(n_layer):
        _layernorm(x, ln1_w[layer], ln1_b[layer], xn)
        _matvec(w_qkv[layer], b_qkv[layer], xn, qkv)
        for hd in range(n_head):
            base = hd * head_dim
            keys = cache_k[layer, hd]  # (head_dim, window): contiguous along time
            values = cache_v[layer, hd]
            for i in range(half):
                q1, q2 = qkv[base + i], qkv[base + half + i]
                qkv[base + i] = q1 * cos[i] - q2 * sin[i]
                qkv[base + half + i] = q1 * sin[i] + q2 * cos[i]
                k1, k2 = qkv[d + base + i], qkv[d + base + half + i]
                keys[i, slot] = k1 * cos[i] - k2 * sin[i]
                keys[half + i, slot] = k1 * sin[i] + k2 * cos[i]
            for i in range(head_dim):
                values[i, slot] = qkv[2 * d + base + i]
            # Time-major loops (the inner one runs along the cache) vectorise.
            for t in range(n):
                scores[t] = 0.0
            for i in range(head_dim):
                qi = qkv[base + i] * scale
                row = keys[i]
                for t in range(n):
                    scores[t] += qi * row[t]
            best = np.float32(-np.inf)
            for t in range(n):
                best = max(best, scores[t])
            total = np.float32(0.0)
            for t in range(n):
                e = np.exp(scores[t] - best)
                scores[t] = e
                total += e
            inv_total = np.float32(1.0) / total
            for i in range(head_dim):
                row = values[i]
                acc = np.float32(0.0)
                for t in range(n):
                    acc += scores[t] * row[t]
                y[base + i] = acc * inv_total
        _matvec(w_o[layer], b_o[layer], y, o)
        x += o
        _layernorm(x, ln2_w[layer], ln2_b[layer], xn)
        _matvec(w_fc[layer], b_fc[layer], xn, hidden)
        _gelu(hidden)
        _matvec(w_proj[layer], b_proj[layer], hidden, o)
        x += o
    _layernorm(x, lnf_w, lnf_b, h_out)


@numba.njit(cache=True, fastmath=True, nogil=True)
def _pick(logits, temperature, top_p, u, probs, order):  # pragma: no cover - compiled
    """Index from ``logits``: argmax at temperature 0, else nucleus sampling with uniform ``u``."""
    n = logits.shape[0]
    if temperature <= 0.0:
        return int(np.argmax(logits))
    best = np.max(logits)
    total = 0.0
    for i in range(n):
        p = math.exp((logits[i] - best) / temperature)
        probs[i] = p
        total += p
    if top_p < 1.0:
        order[:n] = np.argsort(-probs[:n], kind="mergesort")  # stable: deterministic ties
        kept = 0.0
        cut = 0
        while cut < n:
            kept += probs[order[cut]]
            cut += 1
            if kept >= top_p * total:
                break
        target = u * kept
        acc = 0.0
        for r in range(cut):
            acc += probs[order[r]]
            if acc > target:
                return int(order[r])
        return int(order[cut - 1])
    target = u * total
    acc = 0.0
    for i in range(n):
        acc += probs[i]
        if acc > target:
            return i
    return n - 1


@numba.njit(cache=True, fastmath=True, nogil=True)
def _sample(
    state_i, state_h, logits, recent, max_tokens, end_clock, temperature, top_p, uniforms, out,
    wte, ln1_w, ln1_b, w_qkv, b_qkv, w_o, b_o, ln2_w, ln2_b, w_fc, b_fc, w_proj, b_proj,
    lnf_w, lnf_b, inv_freq, cache_k, cache_v,
    token_cycles, grammar_mask, next_state, max_guard_cycles,
):  # fmt: skip  # pragma: no cover - compiled
    """Sample up to ``max_tokens`` tokens into ``out`` (token, cycle after it).

    ``state_i`` is ``[position, clock, grammar state, tokens sampled]``; ``logits`` the
    next-token logits after the last token fed. Stops early (returning the count) when
    the clock would reach ``end_clock``; the token that would is not kept. ``recent``
    rings the times of the last tokens: no frame may hold more than ``len(recent)``.
    """
    ring = recent.shape[0]
    window = cache_k.shape[3]
    vocab = wte.shape[0]
    masked = np.empty(vocab, _F)
    probs = np.empty(vocab, np.float64)
    order = np.empty(vocab, np.int64)
    zero_bias = np.zeros(vocab, _F)
    count = 0
    while count < max_tokens:
        state = state_i[2]
        for i in range(vocab):
            masked[i] = logits[i] + grammar_mask[state, i]
        if state_i[3] >= ring:
            # The token `ring` tokens ago must be a frame back: a model stuck repeating a
            # token without moving time cannot flood the song (or the sampling time).
            need = min(recent[state_i[3] % ring] + FRAME_CYCLES - state_i[1], max_guard_cycles)
            # Only where the grammar allows a long enough token instead.
            if need > 0 and _allows_time(grammar_mask[state], token_cycles, need):
                for i in range(vocab):
                    if token_cycles[i] < need:
                        masked[i] = -np.inf
        token = _pick(masked, temperature, top_p, uniforms[count], probs, order)
        clock = state_i[1] + token_cycles[token]
        if clock >= end_clock:
            state_i[1] = end_clock
            break
        out[count, 0] = token
        out[count, 1] = clock
        count += 1
        state_i[1] = clock
        recent[state_i[3] % ring] = clock
        state_i[3] += 1
        state_i[2] = next_state[state, token]
        _step(
            token, state_i[0], window, wte,
            ln1_w, ln1_b, w_qkv, b_qkv, w_o, b_o, ln2_w, ln2_b, w_fc, b_fc, w_proj, b_proj,
            lnf_w, lnf_b, inv_freq, cache_k, cache_v, state_h,
        )  # fmt: skip
        _matvec(wte, zero_bias, state_h, logits)
        state_i[0] += 1
    return count


@numba.njit(cache=True, fastmath=True, nogil=True)
def _allows_time(mask_row, token_cycles, need):  # pragma: no cover - compiled
    for i in range(mask_row.shape[0]):
        if mask_row[i] == 0.0 and token_cycles[i] >= need:
            return True
    return False


def _np(t) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=_F)


@dataclass
class DecodeState:
    """One song in progress: KV cache, counters, next-token logits after the last token."""

    cache_k: np.ndarray
    cache_v: np.ndarray
    counters: np.ndarray
    """int64 ``[position, clock, grammar state, tokens sampled]``"""
    hidden: np.ndarray
    logits: np.ndarray
    recent: np.ndarray
    """int64 ring of the times of the last ``max_tokens_per_frame`` sampled tokens"""

    @property
    def position(self) -> int:
        return int(self.counters[0])

    @property
    def clock(self) -> int:
        return int(self.counters[1])

    @property
    def grammar_state(self) -> int:
        return int(self.counters[2])


class InferenceEngine:
    """The weights of a ``GPT`` as float32 arrays, and compiled step and sampling loops."""

    def __init__(self, model: GPT) -> None:
        c = model.config
        self.config = c
        self.representation = representation.get(c.representation)
        blocks = model.blocks

        def stack(get) -> np.ndarray:
            return np.ascontiguousarray(np.stack([_np(get(b)) for b in blocks]))

        self._trunk = (
            _np(model.wte.weight),
            stack(lambda b: b.ln_1.weight), stack(lambda b: b.ln_1.bias),
            stack(lambda b: b.attn.c_attn.weight), stack(lambda b: b.attn.c_attn.bias),
            stack(lambda b: b.attn.c_proj.weight), stack(lambda b: b.attn.c_proj.bias),
            stack(lambda b: b.ln_2.weight), stack(lambda b: b.ln_2.bias),
            stack(lambda b: b.mlp.c_fc.weight), stack(lambda b: b.mlp.c_fc.bias),
            stack(lambda b: b.mlp.c_proj.weight), stack(lambda b: b.mlp.c_proj.bias),
            _np(model.ln_f.weight), _np(model.ln_f.bias),
        )  # fmt: skip
        head_dim = c.n_embd // c.n_head
        self._inv_freq = c.rope_base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
        rep = self.representation
        self._token_cycles = np.ascontiguousarray(rep.token_cycles, dtype=np.int64)
        self._grammar_mask = np.where(rep.allowed, 0.0, -np.inf).astype(_F)
        self._next_state = np.ascontiguousarray(rep.next_state, dtype=np.int64)
        self._max_guard_cycles = int(min(FRAME_CYCLES, self._token_cycles.max()))
        self._zero_bias = np.zeros(c.vocab_size, _F)

    def new_state(self, window: int | None = None) -> DecodeState:
        c = self.config
        # Keys and values time-major per head: (layer, head, head_dim, window).
        shape = (c.n_layer, c.n_head, c.n_embd // c.n_head, window or c.block_size)
        counters = np.zeros(4, np.int64)
        counters[2] = self.representation.start_state
        return DecodeState(
            np.zeros(shape, _F),
            np.zeros(shape, _F),
            counters,
            np.zeros(c.n_embd, _F),
            np.zeros(c.vocab_size, _F),
            np.zeros(self.representation.max_tokens_per_frame, np.int64),
        )

    def feed(self, state: DecodeState, tokens: np.ndarray) -> None:
        """Run known tokens (a prime) through the model, advancing position, clock and grammar."""
        for token in np.asarray(tokens, dtype=np.int64):
            _step(
                token, state.counters[0], state.cache_k.shape[3], *self._trunk,
                self._inv_freq, state.cache_k, state.cache_v, state.hidden,
            )  # fmt: skip
            state.counters[0] += 1
            state.counters[1] += self._token_cycles[token]
            state.counters[2] = self._next_state[state.counters[2], token]
        _matvec(self._trunk[0], self._zero_bias, state.hidden, state.logits)

    def sample(
        self,
        state: DecodeState,
        uniforms: np.ndarray,
        end_clock: int,
        temperature: float,
        top_p: float,
    ) -> np.ndarray:
        """Sample up to ``len(uniforms)`` tokens (stopping before ``end_clock``).

        ``uniforms`` is ``(n,)`` float64 in [0, 1). Returns ``(k, 2)`` int64 rows
        ``token, cycle`` (the clock after each token).
        """
        if state.position == 0:
            raise ValueError("feed at least one token (the opening) before sampling")
        uniforms = np.ascontiguousarray(uniforms, dtype=np.float64)
        out = np.empty((len(uniforms), 2), np.int64)
        count = _sample(
            state.counters, state.hidden, state.logits, state.recent, len(uniforms),
            int(end_clock), float(temperature), float(top_p), uniforms, out, *self._trunk,
            self._inv_freq, state.cache_k, state.cache_v, self._token_cycles,
            self._grammar_mask, self._next_state, self._max_guard_cycles,
        )  # fmt: skip
        return out[:count]
