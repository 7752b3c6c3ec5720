"""Song plans: rows, form, key and registers the sampler keeps (``gbsynth.trainer.song_plan``)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES
from gbsynth.trainer import representation
from gbsynth.trainer.checkpoint import load_checkpoint
from gbsynth.trainer.sampling import PREAMBLE, Sampler, SamplingError
from gbsynth.trainer.song_plan import (
    FORMS,
    KEY_NOTES,
    PHRASE_FORMS,
    ROW_FRAMES,
    WAVE_INSTRUMENTS,
    SongPlan,
    SongPlanError,
    key_bias,
    register_bias,
)
from gbsynth.trainer.testing import make_tiny_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sampler(tmp_path_factory) -> Sampler:
    return Sampler(load_checkpoint(make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))))


def _record_tokens(sampler: Sampler, monkeypatch, nudge=None) -> list[int]:
    """The list the sampler's tokens are appended to as it feeds them to the network;
    ``nudge(logits)``, if given, then changes the network's next logits."""
    feed_one = sampler.engine.feed_one
    sampled: list[int] = []

    def recording(state, token: int) -> None:
        sampled.append(int(token))
        feed_one(state, token)
        if nudge is not None:
            nudge(state.logits)

    monkeypatch.setattr(sampler.engine, "feed_one", recording)
    return sampled


def _origin(sampler: Sampler) -> int:
    """Where the first row starts: the end of the opening."""
    rep = sampler.representation
    return rep.cycles(rep.encode(PREAMBLE, None))


def test_plans_parse_print_and_refuse_what_the_sampler_cannot_follow() -> None:
    assert SongPlan.parse("AABA@6") == SongPlan(row_frames=6, form="AABA", keep_key=True)
    assert SongPlan.parse("@7/chromatic") == SongPlan(row_frames=7)
    assert SongPlan.parse(" free ") == SongPlan.free()
    assert SongPlan.parse("AB:aaba@5") == SongPlan(5, "AB", keep_key=True, phrases="aaba")
    for text in ("AABA@6", "ABAC@8/chromatic", "@5", "free", "AABA:abac@7"):
        assert str(SongPlan.parse(text)) == text
    bad_plans = ("AABA", "AABA@x", "BA@6", "aaba@6", "AB@0", "AB@17", "A@6/loud", "A" * 17 + "@6")
    bad_plans += ("AB:@6", "AB:AABA@6", "AB:ba@6", "AB:abc@6", ":ab@6")  # 3 bars in 64 rows
    for bad in bad_plans:
        with pytest.raises(SongPlanError):
            SongPlan.parse(bad)
    with pytest.raises(SongPlanError):
        SongPlan(row_frames=6, section_rows=0)
    plans = [SongPlan.for_seed(seed) for seed in range(64)]
    assert plans == [SongPlan.for_seed(seed) for seed in range(64)]  # the seed's own
    assert {p.row_frames for p in plans} == set(ROW_FRAMES)
    assert {p.form for p in plans} == set(FORMS)
    assert {p.phrases for p in plans} == set(PHRASE_FORMS)
    assert all(p.keep_key for p in plans)
    assert SongPlan.parse("AABA@6").beats_per_minute == pytest.approx(149.3, abs=0.1)


def _trigger_cycles(song) -> np.ndarray:
    """Cycles of the writes that trigger a channel (NRx4 bit 7)."""
    trigger = np.isin(song.registers, [0xFF14, 0xFF19, 0xFF1E, 0xFF23]) & (song.values >= 0x80)
    return song.cycles[trigger].astype(np.int64)


