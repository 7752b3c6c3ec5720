"""gbsynth train and gbsynth evaluate, the n-gram baselines and the training loop."""

from __future__ import annotations

import copy
import json
import subprocess

import numpy as np
import pytest
import torch

from gbsynth.cli import main
from gbsynth.common.formats import write_recordings
from gbsynth.emulator.sources import open_session
from gbsynth.trainer import baselines, tokens
from gbsynth.trainer.data import Track, is_heldout, load_tracks, tracks_from_paths
from gbsynth.trainer.model import PRESETS
from gbsynth.trainer.train import Trainer, TrainSettings, Windows, model_event_nll

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


def test_baselines_and_model_score_the_same_events():
    rng = np.random.default_rng(1)
    pattern = np.array([[5, 3, 0x80], [70, 4, 0x87], [40, 0x16, 0x80]])
    tracks = [Track(f"t{i}", "a" * 64, np.tile(pattern, (30, 1))) for i in range(3)]
    noisy = Track("n", "b" * 64, np.stack([rng.integers(0, n, 90) for n in (193, 48, 256)], 1))
    results = baselines.baseline_nlls(tracks, [tracks[0], noisy])
    assert set(results) == {
        *("unigram", "2-gram", "3-gram", "4-gram", "5-gram"),
        *(f"factorized {n}" for n in ("unigram", "2-gram", "3-gram", "4-gram", "5-gram")),
    }
    exact = baselines.WittenBell(3).fit(tracks)
    assert exact.nll_per_event([tracks[0]]) < 0.1  # a loop it has seen is nearly certain
    assert len(exact.event_nll([tracks[0], noisy])) == 89 + 89
    model = Trainer(PRESETS["tiny"]).model
    assert len(model_event_nll(model, [tracks[0], noisy])) == 89 + 89


def test_training_learns_a_loop_and_resumes_identically(tmp_path):
    pattern = np.array([[5, 3, 0x80], [70, 4, 0x87], [40, 0x16, 0x80], [64, 1, 7]])
    tracks = [Track("loop", "a" * 64, np.tile(pattern, (100, 1)))]
    settings = TrainSettings(batch_size=8, warmup_steps=5, lr=3e-3)
    trainer = Trainer(PRESETS["tiny"], settings)
    windows = Windows(tracks, trainer.config.block_size)
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
    assert summary["step"] == 12 and summary["heldout_nll"] > 0
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [5, 10, 12]
    assert len(load_tracks(out / "dataset.npz")) == 1

    again = gbsynth(capsys, *[a if a != "12" else "15" for a in args])  # continues
    assert again.returncode == 0, again.stderr
    assert "resuming from step-0000000012.pt" in again.stderr
    assert json.loads(again.stdout)["step"] == 15

    result = gbsynth(capsys, "evaluate", str(out))  # the held-out music saved by train
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["step"] == 15 and report["nll_per_event"] > 0
    assert report["events"] == len(tracks_from_paths([shared_dir / "corpus/nightmode.gbs"],
                                                     seconds=10)[0]) - 1  # fmt: skip
    assert report["best_baseline"] in report["baselines"]
    assert report["beats_best_baseline"] == (
        report["nll_per_event"] < min(report["baselines"].values())
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
    assert tokens.N_DT == PRESETS["tiny"].n_dt
