"""Fast incremental inference for ``GPT``: the same network, one token at a time, in numba.

A torch step for one position costs microseconds per operator call and there
are ~60 calls per token; here the whole step (embedding, every layer against a
ring-buffer KV cache, the tied output head) is one compiled function, and so is picking
the next token (nucleus sampling among the tokens the representation's grammar allows).

A step reads every weight and the whole KV cache (13 MB at the default size and full
context, more than a core's cache), so memory, not arithmetic, sets its pace: the weight
matrices and the cache are kept in half precision (read with F16C, computed in float32),
which halves what a step reads, and the exps are vectorised (``_exp``). The logits stay
within a few thousandths of torch's float32 ones.

``InferenceEngine`` copies the weights out of a ``GPT`` once (it is read-only
afterwards, so threads may share it); each song owns a ``DecodeState`` (cache,
position, last logits). Random numbers come from the caller's own generator, so
results do not depend on any global RNG.
``GPT.step`` (torch) is the reference the tests compare this against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from gbsynth.trainer.model import GPT, token_frames

_F = np.float32
_LN_EPS = 1e-5
_GELU_C = math.sqrt(2.0 / math.pi)


@numba.njit(cache=True, fastmath=True, nogil=True, inline="always")
def _matvec(w, b, x, out):  # pragma: no cover - compiled
    for i in range(w.shape[0]):
        acc = np.float32(0.0)
        for j in range(w.shape[1]):
            acc += _from_half(w[i, j]) * x[j]
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


# Cephes' float32 exp: ln 2 in two parts (exact products with small integers), a polynomial
# on [-ln 2 / 2, ln 2 / 2], the power of two put straight into the exponent bits. Unlike
# numba's exp (a libm call per value) it vectorises: a step's attention weights and a pick's
# probabilities are thousands of exps per token.
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
             1.6666665459e-1, 5.0000001201e-1)  # fmt: skip
_EXP_MIN = np.float32(-87.0)  # exp(-87) is about the smallest normal float32; below: 0


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the int32 ``bits``."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _from_half(typingctx, bits):
    """The float32 value of the IEEE half-precision number whose bits are the uint16 ``bits``
    (one instruction, vectorised, on CPUs with F16C)."""

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


@intrinsic
def _to_half(typingctx, value):
    """The bits (uint16) of the float32 ``value`` rounded to IEEE half precision."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return types.uint16(types.float32), codegen


@numba.njit(cache=True, fastmath=True, nogil=True, inline="always")
def _exp(x):  # pragma: no cover - compiled
    """exp of a float32 ``x`` <= 88 (relative error about 1e-7); 0 below ``_EXP_MIN``, -inf
    included."""
    c0, c1, c2, c3, c4, c5 = _EXP_POLY
    y = max(x, _EXP_MIN)
    k = np.floor(y * _LOG2E + np.float32(0.5))
    r = y - k * _LN2_HI - k * _LN2_LO
    p = np.float32(c0)
    p = p * r + np.float32(c1)
    p = p * r + np.float32(c2)
    p = p * r + np.float32(c3)
    p = p * r + np.float32(c4)
    p = p * r + np.float32(c5)
    value = (p * r * r + r + np.float32(1.0)) * _float_from_bits((np.int32(k) + 127) << 23)
    return value if x >= _EXP_MIN else np.float32(0.0)


