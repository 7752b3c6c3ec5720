import os

import pytest

from gbsynth.common.events import SourceKind
from gbsynth.emulator.explore import ExploreSettings
from gbsynth.emulator.jobs import EmulationJob, JobError, discover_jobs, resolve_in_folder


@pytest.fixture
def rom_dir(tmp_path, shared_dir):
    (tmp_path / "gbs").mkdir()
    corpus, music = shared_dir / "corpus", shared_dir / "roms/music"
    (tmp_path / "gbs/devsound.gbs").write_bytes((corpus / "DevSound_demo.gbs").read_bytes())
    (tmp_path / "game.gb").write_bytes((music / "gbt-player/instr_test.gb").read_bytes())
    (tmp_path / "notes.txt").write_text("not music")
    (tmp_path / "broken.gbs").write_bytes(b"GBS\x02" + bytes(200))
    outside = tmp_path.parent / "outside.gb"
    outside.write_bytes(b"\0" * 0x8000)
    os.symlink(outside, tmp_path / "escape.gb")
    return tmp_path


def test_discover(rom_dir):
    jobs, skipped = discover_jobs(rom_dir, seconds=30, seed=4, explore=ExploreSettings())
    kinds = sorted((j.path, j.kind, j.subsong) for j in jobs)
    assert kinds == [("game.gb", SourceKind.ROM, None)] + [
        ("gbs/devsound.gbs", SourceKind.GBS, n) for n in range(1, 7)
    ]
    assert any("broken.gbs" in s and "version" in s for s in skipped)
    assert len({j.job_id for j in jobs}) == len(jobs)
    rom_job = next(j for j in jobs if j.kind is SourceKind.ROM)
    assert rom_job.explore == ExploreSettings()


@pytest.mark.parametrize("bad", ["../outside.gb", "/etc/passwd", "escape.gb", "", "missing.gb"])
def test_resolve_rejects_escapes(rom_dir, bad):
    with pytest.raises(JobError):
        resolve_in_folder(rom_dir, bad)


def test_resolve_ok(rom_dir):
    assert resolve_in_folder(rom_dir, "gbs/devsound.gbs").name == "devsound.gbs"


def test_record_round_trip():
    job = EmulationJob("a/b.gb", SourceKind.ROM, 7, 60.0, explore=ExploreSettings(1, 2, 3, 4))
    assert EmulationJob.from_record(job.to_record()) == job
    with pytest.raises(JobError, match="malformed"):
        EmulationJob.from_record({"path": "x"})
    with pytest.raises(JobError, match="positive"):
        EmulationJob.from_record({**job.to_record(), "seconds": 0.0})
