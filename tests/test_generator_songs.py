"""The generator's song logic without HTTP: streaming render, determinism, files, piano roll,
primes, and what it does with a sampler that breaks its contract."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np
import pytest
import soundfile
from conftest import SHARED

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES, ApuWrites
from gbsynth.common.formats import read_recordings, write_iodump, write_recordings
from gbsynth.common.vgm import read_vgm, write_vgm
from gbsynth.generator.models import load_model
from gbsynth.generator.prime import PrimeError, prime_from_columns, prime_from_file
from gbsynth.generator.songs import (
    SONG_FILE_FORMATS,
    Cancelled,
    PieceRenderer,
    SongError,
    SongParams,
    avro_bytes,
    generate,
    pcm_samples,
    piano_roll,
    song_file_bytes,
    song_key,
    vgm_bytes,
    wav_bytes,
    wav_header,
)
from gbsynth.synth import Synth, render, rms_envelope, to_pcm16
from gbsynth.trainer.testing import make_tiny_checkpoint


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), step=3, seed=1))


@pytest.fixture(scope="module")
def nightmode_writes() -> ApuWrites:
    from gbsynth.emulator.sources import open_session

    path = SHARED / "corpus" / "nightmode.gbs"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return open_session(path, subsong=1).record(20.0).writes


class ListSource:
    """A song source replaying fixed pieces (for contract violations and cut points)."""

    step = 7
    sha256 = "0" * 64
    name = "list"

    def __init__(self, pieces: list[ApuWrites], gate: threading.Event | None = None) -> None:
        self.pieces = pieces
        self.gate = gate

    def stream(self, seconds, *, temperature=1.0, top_p=0.95, seed=0, prime=None, plan=None):
        for i, piece in enumerate(self.pieces):
            if i == 1 and self.gate is not None:
                self.gate.wait(10)
            yield piece


def split(writes: ApuWrites, cuts: list[int]) -> list[ApuWrites]:
    edges = [0, *cuts, len(writes)]
    return [
        ApuWrites(writes.cycles[a:b], writes.registers[a:b], writes.values[a:b])
        for a, b in zip(edges, edges[1:], strict=False)
    ]


def test_streamed_wav_equals_whole_render_whatever_the_pieces(nightmode_writes):
    """The renderer holds back the newest cycle's writes, so any cut gives the same PCM."""
    duration = 5 * CPU_HZ
    writes = nightmode_writes.between(0, duration)
    whole = to_pcm16(Synth(44_100).render(writes, duration)).tobytes()
    rng = np.random.default_rng(0)
    # Random cut points, including cuts between writes at the same cycle.
    same_cycle = np.flatnonzero(np.diff(writes.cycles) == 0)[:20] + 1
    cuts = sorted({*rng.integers(1, len(writes), 40).tolist(), *same_cycle.tolist()})
    renderer = PieceRenderer(duration, 44_100)
    streamed = b"".join(renderer.feed(p) for p in split(writes, cuts)) + renderer.finish()
    assert streamed == whole


def test_wav_header_and_streamed_song_are_one_file(model):
    chunks: list[bytes] = []
    params = SongParams(seconds=2.0, seed=11)
    song = generate(model, params, sink=chunks.append)
    data = b"".join(chunks)
    assert len(chunks) > 2  # header, then audio in several pieces
    assert chunks[0] == wav_header(pcm_samples(song.duration_cycles, 44_100), 44_100)
    assert data == wav_bytes(song)
    audio, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    assert rate == 44_100 and audio.shape == (pcm_samples(2 * CPU_HZ, 44_100), 2)
    assert np.abs(audio).max() > 100  # the preamble powers the APU: an untrained model is heard
    assert song.writes.cycles[-1] < song.duration_cycles
    assert song.model_step == 3 and song.key == song_key(model.sha256, params)


