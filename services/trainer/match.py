"""The match model: a song repeats itself, so what followed the last time the recent tokens
were played is a good guess for what comes next.

Music loops, repeats its bars and comes back to its motifs, and a small network trained for
an hour forgets what it played a few seconds ago. ``MatchModel`` (the match model of
context-mixing compressors, and the cache language models of speech recognition) follows
a song's own tokens: after each token it finds the latest earlier place where the last
``MIN_MATCH`` tokens were played and predicts the token that came next there; while its
predictions come true the match grows longer, and a longer match is trusted more. Only a
passage that holds a note onset (the representation's ``onsets``) starts a match: copying
a stretch of silence, or of time shifts and volume steps, would hold a sampled song in
silence for good. The
sampler and the evaluation mix it with the network:

    p(next) = (1 - w[b]) p_network(next) + w[b] [next == predicted]

where ``b`` is the bucket of the current match length (``LENGTH_EDGES``) and ``w`` the
weights that make validation music most likely (``fit_weights``, EM); without a match the
network speaks alone. The weights travel in the checkpoint (``match_weights``); a
checkpoint without them samples and scores with the network alone.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import numpy as np

MIN_MATCH = 6
"""Tokens that must recur before the match model predicts."""
MAX_LENGTH = 512
"""Match lengths are counted up to this (longer ones share the last bucket)."""
LENGTH_EDGES = (6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384)
"""Lower edges of the match-length buckets, one weight each."""
MIN_FIT_SAMPLES = 20
"""A bucket with fewer matches in the fitting music takes the weight of the bucket below."""
MAX_WEIGHT = 0.99
"""No bucket trusts the match model entirely: a wrong guess keeps 1 % of the network's."""


def length_bucket(length: int) -> int:
    """The bucket of a match ``length`` (>= ``MIN_MATCH``); per sampled token, so no numpy."""
    return bisect_right(LENGTH_EDGES, length) - 1


def _buckets(length: np.ndarray) -> np.ndarray:
    """``length_bucket`` of each match length (no match: bucket 0, masked by the callers)."""
    return np.searchsorted(LENGTH_EDGES, np.maximum(length, MIN_MATCH), side="right") - 1


class MatchModel:
    """One song's match model, fed token by token (``push``); ``prediction`` guesses the next."""

    def __init__(self, onsets: np.ndarray | None = None) -> None:
        self.onsets = None if onsets is None else np.asarray(onsets, bool).tolist()
        """Per token: whether it starts a note (None: any passage may be copied)."""
        self._last_onset = -1
        self.history: list[int] = []
        self._last: dict[tuple[int, ...], int] = {}  # MIN_MATCH tokens -> where they last ended
        self._pointer = -1  # the earlier position matching the newest token; -1: no match
        self.length = 0
        """Tokens the current match has run for (0: no match)."""

    def push(self, token: int) -> None:
        history = self.history
        history.append(int(token))
        end = len(history) - 1
        if self.onsets is None or self.onsets[token]:
            self._last_onset = end
        if self._pointer >= 0 and history[self._pointer + 1] == token:
            self._pointer += 1
            self.length = min(self.length + 1, MAX_LENGTH)
        else:
            self._pointer, self.length = -1, 0
        if end + 1 < MIN_MATCH:
            return
        key = tuple(history[end + 1 - MIN_MATCH :])
        if self._pointer < 0:
            earlier = self._last.get(key)
            if earlier is not None:
                length = MIN_MATCH
                while (
                    length < MAX_LENGTH
                    and earlier - length >= 0
                    and history[earlier - length] == history[end - length]
                ):
                    length += 1
                if self._last_onset > end - length:  # the matched passage holds a note
                    self._pointer, self.length = earlier, length
        self._last[key] = end

    def prediction(self) -> tuple[int, int]:
        """``(token, match length)`` for the next token, or ``(-1, 0)`` without a match."""
        if self._pointer < 0:
            return -1, 0
        return self.history[self._pointer + 1], self.length


def predictions(
    tokens: np.ndarray, onsets: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """For each position ``i``: the match model's guess for ``tokens[i]`` from
    ``tokens[:i]`` and its match length (``-1, 0``: none)."""
    model = MatchModel(onsets)
    guess = np.full(len(tokens), -1, np.int64)
    length = np.zeros(len(tokens), np.int64)
    for i, token in enumerate(np.asarray(tokens).tolist()):
        guess[i], length[i] = model.prediction()
        model.push(token)
    return guess, length


def track_predictions(
    tracks: Sequence, onsets: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``predictions`` of every token but each track's first, in track order (the tokens
    ``train.model_token_nll`` scores)."""
    guesses, lengths = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for track in tracks:
        guess, length = predictions(track.tokens, onsets)
        guesses.append(guess[1:])
        lengths.append(length[1:])
    return np.concatenate(guesses), np.concatenate(lengths)


def _weight_per_position(length: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    table = np.asarray(weights, np.float64)
    return np.where(length >= MIN_MATCH, table[_buckets(length)], 0.0)


def mixed_nll(
    network_nll: np.ndarray, guess: np.ndarray, length: np.ndarray, targets: np.ndarray,
    weights: Sequence[float],
) -> np.ndarray:  # fmt: skip
    """Per-token NLL of the network mixed with the match model (module docstring)."""
    w = _weight_per_position(length, weights)
    hit = (guess == targets).astype(np.float64)
    return -np.log((1.0 - w) * np.exp(-np.asarray(network_nll, np.float64)) + w * hit)


def fit_weights(
    network_nll: np.ndarray, guess: np.ndarray, length: np.ndarray, targets: np.ndarray,
    iterations: int = 100,
) -> list[float]:  # fmt: skip
    """The weight of each length bucket that makes the music most likely (EM on the
    mixture's one free parameter per bucket)."""
    p = np.exp(-np.asarray(network_nll, np.float64))
    hit = guess == targets
    weights: list[float] = []
    buckets = _buckets(length)
    for b in range(len(LENGTH_EDGES)):
        sel = (length >= MIN_MATCH) & (buckets == b)
        if sel.sum() < MIN_FIT_SAMPLES:
            weights.append(weights[-1] if weights else 0.0)
            continue
        p_b, hit_b = p[sel], hit[sel]
        w = 0.5
        for _ in range(iterations):
            # Responsibility of the match model for each token, then the new mean.
            w = float(np.mean(np.where(hit_b, w / ((1.0 - w) * p_b + w), 0.0)))
        weights.append(round(min(w, MAX_WEIGHT), 4))
    return weights
