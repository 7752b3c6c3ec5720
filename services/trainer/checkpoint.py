"""Model checkpoints on shared storage: written atomically, found, loaded, pruned.

A checkpoint is one file ``step-<step, 10 digits>.pt`` (``torch.save`` of plain
data: tensors, numbers, strings, so it loads with ``weights_only=True`` and a
file from shared storage cannot run code) holding:

- ``config``: the ``GPTConfig`` as a dict (with the token representation); ``model``: the weights;
- ``step``, ``train_loss``, ``heldout_nll`` (nats per token, or None), ``created_unix_ms``;
- ``trainer``: what resuming needs: optimizer state, the batch sampler's RNG
  state, consumer offsets, elapsed training seconds (absent in inference-only files).

Beside it, ``step-<step>.json`` repeats the small fields and the file's SHA-256,
so pruning and listing never open the big file; it also says whether the checkpoint
is ``promoted`` (scored better than the model served before it, so generators may
serve it: ``served_checkpoints``) and its held-out nats per second of music. Both
are written to a temporary name in the same folder and renamed, and the ``.pt`` file last: a
reader sees a complete checkpoint or none.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gbsynth.common.files import atomic_write
from gbsynth.trainer import match, representation
from gbsynth.trainer.model import GPT, GPTConfig

log = logging.getLogger(__name__)

FORMAT = "gbsynth-trainer-checkpoint/2"
_NAME = re.compile(r"^step-(\d{10})\.pt$")


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged or not a gbsynth checkpoint."""