def test_same_seed_same_bytes_other_seed_other_song(model, tmp_path):
    params = SongParams(seconds=1.5, temperature=0.9, top_p=0.9, seed=42)
    first = wav_bytes(generate(model, params))
    again = load_model(model.path)  # a fresh load of the same file
    second = b"".join(_collect(again, params))
    assert first == second
    other = wav_bytes(generate(model, SongParams(seconds=1.5, temperature=0.9, top_p=0.9, seed=43)))
    assert other != first
    assert song_key(model.sha256, params) != song_key(model.sha256, SongParams(seconds=1.5))
    assert song_key("a" * 64, params) != song_key("b" * 64, params)


def test_the_service_piece_size_gives_the_trainers_song(model):
    """The generator samples in small pieces (an early first audio); the song is the one the
    trainer's sampler gives with its own piece size."""
    from gbsynth.trainer.sampling import Sampler

    ours = generate(model, SongParams(seconds=3.0, seed=21)).writes
    theirs = Sampler(model.checkpoint).sample(3.0, seed=21, temperature=1.0, top_p=0.95)
    assert ours == theirs.between(0, 3 * CPU_HZ)


def _collect(source, params):
    out: list[bytes] = []
    generate(source, params, sink=out.append)
    return out


def test_sample_rate_changes_audio_not_song(model):
    song = generate(model, SongParams(seconds=1.0, seed=5, sample_rate=22_050))
    audio, rate = soundfile.read(io.BytesIO(wav_bytes(song)))
    assert rate == 22_050 and len(audio) == pcm_samples(CPU_HZ, 22_050)
    assert song.key == song_key(model.sha256, SongParams(seconds=1.0, seed=5))


def test_vgm_and_avro_hold_the_song(model):
    song = generate(model, SongParams(seconds=1.5, seed=8))
    writes, duration, info = read_vgm(vgm_bytes(song))
    assert np.array_equal(writes.registers, song.writes.registers)
    assert np.array_equal(writes.values, song.writes.values)
    # VGM keeps 44,100 Hz timing: every write within half a sample of its cycle.
    assert np.abs(writes.cycles - song.writes.cycles).max() <= CPU_HZ / 44_100
    assert abs(duration - song.duration_cycles) <= CPU_HZ / 44_100
    assert avro_bytes(song)[:4] == b"Obj\x01"


def test_song_files_by_format_name(model):
    # One dispatch for the service (formats of POST /v1/songs) and gbsynth generate.
    from gbsynth.generator.app import SongFormat

    assert {fmt.value for fmt in SongFormat} == set(SONG_FILE_FORMATS)
    song = generate(model, SongParams(seconds=1.0, seed=8))
    assert song_file_bytes(song, "vgm") == vgm_bytes(song)
    assert song_file_bytes(song, "wav", 22_050) == wav_bytes(song, 22_050)
    assert json.loads(song_file_bytes(song, "json"))["song"]["seed"] == 8
    with pytest.raises(ValueError, match="unknown song file format 'mp3'"):
        song_file_bytes(song, "mp3")


def test_avro_reads_back_as_the_recording(model, tmp_path):
    song = generate(model, SongParams(seconds=1.0, seed=9))
    path = tmp_path / "song.avro"
    path.write_bytes(avro_bytes(song))
    (recording,) = read_recordings(path)
    assert recording.writes == song.writes
    assert recording.duration_cycles == song.duration_cycles
    assert recording.source.sha256 == model.sha256 and recording.seed == 9


