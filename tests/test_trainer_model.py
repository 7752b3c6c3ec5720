"""The model: presets, the representation recorded in checkpoints, the default model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from gbsynth.trainer import representation
from gbsynth.trainer.checkpoint import (
    BUILTIN_MODEL,
    CheckpointError,
    default_model_path,
    load_checkpoint,
    save_checkpoint,
)
from gbsynth.trainer.data import Track
from gbsynth.trainer.model import GPT, PRESETS, GPTConfig
from gbsynth.trainer.train import SPREAD_TOKENS, Trainer, TrainSettings, model_token_nll

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_gpu_preset_has_its_shape_and_takes_a_training_step_on_cpu():
    config = PRESETS["gpu"]
    assert (config.n_layer, config.n_head, config.n_embd, config.block_size) == (8, 6, 384, 4096)
    assert config.representation == representation.DEFAULT
    # One step on short windows: the shapes and the backward pass, in seconds on a CPU.
    trainer = Trainer(config, TrainSettings(batch_size=2, window=32, warmup_steps=1))
    assert 14e6 < trainer.model.num_parameters() < 17e6
    rng = np.random.default_rng(0)
    tracks = [Track("t", "a" * 64, rng.integers(0, config.vocab_size, 200))]
    before = trainer.model.blocks[0].attn.c_attn.weight.detach().clone()
    loss = trainer.step(trainer.windows(tracks))
    assert np.isfinite(loss) and loss > 0
    assert not torch.equal(before, trainer.model.blocks[0].attn.c_attn.weight)
    with torch.no_grad():
        logits = trainer.model.logits(trainer.model.hidden(torch.zeros(1, 8, dtype=torch.long)))
    assert logits.shape == (1, 8, config.vocab_size)


def test_the_default_preset_holds_thirty_seconds_of_music():
    config = PRESETS["cpu"]
    rep = representation.get(config.representation)
    assert config.block_size >= 2048
    # Corpus music runs at about 90 channel-event tokens per second: 2,048 are 20-40 s.
    assert rep.name == "channel_events"


def test_a_model_started_from_another_takes_this_run_s_context(tmp_path):
    """Context extension: rotary positions have no weights, so a model trained on a short
    context fine-tunes on a longer one with the same weights."""
    from gbsynth.trainer.train import TrainingRun

    short = GPT(PRESETS["tiny"])
    saved = save_checkpoint(tmp_path / "short", short, step=7)
    longer = dataclasses.replace(PRESETS["tiny"], block_size=128)
    trainer, resumed = TrainingRun.resume_or_start(
        tmp_path / "long", longer, TrainSettings(window=0), init=saved.path
    )
    assert resumed is None and trainer.config.block_size == 128 and trainer.step_count == 7
    for name, weights in short.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[name], weights)


def test_checkpoints_record_the_representation(tmp_path):
    config = dataclasses.replace(PRESETS["tiny"], representation="writes", vocab_size=0)
    assert config.vocab_size == representation.get("writes").vocab_size
    saved = save_checkpoint(tmp_path, GPT(config), step=3)
    loaded = load_checkpoint(saved.path)
    assert loaded.config.representation == "writes"
    meta = json.loads(saved.path.with_suffix(".json").read_text())
    assert meta["config"]["representation"] == "writes" and meta["promoted"] is True
    with pytest.raises(representation.RepresentationError, match="unknown representation"):
        GPTConfig(representation="midi")


def test_default_model_setting(tmp_path):
    assert default_model_path({"GBSYNTH_DEFAULT_MODEL": "none"}) is None
    with pytest.raises(CheckpointError, match="no model at"):
        default_model_path({"GBSYNTH_DEFAULT_MODEL": str(tmp_path / "missing.pt")})
    saved = save_checkpoint(tmp_path, GPT(PRESETS["tiny"]), step=1)
    assert default_model_path({"GBSYNTH_DEFAULT_MODEL": str(saved.path)}) == saved.path


@pytest.mark.skipif(not BUILTIN_MODEL.exists(), reason="no default model built yet")
def test_the_shipped_default_model_loads_and_has_its_card():
    assert BUILTIN_MODEL.stat().st_size <= 25_000_000
    loaded = load_checkpoint(BUILTIN_MODEL)
    assert loaded.trainer_state is None  # inference only: no optimizer state
    assert loaded.config.block_size >= 2048
    card = json.loads(BUILTIN_MODEL.with_suffix(".json").read_text())["card"]
    assert card["recipe"] == "default" and card["representation"] == loaded.config.representation
    assert card["heldout"]["nats_per_second"] > 0
    assert (
        representation.get(loaded.config.representation).version == card["representation_version"]
    )


def test_a_capped_validation_scores_tracks_across_the_split() -> None:
    """Quick validations judge pieces spread over the split, not just its first one."""
    model = GPT(PRESETS["tiny"]).eval()
    rng = np.random.default_rng(0)
    tracks = [
        Track(f"t{i}", "0" * 64, rng.integers(0, 256, 1500).astype(np.int64)) for i in range(10)
    ]
    nll, targets = model_token_nll(model, tracks, max_tokens=2 * SPREAD_TOKENS)
    expected = np.concatenate([t.tokens[1 : SPREAD_TOKENS + 1] for t in (tracks[0], tracks[9])])
    np.testing.assert_array_equal(targets, expected)
    assert len(nll) == len(targets) and np.isfinite(nll).all()
    _, everything = model_token_nll(model, tracks)
    assert len(everything) == 10 * 1499
