"""The pruner's logic without Kafka: music kept, silence, beeps, noise and repeats dropped."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gbsynth.common.avro import (
    CodecError,
    RecordingAssembler,
    decode_segment,
    encode_chunk,
    make_segment_id,
    recording_to_chunks,
)
from gbsynth.common.config import SettingError
from gbsynth.common.events import (
    CPU_HZ,
    FRAME_CYCLES,
    ApuWrites,
    Phase,
    PhaseMark,
    Recording,
    Source,
    SourceKind,
)
from gbsynth.common.formats import read_segments, write_iodump, write_recordings
from gbsynth.common.kafka import TOPIC_RECORDINGS, TOPIC_SEGMENTS, Message
from gbsynth.emulator.sources import open_session
from gbsynth.pruner.analysis import analyse, rhythm
from gbsynth.pruner.cli_prune import configure as configure_offline
from gbsynth.pruner.cli_prune import run as run_offline
from gbsynth.pruner.main import PrunerProcessor
from gbsynth.pruner.prune import (
    REASONS,
    PruneConfig,
    PruneConfigError,
    prune_recording,
)

# -- recordings of real music and of non-music (made once per session) ------------------------

MUSIC = {
    # name: (path under ../shared, subsong, seconds)
    "nightmode": ("corpus/nightmode.gbs", 1, 40),
    "devsound-1": ("corpus/DevSound_demo.gbs", 1, 30),
    "devsound-2": ("corpus/DevSound_demo.gbs", 2, 30),
    "devsound-3": ("corpus/DevSound_demo.gbs", 3, 30),
    "devsound-4": ("corpus/DevSound_demo.gbs", 4, 30),
    "devsound-6": ("corpus/DevSound_demo.gbs", 6, 30),
    "range_test": ("roms/music/gbt-player/range_test.gb", None, 30),
    "effects_test": ("roms/music/gbt-player/effects_test.gb", None, 30),
    "devsoundx": ("roms/music/devsoundx/DevSoundX.gb", None, 40),
}


@pytest.fixture(scope="session")
def recordings(shared_dir) -> dict[str, Recording]:
    made = {}
    for name, (path, subsong, seconds) in MUSIC.items():
        made[name] = open_session(shared_dir / path, subsong=subsong).record(seconds)
    made["cpu_instrs"] = open_session(shared_dir / "roms/blargg/cpu_instrs/cpu_instrs.gb").record(
        30
    )
    return made


SRC = Source(sha256="ab" * 32, file_name="synthetic", kind=SourceKind.GENERATED)
APU_ON = [(0xFF26, 0x80), (0xFF24, 0x77), (0xFF25, 0xFF)]


def synthetic(rid: str, events: list[tuple[float, int, int]], seconds: float, phases=()):
    """A recording from ``(second, register, value)`` writes."""
    events = sorted(events, key=lambda e: e[0])
    cycles = [int(round(t * CPU_HZ)) for t, _, _ in events]
    writes = ApuWrites.from_arrays(cycles, [r for _, r, _ in events], [v for _, _, v in events])
    return Recording(rid, SRC, writes, int(seconds * CPU_HZ), phases=tuple(phases))


def single_beep() -> Recording:
    """APU on, one 1 kHz-ish pulse note with a fading envelope at 5 s, nothing else."""
    x = 2048 - 131072 // 1000
    beep = [(0.0, r, v) for r, v in APU_ON] + [
        (5.0, 0xFF11, 0x80),
        (5.0, 0xFF12, 0xF3),
        (5.0, 0xFF13, x & 0xFF),
        (5.0, 0xFF14, 0x80 | x >> 8),
        (29.9, 0xFF12, 0x00),  # the channel's DAC off: a last write, so an I/O dump keeps 30 s
    ]
    return synthetic("beep", beep, 30.0)


def white_noise() -> Recording:
    """The noise channel at full volume, 15-bit LFSR at its highest clock, for 30 s."""
    noise = [(0.0, r, v) for r, v in APU_ON] + [
        (0.5, 0xFF21, 0xF0),
        (0.5, 0xFF22, 0x00),
        (0.5, 0xFF23, 0x80),
    ]
    return synthetic("noise", noise, 30.0)


# -- acceptance: music kept, non-music rejected with its reason -------------------------------


@pytest.mark.parametrize("name", list(MUSIC))
def test_music_keeps_segments(recordings, name):
    recording = recordings[name]
    result = prune_recording(recording)
    assert result.segments, f"{name}: nothing kept, rejected {result.rejected_by_reason()}"
    config = PruneConfig()
    for segment in result.segments:
        f = segment.features
        assert config.min_seconds - 0.02 <= f.duration_seconds <= config.max_seconds + 0.02
        assert f.distinct_pitches >= config.min_pitches
        assert f.loudness_db >= config.min_loudness_db
        assert f.channels_used & 0b111, "a tonal channel plays"
        assert f.tempo_bpm is not None and 70 <= f.tempo_bpm < 180
        assert segment.segment_id == make_segment_id(recording.recording_id, segment.start_cycle)
    starts = [s.start_cycle for s in result.segments]
    assert starts == sorted(starts)
    ends = [s.end_cycle for s in result.segments]
    assert all(e <= s for e, s in zip(ends, starts[1:], strict=False)), "segments overlap"


def test_test_rom_without_music_keeps_nothing(recordings):
    result = prune_recording(recordings["cpu_instrs"])
    assert result.segments == []
    assert result.rejected_by_reason() == {"silence": 1}


@pytest.mark.parametrize(
    "path, subsong, reason",
    [
        ("corpus/DevSound_demo.gbs", 5, "one_shot"),  # a 5 s jingle, then silence
        ("roms/music/gbt-player/instr_test.gb", None, "few_pitches"),  # one note per instrument
        ("roms/blargg/dmg_sound/dmg_sound.gb", None, "one_shot"),  # test beeps
    ],
)
def test_shared_files_that_are_not_music_keep_nothing(shared_dir, path, subsong, reason):
    result = prune_recording(open_session(shared_dir / path, subsong=subsong).record(30))
    assert result.segments == []
    assert reason in result.rejected_by_reason()


def test_single_beep_keeps_nothing():
    result = prune_recording(single_beep())
    assert result.segments == []
    reasons = result.rejected_by_reason()
    assert reasons.get("one_shot") == 1, reasons
    beep = next(r for r in result.rejections if r.reason == "one_shot")
    assert 5 * CPU_HZ - FRAME_CYCLES <= beep.start_cycle <= 5 * CPU_HZ
    assert beep.seconds < 2


def test_white_noise_keeps_nothing():
    result = prune_recording(white_noise())
    assert result.segments == []
    assert set(result.rejected_by_reason()) == {"noise_only"}
    assert all("noise channel carries 100%" in r.detail for r in result.rejections)


def test_every_rejection_has_a_known_reason_and_a_span(recordings):
    for recording in [*recordings.values(), single_beep(), white_noise()]:
        for rejection in prune_recording(recording).rejections:
            assert rejection.reason in REASONS
            assert 0 <= rejection.start_cycle < rejection.end_cycle <= recording.duration_cycles


def test_near_silence_is_rejected_as_quiet(recordings):
    # The same song with pulse and noise at volume 1 of 15, the wave channel muted and the
    # master volume (NR50) at its minimum: still playing, barely audible.
    w = recordings["nightmode"].writes
    values = w.values.copy()
    envelope = np.isin(w.registers, [0xFF12, 0xFF17, 0xFF21])
    values[envelope] = 0x10  # volume 1 of 15, no envelope
    values[w.registers == 0xFF1C] = 0x00  # wave channel muted
    values[w.registers == 0xFF24] = 0x00
    quiet = recordings["nightmode"].with_writes(ApuWrites(w.cycles, w.registers, values))
    result = prune_recording(quiet)
    assert result.segments == []
    assert "quiet" in result.rejected_by_reason()


def test_one_repeated_note_has_too_few_pitches():
    # A metronome: the same note every half second, rhythmic but not music.
    events = [(0.0, r, v) for r, v in APU_ON] + [(0.0, 0xFF11, 0x80), (0.0, 0xFF13, 0x00)]
    for i in range(60):
        events += [(0.5 * i, 0xFF12, 0xF1), (0.5 * i, 0xFF14, 0x87)]
    result = prune_recording(synthetic("metronome", events, 30.0))
    assert result.segments == []
    assert "few_pitches" in result.rejected_by_reason()  # the rest repeats it


def test_scattered_notes_have_no_rhythm():
    rng = random.Random(5)
    events = [(0.0, r, v) for r, v in APU_ON] + [(0.0, 0xFF11, 0x80)]
    t = 0.0
    while t < 29:
        x = rng.randrange(1000, 1900)
        events += [
            (t, 0xFF12, 0xF2),
            (t, 0xFF13, x & 0xFF),
            (t, 0xFF14, 0x80 | x >> 8),
        ]
        t += rng.uniform(0.05, 1.0)
    result = prune_recording(synthetic("scatter", events, 30.0))
    assert result.segments == []
    assert "no_rhythm" in result.rejected_by_reason()


def test_loop_repeats_are_removed(recordings):
    # DevSound's first song loops after about 15 s: one segment, the rest is a repeat.
    result = prune_recording(recordings["devsound-1"])
    reasons = result.rejected_by_reason()
    assert reasons.get("repeat") == 1, reasons
    repeat = next(r for r in result.rejections if r.reason == "repeat")
    assert result.segments[-1].end_cycle == repeat.start_cycle, "cut at the loop point"
    # Playing the recording twice in a row adds only repeats.
    rec = recordings["nightmode"]
    twice = rec.with_writes(
        ApuWrites.concat([rec.writes, rec.writes.shifted(rec.duration_cycles)]),
        2 * rec.duration_cycles,
    )
    once, doubled = prune_recording(rec), prune_recording(twice)
    assert [s.segment_id for s in doubled.segments] == [s.segment_id for s in once.segments]
    assert doubled.rejected_by_reason().get("repeat", 0) >= 1


def test_only_observing_spans_are_used(recordings):
    # Buttons pressed from 12 s to 20 s, settling until 23 s: music there must not be used.
    rec = recordings["nightmode"]
    marks = (
        PhaseMark(0, Phase.OBSERVE),
        PhaseMark(12 * CPU_HZ, Phase.PRESS),
        PhaseMark(20 * CPU_HZ, Phase.SETTLE),
        PhaseMark(23 * CPU_HZ, Phase.OBSERVE),
    )
    explored = Recording(rec.recording_id, rec.source, rec.writes, rec.duration_cycles, 0, marks)
    result = prune_recording(explored)
    assert result.segments
    for item in [*result.segments, *result.rejections]:
        inside = [(a, b) for a, b in explored.observing_spans() if a <= item.start_cycle < b]
        assert inside and item.end_cycle <= inside[0][1], "crosses a press or settle phase"


def test_long_music_is_spread_over_parts_within_limits(recordings):
    config = PruneConfig(min_seconds=4.0, max_seconds=10.0)
    result = prune_recording(recordings["nightmode"], config)
    assert len(result.segments) >= 3
    for segment in result.segments:
        assert 4.0 - 0.02 <= segment.features.duration_seconds <= 10.0 + 0.02
    # The segments cover the recording from start to end, not only its start.
    assert result.segments[-1].end_cycle > 0.8 * recordings["nightmode"].duration_cycles


def test_pruning_is_deterministic(recordings):
    rec = recordings["devsoundx"]
    first, second = prune_recording(rec), prune_recording(rec)
    assert [s.segment_id for s in first.segments] == [s.segment_id for s in second.segments]
    assert all(a == b for a, b in zip(first.segments, second.segments, strict=True))
    assert first.rejections == second.rejections


def test_segments_stand_alone(recordings):
    """A segment opens with the register state, so it sounds the same cut out as in place."""
    from gbsynth.synth import channel_activity

    rec = recordings["devsound-2"]
    segment = prune_recording(rec).segments[-1]
    assert segment.start_cycle > 0
    alone = channel_activity(segment.as_recording())
    in_place = channel_activity(rec)[segment.start_cycle // FRAME_CYCLES :][: len(alone)]
    # Frame grids differ by the start's offset within a frame: compare the loudness profile.
    assert np.corrcoef(alone.sum(1)[2:-2], in_place.sum(1)[2:-2])[0, 1] > 0.9


def test_features(recordings):
    segment = prune_recording(recordings["nightmode"]).segments[0]
    f = segment.features
    assert f.channels_used == 0b1111
    assert f.write_count == len(
        recordings["nightmode"].writes.between(segment.start_cycle, segment.end_cycle)
    )
    assert -20 < f.loudness_db < 0
    assert set(f.extra) >= {"rhythm_regularity", "noise_share", "sounding_share"}


def test_rhythm_of_a_strict_beat():
    counts = np.zeros(600, np.int32)
    counts[::30] = 1  # a note every 30 frames: 119.5 BPM
    beat = rhythm(counts)
    assert beat.regularity > 0.9
    assert beat.tempo_bpm == pytest.approx(119.5, abs=1.0)
    assert rhythm(np.zeros(600, np.int32)).tempo_bpm is None


def test_onsets_include_legato_notes():
    # A pulse note triggered once, then moved a whole tone up without a trigger.
    x1, x2 = 1547, 1602  # about C4 and D4
    events = [(0.0, r, v) for r, v in APU_ON] + [
        (0.1, 0xFF12, 0xF0),
        (0.1, 0xFF13, x1 & 0xFF),
        (0.1, 0xFF14, 0x80 | x1 >> 8),
        (0.5, 0xFF13, x2 & 0xFF),
        (0.5, 0xFF14, x2 >> 8),
        (0.6, 0xFF13, (x2 + 1) & 0xFF),
        (0.6, 0xFF14, (x2 + 1) >> 8),  # vibrato: no onset
    ]
    onsets = analyse(synthetic("legato", events, 1.0).writes, CPU_HZ).onsets
    assert onsets.pitches.tolist() == [60, 62]


def test_config_is_checked():
    with pytest.raises(PruneConfigError, match="twice the minimum"):
        PruneConfig(min_seconds=10, max_seconds=15)
    with pytest.raises(SettingError, match="GBSYNTH_PRUNE_MIN_PITCHES"):
        PruneConfig.from_env({"GBSYNTH_PRUNE_MIN_PITCHES": "many"})
    assert PruneConfig.from_env({"GBSYNTH_PRUNE_MAX_SECONDS": "40"}).max_seconds == 40


# -- the service's processor, without Kafka ---------------------------------------------------


def messages_of(recordings: list[Recording]) -> list[Message]:
    """Chunk messages of several recordings, interleaved, in one partition."""
    chunked = [
        [encode_chunk(c) for c in recording_to_chunks(r, max_writes=2000)] for r in recordings
    ]
    values = []
    while any(chunked):
        for chunks in chunked:
            if chunks:
                values.append(chunks.pop(0))
    return [
        Message(TOPIC_RECORDINGS, 0, offset, None, value) for offset, value in enumerate(values)
    ]


def metric(name: str, **labels: str) -> float:
    from gbsynth.common.metrics import REGISTRY

    return REGISTRY.get_sample_value(name, {"service": "pruner", **labels}) or 0.0


def test_processor_reassembles_prunes_and_holds_back_commits(recordings):
    recs = [recordings["nightmode"], recordings["devsound-2"]]
    processor = PrunerProcessor()
    before = {
        name: metric(name)
        for name in (
            "gbsynth_pruner_recordings_in_total",
            "gbsynth_pruner_segments_out_total",
            "gbsynth_pruner_writes_in_total",
            "gbsynth_pruner_seconds_count",
        )
    }
    outputs = []
    for message in messages_of(recs):
        outputs.extend(processor.process(message))
        if len(processor.assembler):
            # Offsets of a half-assembled recording are never committed.
            held = processor.safe_offsets()
            assert held and min(held.values()) <= message.offset
    assert processor.safe_offsets() == {}
    expected = [s for r in recs for s in prune_recording(r).segments]
    assert sorted(o.key for o in outputs) == sorted(s.segment_id for s in expected)
    assert all(o.topic == TOPIC_SEGMENTS for o in outputs)
    by_id = {s.segment_id: s for s in expected}
    for out in outputs:
        assert decode_segment(out.value) == by_id[out.key]
    counted = {name: metric(name) - value for name, value in before.items()}
    assert counted == {
        "gbsynth_pruner_recordings_in_total": 2,
        "gbsynth_pruner_segments_out_total": len(expected),
        "gbsynth_pruner_writes_in_total": sum(len(r.writes) for r in recs),
        "gbsynth_pruner_seconds_count": 2,
    }


def test_rejections_are_counted_by_reason():
    processor = PrunerProcessor()
    before = metric("gbsynth_pruner_rejections_total", reason="noise_only")
    for message in messages_of([white_noise()]):
        assert list(processor.process(message)) == []
    expected = len(prune_recording(white_noise()).rejections)
    assert metric("gbsynth_pruner_rejections_total", reason="noise_only") == before + expected


def test_processor_ignores_duplicate_chunks(recordings):
    processor = PrunerProcessor()
    messages = messages_of([recordings["devsound-1"]])
    first = [o for m in messages for o in processor.process(m)]
    again = [o for m in messages for o in processor.process(m)]
    assert first and again == []


def test_processor_rejects_bad_messages():
    processor = PrunerProcessor()
    with pytest.raises(CodecError):
        list(processor.process(Message(TOPIC_RECORDINGS, 0, 0, b"k", b"\xb5\x01\x02junk")))
    value = messages_of([single_beep()])[0].value
    with pytest.raises(CodecError, match="key"):
        list(processor.process(Message(TOPIC_RECORDINGS, 0, 1, b"someone-else", value)))


def test_processor_forgets_revoked_partitions(recordings):
    from kafka import TopicPartition

    processor = PrunerProcessor(assembler=RecordingAssembler())
    message = messages_of([recordings["nightmode"]])[0]
    assert list(processor.process(message)) == []
    assert processor.safe_offsets() == {TopicPartition(TOPIC_RECORDINGS, 0): 0}
    processor.partitions_revoked({TopicPartition(TOPIC_RECORDINGS, 0)})
    assert processor.safe_offsets() == {}


# -- gbsynth prune ----------------------------------------------------------------------------


def prune_cli(*argv: str) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    configure_offline(parser)
    return run_offline(parser.parse_args(list(argv)))


def test_offline_prune_writes_one_file_per_segment(recordings, tmp_path, capsys):
    avro = tmp_path / "music.avro"
    write_recordings(avro, [recordings["nightmode"], recordings["cpu_instrs"]])
    dump = tmp_path / "beep.txt"
    write_iodump(single_beep(), dump)
    out = tmp_path / "segments"
    assert prune_cli(str(avro), str(dump), "--out", str(out)) == 0
    summary = json.loads(capsys.readouterr().out.strip())
    expected = prune_recording(recordings["nightmode"]).segments
    assert summary["recordings"] == 3
    assert summary["kept"] == len(expected) == len(list(out.iterdir()))
    assert summary["rejected"]["silence"] >= 1 and summary["rejected"]["one_shot"] == 1
    for segment in expected:
        files = [p for p in out.iterdir() if p.name.endswith(f"_{segment.start_cycle}.avro")]
        assert read_segments(files[0]) == [segment]


def test_offline_prune_refuses_what_is_not_a_recording(shared_dir, tmp_path, capsys):
    out = tmp_path / "out"
    gbs = shared_dir / "corpus/nightmode.gbs"
    status = prune_cli(str(gbs), str(tmp_path / "missing.avro"), "--out", str(out))
    captured = capsys.readouterr()
    assert status == 1
    assert "nightmode.gbs: not a recording" in captured.err
    assert "gbsynth emulate" in captured.err
    assert "missing.avro: no such file" in captured.err
    summary = json.loads(captured.out)
    assert summary["kept"] == 0 and len(summary["failed"]) == 2


def test_offline_prune_bad_settings(tmp_path, capsys):
    status = prune_cli(str(tmp_path / "x"), "--out", str(tmp_path), "--min-seconds", "20")
    assert status == 2
    assert "twice the minimum" in capsys.readouterr().err


def test_cli_lists_prune_and_pruner():
    from gbsynth.cli import available_commands

    assert {"prune", "pruner"} <= set(available_commands())


def test_generated_songs_tempo_and_loops():
    """The demo composer's songs say their tempo and length: the estimates must agree.

    Its driver's tempo is a fraction of rows per frame, so each pass of a loop falls on
    another frame grid: repeats are still recognised (note order, not frame times).
    """
    from gbsynth.emulator.sources import GbsSession
    from gbsynth.music.composer import compose
    from gbsynth.music.rom import song_files

    tempo_right = 0
    for index in range(12):
        song = compose(seed=0, index=index)
        gbs, _rom = song_files(song)
        seconds = max(120.0, 2.5 * song.seconds)
        result = prune_recording(GbsSession(gbs, "song.gbs", 1).record(seconds))
        kept = sum(s.features.duration_seconds for s in result.segments)
        # One pass is kept (less what repeats inside it, at most the minimum more), the
        # loops after it are repeats.
        assert 0.75 * song.seconds <= kept <= song.seconds + 8.5, (index, kept, song.seconds)
        assert result.rejected_by_reason().get("repeat", 0) >= 1
        tempos = [s.features.tempo_bpm for s in result.segments]
        estimate = float(np.median(tempos))
        tempo_right += abs(estimate / song.bpm - 1) < 0.03
    assert tempo_right >= 9, f"tempo within 3% for {tempo_right} of 12 songs"


def test_loudness_estimate_follows_the_rendered_level(recordings):
    from gbsynth.synth import render

    differences = []
    for name in MUSIC:
        for segment in prune_recording(recordings[name]).segments:
            audio = render(segment.as_recording(), rate=22050, stereo=False).astype(np.float64)
            rendered = 20 * np.log10(np.sqrt(np.mean(audio**2)))
            differences.append(rendered - segment.features.loudness_db)
    differences = np.array(differences)
    assert len(differences) >= 8
    assert abs(differences.mean()) < 2.0, differences
    assert np.abs(differences).max() < 6.0, differences


def test_short_sound_alone_or_cut_off(recordings):
    # Music that is only 5 s long because the recording stops: cut off, not a sound effect.
    rec = recordings["nightmode"]
    five = rec.with_writes(rec.writes.between(0, 5 * CPU_HZ), 5 * CPU_HZ)
    assert prune_recording(five).rejected_by_reason() == {"too_short": 1}
    # A beep right at the start of a recording, then silence: a one-shot.
    early = single_beep()
    w = early.writes
    moved = np.where(w.cycles == 5 * CPU_HZ, CPU_HZ // 10, w.cycles)
    order = np.argsort(moved, kind="stable")
    beep_first = early.with_writes(ApuWrites(moved[order], w.registers[order], w.values[order]))
    assert prune_recording(beep_first).rejected_by_reason() == {"one_shot": 1, "silence": 1}


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    seconds=st.floats(0.0, 50.0),
    rate=st.sampled_from([0, 5, 50, 500, 3000]),
    cut=st.lists(st.floats(0.0, 1.0), max_size=6),
)
def test_any_recording_prunes_into_consistent_pieces(seed, seconds, rate, cut):
    """Random writes and phases: no crash, segments inside observing spans and limits."""
    rng = np.random.default_rng(seed)
    duration = int(seconds * CPU_HZ) + 1
    n = int(rate * seconds)
    cycles = np.sort(rng.integers(0, duration, n))
    registers = rng.integers(0xFF10, 0xFF40, n)
    values = rng.integers(0, 256, n)
    # Mostly power on and loud, so that something sounds.
    head = ApuWrites.from_arrays([0, 0, 0], [0xFF26, 0xFF24, 0xFF25], [0x80, 0x77, 0xFF])
    writes = ApuWrites.concat([head, ApuWrites.from_arrays(cycles, registers, values)])
    phases = sorted(int(c * duration) for c in cut)
    marks = tuple(
        PhaseMark(c, [Phase.OBSERVE, Phase.PRESS, Phase.SETTLE, Phase.BOOT][i % 4])
        for i, c in enumerate(phases)
    )
    rec = Recording("random", SRC, writes, duration, phases=marks)
    config = PruneConfig(min_seconds=2.0, max_seconds=5.0)
    result = prune_recording(rec, config)
    spans = rec.observing_spans()
    pieces = sorted(
        [(s.start_cycle, s.end_cycle) for s in result.segments]
        + [(r.start_cycle, r.end_cycle) for r in result.rejections]
    )
    for start, end in pieces:
        assert any(a <= start < end <= b for a, b in spans), (start, end, spans)
    for (_, end), (start, _) in zip(pieces, pieces[1:], strict=False):
        assert end <= start, "pieces overlap"
    for segment in result.segments:
        assert 2.0 - 0.02 <= segment.features.duration_seconds <= 5.0 + 0.02
    assert len({s.segment_id for s in result.segments}) == len(result.segments)


def test_training_tracks_leave_out_long_silences(shared_dir):
    # DevSound subsong 5 is a short jingle: recorded for 40 s, most of it is silence,
    # which a model trained on it learns to play (generated songs fell silent).
    from gbsynth.emulator.sources import GbsSession
    from gbsynth.pruner.prune import sounding_passages
    from gbsynth.trainer import representation
    from gbsynth.trainer.data import total_seconds, tracks_from_recording

    data = (shared_dir / "corpus/DevSound_demo.gbs").read_bytes()
    recording = GbsSession(data, "DevSound_demo.gbs", 5).record(40)
    passages = sounding_passages(recording.writes, recording.duration_cycles)
    assert passages and all(0 <= a < b <= recording.duration_cycles for a, b in passages)
    gaps = [start - end for (_, end), (start, _) in zip(passages[:-1], passages[1:], strict=True)]
    assert all(gap >= 1.5 * CPU_HZ for gap in gaps)
    rep = representation.get(representation.DEFAULT)
    whole = tracks_from_recording(recording, rep)
    sounding = tracks_from_recording(recording, rep, drop_silence=True)
    assert total_seconds(whole, rep) > 39
    assert 1 < total_seconds(sounding, rep) < 0.5 * total_seconds(whole, rep)