def test_rows_hold_every_triggered_note(sampler: Sampler) -> None:
    plan = SongPlan(row_frames=6)
    stats: dict[str, int] = {}
    song = sampler.sample(6.0, seed=3, plan=plan, stats=stats)
    triggers = _trigger_cycles(song)
    assert len(triggers) > 20
    into_row = (triggers - _origin(sampler)) % plan.row_cycles
    assert np.all(into_row < FRAME_CYCLES)  # in the row's first frame
    assert stats["owed_onsets"] > 0  # the untrained network would play notes anywhere
    free = _trigger_cycles(sampler.sample(6.0, seed=3, plan=SongPlan.free()))
    assert np.mean((free - _origin(sampler)) % plan.row_cycles >= FRAME_CYCLES) > 0.5
    # The onsets owed off the rows are offered again at row starts: about as many notes.
    print(f"{len(triggers)} triggers on rows, {len(free)} without rows")
    assert len(triggers) >= 0.7 * len(free)


def test_a_channel_starts_one_note_per_instant(sampler: Sampler, monkeypatch) -> None:
    """Owed onsets go to the channels that have not started a note at the row start yet:
    a second start on one channel at one instant would replace the first unheard."""
    rep = sampler.representation
    sampled = _record_tokens(sampler, monkeypatch)
    sampler.sample(6.0, seed=3, plan=SongPlan(row_frames=6))
    starts, instant = 0, set()
    for token in sampled:
        if rep.token_cycles[token] > 0:
            instant = set()
        elif rep.onsets[token]:
            channel = int(rep.onset_channels[token])
            assert channel not in instant
            instant.add(channel)
            starts += 1
    assert starts > 50
    assert rep.onset_channels[rep.onsets].min() == 0 and rep.onset_channels[~rep.onsets].max() < 0


def test_a_letter_heard_before_replays_its_section(sampler: Sampler) -> None:
    plan = SongPlan(row_frames=4, form="ABA", section_rows=16)
    length, origin = plan.section_cycles, _origin(sampler)
    stats: dict[str, int] = {}
    pieces = list(sampler.stream(3 * length / CPU_HZ, seed=8, plan=plan, stats=stats))
    for before, after in zip(pieces, pieces[1:], strict=False):
        if len(before) and len(after):
            assert after.cycles[0] >= before.cycles[-1]  # pieces in order, as they stream
    song = type(pieces[0]).concat(pieces)
    song.validate()
    first = song.between(origin + 1, origin + length)
    again = song.between(origin + 2 * length + 1, origin + 3 * length)
    assert len(first) > 10 and again == first.shifted(2 * length)
    middle = song.between(origin + length + 1, origin + 2 * length)
    assert middle != first.shifted(length)  # B is new music
    # Replays cost no sampling: three sections take the tokens of the first two.
    two: dict[str, int] = {}
    sampler.sample((origin + 2 * length + 10) / CPU_HZ, seed=8, plan=plan, stats=two)
    assert stats["tokens"] == two["tokens"]


def test_a_phrase_heard_before_in_its_section_plays_again(sampler: Sampler) -> None:
    plan = SongPlan(row_frames=4, form="AB", section_rows=16, phrases="aaba")
    assert [plan.part_of(i) for i in range(12)] == [0, 0, 1, 0, 2, 2, 3, 2, 0, 0, 1, 0]
    length, origin = plan.part_cycles, _origin(sampler)
    assert 4 * length == plan.section_cycles
    stats: dict[str, int] = {}
    song = sampler.sample(8 * length / CPU_HZ, seed=5, plan=plan, stats=stats)

    def part(i: int):
        return song.between(origin + i * length + 1, origin + (i + 1) * length)

    assert len(part(0)) > 3
    assert part(1) == part(0).shifted(length) and part(3) == part(0).shifted(3 * length)
    assert part(2) != part(0).shifted(2 * length)  # bar b is new
    assert part(5) == part(4).shifted(length) and part(4) != part(0).shifted(4 * length)
    # Only bars a, b, c, d are sampled.
    four: dict[str, int] = {}
    chained = SongPlan(row_frames=4, form="ABCD", section_rows=4)
    sampler.sample((origin + 4 * length - 10) / CPU_HZ, seed=5, plan=chained, stats=four)
    assert stats["tokens"] <= four["tokens"] + 2