@numba.njit(cache=True, fastmath=True, nogil=True)
def _step(
    token, position, time, time_heads, window,
    wte,
    ln1_w, ln1_b, w_qkv, b_qkv, w_o, b_o, ln2_w, ln2_b, w_fc, b_fc, w_proj, b_proj,
    lnf_w, lnf_b, inv_freq, cache_k, cache_v, h_out,
):  # fmt: skip  # pragma: no cover - compiled
    """Feed one token at ``position`` (music ``time`` in frames for the last ``time_heads``
    heads: ``model.py``); write the final hidden state into ``h_out``."""
    n_layer, n_head, head_dim, _ = cache_k.shape
    d = wte.shape[1]
    half = head_dim // 2
    x = np.empty(d, _F)
    for i in range(d):
        x[i] = _from_half(wte[token, i])
    xn = np.empty(d, _F)
    qkv = np.empty(3 * d, _F)
    y = np.empty(d, _F)
    o = np.empty(d, _F)
    hidden = np.empty(w_fc.shape[1], _F)
    # Row 0: rotation by token index; row 1: by music time (the time heads).
    cos = np.empty((2, half), _F)
    sin = np.empty((2, half), _F)
    for i in range(half):
        angle = position * inv_freq[i]  # float64: exact for long songs
        cos[0, i] = math.cos(angle)
        sin[0, i] = math.sin(angle)
        angle = time * inv_freq[i]
        cos[1, i] = math.cos(angle)
        sin[1, i] = math.sin(angle)
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
            c = cos[1] if hd >= n_head - time_heads else cos[0]
            s = sin[1] if hd >= n_head - time_heads else sin[0]
            for i in range(half):
                q1, q2 = qkv[base + i], qkv[base + half + i]
                qkv[base + i] = q1 * c[i] - q2 * s[i]
                qkv[base + half + i] = q1 * s[i] + q2 * c[i]
                k1, k2 = qkv[d + base + i], qkv[d + base + half + i]
                keys[i, slot] = _to_half(np.float32(k1 * c[i] - k2 * s[i]))
                keys[half + i, slot] = _to_half(np.float32(k1 * s[i] + k2 * c[i]))
            for i in range(head_dim):
                values[i, slot] = _to_half(qkv[2 * d + base + i])
            # Time-major loops (the inner one runs along the cache) vectorise.
            for t in range(n):
                scores[t] = 0.0
            for i in range(head_dim):
                qi = qkv[base + i] * scale
                row = keys[i]
                for t in range(n):
                    scores[t] += qi * _from_half(row[t])
            best = np.float32(-np.inf)
            for t in range(n):
                best = max(best, scores[t])
            total = np.float32(0.0)
            for t in range(n):
                e = _exp(scores[t] - best)
                scores[t] = e
                total += e
            inv_total = np.float32(1.0) / total
            for i in range(head_dim):
                row = values[i]
                acc = np.float32(0.0)
                for t in range(n):
                    acc += scores[t] * _from_half(row[t])
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
        p = _exp(np.float32((logits[i] - best) / temperature))
        probs[i] = p
        total += p
    if top_p < 1.0:
        # The nucleus: the tokens of probability >= t for the largest t whose tokens hold
        # top_p of the mass (found by bisection, not a sort), sampled in token order. Only
        # tokens above (1 - top_p) / n of the mass can be in it (together the others hold
        # less than 1 - top_p), so the search runs over those: few, for a trained model.
        floor = (1.0 - top_p) * total / n
        big = 0
        for i in range(n):
            if probs[i] > floor:
                order[big] = i
                big += 1
        need = top_p * total
        lo, hi = floor, 1.0  # the best token has probability 1 before normalising
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            mass = 0.0
            for r in range(big):
                if probs[order[r]] >= mid:
                    mass += probs[order[r]]
            if mass >= need:
                lo = mid
            else:
                hi = mid
        kept = 0.0
        for r in range(big):
            if probs[order[r]] >= lo:
                kept += probs[order[r]]
        target = u * kept
        acc = 0.0
        last = int(order[0])
        for r in range(big):
            i = order[r]
            if probs[i] >= lo:
                acc += probs[i]
                last = int(i)
                if acc > target:
                    return int(i)
        return last
    target = u * total
    acc = 0.0
    for i in range(n):
        acc += probs[i]
        if acc > target:
            return i
    return n - 1


@numba.njit(cache=True, fastmath=True, nogil=True)
def _pick_allowed(logits, allowed, temperature, top_p, u, masked, probs, order):  # pragma: no cover
    """``_pick`` among the tokens ``allowed`` (bool mask) only."""
    for i in range(logits.shape[0]):
        masked[i] = logits[i] if allowed[i] else -np.inf
    return _pick(masked, temperature, top_p, u, probs, order)


@numba.njit(cache=True, fastmath=True, nogil=True)
def _bias_within_groups(logits, bias, groups, out, before, after):  # pragma: no cover
    """``out``: ``logits + bias``, then each group's tokens (``groups`` >= 0) shifted so the
    group keeps the probability mass it had: the bias moves mass within a group only.
    ``before`` and ``after`` (float32, as long as ``logits``) are scratch."""
    n_groups = 0
    for i in range(groups.shape[0]):
        n_groups = max(n_groups, groups[i] + 1)
    best = np.max(logits)
    for i in range(logits.shape[0]):  # the exps apart from the sums by group: it vectorises
        out[i] = logits[i] + bias[i]
        before[i] = _exp(logits[i] - best)
        after[i] = _exp(out[i] - best)
    mass_before = np.zeros(max(n_groups, 1))
    mass_after = np.zeros(max(n_groups, 1))
    for i in range(logits.shape[0]):
        g = groups[i]
        if g >= 0:
            mass_before[g] += before[i]
            mass_after[g] += after[i]
    for i in range(logits.shape[0]):
        g = groups[i]
        if g >= 0 and mass_after[g] > 0.0 and mass_before[g] > 0.0:
            out[i] += math.log(mass_before[g]) - math.log(mass_after[g])


