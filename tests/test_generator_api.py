"""The generator's HTTP API in process (FastAPI TestClient) with real tiny checkpoints:
formats, determinism, limits (422, 413, 429, 503, 504), hot swap, shared jobs, metrics."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest
import soundfile
from fastapi.testclient import TestClient

from gbsynth.common.events import CPU_HZ
from gbsynth.generator.app import create_app
from gbsynth.generator.models import LoadedModel, ModelHolder, load_model
from gbsynth.generator.service import Limits
from gbsynth.trainer.song_plan import SongPlan
from gbsynth.trainer.testing import make_tiny_checkpoint

SONG = {"seconds": 2, "seed": 3}


class Gated:
    """A real model whose songs stop after their first piece until ``gate`` opens."""

    def __init__(self, model: LoadedModel, gate: threading.Event) -> None:
        self.model = model
        self.gate = gate
        self.calls = 0
        self.step, self.sha256 = model.step, model.sha256
        self.name, self.path = model.name, model.path

    def stream(self, seconds, **options):
        self.calls += 1
        for i, piece in enumerate(self.model.stream(seconds, **options)):
            if i == 1:
                self.gate.wait(30)
            yield piece


def gated_loader(gate: threading.Event, made: list[Gated]):
    def load(path: Path, expected_sha256: str | None = None) -> Gated:
        model = Gated(load_model(path, expected_sha256), gate)
        made.append(model)
        return model

    return load


@pytest.fixture
def checkpoints(tmp_path) -> Path:
    make_tiny_checkpoint(tmp_path, step=1)
    return tmp_path


def client_for(directory: Path, limits: Limits | None = None, **kwargs) -> TestClient:
    holder = ModelHolder(directory, loader=kwargs.pop("loader", None) or load_model)
    holder.refresh(trigger="start")
    return TestClient(create_app(holder, limits or Limits(max_seconds=20), **kwargs))


def in_thread(function, *args, **kwargs):
    result: dict = {}

    def target():
        result["value"] = function(*args, **kwargs)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, result


def wait_for(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_no_checkpoint_yet_is_503_then_the_first_one_is_served(tmp_path):
    with client_for(tmp_path) as client:
        health = client.get("/healthz").json()
        assert health["model_loaded"] is False and health["status"] == "no_model"
        response = client.post("/v1/songs", json=SONG)
        assert response.status_code == 503
        assert "no model checkpoint yet" in response.json()["error"]
        assert int(response.headers["Retry-After"]) > 0
        make_tiny_checkpoint(tmp_path, step=5)
        assert client.app.state.holder.refresh()
        health = client.get("/healthz").json()
        assert health["model_loaded"] is True and health["step"] == 5
        assert client.post("/v1/songs", json=SONG).status_code == 200


def test_wav_by_default_and_the_same_seed_gives_the_same_bytes(checkpoints):
    with client_for(checkpoints) as client:
        first = client.post("/v1/songs", json=SONG)
    assert first.status_code == 200
    assert first.headers["content-type"] == "audio/wav"
    assert int(first.headers["content-length"]) == len(first.content)
    assert first.headers["x-model-step"] == "1"
    audio, rate = soundfile.read(io.BytesIO(first.content))
    assert rate == 44_100 and audio.shape[1] == 2
    assert len(audio) == -(-2 * CPU_HZ * 44_100 // CPU_HZ)
    # A new service (no cache) on the same checkpoint: byte-identical, by POST and by GET.
    with client_for(checkpoints) as client:
        again = client.post("/v1/songs", json=SONG)
        linked = client.get("/v1/songs/3.wav", params={"seconds": 2})
        other = client.post("/v1/songs", json={**SONG, "seed": 4})
    assert again.content == first.content
    assert linked.content == first.content
    assert other.content != first.content
    assert again.headers["x-song-key"] == first.headers["x-song-key"]


@pytest.mark.parametrize(
    ("fmt", "media", "magic"),
    [("vgm", "audio/x-vgm", b"Vgm "), ("avro", "application/avro", b"Obj\x01")],
)
def test_files(checkpoints, fmt, media, magic):
    with client_for(checkpoints) as client:
        posted = client.post("/v1/songs", json={**SONG, "format": fmt})
        linked = client.get(f"/v1/songs/3.{fmt}", params={"seconds": 2})
    assert posted.status_code == 200 and posted.headers["content-type"] == media
    assert posted.content[:4] == magic
    assert f".{fmt}" in posted.headers["content-disposition"]
    if fmt == "vgm":  # deterministic file; Avro containers carry a random sync marker
        assert linked.content == posted.content


def test_json_describes_the_song_and_its_piano_roll(checkpoints):
    with client_for(checkpoints) as client:
        data = client.get("/v1/songs/3.json", params={"seconds": 2}).json()
    assert data["song"]["seed"] == 3 and data["song"]["model_step"] == 1
    assert data["song"]["events"] > 0
    assert [c["name"] for c in data["piano_roll"]["channels"]] == [
        "pulse 1", "pulse 2", "wave", "noise",
    ]  # fmt: skip
    assert data["piano_roll"]["seconds"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"seconds": 0}, "seconds"),
        ({"seconds": 21}, "seconds"),
        ({"seconds": "long"}, "seconds"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"format": "mp3"}, "format"),
        ({"sample_rate": 1000}, "sample_rate"),
        ({"tempo": 120}, "tempo"),
        ({"plan": "BA@6"}, "plan"),
        ({"plan": "AABA@99"}, "plan"),
        ({"prime": {}}, "prime"),
        ({"prime": {"cycles": [0]}}, "prime"),
    ],
)
def test_bad_parameters_are_422_naming_the_parameter(checkpoints, body, field):
    with client_for(checkpoints) as client:
        response = client.post("/v1/songs", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error.startswith("invalid parameters") and field in error


def test_bad_query_and_prime_are_422(checkpoints):
    with client_for(checkpoints) as client:
        assert client.get("/v1/songs/1.wav", params={"seconds": "nan"}).status_code == 422
        assert client.get("/v1/songs/1.mp3").status_code == 422
        assert client.get("/v1/songs/-1.wav").status_code == 422
        bad = client.post("/v1/songs", json={"seconds": 2, "prime": {"file": "%%%"}})
        assert bad.status_code == 422 and "base64" in bad.json()["error"]
        long_prime = {"cycles": [0, 3 * CPU_HZ], "registers": [0xFF26, 0xFF24],
                      "values": [0x80, 0x77]}  # fmt: skip
        too_long = client.post("/v1/songs", json={"seconds": 2, "prime": long_prime})
        assert too_long.status_code == 422 and "more seconds" in too_long.json()["error"]
        backwards = {"cycles": [10, 0], "registers": [0x26, 0x24], "values": [0x80, 0x77]}
        response = client.post("/v1/songs", json={"seconds": 2, "prime": backwards})
        assert response.status_code == 422 and "backwards" in response.json()["error"]
        good = {"cycles": [0, 100], "registers": [0x26, 0xFF24], "values": [0x80, 0x77]}
        assert client.post("/v1/songs", json={"seconds": 2, "prime": good}).status_code == 200
        plan = client.get("/v1/songs/1.wav", params={"plan": "AABA"})
        assert plan.status_code == 422 and "FORM[:PHRASES]@FRAMES" in plan.json()["error"]


def test_a_plan_is_part_of_the_song_and_its_description(checkpoints):
    with client_for(checkpoints) as client:
        default = client.get("/v1/songs/4.json", params={"seconds": 3}).json()
        assert default["song"]["plan"] == str(SongPlan.for_seed(4))
        chosen = client.post("/v1/songs", json={**SONG, "format": "json", "plan": "AB@5"}).json()
        assert chosen["song"]["plan"] == "AB@5"
        free = client.post("/v1/songs", json={**SONG, "format": "json", "plan": "free"}).json()
        assert free["song"]["key"] != chosen["song"]["key"]
        assert free["song"]["events"] != chosen["song"]["events"]


def test_a_body_over_the_limit_is_413(checkpoints):
    with client_for(checkpoints, max_body_bytes=2048) as client:
        body = {"seconds": 2, "prime": {"file": "A" * 4096}}
        response = client.post("/v1/songs", json=body)
        assert (
            response.status_code == 413
            and "GBSYNTH_GENERATOR_MAX_BODY_BYTES" in (response.json()["error"])
        )
        # Without a declared length (chunked upload) the limit holds too.
        chunks = iter([b'{"seconds": 2, "prime": {"file": "', b"A" * 4096, b'"}}'])
        response = client.post(
            "/v1/songs", content=chunks, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413


def test_saturated_is_429_with_retry_after(checkpoints):
    gate, made = threading.Event(), []
    limits = Limits(workers=1, queue=0, max_seconds=20)
    with client_for(checkpoints, limits, loader=gated_loader(gate, made)) as client:
        service = client.app.state.service
        busy, result = in_thread(client.post, "/v1/songs", json=SONG)
        try:
            wait_for(lambda: service.running == 1)
            refused = client.post("/v1/songs", json={**SONG, "seed": 9})
            assert refused.status_code == 429
            assert "busy" in refused.json()["error"] and int(refused.headers["Retry-After"]) > 0
        finally:
            gate.set()
            busy.join()
        assert result["value"].status_code == 200
        # The client has the whole stream a moment before the job's bookkeeping ends.
        wait_for(lambda: service.running == 0 and service.queued == 0)
        assert client.post("/v1/songs", json={**SONG, "seed": 9}).status_code == 200


def test_queued_requests_wait_for_a_thread(checkpoints):
    gate, made = threading.Event(), []
    limits = Limits(workers=1, queue=2, max_seconds=20)
    with client_for(checkpoints, limits, loader=gated_loader(gate, made)) as client:
        service = client.app.state.service
        threads = [in_thread(client.post, "/v1/songs", json={**SONG, "seed": s}) for s in (1, 2, 3)]
        wait_for(lambda: service.running == 1 and service.queued == 2)
        assert client.get("/healthz").json()["queued"] == 2
        assert client.post("/v1/songs", json={**SONG, "seed": 4}).status_code == 429
        gate.set()
        for thread, result in threads:
            thread.join()
            assert result["value"].status_code == 200


def test_a_song_that_cannot_finish_in_time_is_refused_at_once(checkpoints):
    """Admission expects the recent speed: a song that would miss its time limit behind the
    work already admitted gets 429 now, not 504 minutes later."""
    gate, made = threading.Event(), []
    limits = Limits(workers=1, queue=10, timeout_seconds=5, max_seconds=60)
    with client_for(checkpoints, limits, loader=gated_loader(gate, made)) as client:
        service = client.app.state.service
        service._speed = 0.5  # as measured on earlier songs: half real time per thread
        service._speed_at = time.monotonic()
        started = time.monotonic()
        refused = client.post("/v1/songs", json={"seconds": 20, "seed": 1})
        assert refused.status_code == 429 and time.monotonic() - started < 2
        assert "cannot finish this song in time" in refused.json()["error"]
        # Work ahead: a 10 s song in hand leaves no room for 2 more seconds within 2 + 5 s.
        service._speed, service._speed_at = 1.0, time.monotonic()
        busy, result = in_thread(client.post, "/v1/songs", json={"seconds": 10, "seed": 2})
        wait_for(lambda: service.running == 1)
        behind = client.post("/v1/songs", json={"seconds": 2, "seed": 3})
        assert behind.status_code == 429
        assert int(behind.headers["Retry-After"]) == 10  # the 10 s of music ahead
        gate.set()
        busy.join()
        assert result["value"].status_code == 200
        # The tiny model is far faster than real time: the measured speed takes over.
        assert service._speed > 1.0
        assert client.post("/v1/songs", json={"seconds": 2, "seed": 3}).status_code == 200


def test_a_song_not_finished_in_time_is_504(checkpoints):
    gate, made = threading.Event(), []
    limits = Limits(workers=1, queue=1, timeout_seconds=1.0, max_seconds=20)
    with client_for(checkpoints, limits, loader=gated_loader(gate, made)) as client:
        try:
            started = time.monotonic()
            response = client.post("/v1/songs", json=SONG)
            assert response.status_code == 504
            assert "GBSYNTH_GENERATOR_TIMEOUT_SECONDS" in response.json()["error"]
            assert time.monotonic() - started < 5
            slow = client.post("/v1/songs", json={**SONG, "format": "vgm", "seed": 8})
            assert slow.status_code == 504
        finally:
            gate.set()
        # The abandoned jobs stop at their next piece and free the thread.
        wait_for(lambda: client.app.state.service.running == 0)


def test_a_model_writing_too_fast_gets_a_clear_500(checkpoints):
    with client_for(checkpoints, Limits(max_seconds=20, max_events_per_second=5)) as client:
        response = client.post("/v1/songs", json={"seconds": 10, "seed": 1})
        assert response.status_code == 500
        assert "more than 5 per second" in response.json()["error"]
        vgm = client.post("/v1/songs", json={"seconds": 10, "seed": 1, "format": "vgm"})
        assert vgm.status_code == 500
        wait_for(lambda: client.app.state.service.running == 0)


def test_a_new_checkpoint_is_swapped_in_while_songs_finish_on_the_old_one(checkpoints):
    gate, made = threading.Event(), []
    with client_for(checkpoints, loader=gated_loader(gate, made)) as client:
        holder = client.app.state.holder
        service = client.app.state.service
        old, result = in_thread(client.post, "/v1/songs", json=SONG)
        wait_for(lambda: service.running == 1)
        make_tiny_checkpoint(checkpoints, step=2, seed=5)
        assert holder.refresh() and holder.current.step == 2
        gate.set()  # both models share the gate
        new = client.post("/v1/songs", json={**SONG, "seed": 4})
        old.join()
        assert new.headers["x-model-step"] == "2"
        assert result["value"].status_code == 200
        assert result["value"].headers["x-model-step"] == "1"
        assert len(result["value"].content) == int(result["value"].headers["content-length"])
        assert client.get("/healthz").json()["step"] == 2


def test_the_same_song_in_two_formats_is_sampled_once(checkpoints):
    gate, made = threading.Event(), []
    with client_for(checkpoints, loader=gated_loader(gate, made)) as client:
        service = client.app.state.service
        audio, audio_result = in_thread(client.get, "/v1/songs/3.wav", params={"seconds": 2})
        wait_for(lambda: service.running == 1)
        notes, notes_result = in_thread(client.get, "/v1/songs/3.json", params={"seconds": 2})
        time.sleep(0.2)
        gate.set()
        audio.join()
        notes.join()
        vgm = client.get("/v1/songs/3.vgm", params={"seconds": 2})
    assert audio_result["value"].status_code == 200 and notes_result["value"].status_code == 200
    assert vgm.status_code == 200
    assert made[0].calls == 1


def test_metrics_count_requests_and_show_the_model(checkpoints):
    with client_for(checkpoints) as client:
        client.post("/v1/songs", json=SONG)
        client.post("/v1/songs", json={"seconds": 0})
        text = client.get("/metrics").text
    assert 'gbsynth_generator_requests_total{service="generator",status="200"}' in text
    assert 'gbsynth_generator_requests_total{service="generator",status="422"}' in text
    assert 'gbsynth_generator_model_step{service="generator"} 1.0' in text
    for name in ("latency_seconds_bucket", "first_audio_seconds_bucket", "events_per_second",
                 "in_flight"):  # fmt: skip
        assert f"gbsynth_generator_{name}" in text


def test_page_and_docs(checkpoints):
    with client_for(checkpoints) as client:
        page = client.get("/")
        assert page.status_code == 200 and "<canvas" in page.text and "/static/app.js" in page.text
        assert client.get("/static/app.js").status_code == 200
        docs = client.get("/docs")
        assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
        assert "cdn" not in docs.text.lower()  # served locally: works without internet
        asset = client.get("/docs-assets/swagger-ui-bundle.js")
        assert asset.status_code == 200 and len(asset.content) > 100_000
        spec = client.get("/openapi.json").json()
    assert {"/v1/songs", "/v1/songs/{seed}.{fmt}", "/healthz"} <= set(spec["paths"])
    body = spec["components"]["schemas"]["SongRequest"]["properties"]
    assert body["seconds"]["maximum"] == 20


class Slow:
    """A real model whose pieces come slowly, as from a big model on a busy machine."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.step, self.sha256 = model.step, model.sha256
        self.name, self.path = model.name, model.path
        self.pieces = 0

    def stream(self, seconds, **options):
        for piece in self.model.stream(seconds, **options):
            self.pieces += 1
            time.sleep(0.02)
            yield piece


