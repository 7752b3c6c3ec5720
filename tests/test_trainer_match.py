"""The match model (gbsynth.trainer.match): a song's own earlier tokens as a guess for the
next, its fitted weights, and the sampler and evaluation that mix it with the network."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gbsynth.trainer import channel_events as ce
from gbsynth.trainer import match, representation
from gbsynth.trainer.checkpoint import load_checkpoint, write_checkpoint
from gbsynth.trainer.data import Track
from gbsynth.trainer.engine import InferenceEngine
from gbsynth.trainer.evaluate import evaluate
from gbsynth.trainer.sampling import Sampler
from gbsynth.trainer.testing import make_tiny_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_repeated_passage_is_predicted_once_it_has_been_heard():
    rng = np.random.default_rng(0)
    passage = rng.integers(0, 500, 40)
    tokens = np.concatenate([passage, rng.integers(500, 1000, 7), passage, passage])
    guess, length = match.predictions(tokens)
    # No guess before a passage recurs; from MIN_MATCH tokens into its second playing
    # on, every next token is guessed, with a growing match.
    assert (guess[: 47 + match.MIN_MATCH] == -1).all()
    second = slice(47 + match.MIN_MATCH, 87)
    assert (guess[second] == tokens[second]).all()
    assert (np.diff(length[second]) == 1).all()
    assert (guess[87 + match.MIN_MATCH :] == tokens[87 + match.MIN_MATCH :]).all()
    assert length[-1] >= 32  # a long match: the third playing against the second
    # Streaming gives the same guesses.
    model = match.MatchModel()
    for i, token in enumerate(tokens.tolist()):
        assert model.prediction() == (guess[i], length[i])
        model.push(token)


def test_fitted_weights_trust_good_guesses_and_ignore_bad_ones():
    rng = np.random.default_rng(1)
    n = 4000
    targets = rng.integers(0, 100, n)
    network_nll = np.full(n, np.log(100.0))  # a network that knows nothing
    length = np.where(np.arange(n) < n // 2, 8, 200)
    right = np.where(length == 200, rng.random(n) < 0.9, rng.random(n) < 0.01)
    guess = np.where(right, targets, (targets + 1) % 100)
    weights = match.fit_weights(network_nll, guess, length, targets)
    assert len(weights) == len(match.LENGTH_EDGES)
    long_weight = weights[match.length_bucket(200)]
    short_weight = weights[match.length_bucket(8)]
    assert 0.85 < long_weight < 0.95 and short_weight < 0.02
    mixed = match.mixed_nll(network_nll, guess, length, targets, weights)
    assert np.isfinite(mixed).all() and mixed.mean() < network_nll.mean() - 1.0
    # No bucket trusts a guess entirely: a wrong one stays finite.
    always = match.fit_weights(network_nll, targets, np.full(n, 300), targets)
    assert max(always) == match.MAX_WEIGHT


def test_a_checkpoint_carries_its_weights_to_the_sampler_and_the_evaluation(tmp_path):
    path = make_tiny_checkpoint(tmp_path)
    loaded = load_checkpoint(path)
    assert loaded.match_weights is None
    weights = [0.9] * len(match.LENGTH_EDGES)
    with_weights = tmp_path / "with.pt"
    write_checkpoint(with_weights, loaded.model, step=1, match_weights=weights)
    mixed = load_checkpoint(with_weights)
    assert mixed.match_weights == weights
    # Zero weights sample exactly the network's song.
    zero = replace(mixed, match_weights=[0.0] * len(weights))
    assert Sampler(zero).sample(4.0, seed=3) == Sampler(loaded).sample(4.0, seed=3)
    # The engine draws from the mixture: a guess weighted 0.9 comes about 90% of the time.
    engine = InferenceEngine(loaded.model)
    state = engine.new_state()
    engine.feed(state, [1, 2, 3])
    allowed = np.ones(loaded.config.vocab_size, bool)
    picks = [engine.pick(state, allowed, u, 1.0, 1.0, 77, 0.9) for u in np.linspace(0, 1, 400)]
    assert 0.85 < np.mean(np.array(picks) == 77) < 0.95
    # The evaluation scores what the sampler samples from: network and match model mixed.
    rng = np.random.default_rng(2)
    passage = rng.integers(0, 1000, 64).astype(np.int16)  # notes among them
    heldout = [Track("loop", "0" * 64, np.tile(passage, 6))]
    train = [Track("other", "1" * 64, rng.integers(0, 200, 2000).astype(np.int16))]
    report = evaluate(mixed, train, heldout)
    assert report["match_weights"] == weights
    assert report["nll_per_token"] < report["network_alone"]["nll_per_token"] - 1.0
    # Its fair peers: the baselines with the match model too (never better than the
    # baselines alone here would be a bug: they are fitted on these very tokens).
    assert set(report["baselines_with_match"]) == set(report["baselines"])
    for name, score in report["baselines_with_match"].items():
        assert score <= report["baselines"][name]["nats_per_second"] + 1e-6
    plain = evaluate(loaded, train, heldout)
    assert "baselines_with_match" not in plain
    assert plain["nll_per_token"] == plain["network_alone"]["nll_per_token"]


def test_only_passages_with_a_note_are_copied():
    # Silence (a run of the longest shift) or shifts and volume steps alone start no
    # match: copied, they would hold a sampled song silent for good.
    rep = representation.get(representation.DEFAULT)
    shift, vol = ce.SHIFT + ce.MAX_SHIFT - 1, ce.VOL + 5  # no note onset
    note = ce.NOTE + 40
    quiet = np.array([shift, vol] * 30)
    guess, _ = match.predictions(quiet, rep.onsets)
    assert (guess == -1).all()
    assert (match.predictions(quiet)[0] >= 0).any()  # without the rule it would copy
    tune = np.array([note, shift, vol, shift, note + 4, shift, vol, shift] * 4)
    guess, _ = match.predictions(tune, rep.onsets)
    second = 8 + match.MIN_MATCH  # its second playing, once MIN_MATCH tokens are heard
    assert (guess[:second] == -1).all() and (guess[second:] == tune[second:]).all()


def test_a_checkpoint_with_broken_match_weights_is_refused(tmp_path):
    from gbsynth.trainer.checkpoint import CheckpointError

    loaded = load_checkpoint(make_tiny_checkpoint(tmp_path))
    for weights in ([0.5, 0.5], [1.5] * len(match.LENGTH_EDGES)):
        path = tmp_path / "broken.pt"
        write_checkpoint(path, loaded.model, step=1, match_weights=weights)
        with pytest.raises(CheckpointError, match="match_weights"):
            load_checkpoint(path)