def test_piano_roll_of_a_known_note():
    """Pulse 1 plays A4 (x = 1750: 131072 / 298 = 439.8 Hz) for about half a second."""
    start, stop = FRAME_CYCLES * 10, FRAME_CYCLES * 40
    writes = ApuWrites.from_arrays(
        [0, 0, 0, start, start, start, start, stop],
        [0xFF26, 0xFF24, 0xFF25, 0xFF11, 0xFF12, 0xFF13, 0xFF14, 0xFF12],
        [0x80, 0x77, 0xFF, 0x80, 0xF0, 1750 & 0xFF, 0x80 | (1750 >> 8), 0x00],
    )
    roll = piano_roll(writes, FRAME_CYCLES * 60)
    names = [c["name"] for c in roll["channels"]]
    assert names == ["pulse 1", "pulse 2", "wave", "noise"]
    (note,) = roll["channels"][0]["notes"]
    begin, end, pitch, level = note
    assert pitch == 69
    assert begin == pytest.approx(start / CPU_HZ, abs=0.02)
    assert end == pytest.approx(stop / CPU_HZ, abs=0.02)
    assert level == pytest.approx(1.0, abs=0.05)
    assert all(not c["notes"] for c in roll["channels"][1:])


def test_piano_roll_of_real_music(nightmode_writes):
    roll = piano_roll(nightmode_writes, 20 * CPU_HZ)
    counts = {c["name"]: len(c["notes"]) for c in roll["channels"]}
    assert counts["pulse 1"] > 5 and counts["pulse 2"] > 5 and counts["wave"] > 5
    for channel in roll["channels"]:
        for begin, end, pitch, level in channel["notes"]:
            assert 0 <= begin < end <= 20.0 + 0.02 and 0 < level <= 1
            if channel["kind"] == "tone":
                assert 20 <= pitch <= 140


def test_deadline_and_cancel_stop_sampling(model):
    with pytest.raises(Cancelled):
        generate(model, SongParams(seconds=5.0), deadline=time.monotonic() - 1)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        generate(model, SongParams(seconds=5.0), cancel=cancel)


def test_a_sampler_going_back_in_time_is_refused():
    pieces = [
        ApuWrites.from_arrays([0, 100], [0xFF26, 0xFF24], [0x80, 0x77]),
        ApuWrites.from_arrays([50], [0xFF25], [0xFF]),
    ]
    with pytest.raises(SongError, match="before the previous"):
        generate(ListSource(pieces), SongParams(seconds=1.0))


def test_a_model_stuck_on_fast_writes_is_stopped():
    """An undertrained model may write a register every few cycles: 2,000 writes in the
    first 0.1 s is refused at 1,000 per second, long before the song is sampled."""
    burst = ApuWrites.from_arrays(np.arange(2000) * 200, np.full(2000, 0xFF12), np.full(2000, 0xF0))
    calm = ApuWrites.from_arrays([CPU_HZ], [0xFF12], [0])
    with pytest.raises(SongError, match="GBSYNTH_GENERATOR_MAX_EVENTS_PER_SECOND"):
        generate(ListSource([burst, calm]), SongParams(seconds=5.0), max_events_per_second=1000)
    # The same song within the limit is fine (an opening burst has a second of slack).
    song = generate(ListSource([burst, calm]), SongParams(seconds=5.0), max_events_per_second=3000)
    assert len(song.writes) == 2001


def test_writes_past_the_end_are_cut():
    pieces = [
        ApuWrites.from_arrays([0, 0], [0xFF26, 0xFF24], [0x80, 0x77]),
        ApuWrites.from_arrays([CPU_HZ - 1, CPU_HZ, 3 * CPU_HZ], [0xFF25] * 3, [1, 2, 3]),
    ]
    song = generate(ListSource(pieces), SongParams(seconds=1.0))
    assert song.writes.cycles.tolist() == [0, 0, CPU_HZ - 1]


