"""The generator's HTTP API (FastAPI; OpenAPI docs at ``/docs``) and its web page at ``/``.

    POST /v1/songs                      JSON parameters -> audio/wav (default), VGM,
                                        the Avro event log, a Game Boy ROM that replays
                                        the song, or JSON (notes for a piano roll)
    GET  /v1/songs/{seed}.{wav|vgm|avro|gb|json}?seconds=&temperature=&top_p=&sample_rate=&plan=
                                        the same without a prime, as a link (<audio src>)
    GET  /v1/model                      the served model: step, age, what it was trained on
    GET  /healthz                       whether a model is loaded, and which step
    GET  /metrics                       Prometheus metrics (on the API port by default)
    GET  /                              the page: parameters, generate, listen, piano roll
    GET  /dashboard                     the pipeline's charts (``gbsynth.generator.dashboard``)

WAV answers stream: the header (whose length is known in advance) and then audio as
the model writes the song, so playback starts long before the song is finished.
Errors: 422 bad parameters, 413 a body over the size limit, 429 saturated (with
``Retry-After``), 503 no checkpoint yet, 504 not finished within the time limit; each
with a JSON body ``{"error": "..."}`` that says what to change.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the request models from
# the route functions' annotations, and those models are built inside ``create_app``.
import contextlib
import logging
from collections.abc import AsyncIterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from swagger_ui_bundle import swagger_ui_path

from gbsynth import __version__
from gbsynth.generator.dashboard import Dashboard, config_from_env
from gbsynth.generator.model_info import describe_model
from gbsynth.generator.models import SERVICE, ModelHolder
from gbsynth.generator.prime import PrimeError, prime_from_columns, prime_from_file
from gbsynth.generator.service import REQUESTS, Limits, ServiceError, SongService
from gbsynth.generator.songs import (
    SongParams,
    song_file_bytes,
    song_key,
    wav_size,
)

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_SEED = 2**32 - 1
DEFAULT_SECONDS = 30.0


class SongFormat(StrEnum):
    wav = "wav"
    vgm = "vgm"
    avro = "avro"
    gb = "gb"
    json = "json"


MEDIA_TYPES = {
    SongFormat.wav: "audio/wav",
    SongFormat.vgm: "audio/x-vgm",
    SongFormat.avro: "application/avro",
    SongFormat.gb: "application/x-gameboy-rom",
    SongFormat.json: "application/json",
}


class ErrorBody(BaseModel):
    error: str = Field(description="what went wrong and what to change")
    detail: list[dict[str, Any]] | None = Field(
        None, description="for 422: each invalid parameter (location, message)"
    )


class PrimeFile(BaseModel):
    """Music to continue, as a file."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(
        min_length=1,
        description="base64 of an Avro recordings or segments file, a VGM/VGZ file or a "
        "gbsplay I/O dump",
    )
    index: int = Field(0, ge=0, le=100_000, description="which recording/segment/section")


class PrimeWrites(BaseModel):
    """Music to continue, as the three write columns (non-decreasing cycles)."""

    model_config = ConfigDict(extra="forbid")

    cycles: list[Annotated[int, Field(ge=0, le=2**62)]] = Field(
        description="T-cycle of each write (4,194,304 per second), non-decreasing"
    )
    registers: list[Annotated[int, Field(ge=0x10, le=0xFF3F)]] = Field(
        description="register of each write: 0xFF10-0xFF3F (65296-65343) or its low byte "
        "0x10-0x3F (16-63)"
    )
    values: list[Annotated[int, Field(ge=0, le=255)]] = Field(description="byte written")


def _prime_kind(value: Any) -> str:
    """Which form a prime takes, so errors speak of that form only."""
    if isinstance(value, dict):
        return "file" if "file" in value else "writes"
    return "file" if isinstance(value, PrimeFile) else "writes"


