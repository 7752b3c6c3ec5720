"""``gbsynth generate`` (offline) and ``gbsynth generator`` (the service as a process)."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time

import httpx
import pytest
import soundfile
from conftest import service_env

from gbsynth.cli import main as cli
from gbsynth.common.broker import free_port
from gbsynth.generator.models import load_model
from gbsynth.generator.songs import SongParams, generate, wav_bytes
from gbsynth.trainer.checkpoint import file_sha256
from gbsynth.trainer.testing import make_tiny_checkpoint


def test_generate_writes_the_same_song_as_the_service(tmp_path, capsys):
    checkpoint = make_tiny_checkpoint(tmp_path / "ckpt", step=4)
    out = tmp_path / "song.wav"
    args = ["generate", "--checkpoint", str(tmp_path / "ckpt"), "--seconds", "2",
            "--seed", "7", "--out", str(out)]  # fmt: skip
    assert cli(args) == 0
    assert "2 s of music" in capsys.readouterr().err
    expected = wav_bytes(generate(load_model(checkpoint), SongParams(seconds=2.0, seed=7)))
    assert out.read_bytes() == expected
    assert not list(tmp_path.glob(".*.partial"))
    # A checkpoint file works as well as its folder; other formats by file name.
    for suffix, magic in ((".vgm", b"Vgm "), (".avro", b"Obj\x01"), (".json", b"{")):
        target = tmp_path / f"song{suffix}"
        assert cli(["generate", "--checkpoint", str(checkpoint), "--seconds", "1",
                    "--out", str(target)]) == 0  # fmt: skip
        assert target.read_bytes()[:4].startswith(magic)
    # Continue the song just made.
    more = tmp_path / "more.wav"
    assert cli(["generate", "--checkpoint", str(checkpoint), "--seconds", "3",
                "--prime", str(tmp_path / "song.avro"), "--out", str(more)]) == 0  # fmt: skip
    audio, rate = soundfile.read(more)
    assert len(audio) == 3 * rate


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--out", "x.mp3"], "must end in"),
        (["--seconds", "0", "--out", "x.wav"], "--seconds"),
        (["--top-p", "0", "--out", "x.wav"], "--top-p"),
        (["--prime", "missing.avro", "--out", "x.wav"], "cannot read"),
        (["--plan", "AABA", "--out", "x.wav"], "--plan"),
    ],
)
def test_generate_refuses_bad_input(tmp_path, capsys, extra, message):
    make_tiny_checkpoint(tmp_path, step=1)
    assert cli(["generate", "--checkpoint", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err


def test_generate_without_a_checkpoint(tmp_path, capsys):
    assert cli(["generate", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "a.wav")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    bad = tmp_path / "step-0000000001.pt"
    bad.write_bytes(b"junk")
    assert cli(["generate", "--checkpoint", str(bad), "--out", str(tmp_path / "a.wav")]) == 2
    assert "not a loadable checkpoint" in capsys.readouterr().err


def test_the_service_process(tmp_path):
    """Start, serve a streamed song and /metrics on one port, pick up a new checkpoint from
    the folder, stop cleanly on SIGTERM."""
    checkpoints = tmp_path / "ckpt"
    make_tiny_checkpoint(checkpoints, step=1)
    port = free_port()
    env = service_env(
        "127.0.0.1:1",  # no broker: announcements are off, the folder poll does the work
        GBSYNTH_CHECKPOINT_DIR=str(checkpoints),
        GBSYNTH_GENERATOR_WATCH_ANNOUNCEMENTS="false",
        GBSYNTH_GENERATOR_POLL_SECONDS="0.2",
        GBSYNTH_METRICS_PORT="",  # default: /metrics beside the API
    )
    log = open(tmp_path / "generator.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gbsynth", "generator", "--port", str(port), "--host", "127.0.0.1"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "generator.log").read_text()
            try:
                health = httpx.get(f"{base}/healthz", timeout=2).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the generator did not start"
                time.sleep(0.2)
        assert health["model_loaded"] and health["step"] == 1
        with httpx.stream("POST", f"{base}/v1/songs", json={"seconds": 3, "seed": 2},
                          timeout=60) as response:  # fmt: skip
            assert response.status_code == 200
            assert response.headers["content-type"] == "audio/wav"
            data = response.read()
        audio, rate = soundfile.read(io.BytesIO(data))
        assert len(audio) == 3 * rate
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert 'gbsynth_generator_requests_total{service="generator",status="200"} 1.0' in metrics
        assert "gbsynth_generator_first_audio_seconds_count" in metrics
        newer = make_tiny_checkpoint(checkpoints, step=2, seed=1)
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/healthz", timeout=2).json()["step"] != 2:
            assert time.monotonic() < deadline, "the new checkpoint was not picked up"
            time.sleep(0.1)
        assert httpx.get(f"{base}/healthz", timeout=2).json()["sha256"] == file_sha256(newer)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def test_the_service_refuses_bad_settings(tmp_path):
    env = service_env("127.0.0.1:1", GBSYNTH_GENERATOR_WORKERS="many")
    result = subprocess.run(
        [sys.executable, "-m", "gbsynth", "generator"], env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 2
    assert b"GBSYNTH_GENERATOR_WORKERS must be an integer" in result.stderr
