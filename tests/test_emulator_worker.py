"""The emulator service's logic, without Kafka: jobs in, chunks out."""

import itertools

import numpy as np
import pytest

from gbsynth.common.avro import chunks_to_recording, codec, decode_chunk
from gbsynth.common.events import SourceKind
from gbsynth.common.kafka import TOPIC_DEAD_LETTERS, TOPIC_JOBS, TOPIC_RECORDINGS, Message
from gbsynth.emulator.explore import ExploreSettings, songs_in
from gbsynth.emulator.jobs import EmulationJob
from gbsynth.emulator.main import EmulatorWorker
from gbsynth.emulator.sources import GbsSession


def _rom(program: bytes) -> bytes:
    rom = bytearray(0x8000)
    rom[0x100:0x104] = b"\x00\xc3\x50\x01"  # NOP; JP 0x150
    rom[0x134:0x13C] = b"HANGTEST"
    rom[0x150 : 0x150 + len(program)] = program
    rom[0x14D] = (-sum(rom[0x134:0x14D]) - 25) & 0xFF
    return bytes(rom)


@pytest.fixture
def rom_dir(tmp_path, shared_dir):
    (tmp_path / "nightmode.gbs").write_bytes((shared_dir / "corpus/nightmode.gbs").read_bytes())
    music = shared_dir / "roms/music/gbt-player/effects_test.gb"
    (tmp_path / "effects.gb").write_bytes(music.read_bytes())
    (tmp_path / "broken.gb").write_bytes(b"\x00" * 100)
    # writes the APU once, then DI; HALT: a hang the watchdog must catch
    (tmp_path / "hang.gb").write_bytes(_rom(b"\x3e\x80\xe0\x26\xf3\x76\x18\xfe"))
    return tmp_path


def _message(job: EmulationJob, offset: int = 0) -> Message:
    value = codec("Job").encode(job.to_record(enqueued_unix_ms=0))
    return Message(TOPIC_JOBS, 0, offset, job.job_id.encode(), value)


def test_gbs_job_streams_the_same_recording_as_offline(rom_dir):
    worker = EmulatorWorker(rom_dir, piece_seconds=0.5)
    job = EmulationJob("nightmode.gbs", SourceKind.GBS, 0, 6.0, subsong=1)
    outputs = list(worker.process(_message(job)))
    assert {o.topic for o in outputs} == {TOPIC_RECORDINGS}
    chunks = [decode_chunk(o.value) for o in outputs]
    assert [c["sequence"] for c in chunks] == list(range(len(chunks)))
    assert chunks[-1]["last"] and not any(c["last"] for c in chunks[:-1])
    recording = chunks_to_recording(chunks)
    data = (rom_dir / "nightmode.gbs").read_bytes()
    offline = GbsSession(data, "nightmode.gbs", 1).record(6.0)
    assert recording.writes == offline.writes
    assert recording.recording_id == offline.recording_id
    assert {o.key for o in outputs} == {recording.recording_id}
    # a redo sends byte-identical chunks
    again = [o.value for o in worker.process(_message(job))]
    assert again == [o.value for o in outputs]


def test_rom_exploration_marks_phases(rom_dir):
    worker = EmulatorWorker(rom_dir)
    # Listening 10 s from power-on hears the ROM's song (it plays bursts of effects).
    explore = ExploreSettings(boot_seconds=10, observe_seconds=20, press_seconds=1)
    job = EmulationJob("effects.gb", SourceKind.ROM, 3, 40.0, explore=explore)
    chunks = [decode_chunk(o.value) for o in worker.process(_message(job))]
    recording = chunks_to_recording(chunks)
    phases = [p for _, _, p in recording.phase_spans()]
    assert {"observe", "press", "settle"} <= {p.value for p in phases}
    assert songs_in(recording.phases) == 1  # the ROM's one song, recorded once
    observing = recording.observing_spans()
    inside = np.zeros(len(recording.writes), dtype=bool)
    for start, end in observing:
        inside |= (recording.writes.cycles >= start) & (recording.writes.cycles < end)
    assert inside.all() and len(recording.writes) > 0