def request_model(limits: Limits) -> type[BaseModel]:
    """The POST body model, with the configured song-length limit in its schema."""
    default = min(DEFAULT_SECONDS, limits.max_seconds)

    class SongRequest(BaseModel):
        """Parameters of a song. The same parameters and checkpoint give the same bytes."""

        model_config = ConfigDict(extra="forbid")

        seconds: float = Field(
            default, ge=1, le=limits.max_seconds, allow_inf_nan=False,
            description="length of the song in seconds (a prime counts in it)",
        )  # fmt: skip
        temperature: float = Field(
            1.0, ge=0, le=2, allow_inf_nan=False,
            description="sampling temperature; 0 always picks the likeliest event",
        )  # fmt: skip
        top_p: float = Field(
            0.95, gt=0, le=1, allow_inf_nan=False,
            description="nucleus sampling: pick among the likeliest events covering this mass",
        )  # fmt: skip
        seed: int = Field(0, ge=0, le=MAX_SEED, description="random seed")
        format: SongFormat = Field(
            SongFormat.wav,
            description="wav (16-bit stereo PCM), vgm (VGM 1.61), avro (the event log as an "
            "Avro recordings file), gb (a Game Boy ROM that replays the song, each write "
            "within a frame of its time), json (song description and piano roll)",
        )
        sample_rate: int = Field(44_100, ge=8_000, le=96_000, description="WAV sample rate, Hz")
        prime: (
            Annotated[
                Annotated[PrimeFile, Tag("file")] | Annotated[PrimeWrites, Tag("writes")],
                Discriminator(_prime_kind),
            ]
            | None
        ) = Field(None, description="music for the song to continue: a file or write columns")
        plan: str = Field("", max_length=40, description=PLAN_DESCRIPTION)

        @field_validator("plan")
        @classmethod
        def _plan(cls, value: str) -> str:
            from gbsynth.trainer.song_plan import checked_plan_text

            return checked_plan_text(value)  # its SongPlanError is a ValueError: a 422

    return SongRequest


PLAN_DESCRIPTION = (
    "rows, form and key the sampler keeps: FORM[:PHRASES]@FRAMES such as AABA@6 (sections of "
    "64 rows of 6 frames) or AABA:aaba@6 (bars a, a, b, a in each new section); add "
    "/chromatic for no key; free: the network alone; empty: drawn from the seed (none with "
    "a prime)"
)


def _query_plan(value: str) -> str:
    """A query's plan, or a 422 naming it."""
    from gbsynth.trainer.song_plan import SongPlanError, checked_plan_text

    try:
        return checked_plan_text(value)
    except SongPlanError as exc:
        raise ServiceError(422, f"plan: {exc}") from exc


def _where(loc: list[Any]) -> str:
    """``seconds`` or ``prime.writes.cycles`` for an error's location; ``body`` for the body."""
    if len(loc) == 2 and loc[0] == "body" and isinstance(loc[1], int):
        return f"body at character {loc[1]}"  # JSON that does not parse
    inside = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(inside) or (str(loc[0]) if loc else "request")


def _song_headers(song_key: str, model_step: int, sha256: str, name: str) -> dict[str, str]:
    return {
        "Content-Disposition": f'attachment; filename="{name}"',
        "X-Song-Key": song_key,
        "X-Model-Step": str(model_step),
        "X-Checkpoint-Sha256": sha256,
        "Cache-Control": "no-store",  # a newer checkpoint makes another song
    }


def _file_name(params: SongParams, fmt: SongFormat) -> str:
    return f"gbsynth-seed{params.seed}-{params.seconds:g}s.{fmt.value}"


def _song_responses(extra: dict[int, Any] | None = None) -> dict[int | str, Any]:
    content = {media: {"schema": {"type": "string", "format": "binary"}}
               for fmt, media in MEDIA_TYPES.items() if fmt is not SongFormat.json}  # fmt: skip
    content["application/json"] = {"schema": {"type": "object"}}
    responses: dict[int | str, Any] = {
        200: {"description": "the song in the requested format", "content": content},
        422: {"model": ErrorBody, "description": "invalid parameters"},
        429: {"model": ErrorBody, "description": "saturated: retry after Retry-After seconds"},
        500: {"model": ErrorBody, "description": "the model produced an unusable song"},
        503: {"model": ErrorBody, "description": "no checkpoint loaded yet"},
        504: {"model": ErrorBody, "description": "not finished within the time limit"},
    }
    responses.update(extra or {})
    return responses