@numba.njit(cache=True, fastmath=True, nogil=True)
def probability_share(logits, allowed, selected):  # pragma: no cover - compiled
    """The probability ``softmax(logits)`` restricted to ``allowed`` gives the tokens that
    are also ``selected`` (both bool masks)."""
    best = np.float32(-np.inf)
    for i in range(logits.shape[0]):
        best = max(best, logits[i] if allowed[i] else np.float32(-np.inf))
    total = np.float32(0.0)
    chosen = np.float32(0.0)
    for i in range(logits.shape[0]):  # branch-free: it vectorises
        p = _exp(logits[i] - best) if allowed[i] else np.float32(0.0)
        total += p
        chosen += p if selected[i] else np.float32(0.0)
    return chosen / total if total > 0.0 else 0.0


@numba.njit(cache=True, fastmath=True, nogil=True)
def _mix_guess(logits, guess, weight, out):  # pragma: no cover - compiled
    """``out``: log of ``(1 - weight) softmax(logits) + weight [token == guess]`` (the
    match model's mixture, ``match.py``): every logit moved by one constant, the guess's
    raised by the weight."""
    best = np.max(logits)
    total = 0.0
    for i in range(logits.shape[0]):
        total += _exp(logits[i] - best)
    keep = (1.0 - weight) / total
    shift = np.float32(math.log(keep) - best) if keep > 0.0 else np.float32(-np.inf)
    for i in range(logits.shape[0]):
        out[i] = logits[i] + shift
    out[guess] = math.log(keep * math.exp(logits[guess] - best) + weight)


@numba.njit(cache=True, fastmath=True, nogil=True)
def _feed_one(
    token, counters, clock, token_frames, time_heads, wte, ln1_w, ln1_b, w_qkv, b_qkv, w_o,
    b_o, ln2_w, ln2_b, w_fc, b_fc, w_proj, b_proj, lnf_w, lnf_b, inv_freq, cache_k, cache_v,
    hidden, zero_bias, logits,
):  # fmt: skip  # pragma: no cover - compiled
    clock[0] += token_frames[token]
    _step(
        token, counters[0], clock[0], time_heads, cache_k.shape[3], wte, ln1_w, ln1_b, w_qkv,
        b_qkv, w_o, b_o, ln2_w, ln2_b, w_fc, b_fc, w_proj, b_proj, lnf_w, lnf_b, inv_freq,
        cache_k, cache_v, hidden,
    )  # fmt: skip
    counters[0] += 1
    _matvec(wte, zero_bias, hidden, logits)


def _np(t) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=_F)


def _half(t) -> np.ndarray:
    """A weight matrix in half precision, as the IEEE bits (uint16) ``_from_half`` reads."""
    weights = t.detach().cpu().numpy()
    if not np.isfinite(weights).all() or np.abs(weights).max() > np.finfo(np.float16).max:
        raise ValueError("weights outside half precision's range: not a trained GPT")
    return np.ascontiguousarray(weights.astype(np.float16).view(np.uint16))


@dataclass
class DecodeState:
    """One song in progress: KV cache, position, next-token logits after the last token."""

    cache_k: np.ndarray
    cache_v: np.ndarray
    counters: np.ndarray
    """int64 ``[position]``"""
    clock: np.ndarray
    """float64 ``[music time in frames after the last token]`` (the time heads' position)"""
    hidden: np.ndarray
    logits: np.ndarray
    mixed: np.ndarray
    """The logits mixed with a match-model guess (``pick``)."""
    scratch: tuple[np.ndarray, np.ndarray, np.ndarray]
    """Work arrays of ``pick``: masked logits, probabilities, order."""
    bias_scratch: tuple[np.ndarray, np.ndarray]
    """Work arrays of a biased ``pick``: the probabilities before and after the bias."""

    @property
    def position(self) -> int:
        return int(self.counters[0])


def _check_half_precision() -> None:
    """Half-precision reads compile to F16C instructions on x86 (every x86-64 CPU since
    2012 has them); without them LLVM would call conversion routines the JIT cannot link."""
    import platform

    import llvmlite.binding as llvm

    if platform.machine().lower() in ("x86_64", "amd64") and not llvm.get_host_cpu_features().get(
        "f16c", False
    ):
        raise RuntimeError(
            "sampling needs a CPU with F16C (half-precision conversion; x86-64 CPUs since 2012)"
        )


