"""``gbsynth train --recipe default``: the default model, from ``../shared``, in one command.

    gbsynth train --recipe default --out var/model-run --minutes 110 \\
        --corpus /work/data/corpus --shared ../shared --threads 2

1. **Data.** The pre-training corpus (``--corpus``: Avro recordings of scores and
   modules played by our own driver, ``gbsynth corpus build``), 10 % of its source
   files held out for validation; the Game Boy music of ``--shared`` (``GB_MUSIC``: DevSound
   subsongs 1-6, DevSound X, the three GBT Player ROMs) and the eight demo songs
   (``gbsynth make-demo-music``, seed 0), recorded on the fly, the last 15 % of each
   song kept for validation; and the held-out test music, ``HELDOUT``: nightmode.gbs,
   whose driver (Laxity's) is in no training data. Every file's and every corpus
   recording's tokens are cached in ``OUT/cache``; encoding new corpus recordings
   stops after ``CORPUS_ENCODE_SHARE`` of the budget (training could not use more).
2. **Pre-training** on the corpus (``OUT/pretrain``), with transposition and tempo
   augmentation, on windows of ``PRETRAIN_WINDOW`` tokens (cheaper per token), for
   ``PRETRAIN_SHARE`` of the time left, early-stopped on the validation split. Each stage
   trains at most its ``Stage.max_tokens`` (the learning rate decays to them).
3. **Fine-tuning** on the Game Boy music (``OUT/finetune``) from the best pre-trained
   checkpoint, on windows of ``FINETUNE_WINDOW`` tokens, then (``OUT/long``) on windows of
   the whole context (``LONG``: context extension, ``LONG_SHARE`` of the time left),
   each early-stopped.
4. **Held-out evaluation** of the last stage's best checkpoint (and of the pre-trained
   one) on ``HELDOUT``: nats per second of music against n-gram baselines fitted on
   the same training data (``gbsynth.trainer.evaluate``).
5. **Export**: the best fine-tuned weights (no optimizer state) to ``--export``
   (default: the model shipped in the package, ``services/trainer/default_model``),
   with its card (data, steps, throughput, losses, held-out figures) in the ``.json``.

``--minutes`` is the wall-time budget of the whole run (default 110). Running the
command again on the same ``--out`` continues the stages from their checkpoints; a stage
that finished (``STAGE_SUMMARY`` in its folder) is not trained again.

After fine-tuning, the weights of the match model (``gbsynth.trainer.match``: a song's
own earlier tokens as a guess for the next) are fitted on the fine-tuning validation
music, and the held-out evaluation scores the network mixed with it, as it samples.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gbsynth.common.files import atomic_write
from gbsynth.trainer import representation
from gbsynth.trainer.data import (
    DataError,
    Track,
    iter_files,
    load_tracks,
    save_tracks,
    split_tracks,
    total_seconds,
    total_tokens,
    tracks_from_file,
)
from gbsynth.trainer.model import PRESETS
from gbsynth.trainer.train import TrainSettings

log = logging.getLogger(__name__)

GB_MUSIC = (
    ("corpus/DevSound_demo.gbs", 180.0),
    ("roms/music/devsoundx/DevSoundX.gb", 300.0),
    ("roms/music/gbt-player/effects_test.gb", 300.0),
    ("roms/music/gbt-player/instr_test.gb", 300.0),
    ("roms/music/gbt-player/range_test.gb", 300.0),
)
"""Game Boy music for fine-tuning: files under ``--shared`` and seconds recorded each."""
HELDOUT = (("corpus/nightmode.gbs", 180.0),)
"""Held-out test music: a driver (Laxity's) that is in no training data."""
DEMO_SONGS, DEMO_SEED, DEMO_SECONDS = 8, 0, 120.0
PRETRAIN_SHARE = 0.7
"""Share of the training time spent pre-training (the rest fine-tunes)."""
LONG_SHARE = 0.45
"""Share of the fine-tuning time spent on windows of the whole context (``LONG``)."""
PRETRAIN_WINDOW = 1024
FINETUNE_WINDOW = 2048


@dataclass(frozen=True)
class Stage:
    """One training stage of the recipe: its folder, settings and data splits."""

    name: str
    settings: TrainSettings
    patience: int
    """Validations without a better score before the stage stops (``--patience`` overrides)."""
    eval_tokens: int
    checkpoint_every: int
    """Steps between validations: a step takes 5-40 s on a 2-core machine."""
    splits: tuple[str, str]
    """The training and validation splits of ``read_data``."""
    max_tokens: int
    """Training tokens at most (the learning rate decays to them): more fine-tuning on
    the little Game Boy music fits its own songs and scores unseen drivers worse (34 M
    tokens of pre-training and fine-tuning gave nightmode 1,520 nats/s against 1,110 for 13 M)."""


PRETRAIN = Stage(
    "pretrain", TrainSettings(batch_size=4, lr=2e-3, warmup_steps=30, window=PRETRAIN_WINDOW),
    patience=24, eval_tokens=16_000, checkpoint_every=25, splits=("corpus_train", "corpus_valid"),
    max_tokens=12_000_000,
)  # fmt: skip
FINETUNE = Stage(
    "finetune", TrainSettings(batch_size=4, lr=5e-4, warmup_steps=10, window=FINETUNE_WINDOW),
    patience=6, eval_tokens=10_000, checkpoint_every=10, splits=("gb_train", "gb_valid"),
    max_tokens=2_000_000,
)  # fmt: skip
LONG = Stage(
    "long", TrainSettings(batch_size=2, lr=1e-4, warmup_steps=5, window=0),
    patience=6, eval_tokens=10_000, checkpoint_every=5, splits=("gb_train", "gb_valid"),
    max_tokens=200_000,
)  # fmt: skip
"""Fine-tuning on to windows of the whole context (4,096 tokens for ``gpu``): 8x the cost
per token of 1,024-token windows, so it comes last and short (context extension)."""
VALID_TAIL = 0.15
"""Share of each Game Boy song (its end) kept to validate fine-tuning."""
CORPUS_VALID_PERCENT = 10.0
"""By source file (a score's parts and variants stay together); the training time uses
only part of the corpus anyway."""
CORPUS_ENCODE_SHARE = 0.05
"""At most this share of the budget goes to encoding corpus recordings (about 70x real
time on one core: more music than the training time can use is left out)."""
STAGE_SUMMARY = "summary.json"
"""Written into a stage's folder when it finishes: running the recipe again skips it."""
RESERVE_MINUTES = 6.0
"""Time kept for the held-out evaluation and the export."""
MIN_STAGE_MINUTES = 1.0
"""Each stage trains at least this long, whatever is left of the budget."""


def _cached_tracks(
    cache: Path, path: Path, rep, seconds: float, *, drop_silence: bool = False
) -> list[Track]:
    """The tracks of one file, encoded once (keyed by the file's name, size and mtime, the
    seconds recorded, whether silences were cut and the representation's version)."""
    stat = path.stat()
    played = f"{seconds:g}-sounding" if drop_silence else f"{seconds:g}"
    key = f"{path.name}-{stat.st_size}-{stat.st_mtime_ns}-{played}-{rep.name}-{rep.version}.npz"
    cached = cache / key
    if cached.exists():
        return load_tracks(cached, rep)
    tracks = tracks_from_file(path, rep, seconds=seconds, drop_silence=drop_silence)
    cache.mkdir(parents=True, exist_ok=True)
    save_tracks(cached, tracks, rep)
    return tracks


def _corpus_tracks(
    corpus_dir: Path | None, cache: Path, rep, deadline: float | None = None
) -> tuple[list[Track], int]:
    """The corpus's tracks, each recording encoded once (cached by recording id: the
    builder appends recordings to its files while it runs, and a file's last recording
    may still be incomplete, so it is read again next time). Two worker processes
    encode; the files are read in turn, so an encoding ``deadline`` (``time.monotonic``)
    still leaves a mix of every shard. Returns the tracks and the number of recordings
    left out (not encoded by the deadline, or not yet complete)."""
    from concurrent.futures import ProcessPoolExecutor

    from gbsynth.common.avro import CodecError
    from gbsynth.common.formats import iter_recordings

    if corpus_dir is None or not corpus_dir.is_dir():
        return [], 0
    cache.mkdir(parents=True, exist_ok=True)
    tracks: list[Track] = []
    skipped = 0
    readers = [iter_recordings(p) for p in iter_files([corpus_dir]) if p.suffix == ".avro"]
    with ProcessPoolExecutor(max_workers=2) as pool:
        pending = []
        while readers:
            for reader in list(readers):
                try:
                    recording = next(reader)
                except StopIteration:
                    readers.remove(reader)
                    continue
                except CodecError as exc:  # the builder is writing this file's last recording
                    readers.remove(reader)
                    skipped += 1
                    _say(f"read up to an incomplete recording ({exc})")
                    continue
                cached = cache / f"{recording.recording_id}-{rep.version}.npz"
                if cached.exists():
                    tracks.extend(load_tracks(cached, rep))
                elif deadline is None or time.monotonic() < deadline:
                    pending.append(pool.submit(_encode_recording, recording, rep.name, cached))
                else:
                    skipped += 1
            # Keep the queue short, so the deadline bounds the encoding.
            while len(pending) > 8:
                tracks.extend(pending.pop(0).result())
        for future in pending:
            tracks.extend(future.result())
    return tracks, skipped


def _encode_recording(recording, rep_name: str, cached: Path) -> list[Track]:
    """(In a worker process) a recording's tracks, saved to ``cached``."""
    from gbsynth.trainer.data import tracks_from_recording

    rep = representation.get(rep_name)
    tracks = tracks_from_recording(recording, rep)
    save_tracks(cached, tracks, rep)
    return tracks


def _tail_split(tracks: list[Track], share: float) -> tuple[list[Track], list[Track]]:
    """Each track's start for training, its last ``share`` for validation."""
    train, valid = [], []
    for track in tracks:
        cut = int(len(track) * (1.0 - share))
        train.append(Track(track.name, track.source_sha256, track.tokens[:cut]))
        valid.append(Track(track.name + "#tail", track.source_sha256, track.tokens[cut:]))
    return train, valid


def _say(message: str) -> None:
    print(f"[recipe {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def read_data(
    args: argparse.Namespace, rep, encode_deadline: float | None = None
) -> dict[str, Any]:
    """Every split the recipe trains and evaluates on (see the module docstring); corpus
    recordings not encoded by ``encode_deadline`` (``time.monotonic``) are left out."""
    shared: Path = args.shared
    cache = args.out / "cache"
    gb: list[Track] = []
    for name, seconds in GB_MUSIC:
        gb.extend(_cached_tracks(cache, shared / name, rep, seconds, drop_silence=True))
    demo_dir = args.out / "demo"
    if not (demo_dir / "index.json").exists():
        from gbsynth.music.demo import write_demo

        write_demo(demo_dir, DEMO_SONGS, DEMO_SEED)
    for path in sorted(demo_dir.glob("*.gbs")):
        gb.extend(_cached_tracks(cache, path, rep, DEMO_SECONDS, drop_silence=True))
    heldout: list[Track] = []
    for name, seconds in HELDOUT:
        heldout.extend(_cached_tracks(cache, shared / name, rep, seconds))
    gb_train, gb_valid = _tail_split(gb, VALID_TAIL)
    corpus, skipped = _corpus_tracks(args.corpus, cache / "corpus", rep, encode_deadline)
    corpus_train, corpus_valid = split_tracks(corpus, CORPUS_VALID_PERCENT)
    if corpus and not corpus_valid:  # too few source files for the share: split in time
        corpus_train, corpus_valid = _tail_split(corpus, VALID_TAIL)
    return {
        "gb_train": gb_train, "gb_valid": gb_valid, "heldout": heldout,
        "corpus_train": corpus_train, "corpus_valid": corpus_valid,
        "corpus_recordings_skipped": skipped,
    }  # fmt: skip


def _describe(tracks: list[Track], rep) -> dict[str, Any]:
    return {
        "tracks": len(tracks),
        "tokens": total_tokens(tracks),
        "hours": round(total_seconds(tracks, rep) / 3600, 2),
    }


def run_recipe(args: argparse.Namespace) -> int:
    from gbsynth.trainer.checkpoint import (
        BUILTIN_MODEL,
        best_checkpoint,
        load_checkpoint,
        write_checkpoint,
    )
    from gbsynth.trainer.evaluate import evaluate
    from gbsynth.trainer.training_folder import DATASET_FILE, train_stage

    started = time.monotonic()
    minutes = 110.0 if args.minutes is None else args.minutes
    deadline = started + minutes * 60.0
    rep = representation.get(representation.DEFAULT)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    _say(f"reading the music (budget {minutes:g} min)")
    try:
        # Continuing a run: pre-training has its corpus already (no new encoding).
        resuming = (out / "pretrain" / DATASET_FILE).exists()
        encode_for = 0.0 if resuming else minutes * 60.0 * CORPUS_ENCODE_SHARE
        data = read_data(args, rep, started + encode_for)
    except (DataError, OSError) as exc:
        print(f"gbsynth train --recipe: {exc}", file=sys.stderr)
        return 1
    sizes = {name: _describe(tracks, rep) for name, tracks in data.items()
             if isinstance(tracks, list)}  # fmt: skip
    _say(f"data: {json.dumps(sizes)}")
    config = dataclasses.replace(PRESETS[args.preset], representation=rep.name, vocab_size=0)
    if args.block_size is not None:
        config = dataclasses.replace(config, block_size=args.block_size)
    common = dict(keep=args.keep, seed=args.seed, quiet=args.quiet)
    train_minutes = max(MIN_STAGE_MINUTES, (deadline - time.monotonic()) / 60.0 - RESERVE_MINUTES)
    summaries: dict[str, Any] = {}

    def run_stage(stage: Stage, minutes: float, init: Path | None) -> bool:
        """Train one stage into ``out/stage.name`` unless it finished before (its summary is
        there); False (said why) if it could not."""
        done = out / stage.name / STAGE_SUMMARY
        if done.exists():
            _say(f"{stage.name}: finished before ({done})")
            summaries[stage.name] = json.loads(done.read_text())
            return True
        window = min(stage.settings.window or config.block_size, config.block_size)
        steps = max(1, stage.max_tokens // (stage.settings.batch_size * window))
        result = train_stage(
            out / stage.name, None, config, dataclasses.replace(stage.settings, seed=args.seed),
            minutes=minutes, steps=steps, init=init,
            tracks=tuple(data[split] for split in stage.splits),
            patience=args.patience or stage.patience, eval_tokens=stage.eval_tokens,
            checkpoint_every=stage.checkpoint_every, **common,
        )  # fmt: skip
        if isinstance(result, str):
            print(f"gbsynth train --recipe: {result}", file=sys.stderr)
            return False
        atomic_write(done, json.dumps(result, indent=1).encode())
        summaries[stage.name] = result
        return True

    init = pretrained = None
    if data["corpus_train"]:
        pre_minutes = train_minutes * PRETRAIN_SHARE
        _say(f"pre-training for {pre_minutes:.1f} min")
        if not run_stage(PRETRAIN, pre_minutes, None):
            return 1
        init = pretrained = best_checkpoint(out / "pretrain")
    else:
        _say("no corpus: fine-tuning a new model on the Game Boy music alone")
    stages = (FINETUNE, LONG) if FINETUNE.settings.window < config.block_size else (FINETUNE,)
    for stage in stages:
        left = max(MIN_STAGE_MINUTES, (deadline - time.monotonic()) / 60.0 - RESERVE_MINUTES)
        stage_minutes = left * (1.0 - LONG_SHARE) if stage is not stages[-1] else left
        _say(f"{stage.name} for {stage_minutes:.1f} min from {init}")
        if not run_stage(stage, stage_minutes, init):
            return 1
        init = best_checkpoint(out / stage.name)

    best = load_checkpoint(init)
    _say("fitting the match model's weights on the fine-tuning validation music")
    best.match_weights = fit_match_weights(best, data["gb_valid"])
    _say(f"match weights: {best.match_weights}")
    _say("held-out evaluation")
    # The baselines learn from exactly what the model was trained on (saved by the stages).
    train_all = [
        track
        for stage in ("pretrain", "finetune")  # LONG trains on FINETUNE's data again
        if (out / stage / DATASET_FILE).exists()
        for track in load_tracks(out / stage / DATASET_FILE, rep)
    ]
    report = evaluate(best, train_all, data["heldout"])
    if pretrained is not None:
        before = evaluate(load_checkpoint(pretrained), train_all, data["heldout"])
        report["pretrained_only"] = {
            k: before[k] for k in ("checkpoint", "step", "nats_per_second", "nll_per_token")
        }
    _say(f"held-out: {json.dumps(report)}")
    card = {
        "recipe": "default",
        "command": " ".join(["gbsynth", *sys.argv[1:]]) if sys.argv else "gbsynth train",
        "representation": rep.name,
        "representation_version": rep.version,
        "preset": args.preset,
        "config": best.config.to_dict(),
        "parameters": best.model.num_parameters(),
        "data": sizes,
        "heldout_music": [name for name, _ in HELDOUT],
        "stages": summaries,
        "heldout": report,
        "wall_minutes": round((time.monotonic() - started) / 60.0, 1),
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "git_commit": _git_commit(),
    }
    export = args.export or BUILTIN_MODEL
    export.parent.mkdir(parents=True, exist_ok=True)
    saved = write_checkpoint(
        export, best.model, step=best.step, train_loss=best.train_loss,
        heldout_nll=report["nll_per_token"], heldout_nats_per_second=report["nats_per_second"],
        card=card, match_weights=best.match_weights,
    )  # fmt: skip
    size_mb = export.stat().st_size / 1e6
    _say(f"wrote {export} ({size_mb:.1f} MB, step {saved.step})")
    print(json.dumps({"model": str(export), "size_mb": round(size_mb, 2), **card["heldout"]}))
    return 0


def fit_match_weights(loaded, tracks: list[Track]) -> list[float]:
    """The match model's weights that make ``tracks`` most likely under ``loaded``'s network
    mixed with it (``gbsynth.trainer.match``)."""
    from gbsynth.trainer import match
    from gbsynth.trainer.train import model_token_nll

    nll, targets = model_token_nll(loaded.model, tracks)
    onsets = representation.get(loaded.config.representation).onsets
    guess, length = match.track_predictions(tracks, onsets)
    return match.fit_weights(nll, guess, length, targets)


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