def create_app(
    holder: ModelHolder,
    limits: Limits | None = None,
    *,
    metrics_endpoint: bool = True,
    max_body_bytes: int = 16 * 1024 * 1024,
    dashboard: Dashboard | None = None,
) -> FastAPI:
    """The generator's ASGI app around a model holder (``service`` on ``app.state``).

    ``dashboard`` answers ``/v1/dashboard``; by default one configured from the
    environment (``GBSYNTH_PROMETHEUS_URL``, ``GBSYNTH_DASHBOARD_METRICS_URLS``).
    """
    limits = limits or Limits()
    service = SongService(holder, limits)
    SongRequest = request_model(limits)
    dashboard = dashboard or Dashboard(config_from_env())

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        dashboard.start()
        yield
        dashboard.close()
        service.close()

    app = FastAPI(
        lifespan=lifespan,
        title="gbsynth generator",
        version=__version__,
        description="New Game Boy songs from the newest trained checkpoint, as WAV, VGM or "
        "the Avro event log. The same seed, parameters and checkpoint give the same bytes.",
        # FastAPI's own docs pages load their scripts from a CDN; /docs is served below from
        # the swagger-ui-bundle package instead, so it works where there is no internet.
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.state.holder = holder
    app.state.dashboard = dashboard
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(GzipPages)
    quiet_polling_in_access_log()

    def counted(request: Request, status: int) -> None:
        if request.url.path.startswith("/v1/songs"):
            REQUESTS.labels(service=SERVICE, status=str(status)).inc()

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        counted(request, exc.status)
        return JSONResponse({"error": exc.message}, exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        counted(request, exc.status_code)
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        counted(request, 422)
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()
        ]
        summary = "; ".join(f"{_where(d['loc'])}: {d['msg']}" for d in detail[:5])
        return JSONResponse(
            jsonable_encoder({"error": f"invalid parameters: {summary}", "detail": detail}), 422
        )

    # -- the songs ---------------------------------------------------------------------------
    async def answer(request: Request, params: SongParams, fmt: SongFormat) -> Response:
        model = service.model()
        if fmt is SongFormat.wav:
            song, chunks = await service.wav_stream(params, model)
            if chunks is not None:
                headers = _song_headers(
                    song_key(model.sha256, params), model.step, model.sha256,
                    _file_name(params, fmt),
                )  # fmt: skip
                headers["Content-Length"] = str(wav_size(params.duration_cycles,
                                                         params.sample_rate))  # fmt: skip
                return StreamingResponse(chunks, media_type=MEDIA_TYPES[fmt], headers=headers)
        else:
            song = await service.song(params, model)
        assert song is not None
        body = await run_in_threadpool(song_file_bytes, song, fmt.value, params.sample_rate)
        counted(request, 200)
        headers = _song_headers(song.key, song.model_step, song.checkpoint_sha256,
                                _file_name(params, fmt))  # fmt: skip
        if fmt is SongFormat.json:
            headers.pop("Content-Disposition")
        return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)

    @app.post(
        "/v1/songs",
        summary="Generate a song",
        response_class=Response,
        responses=_song_responses({413: {"model": ErrorBody, "description": "body too large"}}),
    )
    async def post_song(request: Request, body: SongRequest) -> Response:  # type: ignore[valid-type]
        """Sample a new song from the served checkpoint and return it in ``format``.

        WAV streams as it is sampled. With ``prime``, the song starts with the prime's
        music and the model continues it; ``seconds`` counts the prime too.
        """
        prime = None
        if body.prime is not None:
            prime = await run_in_threadpool(_prime_writes, body.prime, limits, body.seconds)
        params = SongParams(
            seconds=body.seconds, temperature=body.temperature, top_p=body.top_p,
            seed=body.seed, prime=prime, sample_rate=body.sample_rate, plan=body.plan,
        )  # fmt: skip
        return await answer(request, params, SongFormat(body.format))

    @app.get(
        "/v1/songs/{seed}.{fmt}",
        summary="Generate a song (as a link)",
        response_class=Response,
        responses=_song_responses(),
    )
    async def get_song(
        request: Request,
        seed: Annotated[int, PathParam(ge=0, le=MAX_SEED, description="random seed")],
        fmt: Annotated[SongFormat, PathParam(description="wav, vgm, avro, gb or json")],
        seconds: Annotated[float, Query(ge=1, le=limits.max_seconds, allow_inf_nan=False)] = min(
            DEFAULT_SECONDS, limits.max_seconds
        ),
        temperature: Annotated[float, Query(ge=0, le=2, allow_inf_nan=False)] = 1.0,
        top_p: Annotated[float, Query(gt=0, le=1, allow_inf_nan=False)] = 0.95,
        sample_rate: Annotated[int, Query(ge=8_000, le=96_000)] = 44_100,
        plan: Annotated[str, Query(max_length=40, description=PLAN_DESCRIPTION)] = "",
    ) -> Response:
        """The song ``POST /v1/songs`` makes with these parameters and no prime, at a URL
        (for ``<audio src>`` and download links); WAV streams as it is sampled."""
        params = SongParams(
            seconds=seconds, temperature=temperature, top_p=top_p, seed=seed,
            sample_rate=sample_rate, plan=_query_plan(plan),
        )  # fmt: skip
        return await answer(request, params, fmt)

    # -- the rest ----------------------------------------------------------------------------
    class Health(BaseModel):
        status: str = Field(description="ok, or no_model before the first checkpoint")
        model_loaded: bool
        step: int | None = Field(None, description="training step of the served checkpoint")
        checkpoint: str | None = Field(None, description="file name of the served checkpoint")
        sha256: str | None = None
        checkpoint_dir: str
        running: int = Field(description="songs being sampled now")
        queued: int = Field(description="song requests waiting for a sampling thread")
        max_seconds: float = Field(description="longest song served")
        version: str

    @app.get("/healthz", response_model=Health, summary="Service and model status")
    async def healthz() -> Health:
        model = holder.current
        return Health(
            status="ok" if model is not None else "no_model",
            model_loaded=model is not None,
            step=model.step if model else None,
            checkpoint=model.name if model else None,
            sha256=model.sha256 if model else None,
            checkpoint_dir=str(holder.checkpoint_dir),
            running=service.running,
            queued=service.queued,
            max_seconds=limits.max_seconds,
            version=__version__,
        )

    @app.get(
        "/v1/model",
        summary="The served model: step, age, figures, what it was trained on",
        responses={503: {"model": ErrorBody, "description": "no checkpoint loaded yet"}},
    )
    async def model_info() -> dict[str, Any]:
        """Facts about the checkpoint being served, from what it carries: its step, age and
        losses, the trainer's dataset size, and its model card if it has one."""
        model = service.model()  # 503 before the first checkpoint
        return await run_in_threadpool(describe_model, model)

    @app.get("/v1/dashboard", summary="The pipeline dashboard's lines")
    def dashboard_data(
        minutes: Annotated[float, Query(ge=1, le=360, allow_inf_nan=False)] = 15,
    ) -> dict[str, Any]:
        """Every panel of ``/dashboard`` over the last ``minutes``: one time axis (unix
        seconds) and each line's values on it (null: no value). From Prometheus
        (``GBSYNTH_PROMETHEUS_URL``) when it answers, else from the services' /metrics the
        generator reads itself."""
        return dashboard.data(minutes)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "dashboard.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")
    if metrics_endpoint:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

        @app.get("/metrics", include_in_schema=False)
        async def prometheus_metrics() -> Response:
            # A route, not a mounted app: a mount answers /metrics with a redirect.
            return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app