def checkpoint_name(step: int) -> str:
    return f"step-{step:010d}.pt"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fo:
        for block in iter(lambda: fo.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class SavedCheckpoint:
    """What ``save_checkpoint`` wrote (the fields of the announcement)."""

    path: Path
    step: int
    sha256: str
    train_loss: float
    heldout_nll: float | None
    created_unix_ms: int
    config: GPTConfig


BUILTIN_MODEL = Path(__file__).resolve().parent / "default_model" / "model.pt"
"""The pre-trained default model shipped in the package (``make model`` rebuilds it), with
its card in ``model.json``."""


def default_model_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The default model ``GBSYNTH_DEFAULT_MODEL`` names (None: none, or ``builtin`` in a
    tree where it was not built yet, with a warning); ``CheckpointError`` when a named
    file is missing."""
    from gbsynth.common import config as cfg

    value = cfg.DEFAULT_MODEL.get(environ).strip()
    if value.lower() == "none":
        return None
    if value == "builtin" and not BUILTIN_MODEL.is_file():
        log.warning("no default model at %s (make model builds it)", BUILTIN_MODEL)
        return None
    path = BUILTIN_MODEL if value == "builtin" else Path(value)
    if not path.is_file():
        raise CheckpointError(f"{cfg.DEFAULT_MODEL.name}: no model at {path}")
    return path


def save_checkpoint(directory: Path, model: GPT, *, step: int, **fields: Any) -> SavedCheckpoint:
    """Write ``step-<step>.pt`` (and its ``.json``) atomically into ``directory``.

    ``fields`` are those of ``write_checkpoint``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return write_checkpoint(directory / checkpoint_name(step), model, step=step, **fields)


def write_checkpoint(
    path: Path,
    model: GPT,
    *,
    step: int,
    train_loss: float = float("nan"),
    heldout_nll: float | None = None,
    heldout_nats_per_second: float | None = None,
    promoted: bool = True,
    trainer_state: Mapping[str, Any] | None = None,
    card: Mapping[str, Any] | None = None,
    match_weights: Sequence[float] | None = None,
) -> SavedCheckpoint:
    """Write a checkpoint file (and the ``.json`` beside it) atomically at ``path``.

    ``card`` (a model card: data, steps, figures) goes into the ``.json``;
    ``match_weights`` (``gbsynth.trainer.match``) into both."""
    path = Path(path)
    created = time.time_ns() // 1_000_000
    payload = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "step": int(step),
        "train_loss": float(train_loss),
        "heldout_nll": None if heldout_nll is None else float(heldout_nll),
        "created_unix_ms": created,
        "trainer": dict(trainer_state) if trainer_state is not None else None,
        "match_weights": None if match_weights is None else [float(w) for w in match_weights],
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    meta = {
        "path": path.name,
        "step": int(step),
        "sha256": sha,
        "train_loss": float(train_loss),
        "heldout_nll": payload["heldout_nll"],
        "heldout_nats_per_second": heldout_nats_per_second,
        "promoted": bool(promoted),
        "created_unix_ms": created,
        "config": model.config.to_dict(),
        "match_weights": payload["match_weights"],
        **({"card": dict(card)} if card else {}),
    }
    atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=1).encode(), durable=True)
    atomic_write(path, data, durable=True)
    return SavedCheckpoint(path, int(step), sha, float(train_loss), meta["heldout_nll"],
                           created, model.config)  # fmt: skip


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``directory`` as ``(step, path)``, oldest step first.

    Temporary files being written (``.step-*.partial``) are not checkpoints.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = _NAME.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def newest_checkpoint(directory: Path) -> Path | None:
    """The complete checkpoint with the highest step in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def served_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """The promoted checkpoints (``list_checkpoints`` order): the ones a generator serves.

    A checkpoint whose ``.json`` does not say (or cannot be read) counts as promoted.
    """
    out = []
    for step, path in list_checkpoints(directory):
        meta = read_metadata(path)
        if meta is None or meta.get("promoted", True):
            out.append((step, path))
    return out


def best_checkpoint(directory: Path) -> Path | None:
    """The checkpoint with the lowest held-out NLL (the newest if none is scored)."""
    scored = []
    for step, path in list_checkpoints(directory):
        meta = read_metadata(path) or {}
        if meta.get("heldout_nll") is not None:
            scored.append((meta["heldout_nll"], -step, path))
    return min(scored)[2] if scored else newest_checkpoint(directory)


@dataclass
class LoadedCheckpoint:
    """A checkpoint loaded for use: the model in eval mode and what describes it."""

    model: GPT
    config: GPTConfig
    step: int
    path: Path
    sha256: str
    heldout_nll: float | None
    train_loss: float
    created_unix_ms: int
    trainer_state: dict[str, Any] | None
    match_weights: list[float] | None = None
    """Weights of the match model per match length (``gbsynth.trainer.match``); None: the
    network alone."""


def load_checkpoint(path: Path, *, expected_sha256: str | None = None) -> LoadedCheckpoint:
    """Load a checkpoint file; raise ``CheckpointError`` for anything but a valid one.

    With ``expected_sha256`` (from an announcement), a file whose bytes differ is refused.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    sha = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and sha != expected_sha256.lower():
        raise CheckpointError(f"{path}: SHA-256 {sha} differs from the announced {expected_sha256}")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors of every kind
        raise CheckpointError(f"{path}: not a loadable checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gbsynth trainer checkpoint")
    try:
        config = GPTConfig.from_dict(payload["config"])
        tokens = representation.get(config.representation).vocab_size
        if config.vocab_size != tokens:
            raise ValueError(
                f"it reads {config.vocab_size} {config.representation} tokens, this version"
                f" of the representation has {tokens} (a model and its token set go together)"
            )
        model = GPT(config)
        model.load_state_dict(payload["model"])
        weights = payload.get("match_weights")
        if weights is not None and (
            len(weights) != len(match.LENGTH_EDGES) or not all(0 <= w < 1 for w in weights)
        ):
            raise ValueError(
                f"match_weights must be {len(match.LENGTH_EDGES)} numbers in [0, 1), not {weights}"
            )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the model: {exc}") from exc
    model.eval()
    model.requires_grad_(False)
    return LoadedCheckpoint(
        model=model,
        config=config,
        step=int(payload["step"]),
        path=path,
        sha256=sha,
        heldout_nll=payload.get("heldout_nll"),
        train_loss=float(payload.get("train_loss", float("nan"))),
        created_unix_ms=int(payload.get("created_unix_ms", 0)),
        trainer_state=payload.get("trainer"),
        match_weights=payload.get("match_weights"),
    )


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The ``.json`` beside a checkpoint, or None if it is missing or unreadable."""
    try:
        return json.loads(Path(path).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None


def prune_checkpoints(directory: Path, keep_newest: int, keep_best: bool = True) -> list[Path]:
    """Delete all but the newest ``keep_newest`` checkpoints, the best held-out one and the
    newest promoted one (the one generators serve).

    Returns the deleted checkpoint paths. Stray temporary files older than an hour
    (a writer that died mid-write) go too.
    """
    found = list_checkpoints(directory)
    keep = {path for _, path in found[-max(keep_newest, 1) :]}
    if keep_best:
        scored = []
        for step, path in found:
            meta = read_metadata(path)
            nll = meta.get("heldout_nll") if meta else None
            if nll is not None:
                scored.append((nll, -step, path))
        if scored:
            keep.add(min(scored)[2])
    served = served_checkpoints(directory)
    if served:
        keep.add(served[-1][1])
    deleted = []
    for _, path in found:
        if path not in keep:
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)
            deleted.append(path)
    cutoff = time.time() - 3600
    for stray in Path(directory).glob(".step-*.partial"):
        try:
            if stray.stat().st_mtime < cutoff:
                stray.unlink()
        except OSError:
            pass
    return deleted
