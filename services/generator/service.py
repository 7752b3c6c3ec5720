"""The generator's work scheduler: bounded sampling threads, a song cache and streaming.

Sampling is CPU-bound work, so it runs in a fixed pool of ``workers`` threads (the
sampler is thread-safe and its compiled loop releases the GIL). Requests beyond the
running ones wait in a queue of at most ``queue`` places; past that, or when the songs
already admitted would keep a new one from finishing within its time limit at the
recent speed, the service answers 429 with ``Retry-After`` at once instead of letting
latency grow without bound. Every request has a deadline:
its song's length plus ``timeout_seconds`` from arrival, queueing included (a listener
of a stream never waits for a model faster than real time). A song not finished by then
is abandoned between two sampled pieces and the request gets 504 (or, once audio is
flowing, the stream is cut short).

A song is a pure function of the checkpoint and its parameters, so finished songs
are cached by ``song_key`` (their writes only, about 10 bytes per event) and two
requests for the same song share one sampling job: the page asks for the audio and
the piano roll of the same song, and pays for one.

``SongService`` knows nothing of HTTP beyond the status codes of ``ServiceError``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from gbsynth.common import metrics
from gbsynth.generator.models import SERVICE, LoadedModel, ModelHolder
from gbsynth.generator.songs import (
    Cancelled,
    Song,
    SongError,
    SongParams,
    SongSource,
    generate,
    song_key,
    wav_size,
)

log = logging.getLogger(__name__)

REQUESTS = metrics.counter(
    "generator_requests",
    "song requests by HTTP status (aborted: a stream cut short after it started)",
    ["status"],
)
LATENCY = metrics.histogram(
    "generator_latency_seconds",
    "from a song request's arrival to its last sampled piece (queueing included)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300),
)
FIRST_AUDIO = metrics.histogram(
    "generator_first_audio_seconds",
    "from a streamed song request's arrival to its first rendered audio",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60),
)
EVENTS_PER_SECOND = metrics.gauge(
    "generator_events_per_second", "events (register writes) sampled per wall second, last song"
)
MUSIC_SPEED = metrics.gauge(
    "generator_music_speed", "seconds of music sampled per wall second of sampling, last song"
)
IN_FLIGHT = metrics.gauge(
    "generator_in_flight", "song requests admitted and not finished (running or queued)"
)
SONG_SECONDS = metrics.counter("generator_song_seconds", "seconds of music generated")
CACHE_HITS = metrics.counter("generator_cache_hits", "song requests served from the song cache")
# Series at zero from the start, so rates and quantiles exist before the first song.
for _metric in (LATENCY, FIRST_AUDIO, SONG_SECONDS, CACHE_HITS, IN_FLIGHT):
    _metric.labels(service=SERVICE)


class ServiceError(Exception):
    """A request the service cannot serve, with the HTTP status that says why."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class StreamCut(RuntimeError):
    """A WAV stream that had started could not be finished (the connection is closed)."""


@dataclass(frozen=True)
class Limits:
    """How much work the service takes on (from the ``GBSYNTH_GENERATOR_*`` settings, whose
    defaults are these)."""

    workers: int = 2
    queue: int = 32
    timeout_seconds: float = 180.0
    """Time a request may take beyond its song's length."""
    max_seconds: float = 300.0
    cache_songs: int = 64
    max_prime_writes: int = 200_000
    max_events_per_second: float = 20_000.0
    retry_after_seconds: int = 5


SPEED_MEMORY_SECONDS = 300.0
"""A speed measured longer ago than this no longer steers admission (the load changed)."""

_DONE = object()


@dataclass
class _Job:
    key: str
    future: concurrent.futures.Future[Song]
    cancel: threading.Event
    started: float