def test_a_client_leaving_mid_stream_stops_its_song(checkpoints):
    """Over a real socket: the first audio arrives while the song is sampled; when the client
    hangs up, sampling stops at the next piece and the request counts as aborted."""
    import socket

    import httpx
    import uvicorn

    made: list[Slow] = []

    def load(path, expected_sha256=None):
        made.append(Slow(load_model(path, expected_sha256)))
        return made[-1]

    holder = ModelHolder(checkpoints, loader=load)
    holder.refresh()
    app = create_app(holder, Limits(max_seconds=300))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started)
    service = app.state.service
    try:
        with httpx.stream("GET", f"http://127.0.0.1:{port}/v1/songs/5.wav",
                          params={"seconds": 120}, timeout=30) as response:  # fmt: skip
            assert response.status_code == 200
            received = b""
            for chunk in response.iter_bytes():
                received += chunk
                if len(received) > 44:
                    break  # header and audio, long before 120 s are sampled
            assert service.running == 1
        wait_for(lambda: service.running == 0, 10)
        pieces = made[0].pieces
        time.sleep(0.3)
        assert made[0].pieces == pieces  # sampling stopped
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'gbsynth_generator_requests_total{service="generator",status="aborted"}' in text
    finally:
        server.should_exit = True
        thread.join(timeout=15)