class InferenceEngine:
    """The weights of a ``GPT`` in half precision (matrices) and float32 (the rest), and
    compiled step and pick functions."""

    def __init__(self, model: GPT) -> None:
        _check_half_precision()
        c = model.config
        self.config = c
        blocks = model.blocks

        def stack(get, convert=_np) -> np.ndarray:
            return np.ascontiguousarray(np.stack([convert(get(b)) for b in blocks]))

        self._trunk = (
            _half(model.wte.weight),
            stack(lambda b: b.ln_1.weight), stack(lambda b: b.ln_1.bias),
            stack(lambda b: b.attn.c_attn.weight, _half), stack(lambda b: b.attn.c_attn.bias),
            stack(lambda b: b.attn.c_proj.weight, _half), stack(lambda b: b.attn.c_proj.bias),
            stack(lambda b: b.ln_2.weight), stack(lambda b: b.ln_2.bias),
            stack(lambda b: b.mlp.c_fc.weight, _half), stack(lambda b: b.mlp.c_fc.bias),
            stack(lambda b: b.mlp.c_proj.weight, _half), stack(lambda b: b.mlp.c_proj.bias),
            _np(model.ln_f.weight), _np(model.ln_f.bias),
        )  # fmt: skip
        head_dim = c.n_embd // c.n_head
        self._inv_freq = c.rope_base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
        self._zero_bias = np.zeros(c.vocab_size, _F)
        self._token_frames = token_frames(c) if c.time_heads else np.zeros(c.vocab_size)

    def new_state(self, window: int | None = None) -> DecodeState:
        c = self.config
        # Keys and values time-major per head: (layer, head, head_dim, window), in half
        # precision (IEEE bits as uint16): a step reads the whole cache, and at full length
        # that read is most of its time.
        shape = (c.n_layer, c.n_head, c.n_embd // c.n_head, window or c.block_size)
        v = c.vocab_size
        return DecodeState(
            np.zeros(shape, np.uint16),
            np.zeros(shape, np.uint16),
            np.zeros(1, np.int64),
            np.zeros(1, np.float64),
            np.zeros(c.n_embd, _F),
            np.zeros(v, _F),
            np.zeros(v, _F),
            (np.empty(v, _F), np.empty(v, np.float64), np.empty(v, np.int64)),
            (np.empty(v, _F), np.empty(v, _F)),
        )

    def feed(self, state: DecodeState, tokens) -> None:
        """Run tokens through the model; ``state.logits`` are then the next token's logits."""
        time_heads = self.config.time_heads
        for token in np.asarray(tokens, dtype=np.int64).reshape(-1).tolist():
            state.clock[0] += self._token_frames[token]
            _step(
                token, state.counters[0], state.clock[0], time_heads, state.cache_k.shape[3],
                *self._trunk, self._inv_freq, state.cache_k, state.cache_v, state.hidden,
            )  # fmt: skip
            state.counters[0] += 1
        _matvec(self._trunk[0], self._zero_bias, state.hidden, state.logits)

    def feed_one(self, state: DecodeState, token: int) -> None:
        """``feed`` for one token, in one compiled call (the sampling loop's step)."""
        _feed_one(
            token, state.counters, state.clock, self._token_frames, self.config.time_heads,
            *self._trunk, self._inv_freq, state.cache_k, state.cache_v, state.hidden,
            self._zero_bias, state.logits,
        )  # fmt: skip

    def pick(
        self, state: DecodeState, allowed: np.ndarray, u: float, temperature: float, top_p: float,
        guess: int = -1, guess_weight: float = 0.0, bias: np.ndarray | None = None,
        bias_groups: np.ndarray | None = None,
    ) -> int:  # fmt: skip
        """The next token among ``allowed`` (bool mask): argmax at temperature 0, else
        nucleus sampling with the uniform number ``u``; with a ``guess`` (the match model's),
        from the network's distribution mixed with it at ``guess_weight``. ``bias`` (float32
        per token: a song plan's key and registers) is added to the log-probabilities first,
        moving probability only within each of ``bias_groups`` (int8 per token, -1: none),
        so it changes which note the network plays, not whether it plays one."""
        if state.position == 0:
            raise ValueError("feed at least one token (the opening) before picking")
        logits = state.logits
        if bias is not None:
            biased = state.scratch[0]
            if bias_groups is None:
                np.add(logits, bias, out=biased)
            else:
                _bias_within_groups(logits, bias, bias_groups, biased, *state.bias_scratch)
            logits = biased
        if guess >= 0 and guess_weight > 0.0:
            _mix_guess(logits, int(guess), float(guess_weight), state.mixed)
            logits = state.mixed
        return _pick_allowed(
            logits, allowed, float(temperature), float(top_p), float(u), *state.scratch
        )
