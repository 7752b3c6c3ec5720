"""What the page shows about the served model (``GET /v1/model``): step, age, figures, and
what it was trained on, from whatever the checkpoint carries.

Checkpoints differ in what they describe: the trainer service's hold its losses, its
dataset size and training time; a model made by a training recipe comes with a model card
(``card`` in the ``.json`` the trainer writes beside every checkpoint, or a
``card``/``model_card``/``metadata`` entry of the checkpoint itself, or a JSON card file
beside it). Every part is optional: what is missing is left out, never guessed.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CARD_ATTRIBUTES = ("card", "model_card", "metadata")
"""Checkpoint attributes that may hold a model card (a dict)."""
SIDECAR_FIELDS = ("heldout_nats_per_second", "promoted")
"""Figures of the ``.json`` beside a checkpoint that the checkpoint itself lacks."""
CARD_FILES = ("{stem}.card.json", "{stem}.model_card.json", "card.json", "model_card.json")
"""JSON files beside the checkpoint that may be a card ({stem}: the checkpoint's name)."""
TRAINER_FIELDS = ("dataset_segments", "events_trained", "train_seconds", "recipe", "data")
"""Plain facts kept from the trainer state (its optimizer and random states are not)."""
MAX_JSON_CHARS = 20_000


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-friendly data (numbers, strings, lists, dicts), or None."""
    if depth > 6:
        return None
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        out = {str(k): _plain(v, depth + 1) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value[:200]]
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)  # numpy and torch scalars
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return _plain(item(), depth)
    return None


def _bounded(value: Any) -> Any:
    """Drop a card too large to send with every page view."""
    if value is None:
        return None
    if len(json.dumps(value)) > MAX_JSON_CHARS:
        return {"note": f"card over {MAX_JSON_CHARS} characters, not shown"}
    return value


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable: %s", path, exc)
        return None


def sidecar(path: Path | None) -> dict[str, Any]:
    """The ``.json`` the trainer writes beside a checkpoint (empty if none)."""
    data = _read_json(path.with_suffix(".json")) if path is not None else None
    return data if isinstance(data, dict) else {}


def model_card(checkpoint: Any, path: Path | None) -> dict[str, Any] | None:
    """The model card: in the checkpoint's ``.json``, in the checkpoint itself, or a JSON
    card file beside it."""
    card = sidecar(path).get("card")
    if isinstance(card, dict) and card:
        return _bounded(_plain(card))
    for name in CARD_ATTRIBUTES:
        card = getattr(checkpoint, name, None)
        if isinstance(card, dict) and card:
            return _bounded(_plain(card))
    if path is None:
        return None
    for pattern in CARD_FILES:
        card = _read_json(path.parent / pattern.format(stem=path.stem))
        if isinstance(card, dict) and card:
            return _bounded(_plain(card))
    return None


def describe_model(model: Any, now: float | None = None) -> dict[str, Any]:
    """The served model (a ``LoadedModel``) as JSON-friendly facts."""
    now = time.time() if now is None else now
    checkpoint = model.checkpoint
    info: dict[str, Any] = {"name": model.name, "step": model.step, "sha256": model.sha256}
    created_ms = getattr(checkpoint, "created_unix_ms", None)
    if isinstance(created_ms, int | float) and created_ms > 0:
        info["created_unix"] = created_ms / 1000
        info["age_seconds"] = max(0.0, now - created_ms / 1000)
    loaded_at = getattr(model, "loaded_at", None)
    if isinstance(loaded_at, int | float):
        info["serving_seconds"] = max(0.0, now - loaded_at)
    for name in ("train_loss", "heldout_nll"):
        value = _plain(getattr(checkpoint, name, None))
        if value is not None:
            info[name] = value
    config = getattr(checkpoint, "config", None)
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        info["config"] = _plain(to_dict())
    network = getattr(checkpoint, "model", None)
    if network is not None and callable(getattr(network, "parameters", None)):
        info["parameters"] = int(sum(p.numel() for p in network.parameters()))
    state = getattr(checkpoint, "trainer_state", None)
    if isinstance(state, dict):
        trainer = {k: _plain(state[k]) for k in TRAINER_FIELDS if k in state}
        trainer = {k: v for k, v in trainer.items() if v is not None}
        if trainer:
            info["trainer"] = trainer
    path = Path(model.path) if getattr(model, "path", None) else None
    beside = sidecar(path)
    for name in SIDECAR_FIELDS:
        value = _plain(beside.get(name))
        if value is not None:
            info[name] = value
    card = model_card(checkpoint, path)
    if card:
        info["card"] = card
    return info
