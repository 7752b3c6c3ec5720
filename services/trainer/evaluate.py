"""The model's held-out fit against n-gram baselines, on the same tokens.

Nats per *second of music* is the figure to compare: it does not depend on how
many tokens a representation spends on a second. The baselines
(``gbsynth.trainer.baselines``, in the model's representation) are fitted on the
training tracks. Model and baselines score the same tokens the same way: every
token of each track but its first. A checkpoint with match-model weights is scored as it
samples, mixed with the match model (``gbsynth.trainer.match``); ``network_alone`` is the
network's own score. ``gbsynth evaluate`` (``cli_evaluate``) prints ``evaluate``'s report.
"""

from __future__ import annotations


def evaluate(loaded, train, heldout) -> dict:
    """The JSON report: the model and the n-gram baselines on the same held-out tokens."""
    from gbsynth.trainer import match, representation
    from gbsynth.trainer.baselines import baseline_token_nlls
    from gbsynth.trainer.data import total_tokens
    from gbsynth.trainer.train import Score, model_token_nll

    rep = representation.get(loaded.config.representation)
    nll, targets = model_token_nll(loaded.model, heldout)
    alone = Score.of(nll, targets, rep)
    baseline_nlls = baseline_token_nlls(train, heldout, rep.vocab_size)
    baselines = {name: Score.of(values, targets, rep) for name, values in baseline_nlls.items()}
    best = min(baselines, key=lambda name: baselines[name].nats_per_second)
    with_match = {}
    if loaded.match_weights:
        # As the sampler predicts: the network mixed with the match model. The fair peer is
        # a baseline with the match model too, its weights fitted on these very tokens (a
        # bound in the baseline's favour).
        guess, length = match.track_predictions(heldout, rep.onsets)
        nll = match.mixed_nll(nll, guess, length, targets, loaded.match_weights)
        for name, values in baseline_nlls.items():
            weights = match.fit_weights(values, guess, length, targets)
            mixed = match.mixed_nll(values, guess, length, targets, weights)
            with_match[name] = Score.of(mixed, targets, rep)
    model = Score.of(nll, targets, rep)
    return {
        "checkpoint": str(loaded.path),
        "step": loaded.step,
        "representation": rep.name,
        "tokens": model.tokens,
        "music_seconds": round(model.seconds, 1),
        "nats_per_second": round(model.nats_per_second, 2),
        "nll_per_token": round(model.nll_per_token, 4),
        "network_alone": {
            "nats_per_second": round(alone.nats_per_second, 2),
            "nll_per_token": round(alone.nll_per_token, 4),
        },
        "match_weights": loaded.match_weights,
        "baselines": {
            name: {
                "nats_per_second": round(score.nats_per_second, 2),
                "nll_per_token": round(score.nll_per_token, 4),
            }
            for name, score in baselines.items()
        },  # fmt: skip
        "best_baseline": best,
        "vs_best_baseline": _relative(model, baselines[best]),
        **_match_peers(model, with_match),
        "train_tokens": total_tokens(train),
    }


def first_tokens(tracks, limit: int):
    """The tracks cut to ``limit`` tokens in total (in order)."""
    from gbsynth.trainer.data import Track

    out, left = [], limit
    for track in tracks:
        if left <= 1:
            break
        out.append(Track(track.name, track.source_sha256, track.tokens[:left]))
        left -= len(out[-1])
    return out


def _relative(model, baseline) -> float:
    return round((model.nats_per_second - baseline.nats_per_second) / baseline.nats_per_second, 3)


def _match_peers(model, with_match: dict) -> dict:
    """The baselines mixed with the match model, and the model against the best of them."""
    if not with_match:
        return {}
    best = min(with_match, key=lambda name: with_match[name].nats_per_second)
    return {
        "baselines_with_match": {
            name: round(score.nats_per_second, 2) for name, score in with_match.items()
        },
        "vs_best_baseline_with_match": _relative(model, with_match[best]),
    }
