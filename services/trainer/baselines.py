"""N-gram baselines over the same events as the model, scored the same way.

Each event is one joint symbol (``tokens.event_symbols``: dt, reg and val
together, 2.4 million possible), or, for tracks of channel events
(``gbsynth.trainer.channel_events``: 1-D token arrays), one token. The baselines are
interpolated Witten-Bell n-gram models of those symbols, n = 1 (unigram) to 5::

    P_0(w)     = 1 / N_SYMBOLS                                   (uniform over every event)
    P_n(w | h) = (c(h, w) + T(h) * P_{n-1}(w | h')) / (c(h) + T(h))    if c(h) > 0
               = P_{n-1}(w | h')                                         otherwise

where ``h`` is the previous n - 1 events, ``h'`` the previous n - 2, ``c`` counts
in the training tracks and ``T(h)`` is the number of distinct events seen after
``h``. Witten-Bell needs no tuned discount and gives every event of the joint
space a probability, so held-out music with unseen events still has a finite
NLL, and it is a fair comparison to the model, which also spreads mass over the
whole space.

Scoring matches the model's: the NLL (nats) of every event of a track except
its first, given at most n - 1 previous events of the same track, averaged
over all scored events. Counting is vectorised: contexts are hashed to 64 bits
(collisions are negligible at these sizes) and counted with ``numpy.unique``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gbsynth.common.events import CPU_HZ
from gbsynth.trainer import channel_events, tokens
from gbsynth.trainer.data import Track

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_W_SALT = np.uint64(0xD1B54A32D192ED03)


def _symbols_and_index(tracks: Sequence[Track]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated symbols and each one's index within its track."""
    if not tracks:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    symbols = np.concatenate([_track_symbols(t.events) for t in tracks]).astype(np.uint64)
    index = np.concatenate([np.arange(len(t), dtype=np.int64) for t in tracks])
    return symbols, index


def _track_symbols(events: np.ndarray) -> np.ndarray:
    """A track's symbols: joint write-level events, or flat channel-event tokens as they are."""
    events = np.asarray(events)
    return events.astype(np.int64) if events.ndim == 1 else tokens.event_symbols(events)


