"""``GET /v1/model``: the served model's step, age, figures and model card, from whatever the
checkpoint carries (a card inside it or beside it; nothing is invented when it has none)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from fastapi.testclient import TestClient

from gbsynth.generator.app import create_app
from gbsynth.generator.model_info import describe_model
from gbsynth.generator.models import ModelHolder, load_model
from gbsynth.generator.service import Limits
from gbsynth.trainer.testing import make_tiny_checkpoint


def test_the_served_model_is_described(tmp_path):
    path = make_tiny_checkpoint(tmp_path, step=9)
    holder = ModelHolder(tmp_path)
    assert holder.refresh()
    with TestClient(create_app(holder, Limits())) as client:
        info = client.get("/v1/model").json()
    assert info["step"] == 9 and info["name"] == path.name and len(info["sha256"]) == 64
    assert 0 <= info["age_seconds"] < 600 and info["parameters"] > 1000
    assert info["config"]["n_layer"] >= 1
    assert "card" not in info and "train_loss" not in info  # NaN loss: left out, not shown


def test_a_card_beside_the_checkpoint_or_inside_it_is_shown(tmp_path):
    path = make_tiny_checkpoint(tmp_path, step=2)
    model = load_model(path)
    card = {"name": "default", "data": {"pretrain": "1,200 scores", "finetune": "GBS rips"}}
    (tmp_path / "card.json").write_text(json.dumps(card))
    assert describe_model(model)["card"] == card
    (tmp_path / f"{path.stem}.card.json").write_text("{not json")  # unreadable: next one
    assert describe_model(model)["card"] == card
    # A training recipe's card, in the .json the trainer writes beside the checkpoint.
    meta = json.loads(path.with_suffix(".json").read_text())
    recipe = {"recipe": "default", "data": {"gb_train": {"tracks": 40, "hours": 1.5}}}
    meta.update(card=recipe, heldout_nats_per_second=21.5)
    path.with_suffix(".json").write_text(json.dumps(meta))
    info = describe_model(model)
    assert info["card"] == recipe and info["heldout_nats_per_second"] == 21.5
    path.with_suffix(".json").unlink()
    inside = {"data": "the demo songs", "figures": {"nats_per_second": float("nan")}}
    checkpoint = SimpleNamespace(
        step=2, card=inside, created_unix_ms=0, heldout_nll=1.5,
        trainer_state={"optimizer": {"huge": 1}, "dataset_segments": 40, "train_seconds": 9.5},
    )  # fmt: skip
    fake = SimpleNamespace(checkpoint=checkpoint, step=2, sha256="0" * 64, name="x.pt", path=path)
    info = describe_model(fake)
    assert info["card"] == {"data": "the demo songs", "figures": {}}
    assert info["trainer"] == {"dataset_segments": 40, "train_seconds": 9.5}
    assert info["heldout_nll"] == 1.5 and "age_seconds" not in info
