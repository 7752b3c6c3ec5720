"""gbsynth train and gbsynth evaluate, the n-gram baselines and the training loop."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from gbsynth.cli import main
from gbsynth.common.events import CPU_HZ
from gbsynth.common.formats import write_recordings
from gbsynth.emulator.sources import open_session
from gbsynth.trainer import baselines, representation, tokens
from gbsynth.trainer.checkpoint import list_checkpoints, read_metadata
from gbsynth.trainer.data import Track, is_heldout, load_tracks, tracks_from_paths
from gbsynth.trainer.model import GPT, PRESETS
from gbsynth.trainer.train import (
    Trainer,
    TrainingRun,
    TrainSettings,
    Windows,
    model_token_nll,
)

WRITES = representation.get("writes")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gbsynth(capsys, *args: str) -> subprocess.CompletedProcess:
    """Run a gbsynth subcommand in this process (no interpreter start-up per call)."""
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def test_witten_bell_chains_are_normalised():
    rng = np.random.default_rng(0)
    chain = baselines._Chain(vocabulary=5)
    keys = [rng.integers(0, 3, 400).astype(np.uint64) for _ in range(2)]
    valid = np.ones(400, dtype=bool)
    targets = rng.integers(0, 4, 400).astype(np.uint64)  # symbol 4 is never seen
    chain.fit([(np.zeros(400, np.uint64), valid), (keys[1], valid)], targets)
    for context in (0, 1, 2, 7):  # 7: an unseen context backs off
        query = [(np.zeros(5, np.uint64), np.ones(5, bool)),
                 (np.full(5, context, np.uint64), np.ones(5, bool))]  # fmt: skip
        probs = chain.prob(query, np.arange(5, dtype=np.uint64))
        assert probs.sum() == pytest.approx(1.0) and probs[4] > 0


def _loop(*events) -> np.ndarray:
    return tokens.flatten(np.array(events))


def test_baselines_and_model_score_the_same_tokens():
    rng = np.random.default_rng(1)
    pattern = _loop([5, 3, 0x80], [70, 4, 0x87], [40, 0x16, 0x80])
    tracks = [Track(f"t{i}", "a" * 64, np.tile(pattern, 30)) for i in range(3)]
    noisy = Track("n", "b" * 64, rng.integers(0, WRITES.vocab_size, 270))
    results = baselines.baseline_token_nlls(tracks, [tracks[0], noisy], WRITES.vocab_size)
    assert set(results) == {"unigram", "2-gram", "3-gram", "4-gram", "5-gram"}
    exact = baselines.WittenBell(3, WRITES.vocab_size).fit(tracks)
    assert exact.nll_per_token([tracks[0]]) < 0.1  # a loop it has seen is nearly certain
    assert len(exact.token_nll([tracks[0], noisy])) == 269 + 269
    model = Trainer(PRESETS["tiny"]).model
    nll, targets = model_token_nll(model, [tracks[0], noisy])
    assert len(nll) == 269 + 269 and np.array_equal(targets[:269], tracks[0].tokens[1:])


def test_training_learns_a_loop_and_resumes_identically(tmp_path):
    pattern = _loop([5, 3, 0x80], [70, 4, 0x87], [40, 0x16, 0x80], [64, 1, 7])
    tracks = [Track("loop", "a" * 64, np.tile(pattern, 100))]
    settings = TrainSettings(batch_size=8, warmup_steps=5, lr=3e-3)
    trainer = Trainer(PRESETS["tiny"], settings)
    windows = Windows(tracks, trainer.config.block_size, WRITES)
    first = trainer.step(windows)
    for _ in range(59):
        last = trainer.step(windows)
    assert last < first / 3
    twin = Trainer(PRESETS["tiny"], settings)
    # Through a copy, as through a checkpoint file: nothing shared with the original.
    saved = copy.deepcopy((trainer.model.state_dict(), trainer.state()))
    twin.restore(saved[0], trainer.step_count, saved[1])
    assert twin.step(windows) == pytest.approx(trainer.step(windows), rel=1e-5)
    torch.testing.assert_close(twin.model.state_dict(), trainer.model.state_dict())


def test_a_run_promotes_only_checkpoints_better_than_the_served_model(tmp_path):
    pattern = _loop([5, 3, 0x80], [70, 4, 0x87], [40, 0x16, 0x80], [64, 1, 7])
    tracks = [Track("loop", "a" * 64, np.tile(pattern, 60))]
    settings = TrainSettings(batch_size=8, warmup_steps=5, lr=3e-3)
    good = Trainer(PRESETS["tiny"], settings)
    windows = Windows(tracks, good.config.block_size, WRITES)
    for _ in range(40):
        good.step(windows)
    # Against a model that knows the loop, an untrained one is not promoted ...
    fresh = Trainer(PRESETS["tiny"], settings)
    run = TrainingRun(tmp_path, fresh, tracks, checkpoint_every=5, promote_against=good.model)
    run.checkpoint()
    assert read_metadata(list_checkpoints(tmp_path)[-1][1])["promoted"] is False
    # ... and once it has learnt better than an untrained one, it is.
    run.promote_against = GPT(PRESETS["tiny"])
    steps = iter(range(5))
    saved = list(run.train(windows, until=lambda: next(steps, None) is None))
    assert len(saved) == 1 and read_metadata(saved[0].path)["promoted"] is True
    assert run.best is not None and run.best.nats_per_second > 0


def test_augmentation_keeps_music_legal(shared_dir):
    rng = np.random.default_rng(0)
    rec = np.tile(_loop([5, 3, 0x80], [120, 4, 0x87], [40, 0x16, 0x80], [140, 1, 7]), 20)
    for _ in range(10):
        varied = WRITES.augment(rec, rng)
        assert len(varied) == len(rec)
        assert len(WRITES.decode(varied)[0]) == len(WRITES.decode(rec)[0])
    slower = tokens.stretch_flat(rec, 1.2)
    long_gaps = (rec > tokens.N_EXACT_DT) & (rec < tokens.N_DT)  # in-frame gaps stay exact
    assert WRITES.cycles(slower[long_gaps]) == pytest.approx(
        1.2 * WRITES.cycles(rec[long_gaps]), rel=0.05
    )
    assert np.array_equal(slower[~long_gaps], rec[~long_gaps])
    # Channel events transpose and stretch: a real song stays legal and keeps its notes.
    events = representation.get("channel_events")
    (track,) = tracks_from_paths([shared_dir / "corpus/nightmode.gbs"], events, seconds=8)
    for _ in range(10):
        varied = events.augment(track.tokens, rng)
        writes, cycles = events.decode(varied)
        assert len(writes) > 100
        assert 8 / 1.25 < cycles / CPU_HZ < 8 * 1.25


def test_heldout_split_is_by_source_and_stable():
    assert is_heldout("0" * 64, 10) and not is_heldout("f" * 64, 10)
    shares = [is_heldout(f"{i:08x}" + "0" * 56, 10) for i in range(0, 2**32, 2**32 // 1000)]
    assert 0.05 < np.mean(shares) < 0.15
    assert not is_heldout("0" * 64, 0)


def test_train_then_evaluate_from_the_command_line(tmp_path, shared_dir, capsys):
    # A recordings file (as gbsynth emulate writes) and a GBS file recorded on the fly.
    rec = open_session(shared_dir / "corpus/DevSound_demo.gbs", subsong=3).record(15.0)
    write_recordings(tmp_path / "devsound3.avro", [rec])
    out = tmp_path / "ckpt"
    args = ["train", str(tmp_path / "devsound3.avro"), "--out", str(out), "--steps", "12",
            "--preset", "tiny", "--checkpoint-every", "5", "--quiet", "--seconds", "10",
            "--heldout", str(shared_dir / "corpus/nightmode.gbs")]  # fmt: skip
    result = gbsynth(capsys, *args)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["step"] == 12 and summary["valid_nll_per_token"] > 0
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [5, 10, 12]
    assert len(load_tracks(out / "dataset.npz", representation.get("channel_events"))) == 1

    again = gbsynth(capsys, *[a if a != "12" else "15" for a in args])  # continues
    assert again.returncode == 0, again.stderr
    assert "resuming from step-0000000012.pt" in again.stderr
    assert json.loads(again.stdout)["step"] == 15

    result = gbsynth(capsys, "evaluate", str(out))  # the held-out music saved by train
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["step"] == 15 and report["nats_per_second"] > 0
    assert report["representation"] == "channel_events"
    events = representation.get("channel_events")
    heldout = tracks_from_paths([shared_dir / "corpus/nightmode.gbs"], events, seconds=10)
    assert report["tokens"] == len(heldout[0]) - 1
    assert 9 < report["music_seconds"] <= 10
    best = report["baselines"][report["best_baseline"]]["nats_per_second"]
    assert best == min(b["nats_per_second"] for b in report["baselines"].values())
    assert report["vs_best_baseline"] == pytest.approx(
        (report["nats_per_second"] - best) / best, abs=2e-3
    )


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    junk = tmp_path / "notes.txt"
    junk.write_text("not music")
    result = gbsynth(capsys, "train", str(junk), "--out", str(tmp_path / "c"), "--steps", "1")
    assert result.returncode == 1 and "not a recordings/segments file" in result.stderr
    result = gbsynth(
        capsys, "train", str(tmp_path / "missing"), "--out", str(tmp_path / "c"), "--steps", "1"
    )
    assert result.returncode == 1 and "no such file" in result.stderr
    result = gbsynth(capsys, "evaluate", str(tmp_path / "empty"))
    assert result.returncode == 1 and "no checkpoint" in result.stderr
    result = gbsynth(capsys, "train", "--out", str(tmp_path / "c"), "--steps", "1")
    assert result.returncode == 2 and "give DATA" in result.stderr


@pytest.mark.slow
def test_the_default_recipe_pretrains_fine_tunes_evaluates_and_exports(
    capsys, tmp_path, shared_dir, monkeypatch
):
    # gbsynth train --recipe default, end to end on a little of the same music: a corpus
    # of one recording, one Game Boy ROM, one demo song, nightmode held out.
    from gbsynth.emulator.sources import GbsSession
    from gbsynth.trainer import recipe
    from gbsynth.trainer.checkpoint import load_checkpoint

    monkeypatch.setattr(recipe, "GB_MUSIC", (("roms/music/gbt-player/range_test.gb", 12.0),))
    monkeypatch.setattr(recipe, "HELDOUT", (("corpus/nightmode.gbs", 8.0),))
    monkeypatch.setattr(recipe, "DEMO_SONGS", 1)
    monkeypatch.setattr(recipe, "DEMO_SECONDS", 12.0)
    monkeypatch.setattr(recipe, "RESERVE_MINUTES", 0.0)
    monkeypatch.setattr(recipe, "MIN_STAGE_MINUTES", 0.05)
    monkeypatch.setattr(recipe, "CORPUS_ENCODE_SHARE", 1.0)  # a loaded machine encodes slowly
    # Fine-tuning windows shorter than the context, so the context-extension stage runs.
    short = dataclasses.replace(recipe.FINETUNE.settings, window=32)
    monkeypatch.setattr(recipe, "FINETUNE", dataclasses.replace(recipe.FINETUNE, settings=short))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    data = (shared_dir / "corpus/DevSound_demo.gbs").read_bytes()
    write_recordings(corpus / "recordings-00.avro", [GbsSession(data, "d.gbs", 1).record(12)])
    export = tmp_path / "export" / "model.pt"
    args = ["train", "--recipe", "default", "--out", str(tmp_path / "run"), "--minutes", "0.15"]
    args += ["--corpus", str(corpus), "--shared", str(shared_dir), "--preset", "tiny"]
    result = gbsynth(capsys, *args, "--export", str(export), "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["model"] == str(export) and summary["nats_per_second"] > 0
    card = json.loads(export.with_suffix(".json").read_text())["card"]
    assert set(card["stages"]) == {"pretrain", "finetune", "long"}
    # The long stage continues from fine-tuning's best checkpoint (not always its last step).
    finetune_best = int(Path(card["stages"]["finetune"]["best_checkpoint"]).stem.split("-")[1])
    assert card["stages"]["long"]["step"] > finetune_best
    assert card["stages"]["long"]["tokens_trained"] > 0
    # One source file: its recording splits in time (start to train, end to validate).
    assert card["data"]["corpus_train"]["tracks"] == card["data"]["corpus_valid"]["tracks"] == 1
    assert "pretrained_only" in card["heldout"]
    exported = load_checkpoint(export)
    assert exported.config.n_layer == PRESETS["tiny"].n_layer
    # The match model's weights, fitted on the validation music, travel with the model
    # and the held-out figure scores the mixture the sampler draws from.
    assert exported.match_weights == card["heldout"]["match_weights"]
    assert all(0.0 <= w < 1.0 for w in exported.match_weights)
    assert "network_alone" in card["heldout"]
    # Run again: the finished stages are not trained again.
    again = gbsynth(capsys, *args, "--export", str(export), "--quiet")
    assert again.returncode == 0 and "pretrain: finished before" in again.stderr