class SongService:
    """Admission, sampling threads, the song cache, and the WAV stream of a new song."""

    def __init__(self, holder: ModelHolder, limits: Limits | None = None) -> None:
        self.holder = holder
        self.limits = limits or Limits()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0
        self._pending_seconds = 0.0  # seconds of music of the admitted songs
        self._speed: float | None = None  # recent music seconds per wall second, per thread
        self._speed_at = 0.0  # when it was last measured
        self._cache: OrderedDict[str, Song] = OrderedDict()
        self._inflight: dict[str, _Job] = {}
        IN_FLIGHT.labels(service=SERVICE).set(0)

    # -- state -------------------------------------------------------------------------------
    @property
    def running(self) -> int:
        return self._running

    @property
    def queued(self) -> int:
        return max(0, self._admitted - self._running)

    def model(self) -> LoadedModel:
        """The model to serve this request with, or 503 when there is none yet."""
        model = self.holder.current
        if model is None:
            detail = f" (last error: {self.holder.last_error})" if self.holder.last_error else ""
            raise ServiceError(
                503,
                f"no model checkpoint yet in {self.holder.checkpoint_dir}: the trainer has not "
                f"written one{detail}; try again later",
                {"Retry-After": str(self.limits.retry_after_seconds)},
            )
        return model

    def cached(self, key: str) -> Song | None:
        with self._lock:
            song = self._cache.get(key)
            if song is not None:
                self._cache.move_to_end(key)
        if song is not None:
            CACHE_HITS.labels(service=SERVICE).inc()
        return song

    def _remember(self, song: Song) -> None:
        with self._lock:
            self._cache[song.key] = song
            self._cache.move_to_end(song.key)
            while len(self._cache) > self.limits.cache_songs:
                self._cache.popitem(last=False)

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """The sampling threads (started on first use, again after ``close``)."""
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    self.limits.workers, thread_name_prefix="song"
                )
            return self._executor

    def close(self) -> None:
        """Abandon the songs in hand (each stops at its next piece) and stop the threads."""
        with self._lock:
            executor, self._executor = self._executor, None
            jobs = list(self._inflight.values())
        for job in jobs:
            job.cancel.set()
        if executor is not None:
            executor.shutdown(wait=False)

    # -- jobs --------------------------------------------------------------------------------
    def _start(
        self,
        source: SongSource,
        params: SongParams,
        key: str,
        arrived: float,
        sink_factory: Callable[[_Job], Callable[[bytes], None]] | None = None,
    ) -> _Job:
        """Admit and queue a sampling job, or raise 429 when every place is taken or the
        song could not be finished in time behind the work already admitted."""
        deadline = self._deadline(arrived, params)
        with self._lock:
            if self._admitted >= self.limits.workers + self.limits.queue:
                raise ServiceError(
                    429,
                    f"the generator is busy ({self._running} songs being sampled, "
                    f"{self._admitted - self._running} waiting); try again shortly",
                    {"Retry-After": str(self.limits.retry_after_seconds)},
                )
            if self._speed is not None and arrived - self._speed_at < SPEED_MEMORY_SECONDS:
                # Seconds of music ahead (admitted songs, counted whole) at the recent speed.
                expected = (self._pending_seconds + params.seconds) / (
                    self.limits.workers * self._speed
                )
                if arrived + expected > deadline:
                    wait = expected - params.seconds / self._speed
                    raise ServiceError(
                        429,
                        f"the generator cannot finish this song in time: {self._admitted} "
                        f"songs ({self._pending_seconds:g} s of music) are ahead of it and "
                        f"it makes about {self._speed:.2g} s of music per second per thread; "
                        "try again later or ask for fewer seconds",
                        {"Retry-After": str(max(1, math.ceil(wait)))},
                    )
            self._admitted += 1
            self._pending_seconds += params.seconds
            job = _Job(key, concurrent.futures.Future(), threading.Event(), arrived)
            self._inflight[key] = job
            IN_FLIGHT.labels(service=SERVICE).set(self._admitted)
        sink = sink_factory(job) if sink_factory is not None else None

        def work() -> None:
            with self._lock:
                self._running += 1
            began = time.monotonic()
            try:
                if not job.future.set_running_or_notify_cancel():
                    return
                try:
                    song = generate(
                        source, params, sink=sink, cancel=job.cancel, deadline=deadline,
                        max_events_per_second=self.limits.max_events_per_second,
                    )  # fmt: skip
                except BaseException as exc:
                    job.future.set_exception(exc)
                    return
                self._remember(song)
                self._observe(song, arrived, time.monotonic() - began)
                job.future.set_result(song)
            finally:
                with self._lock:
                    self._running -= 1
                    self._admitted -= 1
                    self._pending_seconds -= params.seconds
                    if self._inflight.get(key) is job:
                        del self._inflight[key]
                    IN_FLIGHT.labels(service=SERVICE).set(self._admitted)

        try:
            self.executor.submit(work)
        except RuntimeError as exc:  # the executor is shut down: the service is stopping
            with self._lock:
                self._admitted -= 1
                self._pending_seconds -= params.seconds
                self._inflight.pop(key, None)
            raise ServiceError(503, "the generator is shutting down") from exc
        return job

    def _deadline(self, arrived: float, params: SongParams) -> float:
        """When a request must be done: its song's length plus the time limit."""
        return arrived + params.seconds + self.limits.timeout_seconds

    def note_speed(self, music_seconds: float, wall_seconds: float) -> None:
        """Record how fast a song was made: music per wall second of one thread (sampling,
        rendering and the machine's load included), smoothed; admission expects it of the
        next songs."""
        if wall_seconds <= 0 or music_seconds <= 0:
            return
        speed = music_seconds / wall_seconds
        now = time.monotonic()
        with self._lock:
            stale = self._speed is None or now - self._speed_at > SPEED_MEMORY_SECONDS
            self._speed = speed if stale else 0.7 * self._speed + 0.3 * speed
            self._speed_at = now

    def _observe(self, song: Song, arrived: float, job_seconds: float) -> None:
        self.note_speed(song.seconds, job_seconds)
        LATENCY.labels(service=SERVICE).observe(time.monotonic() - arrived)
        SONG_SECONDS.labels(service=SERVICE).inc(song.seconds)
        if song.sample_seconds > 0:
            EVENTS_PER_SECOND.labels(service=SERVICE).set(song.events_per_second)
            MUSIC_SPEED.labels(service=SERVICE).set(song.seconds / song.sample_seconds)

    def _error(self, exc: BaseException) -> ServiceError:
        """The HTTP answer for a job that failed."""
        if isinstance(exc, ServiceError):
            return exc
        if isinstance(exc, Cancelled | TimeoutError):
            return ServiceError(
                504,
                "the song was not finished within its length plus "
                f"{self.limits.timeout_seconds:g} s (GBSYNTH_GENERATOR_TIMEOUT_SECONDS); ask "
                "for fewer seconds or try later",
            )
        if isinstance(exc, SongError):
            log.error("sampling broke the contract: %s", exc)
            return ServiceError(500, f"the model produced an unusable song: {exc}")
        log.error("song failed", exc_info=exc)
        return ServiceError(500, f"song generation failed: {type(exc).__name__}: {exc}")

    async def _wait(self, job: _Job, arrived: float, params: SongParams) -> Song:
        remaining = self._deadline(arrived, params) - time.monotonic()
        try:
            # shield: a waiter giving up must not cancel a job another request shares.
            return await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(job.future)), max(remaining, 0.001)
            )
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise self._error(exc) from exc

    # -- what the API calls ------------------------------------------------------------------
    async def song(self, params: SongParams, model: LoadedModel | None = None) -> Song:
        """The finished song for ``params``: cached, shared with a running job, or sampled."""
        arrived = time.monotonic()
        model = model or self.model()
        key = song_key(model.sha256, params)
        for _attempt in range(2):
            song = self.cached(key)
            if song is not None:
                return song
            with self._lock:
                job = self._inflight.get(key)
            if job is None:
                job = self._start(model, params, key, arrived)
            try:
                return await self._wait(job, arrived, params)
            except ServiceError as exc:
                # A shared stream whose client left was abandoned: sample it ourselves.
                if exc.status != 504 or time.monotonic() >= self._deadline(arrived, params):
                    raise
        raise ServiceError(504, "the song was abandoned twice; try again")

    async def wav_stream(
        self, params: SongParams, model: LoadedModel | None = None
    ) -> tuple[Song | None, AsyncIterator[bytes] | None]:
        """A song's WAV: ``(song, None)`` when it is already known (render it from the
        song), else ``(None, chunks)`` streaming a new one as it is sampled.

        Failures before the first audio raise ``ServiceError`` (a proper status); after
        it, the stream ends early and the client sees a short file.
        """
        arrived = time.monotonic()
        model = model or self.model()
        key = song_key(model.sha256, params)
        song = self.cached(key)
        if song is not None:
            return song, None
        with self._lock:
            shared = self._inflight.get(key)
        if shared is not None:
            return await self.song(params, model), None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        first_audio_seen = threading.Event()

        def sink_factory(job: _Job) -> Callable[[bytes], None]:
            pieces = 0

            def sink(data: bytes) -> None:
                nonlocal pieces
                pieces += 1
                if pieces == 2 and not first_audio_seen.is_set():  # 1: header, 2: audio
                    first_audio_seen.set()
                    FIRST_AUDIO.labels(service=SERVICE).observe(time.monotonic() - arrived)
                loop.call_soon_threadsafe(queue.put_nowait, data)

            job.future.add_done_callback(
                lambda f: loop.call_soon_threadsafe(
                    queue.put_nowait, _DONE if f.exception() is None else f.exception()
                )
            )
            return sink

        job = self._start(model, params, key, arrived, sink_factory)
        head: list[bytes] = []
        try:
            while len(head) < 2:
                remaining = self._deadline(arrived, params) - time.monotonic()
                item = await asyncio.wait_for(queue.get(), max(remaining, 0.001))
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise self._error(item)
                head.append(item)  # type: ignore[arg-type]
        except TimeoutError as exc:
            job.cancel.set()
            raise self._error(exc) from exc
        except BaseException:
            job.cancel.set()
            raise
        size = wav_size(params.duration_cycles, params.sample_rate)
        return None, self._relay(job, queue, head, size)

    async def _relay(
        self, job: _Job, queue: asyncio.Queue[object], head: list[bytes], size: int
    ) -> AsyncIterator[bytes]:
        """Yield the WAV's chunks as they come; ``size`` is the whole file's length."""
        sent = 0
        try:
            for chunk in head:
                sent += len(chunk)
                yield chunk
            while True:
                item = await queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    error = self._error(item)
                    log.warning("stream of song %s cut short: %s", job.key[:12], error.message)
                    raise StreamCut(error.message)
                sent += len(item)  # type: ignore[arg-type]
                yield item  # type: ignore[misc]
        finally:
            # Counted here, where the outcome is known; by bytes, because a client that got
            # every byte may hang up before the end of the stream is seen.
            complete = sent >= size
            REQUESTS.labels(service=SERVICE, status="200" if complete else "aborted").inc()
            if not complete:
                job.cancel.set()  # the client left or the stream broke: stop sampling
