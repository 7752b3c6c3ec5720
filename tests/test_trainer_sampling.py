"""Checkpoints, the sampler and the fast inference engine (the trainer -> generator contract)."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES, REGISTER_FIRST, REGISTER_LAST, ApuWrites
from gbsynth.trainer import representation, tokens
from gbsynth.trainer.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    newest_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    served_checkpoints,
)
from gbsynth.trainer.engine import InferenceEngine
from gbsynth.trainer.model import GPT, PRESETS, GPTConfig
from gbsynth.trainer.sampling import PREAMBLE, Sampler, SamplingError
from gbsynth.trainer.testing import make_tiny_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tiny_checkpoint_loads_and_newest_ignores_partial_files(tmp_path: Path) -> None:
    make_tiny_checkpoint(tmp_path, step=1)
    second = make_tiny_checkpoint(tmp_path, step=20, seed=1)
    (tmp_path / ".step-0000000030.pt.abc.tmp").write_bytes(b"half a file")
    assert newest_checkpoint(tmp_path) == second
    loaded = load_checkpoint(second)
    assert loaded.step == 20 and loaded.path == second
    assert not loaded.model.training
    assert len(loaded.sha256) == 64 and loaded.heldout_nll is None
    assert newest_checkpoint(tmp_path / "missing") is None


def test_damaged_or_foreign_checkpoints_are_refused(tmp_path: Path) -> None:
    path = make_tiny_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(path, expected_sha256="0" * 64)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    other = tmp_path / "step-0000000002.pt"
    torch.save({"hello": 1}, other)
    with pytest.raises(CheckpointError, match="not a gbsynth"):
        load_checkpoint(other)
    # A model made for another version of its token set (a different vocabulary).
    stale = replace(PRESETS["tiny"], vocab_size=100)
    saved = save_checkpoint(tmp_path / "stale", GPT(stale), step=1)
    with pytest.raises(CheckpointError, match="token set"):
        load_checkpoint(saved.path)


def test_prune_keeps_newest_best_and_served(tmp_path: Path) -> None:
    model = GPT(PRESETS["tiny"])
    for step, nll, promoted in [(1, 5.0, True), (2, 1.0, True), (3, 4.0, True),
                                (4, 3.0, False), (5, None, False), (6, 6.0, False)]:  # fmt: skip
        save_checkpoint(tmp_path, model, step=step, heldout_nll=nll, promoted=promoted)
    deleted = prune_checkpoints(tmp_path, keep_newest=2)
    # 5 and 6 are the newest, 2 the best, 3 the newest promoted (served) one.
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 3, 5, 6]
    assert [s for s, _ in served_checkpoints(tmp_path)] == [2, 3]
    assert len(deleted) == 2 and not (tmp_path / "step-0000000001.json").exists()


@pytest.mark.parametrize("time_heads", [0, 1])
def test_engine_matches_the_torch_model_step_by_step(time_heads: int) -> None:
    torch.manual_seed(0)
    config = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, time_heads=time_heads)
    model = GPT(config).eval()
    for p in model.parameters():
        p.data += 0.1 * torch.randn_like(p)  # make every weight matter
    sequence = torch.randint(0, model.config.vocab_size, (40,))  # any tokens: no grammar here
    sequence[::3] = torch.randint(0, 256, (14,))  # time shifts: the time head's clock moves
    engine = InferenceEngine(model)
    state = engine.new_state()
    cache = model.new_cache()
    with torch.inference_mode():
        # The first block_size steps equal a full causal forward pass.
        full = model.logits(model.hidden(sequence[None, :16]))[0]
        for i, token in enumerate(sequence):  # then the window slides
            expected = model.step(int(token), cache)
            engine.feed(state, token[None].numpy())
            if i < 16:
                assert torch.allclose(expected, full[i], atol=1e-4)
            # The engine keeps keys and values in half precision (11 significant bits).
            np.testing.assert_allclose(state.logits, expected.numpy(), atol=2e-3)


def test_the_engine_refuses_weights_half_precision_cannot_hold() -> None:
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=16))
    with torch.no_grad():
        model.blocks[0].mlp.c_fc.weight[0, 0] = float("nan")  # a diverged run's checkpoint
    with pytest.raises(ValueError, match="half precision"):
        InferenceEngine(model)


@pytest.fixture(scope="module", params=["channel_events", "writes"])
def sampler(request, tmp_path_factory) -> Sampler:
    folder = tmp_path_factory.mktemp("ckpt")
    return Sampler(load_checkpoint(make_tiny_checkpoint(folder, representation=request.param)))


def test_samples_are_legal_deterministic_and_cover_the_length(sampler: Sampler) -> None:
    pieces = list(sampler.stream(3.0, seed=5))
    song = ApuWrites.concat(pieces)
    song.validate()  # non-decreasing cycles, registers 0xFF10-0xFF3F
    assert len(song) > 50
    assert REGISTER_FIRST <= song.registers.min() and song.registers.max() <= REGISTER_LAST
    assert song.cycles[-1] < 3 * CPU_HZ
    # Opens loud and panned; never switches the APU off or writes FF27-FF2F.
    opening = sampler.representation.encode(PREAMBLE, None)
    expected, _ = sampler.representation.decode(opening)
    assert song.between(0, 1) == expected.between(0, 1)
    assert np.all(song.values[song.registers == 0xFF26] & 0x80)
    assert not np.any((song.registers >= 0xFF27) & (song.registers <= 0xFF2F))
    for before, after in zip(pieces, pieces[1:], strict=False):
        if len(before) and len(after):
            assert after.cycles[0] >= before.cycles[-1]
    assert sampler.sample(3.0, seed=5) == song
    assert sampler.sample(3.0, seed=6) != song


def test_greedy_prime_and_bad_arguments(sampler: Sampler) -> None:
    prime = ApuWrites.from_arrays([0, 100, 70_000], [0xFF12, 0xFF13, 0xFF14], [0xF0, 0x40, 0x87])
    song = sampler.sample(1.0, temperature=0.0, prime=prime)
    # The prime's note (NR13/NR14 with the trigger bit) opens the song.
    triggers = song.between(0, 80_000)
    assert np.any((triggers.registers == 0xFF14) & (triggers.values & 0x80 != 0))
    assert sampler.sample(1.0, temperature=0.0, prime=prime, seed=9) == song
    assert len(sampler.sample(0.0)) == 0
    assert sampler.sample(1e-6) == sampler.representation.decode(
        sampler.representation.encode(PREAMBLE, None)
    )[0].between(0, 5)  # just the opening
    for bad in (
        {"seconds": -1.0},
        {"seconds": 1.0, "top_p": 0.0},
        {"seconds": 1, "temperature": -1},
    ):
        with pytest.raises(SamplingError):
            sampler.sample(**bad)


def test_sampling_from_several_threads_gives_each_seed_its_song(sampler: Sampler) -> None:
    expected = {seed: sampler.sample(2.0, seed=seed) for seed in range(4)}
    results: dict[int, ApuWrites] = {}

    def work(seed: int) -> None:
        results[seed] = sampler.sample(2.0, seed=seed)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[s] == expected[s] for s in range(4))


def test_a_model_stuck_on_one_write_cannot_flood_the_song(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = GPT(replace(PRESETS["tiny"], representation="writes", vocab_size=0))
    with torch.no_grad():  # always "NR12 again, 4 cycles later"
        # A constant final state (ln_f weight 0) aligned with the tokens to repeat.
        direction = torch.randn(model.config.n_embd)
        model.ln_f.weight.zero_()
        model.ln_f.bias.copy_(direction)
        for token in (1, tokens.REG_BASE + 0xFF12 - REGISTER_FIRST):
            model.wte.weight[token] = 20 * direction
    sampler = Sampler(load_checkpoint(save_checkpoint(tmp_path, model, step=1).path))
    song = sampler.sample(2.0, seed=0)
    assert np.all(song.registers[3:] == 0xFF12)
    cycles = song.cycles[3:]  # after the preamble
    # No span of one frame holds more than a frame's worth of tokens.
    most = representation.get("writes").max_tokens_per_frame // 3
    ends = np.searchsorted(cycles, cycles + FRAME_CYCLES)
    assert (ends - np.arange(len(cycles))).max() <= most
    assert len(song) > most * 20  # it still writes as fast as allowed
