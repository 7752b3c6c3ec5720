"""N-gram baselines over the same tokens as the model, scored the same way.

The baselines are interpolated Witten-Bell n-gram models of the tokens of the
model's representation, n = 1 (unigram) to 5::

    P_0(w)     = 1 / V                                           (uniform over the vocabulary)
    P_n(w | h) = (c(h, w) + T(h) * P_{n-1}(w | h')) / (c(h) + T(h))    if c(h) > 0
               = P_{n-1}(w | h')                                         otherwise

where ``h`` is the previous n - 1 tokens, ``h'`` the previous n - 2, ``c`` counts
in the training tracks and ``T(h)`` is the number of distinct tokens seen after
``h``. Witten-Bell needs no tuned discount and gives every token a probability,
so held-out music with unseen patterns still has a finite NLL.

Scoring matches the model's: the NLL (nats) of every token of a track except
its first, given at most n - 1 previous tokens of the same track. Counting is
vectorised: contexts are hashed to 64 bits (collisions are negligible at these
sizes) and counted with ``numpy.unique``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gbsynth.trainer.data import Track

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_W_SALT = np.uint64(0xD1B54A32D192ED03)


def _symbols_and_index(tracks: Sequence[Track]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated symbols and each one's index within its track."""
    if not tracks:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    symbols = np.concatenate([t.tokens for t in tracks]).astype(np.uint64)
    index = np.concatenate([np.arange(len(t), dtype=np.int64) for t in tracks])
    return symbols, index


def _context_hashes(symbols: np.ndarray, length: int) -> np.ndarray:
    """Hash of the ``length`` symbols before each position (garbage where there are fewer)."""
    h = np.full(len(symbols), np.uint64(length + 1), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for back in range(1, length + 1):
            prev = np.zeros(len(symbols), dtype=np.uint64)
            prev[back:] = symbols[:-back] + np.uint64(1)
            h = (h * _MULTIPLIER) ^ prev
            h ^= h >> np.uint64(29)
    return h


def _pair_hashes(context: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = (context ^ _W_SALT) * _MULTIPLIER + symbols
        return h ^ (h >> np.uint64(31))


@dataclass
class _Level:
    """Counts of one context length: contexts (sorted), their totals and distinct followers,
    and (context, symbol) pairs (sorted) with their counts."""

    context_keys: np.ndarray
    context_counts: np.ndarray
    context_types: np.ndarray
    pair_keys: np.ndarray
    pair_counts: np.ndarray

    @classmethod
    def count(cls, context: np.ndarray, targets: np.ndarray) -> _Level:
        pair_keys, first, pair_counts = np.unique(
            _pair_hashes(context, targets), return_index=True, return_counts=True
        )
        context_keys, context_counts = np.unique(context, return_counts=True)
        # Distinct followers per context: each distinct pair once, by its context.
        _, types = np.unique(context[first], return_counts=True)
        return cls(context_keys, context_counts, types, pair_keys, pair_counts)


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    if len(keys) == 0:
        return np.zeros(len(query), dtype=np.float64)
    at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[at] == query, values[at], 0).astype(np.float64)


class _Chain:
    """Interpolated Witten-Bell over ``vocabulary`` targets, one level per context length."""

    def __init__(self, vocabulary: int) -> None:
        self.vocabulary = vocabulary
        self.levels: list[_Level] = []

    def fit(self, contexts: list[tuple[np.ndarray, np.ndarray]], targets: np.ndarray) -> None:
        """``contexts``: per level (shortest first), each position's key and validity."""
        self.levels = [_Level.count(keys[valid], targets[valid]) for keys, valid in contexts]

    def prob(
        self, contexts: list[tuple[np.ndarray, np.ndarray]], targets: np.ndarray
    ) -> np.ndarray:
        prob = np.full(len(targets), 1.0 / self.vocabulary)
        for level, (keys, valid) in zip(self.levels, contexts, strict=False):
            c_h = _lookup(level.context_keys, level.context_counts, keys)
            t_h = _lookup(level.context_keys, level.context_types, keys)
            c_hw = _lookup(level.pair_keys, level.pair_counts, _pair_hashes(keys, targets))
            mixed = (c_hw + t_h * prob) / np.maximum(c_h + t_h, 1.0)
            prob = np.where(valid & (c_h > 0), mixed, prob)
        return prob


def _history_contexts(
    symbols: np.ndarray, index: np.ndarray, order: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per history length 0..order-1: hashed history keys and validity."""
    out = []
    for length in range(order):
        out.append((_context_hashes(symbols, length), index >= length))
    return out


class WittenBell:
    """Interpolated Witten-Bell n-gram model of tokens, orders 1..``order``."""

    def __init__(self, order: int, vocabulary: int) -> None:
        if order < 1:
            raise ValueError("order must be at least 1")
        self.order = order
        self._chain = _Chain(vocabulary)

    def fit(self, tracks: Sequence[Track]) -> WittenBell:
        symbols, index = _symbols_and_index(tracks)
        self._chain.fit(_history_contexts(symbols, index, self.order), symbols)
        return self

    def token_nll(self, tracks: Sequence[Track], order: int | None = None) -> np.ndarray:
        """NLL (nats) of every token but each track's first, in track order.

        ``order`` below the fitted one scores with the lower-order model (the same counts).
        """
        symbols, index = _symbols_and_index(tracks)
        contexts = _history_contexts(symbols, index, min(order or self.order, self.order))
        nll = -np.log(self._chain.prob(contexts, symbols))
        return nll[index > 0]

    def nll_per_token(self, tracks: Sequence[Track], order: int | None = None) -> float:
        nll = self.token_nll(tracks, order)
        return float(nll.mean()) if len(nll) else float("nan")


def baseline_token_nlls(
    train: Sequence[Track], heldout: Sequence[Track], vocabulary: int, max_order: int = 5
) -> dict[str, np.ndarray]:
    """Held-out per-token NLLs of every baseline, ``unigram``, ``2-gram`` .. ``5-gram``."""
    model = WittenBell(max_order, vocabulary).fit(train)
    return {
        ("unigram" if n == 1 else f"{n}-gram"): model.token_nll(heldout, n)
        for n in range(1, max_order + 1)
    }