def _prime_writes(prime: PrimeFile | PrimeWrites, limits: Limits, seconds: float):
    from gbsynth.generator.prime import prime_seconds

    try:
        if isinstance(prime, PrimeFile):
            writes = prime_from_file(prime.file, prime.index, limits.max_prime_writes)
        else:
            writes = prime_from_columns(
                prime.cycles, prime.registers, prime.values, limits.max_prime_writes
            )
    except PrimeError as exc:
        raise ServiceError(422, f"invalid prime: {exc}") from exc
    if prime_seconds(writes) >= seconds:
        raise ServiceError(
            422,
            f"the prime lasts {prime_seconds(writes):.2f} s, as long as the song "
            f"({seconds:g} s): ask for more seconds or send a shorter prime",
        )
    return writes


class PollingFilter(logging.Filter):
    """Drops uvicorn's access-log lines of the pages' polls (the dashboard asks every 5 s,
    the song page checks the model every 15 s) when they succeed: in ``make run``'s output
    they would bury the services' own lines."""

    PATHS = ("/v1/dashboard", "/healthz", "/v1/model")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 5:  # (client, method, path, version, status)
            path, status = str(args[2]), args[4]
            return not (path.startswith(self.PATHS) and status == 200)
        return True


def quiet_polling_in_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, PollingFilter) for f in access.filters):
        access.addFilter(PollingFilter())


class GzipPages:
    """ASGI middleware: gzip the page, its scripts and the dashboard's JSON (uPlot is 51 KB,
    22 KB gzipped) but nothing else: a gzipped WAV stream would lose its Content-Length,
    which the player needs to show the song's length while it streams."""

    PREFIXES = ("/static/", "/dashboard", "/v1/dashboard", "/v1/model", "/docs")

    def __init__(self, app: Any) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=1024)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == "/" or path.startswith(self.PREFIXES):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = False
            if too_big:
                await self._refuse(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI passes HTTP exceptions raised while reading the body through.
                    raise StarletteHTTPException(413, self.message)
            return message

        await self.app(scope, counting_receive, send)

    @property
    def message(self) -> str:
        return f"request body over {self.max_bytes} bytes (GBSYNTH_GENERATOR_MAX_BODY_BYTES)"

    async def _refuse(self, scope: dict, receive: Any, send: Any) -> None:
        await JSONResponse({"error": self.message}, 413)(scope, receive, send)
