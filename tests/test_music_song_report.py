"""``gbsynth evaluate CKPT --generate N`` (``gbsynth.music.song_report``): songs sampled from a
checkpoint measured beside real ones, memorisation, JSON and piano roll."""

from __future__ import annotations

import json

import pytest

from gbsynth.cli import main
from gbsynth.common.formats import write_recordings
from gbsynth.emulator.sources import open_session
from gbsynth.music.song_report import (
    SongReportError,
    build_report,
    load_songs,
    split_subsong,
    training_songs,
)
from gbsynth.trainer.testing import make_tiny_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_music_files_load_as_songs(shared_dir, tmp_path):
    devsound = shared_dir / "corpus/DevSound_demo.gbs"
    assert split_subsong(f"{devsound}#2") == (devsound, 2)
    songs = load_songs([f"{devsound}#2"], 3.0)
    assert [s.name for s in songs] == ["DevSound_demo.gbs#2"]
    assert songs[0].duration_cycles == pytest.approx(3 * 4_194_304, rel=0.01)
    assert len(load_songs([devsound], 1.0)) == 6  # every subsong
    recording = open_session(shared_dir / "corpus/nightmode.gbs").record(4.0)
    avro = tmp_path / "night.avro"
    write_recordings(avro, [recording])
    (song,) = load_songs([avro], 2.0)  # cut to the length asked for
    assert song.duration_cycles == 2 * 4_194_304 and song.stats.seconds == 2.0
    with pytest.raises(SongReportError, match="no such file"):
        load_songs([tmp_path / "missing.gbs"], 1.0)
    with pytest.raises(SongReportError, match="subsong"):
        load_songs([f"{devsound}#x"], 1.0)
    (tmp_path / "text.gb").write_text("not a rom")
    with pytest.raises(SongReportError):
        load_songs([tmp_path / "text.gb"], 1.0)


def test_a_real_song_copied_into_training_is_found(shared_dir):
    (song,) = load_songs([f"{shared_dir / 'corpus/DevSound_demo.gbs'}#1"], 10.0)
    (other,) = load_songs([f"{shared_dir / 'corpus/DevSound_demo.gbs'}#2"], 10.0)
    report = build_report([song], [other], training=[song, other])
    copy = report["memorisation"]["songs"][song.name]
    assert copy["seconds"] > 9.0  # the whole song is in the training data
    assert build_report([other], [song], training=[song])["memorisation"]["longest_notes"] == 0


def test_evaluate_generate_from_the_command_line(shared_dir, tmp_path, capsys):
    checkpoint = make_tiny_checkpoint(tmp_path / "ckpt")
    real = f"{shared_dir / 'corpus/DevSound_demo.gbs'}#1"
    out_json, png = tmp_path / "report.json", tmp_path / "rolls.png"
    args = f"evaluate {checkpoint} --generate 2 --seconds 2 --train-seconds 4 --json {out_json}"
    args += f" --piano-roll {png}"
    code = main([*args.split(), "--real", real, "--train-data", real])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "metric regularity" in out.out and "seed 1" in out.out
    report = json.loads(out_json.read_text())
    assert report["generated"]["summary"]["songs"] == 2
    assert report["real"]["summary"]["songs"] == 1
    assert set(report["memorisation"]["songs"]) == {"seed 0", "seed 1"}
    assert png.stat().st_size > 10_000
    assert main(["evaluate", str(checkpoint), "--generate", "0"]) == 1
    assert "at least 1" in capsys.readouterr().err


def test_the_training_data_saved_beside_a_checkpoint_is_read_back(shared_dir, tmp_path):
    # What gbsynth train saves (dataset.npz, in the model's representation) is the
    # memorisation reference when no --train-data is given.
    from gbsynth.trainer import representation
    from gbsynth.trainer.data import save_tracks, track_from_writes
    from gbsynth.trainer.training_folder import DATASET_FILE

    (song,) = load_songs([f"{shared_dir / 'corpus/DevSound_demo.gbs'}#1"], 5.0)
    rep = representation.get(representation.DEFAULT)
    track = track_from_writes(song.name, "0" * 64, song.writes, rep, song.duration_cycles)
    save_tracks(tmp_path / DATASET_FILE, [track], rep)
    (saved,) = training_songs(tmp_path)
    writes, duration_cycles = rep.decode(track.tokens)
    assert saved.name == song.name and saved.writes == writes and len(writes) > 0
    assert saved.duration_cycles == duration_cycles
    assert duration_cycles == pytest.approx(song.duration_cycles, rel=0.01)
    report = build_report([saved], [], training=[saved])
    assert report["memorisation"]["longest_seconds"] > 4.0  # a song is its own training data
    assert training_songs(tmp_path / "nothing saved") == []