@pytest.mark.parametrize(
    "path,reason",
    [
        ("broken.gb", "invalid_file"),
        ("hang.gb", "hang"),
        ("../etc/passwd", "bad_job"),
        ("missing.gb", "bad_job"),
    ],
)
def test_bad_jobs_give_an_error_record_and_the_worker_goes_on(rom_dir, path, reason):
    worker = EmulatorWorker(rom_dir)
    job = EmulationJob(path, SourceKind.ROM, 0, 40.0)
    outputs = list(worker.process(_message(job)))
    letters = [o for o in outputs if o.topic == TOPIC_DEAD_LETTERS]
    assert len(letters) == 1
    record = codec("DeadLetter").decode(letters[0].value)
    assert record["error"].startswith(reason) and record["service"] == "emulator"
    chunks = [decode_chunk(o.value) for o in outputs if o.topic == TOPIC_RECORDINGS]
    if chunks:  # what was recorded before the hang is closed properly
        assert chunks[-1]["last"]
        chunks_to_recording(chunks)
    ok = EmulationJob("nightmode.gbs", SourceKind.GBS, 0, 1.0, subsong=1)
    assert any(o.topic == TOPIC_RECORDINGS for o in worker.process(_message(ok)))


def test_idle_worker_explores_roms_with_fresh_seeds(tmp_path, shared_dir):
    music = shared_dir / "roms/music/gbt-player/effects_test.gb"
    (tmp_path / "effects.gb").write_bytes(music.read_bytes())
    now = [0.0]
    worker = EmulatorWorker(
        tmp_path,
        record_seconds=3.0,
        idle_seconds=5,
        clock=lambda: now[0],
        explore=ExploreSettings(
            boot_seconds=0.5, observe_seconds=1, press_seconds=0.5, settle_seconds=0.2
        ),
    )
    assert list(worker.tick()) == []
    now[0] = 10.0
    first = [decode_chunk(o.value) for o in worker.tick() if o.topic == TOPIC_RECORDINGS]
    assert first and first[-1]["last"]
    assert first[0]["source"]["kind"] == "rom"
    assert list(worker.tick()) == []  # just explored: not idle any more
    now[0] = 20.0
    second = [decode_chunk(o.value) for o in worker.tick() if o.topic == TOPIC_RECORDINGS]
    assert second and second[0]["seed"] != first[0]["seed"]


def test_idle_worker_drops_files_that_fail(rom_dir):
    now = [0.0]
    worker = EmulatorWorker(rom_dir, record_seconds=2.0, idle_seconds=1, clock=lambda: now[0])
    for step in range(1, 40):
        now[0] = 10.0 * step
        list(worker.tick())
    assert {j.path for j in worker._roms} <= {"effects.gb"}


def _seeds_from(monkeypatch, first: int) -> None:
    """Idle explorations draw fresh seeds from ``secrets``: here 3, 4, ... so that what 60 s
    of exploring finds does not depend on luck (2 of seeds 0-39 find one song only)."""
    seeds = itertools.count(first)
    monkeypatch.setattr("gbsynth.emulator.main.secrets.randbits", lambda bits: next(seeds))


def test_idle_exploration_keeps_songs_and_stops_at_the_time_cap(tmp_path, monkeypatch):
    from prometheus_client import REGISTRY

    from gbsynth.music.test_roms import game_rom

    _seeds_from(monkeypatch, 3)
    (tmp_path / "game.gb").write_bytes(game_rom().rom)
    now = [0.0]
    worker = EmulatorWorker(
        tmp_path, record_seconds=60.0, idle_seconds=1, rom_seconds=100.0, clock=lambda: now[0]
    )
    found = {"service": "emulator", "rom": "game.gb"}
    before = REGISTRY.get_sample_value("gbsynth_emulator_songs_found_total", found) or 0.0
    for step in (1, 2, 3):
        now[0] = 10.0 * step
        list(worker.tick())
    # Two jobs of 60 s reach the 100 s cap; the third tick finds nothing left to explore.
    assert worker.explored_seconds["game.gb"] == pytest.approx(120.0)
    assert worker.next_exploration() is None
    songs = len(worker.song_books["game.gb"])
    assert songs >= 2
    after = REGISTRY.get_sample_value("gbsynth_emulator_songs_found_total", found)
    assert after - before == songs  # each song counted once, though both jobs heard the title


def test_topic_jobs_do_not_depend_on_what_the_worker_explored_before(tmp_path, monkeypatch):
    from gbsynth.music.test_roms import game_rom

    _seeds_from(monkeypatch, 3)
    (tmp_path / "game.gb").write_bytes(game_rom().rom)
    now = [0.0]
    seasoned = EmulatorWorker(tmp_path, record_seconds=60.0, idle_seconds=1, clock=lambda: now[0])
    now[0] = 10.0
    list(seasoned.tick())  # idle exploration: learns the ROM's first songs
    assert len(seasoned.song_books["game.gb"]) >= 2
    job = EmulationJob("game.gb", SourceKind.ROM, 5, 60.0, explore=ExploreSettings())
    fresh = [o.value for o in EmulatorWorker(tmp_path).process(_message(job))]
    assert [o.value for o in seasoned.process(_message(job))] == fresh
