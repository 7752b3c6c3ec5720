"""Fast incremental inference for ``GPT``: the same network, one event at a time, in numba.

Sampling is one model step per register write, about 1,000 a second of music.
A torch step for one position costs microseconds per operator call and there
are ~60 calls per event; here the whole step (embedding, every layer against a
ring-buffer KV cache, the three heads) and the sampling loop are one compiled
function over float32 weight arrays, about 0.2 ms per event on one core.

``InferenceEngine`` copies the weights out of a ``GPT`` once (it is read-only
afterwards, so threads may share it); each song owns a ``DecodeState`` (cache,
position, clock, last hidden state). Random numbers come in as arrays drawn by
the caller's own generator, so results do not depend on any global RNG.
``GPT.step`` (torch) is the reference the tests compare this against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from gbsynth.common.events import FRAME_CYCLES
from gbsynth.trainer import tokens
from gbsynth.trainer.model import GPT

_F = np.float32
MAX_WRITES_PER_FRAME = 64
"""Sampling never puts more writes than this in any span of one frame (70,224 cycles):
3,840 per second, above real music's bursts (a wave RAM load and every channel's
registers fit in 40) and a bound on the cost of a second of music."""
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
    dt, reg, val, position, window,
    emb_dt, emb_reg, emb_val,
    ln1_w, ln1_b, w_qkv, b_qkv, w_o, b_o, ln2_w, ln2_b, w_fc, b_fc, w_proj, b_proj,
    lnf_w, lnf_b, inv_freq, cache_k, cache_v, h_out,
):  # fmt: skip  # pragma: no cover - compiled
    """Feed one event at ``position``; write the final hidden state into ``h_out``."""
    n_layer, n_head, head_dim, _ = cache_k.shape
    d = emb_dt.shape[1]
    half = head_dim // 2
    x = emb_dt[dt] + emb_reg[reg] + emb_val[val]
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
def _gelu_matvec_head(w_in, b_in, extra, w_out, b_out, h, tmp, logits):  # pragma: no cover
    _matvec(w_in, b_in, h, tmp)
    tmp += extra
    _gelu(tmp)
    _matvec(w_out, b_out, tmp, logits)


@numba.njit(cache=True, fastmath=True, nogil=True)
def _sample(
    state_i, state_h, recent, max_events, end_clock, temperature, top_p, uniforms, out,
    emb_dt, emb_reg, emb_val,
    ln1_w, ln1_b, w_qkv, b_qkv, w_o, b_o, ln2_w, ln2_b, w_fc, b_fc, w_proj, b_proj,
    lnf_w, lnf_b, inv_freq, cache_k, cache_v,
    head_dt_w, head_dt_b, reg_in_w, reg_in_b, reg_dt, reg_w, reg_b,
    val_in_w, val_in_b, val_dt, val_reg, val_w, val_b,
    dt_cycles, reg_mask, nr52_mask, nr52_token, wait_token,
):  # fmt: skip  # pragma: no cover - compiled
    """Sample up to ``max_events`` events into ``out`` (dt, reg, val, cycle).

    ``state_i`` is ``[position, clock, writes]``; stops early (returning the count) when
    the clock would reach ``end_clock``; the event that would is not kept. ``recent``
    rings the times of the last writes: no frame may hold more than ``len(recent)``.
    """
    ring = recent.shape[0]
    window = cache_k.shape[3]
    d = emb_dt.shape[1]
    tmp = np.empty(d, _F)
    dt_logits = np.empty(dt_cycles.shape[0], _F)
    reg_logits = np.empty(reg_w.shape[0], _F)
    val_logits = np.empty(val_w.shape[0], _F)
    probs = np.empty(max(dt_logits.shape[0], val_logits.shape[0]), np.float64)
    order = np.empty(probs.shape[0], np.int64)
    count = 0
    while count < max_events:
        u = uniforms[count]
        _matvec(head_dt_w, head_dt_b, state_h, dt_logits)
        if state_i[2] >= ring:
            # The write `ring` writes ago must be a frame back: a model stuck repeating a
            # write every few cycles cannot flood the song (or the sampling time).
            need = recent[state_i[2] % ring] + FRAME_CYCLES - state_i[1]
            for b in range(dt_cycles.shape[0]):
                if dt_cycles[b] >= need:
                    break
                dt_logits[b] = -np.inf
        dt = _pick(dt_logits, temperature, top_p, u[0], probs, order)
        clock = state_i[1] + dt_cycles[dt]
        if clock >= end_clock:
            state_i[1] = end_clock
            break
        _gelu_matvec_head(reg_in_w, reg_in_b, reg_dt[dt], reg_w, reg_b, state_h, tmp, reg_logits)
        reg_logits += reg_mask
        reg = _pick(reg_logits, temperature, top_p, u[1], probs, order)
        val = 0
        if reg != wait_token:
            _gelu_matvec_head(
                val_in_w, val_in_b, val_dt[dt] + val_reg[reg], val_w, val_b, state_h, tmp,
                val_logits,
            )  # fmt: skip
            if reg == nr52_token:
                val_logits += nr52_mask
            val = _pick(val_logits, temperature, top_p, u[2], probs, order)
        out[count, 0] = dt
        out[count, 1] = reg
        out[count, 2] = val
        out[count, 3] = clock
        count += 1
        state_i[1] = clock
        if reg != wait_token:
            recent[state_i[2] % ring] = clock
            state_i[2] += 1
        _step(
            dt, reg, val, state_i[0], window, emb_dt, emb_reg, emb_val,
            ln1_w, ln1_b, w_qkv, b_qkv, w_o, b_o, ln2_w, ln2_b, w_fc, b_fc, w_proj, b_proj,
            lnf_w, lnf_b, inv_freq, cache_k, cache_v, state_h,
        )  # fmt: skip
        state_i[0] += 1
    return count


def _np(t) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=_F)


@dataclass
class DecodeState:
    """One song in progress: KV cache, position, clock, hidden state after the last event."""

    cache_k: np.ndarray
    cache_v: np.ndarray
    counters: np.ndarray
    """int64 ``[position, clock, writes]``"""
    hidden: np.ndarray
    recent: np.ndarray
    """int64 ring of the last ``MAX_WRITES_PER_FRAME`` write times"""

    @property
    def position(self) -> int:
        return int(self.counters[0])

    @property
    def clock(self) -> int:
        return int(self.counters[1])


class InferenceEngine:
    """The weights of a ``GPT`` as float32 arrays, and compiled step and sampling loops."""

    def __init__(self, model: GPT) -> None:
        c = model.config
        self.config = c
        blocks = model.blocks

        def stack(get) -> np.ndarray:
            return np.ascontiguousarray(np.stack([_np(get(b)) for b in blocks]))

        self._trunk = (
            _np(model.emb_dt.weight), _np(model.emb_reg.weight), _np(model.emb_val.weight),
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
        hd = model.heads
        self._heads = (
            _np(hd.dt.weight), _np(hd.dt.bias),
            _np(hd.reg_in.weight), _np(hd.reg_in.bias), _np(hd.reg_dt.weight),
            _np(hd.reg.weight), _np(hd.reg.bias),
            _np(hd.val_in.weight), _np(hd.val_in.bias), _np(hd.val_dt.weight),
            _np(hd.val_reg.weight), _np(hd.val.weight), _np(hd.val.bias),
        )  # fmt: skip
        self.reg_mask = np.zeros(c.n_reg, _F)
        self.reg_mask[list(tokens.UNUSED_REGISTER_TOKENS)] = -np.inf
        self.nr52_mask = np.zeros(c.n_val, _F)
        self.nr52_mask[:0x80] = -np.inf  # never switch the APU off
        self._dt_cycles = tokens.DT_CYCLES.astype(np.int64)

    def new_state(self, window: int | None = None) -> DecodeState:
        c = self.config
        # Keys and values time-major per head: (layer, head, head_dim, window).
        shape = (c.n_layer, c.n_head, c.n_embd // c.n_head, window or c.block_size)
        return DecodeState(
            np.zeros(shape, _F),
            np.zeros(shape, _F),
            np.zeros(3, np.int64),
            np.zeros(c.n_embd, _F),
            np.zeros(MAX_WRITES_PER_FRAME, np.int64),
        )

    def feed(self, state: DecodeState, events: np.ndarray) -> None:
        """Run known events (a prime) through the model, advancing position and clock."""
        for dt, reg, val in np.asarray(events, dtype=np.int64):
            _step(
                dt, reg, val, state.counters[0], state.cache_k.shape[3], *self._trunk,
                self._inv_freq, state.cache_k, state.cache_v, state.hidden,
            )  # fmt: skip
            state.counters[0] += 1
            state.counters[1] += self._dt_cycles[dt]
            if reg != tokens.WAIT:
                state.recent[state.counters[2] % len(state.recent)] = state.counters[1]
                state.counters[2] += 1

    def sample(
        self,
        state: DecodeState,
        uniforms: np.ndarray,
        end_clock: int,
        temperature: float,
        top_p: float,
    ) -> np.ndarray:
        """Sample up to ``len(uniforms)`` events (stopping before ``end_clock``).

        ``uniforms`` is ``(n, 3)`` float64 in [0, 1). Returns ``(k, 4)`` int64 rows
        ``dt, reg, val, cycle`` (the cycle each event lands on).
        """
        uniforms = np.ascontiguousarray(uniforms, dtype=np.float64)
        out = np.empty((len(uniforms), 4), np.int64)
        count = _sample(
            state.counters, state.hidden, state.recent, len(uniforms), int(end_clock),
            float(temperature), float(top_p), uniforms, out, *self._trunk, self._inv_freq,
            state.cache_k, state.cache_v, *self._heads, self._dt_cycles, self.reg_mask,
            self.nr52_mask, tokens.NR52_TOKEN, tokens.WAIT,
        )  # fmt: skip
        return out[:count]
