"""Scores as emulator sources and the corpus builder, on small subsets of ../shared/pretrain:
the CLI batch build (summary, shards, resume, variants), the emulator's jobs (one per part)
and the worker (recordings as offline; broken files as dead letters)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gbsynth.common.avro import chunks_to_recording, codec, decode_chunk
from gbsynth.common.events import SourceKind
from gbsynth.common.formats import read_recordings
from gbsynth.common.kafka import TOPIC_DEAD_LETTERS, TOPIC_JOBS, Message
from gbsynth.emulator.jobs import EmulationJob, discover_jobs
from gbsynth.emulator.main import EmulatorWorker
from gbsynth.emulator.score_source import ScoreSession, licence_of
from gbsynth.music.corpus import build

PIECES = {
    "nottingham/MIDI/ashover1.mid": "nottingham/MIDI/ashover1.mid",
    "nottingham/MIDI/ashover11.mid": "nottingham/MIDI/ashover11.mid",
    # the same tune's melody alone: a split copy, left out
    "nottingham/MIDI/melody/ashover1.mid": "nottingham/MIDI/melody/ashover1.mid",
    "openscore-lieder/lc5098666.mxl": "openscore-lieder/scores/Brahms_Johannes/"
    "8_Lieder_and_Romances_Op.14/6_Gang_zur_Liebsten/lc5098666.mxl",
    "gbstudio-mods/MBR_Settings.mod": "gbstudio-mods/Music/Menu_Themes/MBR_Settings.mod",
}
QUARTET = "openscore-quartets/scores/Mayer_Emilie/String_Quartet_in_G_minor_Op.14/sq7070319.mxl"


@pytest.fixture
def subset(tmp_path, shared_dir):
    """A folder with copies of a few pieces of each collection (the workers' folder keeps
    to real files inside it), their lines of the manifest, and three broken files."""
    root = tmp_path / "pretrain"
    pretrain = shared_dir / "pretrain"
    rows = {}
    with open(pretrain / "MANIFEST.tsv", encoding="utf-8") as fh:
        header = fh.readline()
        for line in fh:
            rows[line.split("\t", 1)[0]] = line.split("\t", 1)[1]
    manifest = [header]
    for name, real in PIECES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes((pretrain / real).read_bytes())
        if real in rows:
            manifest.append(f"{name}\t{rows[real]}")
    (root / "MANIFEST.tsv").write_text("".join(manifest), encoding="utf-8")
    broken = root / "broken"
    broken.mkdir()
    midi = (pretrain / PIECES["nottingham/MIDI/ashover1.mid"]).read_bytes()
    (broken / "cut.mid").write_bytes(midi[: len(midi) // 2])
    mxl = (pretrain / PIECES["openscore-lieder/lc5098666.mxl"]).read_bytes()
    (broken / "cut.mxl").write_bytes(mxl[: len(mxl) // 2])
    mod = (pretrain / PIECES["gbstudio-mods/MBR_Settings.mod"]).read_bytes()
    (broken / "samples_past_the_end.mod").write_bytes(mod[:-10])
    (root / "README.md").write_text("not music\n")
    return root


def test_licence_comes_from_the_collections_manifest(subset, tmp_path):
    assert "CC0" in licence_of(subset / "openscore-lieder/lc5098666.mxl")
    assert "nottingham" in licence_of(subset / "nottingham/MIDI/ashover1.mid")
    assert licence_of(subset / "broken/cut.mid") == "unknown"


def test_corpus_build_cli_summary_shards_and_resume(subset, tmp_path):
    out = tmp_path / "corpus"
    command = [
        sys.executable,
        "-m",
        "gbsynth",
        "corpus",
        "build",
        str(subset),
        "--out",
        str(out),
        "--jobs",
        "2",
        "--no-progress",
        "--shards",
        "3",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads(done.stdout)["files"] == summary["files"] == 7
    assert summary["recorded"] == 4 and summary["failed"] == 3
    assert summary["failed_by_reason"] == {"invalid_file": 3}
    assert sorted(f["file"].rsplit("/", 1)[-1] for f in summary["failures"]) == [
        "cut.mid",
        "cut.mxl",
        "samples_past_the_end.mod",
    ]
    assert summary["run"]["split_copies_left_out"] == 1
    assert summary["by_folder"]["nottingham"]["recorded"] == 2
    assert summary["by_folder"]["gbstudio-mods"]["recorded"] == 1
    assert summary["hours"] > 0.05 and summary["notes"] > 1000
    stats = summary["statistics"]
    assert stats["pitched_notes_in_tune_share"] >= 0.97
    assert set(stats["pitch_ranges_midi"]) == {"pulse 1", "pulse 2", "wave"}
    listed = {r["id"]: r for r in summary["recording_list"]}
    recordings = [
        r for shard in sorted(out.glob("recordings-*.avro")) for r in read_recordings(shard)
    ]
    assert {r.recording_id for r in recordings} == set(listed)
    for recording in recordings:
        assert recording.source.kind.is_score
        assert recording.source.licence == listed[recording.recording_id]["licence"] != ""
    # the statistics recomputed from the recordings files are the same
    restat = subprocess.run(
        [sys.executable, "-m", "gbsynth", "corpus", "stats", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert restat.returncode == 0, restat.stderr
    assert json.loads((out / "summary.json").read_text())["statistics"] == stats
    # a second run finds everything done
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    rerun = json.loads((out / "summary.json").read_text())
    assert rerun["run"]["files_this_run"] == 0 and rerun["recorded"] == 4


def test_corpus_build_a_quartet_and_augmented_variants(shared_dir, tmp_path):
    quartet = shared_dir / "pretrain" / QUARTET
    tune = shared_dir / "pretrain" / PIECES["nottingham/MIDI/ashover11.mid"]
    summary = build(
        [quartet, tune],
        tmp_path / "c",
        jobs=2,
        transposes=(0, 2),
        tempos=(1.0, 1.1),
        progress=False,
    )
    assert summary["recorded"] == 2
    ids = [r["id"] for r in summary["recording_list"]]
    assert len(ids) == len(set(ids)) >= 8  # 4 variants of each piece, each its own recording
    assert summary["hours_augmented"] > 2.5 * summary["hours"]
    assert summary["statistics"]["of_them_using_3_channels_share"] == 1.0


def _message(job: EmulationJob) -> Message:
    return Message(TOPIC_JOBS, 0, 0, job.job_id.encode(), codec("Job").encode(job.to_record(0)))


def test_score_jobs_one_per_part_and_the_worker_records_them_as_offline(subset):
    jobs, skipped = discover_jobs(subset, seconds=30.0)
    kinds = sorted(j.kind.value for j in jobs)
    assert kinds == ["midi", "midi", "mod", "musicxml"]
    assert sorted(s.split(":")[0] for s in skipped) == [
        "broken/cut.mid",
        "broken/cut.mxl",
        "broken/samples_past_the_end.mod",
    ]
    worker = EmulatorWorker(subset, piece_seconds=2.0)
    for job in jobs:
        assert job.subsong == 1 and job.seconds > 30  # the whole part, not the default 30 s
        chunks = [decode_chunk(o.value) for o in worker.process(_message(job))]
        recording = chunks_to_recording(chunks)
        offline = ScoreSession((subset / job.path).read_bytes(), job.path, job.kind)
        assert recording.recording_id == offline.recording_id
        assert recording.writes == offline.record(job.seconds).writes
        assert recording.source.licence != "unknown"


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("broken/cut.mid", SourceKind.MIDI),
        ("broken/cut.mxl", SourceKind.MUSICXML),
        ("broken/samples_past_the_end.mod", SourceKind.MOD),
        ("nottingham/MIDI/ashover1.mid", SourceKind.MOD),
    ],
)
def test_a_broken_score_is_a_dead_letter_with_its_reason(subset, path, kind):
    worker = EmulatorWorker(subset)
    outputs = list(worker.process(_message(EmulationJob(path, kind, 0, 10.0))))
    assert [o.topic for o in outputs] == [TOPIC_DEAD_LETTERS]
    record = codec("DeadLetter").decode(outputs[0].value)
    assert record["error"].startswith("invalid_file: ") and record["service"] == "emulator"


def test_a_part_past_the_last_is_a_dead_letter(subset):
    worker = EmulatorWorker(subset)
    job = EmulationJob("nottingham/MIDI/ashover1.mid", SourceKind.MIDI, 0, 10.0, subsong=2)
    outputs = list(worker.process(_message(job)))
    assert [o.topic for o in outputs] == [TOPIC_DEAD_LETTERS]
    assert codec("DeadLetter").decode(outputs[0].value)["error"].startswith("invalid_job")


def test_emulate_cli_records_a_score(subset, tmp_path):
    out = tmp_path / "x.avro"
    module = subset / "gbstudio-mods/MBR_Settings.mod"
    command = [
        sys.executable,
        "-m",
        "gbsynth",
        "emulate",
        str(module),
        "--seconds",
        "60",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (recording,) = read_recordings(out)
    assert recording.source.kind is SourceKind.MOD and len(recording.writes) > 1000
    assert recording.duration_cycles == 60 * 4_194_304