def test_first_audio_leaves_before_the_song_is_sampled():
    """The sink gets audio as soon as a piece covers it, while sampling goes on."""
    first = ApuWrites.from_arrays([0, 0, CPU_HZ // 2], [0xFF26, 0xFF24, 0xFF25], [0x80, 0x77, 0xFF])
    rest = ApuWrites.from_arrays([CPU_HZ], [0xFF25], [0x00])
    gate = threading.Event()
    chunks: list[bytes] = []
    worker = threading.Thread(
        target=generate,
        args=(ListSource([first, rest], gate), SongParams(seconds=2.0)),
        kwargs={"sink": chunks.append},
    )
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while len(chunks) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(chunks) >= 2 and len(chunks[1]) > 0  # header + audio, sampler still blocked
    finally:
        gate.set()
        worker.join()
    assert len(b"".join(chunks)) == 44 + pcm_samples(2 * CPU_HZ, 44_100) * 4


# -- primes ----------------------------------------------------------------------------------


def test_prime_from_columns():
    writes = prime_from_columns([0, 10, 20], [0xFF26, 0x24, 0xFF25], [0x80, 0x77, 0xFF], 10)
    assert writes.registers.tolist() == [0xFF26, 0xFF24, 0xFF25]
    with pytest.raises(PrimeError, match="at most 2"):
        prime_from_columns([0, 10, 20], [0x26, 0x24, 0x25], [1, 2, 3], 2)
    with pytest.raises(PrimeError, match="backwards"):
        prime_from_columns([10, 0], [0x26, 0x24], [1, 2], 10)
    with pytest.raises(PrimeError, match="0xFF10-0xFF3F"):
        prime_from_columns([0], [0xFF40], [1], 10)
    with pytest.raises(PrimeError, match="differ in length"):
        prime_from_columns([0, 1], [0x26], [1], 10)


def test_prime_from_files(nightmode_writes, tmp_path, model):
    writes = nightmode_writes.between(0, 2 * CPU_HZ)
    song = generate(ListSource([writes]), SongParams(seconds=2.0))
    avro = avro_bytes(song)
    assert prime_from_file(base64.b64encode(avro).decode(), 0, 10**6) == writes
    vgm = write_vgm(writes, 2 * CPU_HZ)
    from_vgm = prime_from_file(base64.b64encode(vgm).decode(), 0, 10**6)
    assert np.array_equal(from_vgm.values, writes.values)
    dump = tmp_path / "x.txt"
    write_iodump(writes, dump)
    from_dump = prime_from_file(base64.b64encode(dump.read_bytes()).decode(), 0, 10**6)
    assert np.array_equal(from_dump.registers, writes.registers)
    recordings = tmp_path / "r.avro"
    other = generate(ListSource([writes.between(0, CPU_HZ)]), SongParams(seconds=1.0, seed=1))
    write_recordings(recordings, [song.recording(), other.recording()])
    two = base64.b64encode(recordings.read_bytes()).decode()
    assert prime_from_file(two, 1, 10**6) == other.writes
    with pytest.raises(PrimeError, match="holds 1"):
        prime_from_file(base64.b64encode(avro).decode(), 1, 10**6)
    with pytest.raises(PrimeError, match="base64"):
        prime_from_file("not base64!", 0, 10)
    with pytest.raises(PrimeError, match="neither"):
        prime_from_file(base64.b64encode(b"\xff\xfe\x00garbage").decode(), 0, 10)
    with pytest.raises(PrimeError):
        prime_from_file(base64.b64encode(b"Obj\x01broken").decode(), 0, 10)
    with pytest.raises(PrimeError, match="at most 5"):
        prime_from_file(base64.b64encode(avro).decode(), 0, 5)


def test_a_primed_song_starts_with_the_prime(model, nightmode_writes):
    """The song opens with the prime's music (the sampler re-times it to its grid and drops
    writes the APU ignores), so the first second sounds like the prime."""
    prime = nightmode_writes.between(0, CPU_HZ)
    song = generate(model, SongParams(seconds=2.0, seed=1, prime=prime))
    span = CPU_HZ - 10_000
    ours = rms_envelope(render(song.writes.between(0, span), span), 44_100)
    theirs = rms_envelope(render(prime.between(0, span), span), 44_100)
    assert np.corrcoef(ours, theirs)[0, 1] > 0.95
    unprimed = generate(model, SongParams(seconds=2.0, seed=1))
    assert unprimed.key != song.key and unprimed.writes != song.writes