def music_seconds(events: np.ndarray) -> float:
    """Seconds of music a track's events cover (either representation)."""
    events = np.asarray(events)
    if events.ndim == 1:
        return channel_events.token_seconds(events)
    return tokens.duration_cycles(events) / CPU_HZ


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
    symbols: np.ndarray, index: np.ndarray, order: int, extra: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per history length 0..order-1: hashed (history, extra) keys and validity."""
    out = []
    for length in range(order):
        keys = _context_hashes(symbols, length)
        if extra is not None:
            keys = _pair_hashes(keys ^ np.uint64(0x5555), extra)
        out.append((keys, index >= length))
    return out


class WittenBell:
    """Interpolated Witten-Bell n-gram model, orders 1..``order``.

    ``factorized=False``: over joint event symbols. ``factorized=True``: as the model
    factorizes an event, ``p(dt | h) p(reg | h, dt) p(val | h, dt, reg)``, each an
    interpolated Witten-Bell chain over the same histories ``h``. ``flat=True``: over
    channel-event tokens (``channel_events.VOCAB_SIZE`` of them; tracks of 1-D tokens).
    """

    def __init__(self, order: int, *, factorized: bool = False, flat: bool = False) -> None:
        if order < 1:
            raise ValueError("order must be at least 1")
        if factorized and flat:
            raise ValueError("channel-event tokens are flat: there is nothing to factorize")
        self.order = order
        self.factorized = factorized
        if factorized:
            self._chains = [_Chain(tokens.N_DT), _Chain(tokens.N_REG), _Chain(tokens.N_VAL)]
        else:
            self._chains = [_Chain(channel_events.VOCAB_SIZE if flat else tokens.N_SYMBOLS)]

    def _parts(self, tracks: Sequence[Track], order: int):
        symbols, index = _symbols_and_index(tracks)
        if not self.factorized:
            return index, [(_history_contexts(symbols, index, order), symbols)]
        events = tokens.symbols_to_events(symbols.astype(np.int64))
        dt = events[:, tokens.DT].astype(np.uint64)
        reg = events[:, tokens.REG].astype(np.uint64)
        val = events[:, tokens.VAL].astype(np.uint64)
        dt_reg = dt * np.uint64(tokens.N_REG) + reg
        everywhere = np.ones(len(index), dtype=bool)
        constant = np.zeros(len(index), dtype=np.uint64)
        # Below the history levels, reg and val back off to the current event alone:
        # p(reg), then p(reg | dt); p(val), p(val | reg), then p(val | dt, reg).
        reg_levels = [(constant, everywhere)]
        val_levels = [
            (constant, everywhere),
            (_pair_hashes(constant, reg + np.uint64(1)), everywhere),
        ]
        return index, [
            (_history_contexts(symbols, index, order), dt),
            (reg_levels + _history_contexts(symbols, index, order, dt + np.uint64(1)), reg),
            (val_levels + _history_contexts(symbols, index, order, dt_reg + np.uint64(1)), val),
        ]

    def fit(self, tracks: Sequence[Track]) -> WittenBell:
        _, parts = self._parts(tracks, self.order)
        for chain, (contexts, targets) in zip(self._chains, parts, strict=True):
            chain.fit(contexts, targets)
        return self

    def event_nll(self, tracks: Sequence[Track], order: int | None = None) -> np.ndarray:
        """NLL (nats) of every event but each track's first, in track order.

        ``order`` below the fitted one scores with the lower-order model (the same counts).
        """
        index, parts = self._parts(tracks, min(order or self.order, self.order))
        nll = np.zeros(len(index))
        for chain, (contexts, targets) in zip(self._chains, parts, strict=True):
            nll -= np.log(chain.prob(contexts, targets))
        return nll[index > 0]

    def nll_per_event(self, tracks: Sequence[Track], order: int | None = None) -> float:
        nll = self.event_nll(tracks, order)
        return float(nll.mean()) if len(nll) else float("nan")

    def nats_per_second(self, tracks: Sequence[Track], order: int | None = None) -> float:
        """Total NLL of ``tracks`` (as ``event_nll`` scores them) per second of music."""
        return nats_per_second(float(self.event_nll(tracks, order).sum()), tracks)


def nats_per_second(total_nats: float, tracks: Sequence[Track]) -> float:
    """``total_nats`` (a model's or baseline's NLL summed over ``tracks``) per second of the
    music the tracks cover: the figure that compares across representations."""
    seconds = sum(music_seconds(t.events) for t in tracks)
    return total_nats / seconds if seconds > 0 else float("nan")


def flat_baseline_nats_per_second(
    train: Sequence[Track], heldout: Sequence[Track], max_order: int = 5
) -> dict[str, float]:
    """Held-out nats per second of music of the ``unigram`` .. ``5-gram`` baselines over
    channel-event tokens (tracks of 1-D tokens), fitted on ``train``."""
    model = WittenBell(max_order, flat=True).fit(train)
    return {
        ("unigram" if n == 1 else f"{n}-gram"): model.nats_per_second(heldout, n)
        for n in range(1, max_order + 1)
    }


def baseline_nlls(
    train: Sequence[Track], heldout: Sequence[Track], max_order: int = 5
) -> dict[str, float]:
    """Held-out nats per event of every baseline: ``unigram``, ``2-gram`` .. ``5-gram`` over
    joint events, and ``factorized unigram`` .. ``factorized 5-gram``."""
    results = {}
    for factorized in (False, True):
        model = WittenBell(max_order, factorized=factorized).fit(train)
        for n in range(1, max_order + 1):
            name = ("factorized " if factorized else "") + ("unigram" if n == 1 else f"{n}-gram")
            results[name] = model.nll_per_event(heldout, n)
    return results