def test_the_key_and_registers_the_first_notes_choose_are_kept(
    sampler: Sampler, monkeypatch
) -> None:
    rep = sampler.representation
    histogram = np.zeros(12)
    histogram[[0, 4, 7, 0, 2, 5, 9, 11]] += 1  # C major
    bias, name = key_bias(histogram, rep.note_pitches)
    assert name == "C major"
    c_major = (rep.note_pitches >= 0) & np.isin(rep.note_pitches % 12, [0, 2, 4, 5, 7, 9, 11])
    assert np.all(bias[c_major] == 0) and np.all(bias[(rep.note_pitches >= 0) & ~c_major] < -2)
    assert np.all(bias[rep.note_pitches < 0] == 0)  # time, instruments, drums: untouched
    far = register_bias(2, 60.0, rep.note_pitches, rep.note_channels)
    wave = rep.note_channels == 2
    assert np.all(far[wave & (np.abs(rep.note_pitches - 60) > 12)] < -2)
    assert np.all(far[~wave] == 0) and np.all(
        far[wave & (np.abs(rep.note_pitches - 60) <= 12)] == 0
    )

    sampled = _record_tokens(sampler, monkeypatch)

    def note_tokens(keep_key: bool) -> np.ndarray:
        """The pitches of the notes the network chose after the first ``KEY_NOTES``."""
        sampled.clear()
        sampler.sample(20.0, seed=4, plan=SongPlan(row_frames=5, keep_key=keep_key))
        pitches = rep.note_pitches[sampled]
        return pitches[pitches >= 0][KEY_NOTES:]

    kept, free = note_tokens(True), note_tokens(False)
    assert len(kept) > 100 and len(free) > 100

    def top_seven_share(pitches: np.ndarray) -> float:
        counts = Counter((pitches % 12).tolist())
        return sum(n for _, n in counts.most_common(7)) / len(pitches)

    # An untrained network picks pitch classes evenly; kept, most notes fall in 7 of them
    # (each out-of-key note a tenth as likely; the match model's copies are not biased).
    assert top_seven_share(kept) > 0.75 > 0.7 > top_seven_share(free)


def test_the_default_plan_and_what_has_no_rows(tmp_path) -> None:
    writes = Sampler(load_checkpoint(make_tiny_checkpoint(tmp_path, representation="writes")))
    assert writes.representation.on_rows is None
    writes.sample(1.0, seed=1)  # no plan by default: the write tokens mark no onsets
    with pytest.raises(SamplingError, match="rows"):
        writes.sample(1.0, plan=SongPlan(row_frames=6))
    rep = representation.get("channel_events")
    assert rep.on_rows is not None and rep.on_rows[rep.onsets].all()


def test_a_song_with_rows_keeps_its_first_wave_shapes_as_instruments(
    sampler: Sampler, monkeypatch
) -> None:
    rep = sampler.representation
    new_shape = int(np.flatnonzero(rep.new_wave_shape)[0])

    def eager_for_new_shapes(logits: np.ndarray) -> None:
        """A network that writes a new wave shape whenever it may."""
        logits[new_shape] += 12.0
        logits[rep.recent_wave_shapes] += 6.0

    sampled = _record_tokens(sampler, monkeypatch, eager_for_new_shapes)

    def shape_tokens(plan: SongPlan) -> tuple[int, int]:
        sampled.clear()
        sampler.sample(4.0, seed=2, plan=plan)
        reused = int(rep.recent_wave_shapes[sampled].sum())
        return sampled.count(new_shape), reused

    free_new, _ = shape_tokens(SongPlan.free())
    kept_new, kept_reused = shape_tokens(SongPlan(row_frames=6))
    assert free_new > 3 * WAVE_INSTRUMENTS
    # The first shapes are written, then the wave keeps changing among them.
    assert kept_new == WAVE_INSTRUMENTS and kept_reused > free_new // 2
    assert SongPlan.free().wave_shapes == 0 and SongPlan.for_seed(1).wave_shapes == 4
