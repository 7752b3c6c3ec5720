"""The emulator service: jobs in (``emulator.jobs``), recordings out (``apu.recordings``).

Workers share jobs through a consumer group, so N replicas split the work and
each job is done by one of them. A job's recording is published as it is made,
in chunks of about one emulated second, keyed by recording id; the job's offset
is committed only after every chunk is acknowledged. A worker killed mid-job
leaves the job uncommitted, so another one redoes it; the redo sends the same
chunks (deterministic ids and chunking), which downstream treats as duplicates.

When no job has arrived for a while, a worker explores a ROM from the folder
with a fresh seed, so the pipeline keeps getting new material: the ROM it has
explored least, until ``GBSYNTH_EXPLORE_ROM_SECONDS`` of emulated time are spent
on each. The worker keeps each ROM's songs (``SongBook``) across these explorations,
so a song it has recorded once is not recorded again and the time goes to states it
has not explored (jobs from the topic start from no songs, so that they stay
deterministic).

A bad or hung file gives a log line, a labelled metric and an error record on
the dead-letter topic; the worker goes on with the next job.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from gbsynth.common import metrics
from gbsynth.common.avro import ChunkWriter, CodecError, codec, encode_chunk
from gbsynth.common.config import Setting
from gbsynth.common.events import CPU_HZ, ApuWrites, SourceKind
from gbsynth.common.kafka import (
    TOPIC_JOBS,
    TOPIC_RECORDINGS,
    Message,
    Output,
    Processor,
    dead_letter,
    run_service,
)
from gbsynth.emulator.explore import DEFAULT_MAX_STATES, ExploreSettings
from gbsynth.emulator.jobs import EmulationJob, JobError, discover_jobs, resolve_in_folder
from gbsynth.emulator.sources import RomSession, SourceError, open_session
from gbsynth.pruner.songs import SongBook

log = logging.getLogger(__name__)

SERVICE = "emulator"

ROM_DIR = Setting(
    "GBSYNTH_ROM_DIR", str, "roms", "folder of ROM, GBS and VGM files; jobs name files inside it"
)
RECORD_SECONDS = Setting(
    "GBSYNTH_RECORD_SECONDS",
    float,
    300.0,
    "emulated seconds per recording, for enqueued jobs and idle exploration",
    minimum=0.001,
)
PIECE_SECONDS = Setting(
    "GBSYNTH_PIECE_SECONDS",
    float,
    1.0,
    "emulated seconds between publishing the chunks of a recording in progress",
    minimum=0.01,
)
EXPLORE_WHEN_IDLE = Setting(
    "GBSYNTH_EXPLORE_WHEN_IDLE",
    bool,
    True,
    "when no job has come for GBSYNTH_IDLE_SECONDS, explore a random ROM with a fresh seed",
)
IDLE_SECONDS = Setting(
    "GBSYNTH_IDLE_SECONDS", float, 5.0, "wall seconds without a job before exploring", minimum=0
)
ENQUEUE_ON_START = Setting(
    "GBSYNTH_ENQUEUE_ON_START",
    bool,
    False,
    "publish a job for every file in the ROM folder at start (set it on one replica only)",
)
_EXPLORE_DEFAULTS = ExploreSettings()
EXPLORE_BOOT_SECONDS = Setting(
    "GBSYNTH_EXPLORE_BOOT_SECONDS",
    float,
    _EXPLORE_DEFAULTS.boot_seconds,
    "exploration: listening from power-on before the first input",
    minimum=0,
)
EXPLORE_OBSERVE_SECONDS = Setting(
    "GBSYNTH_EXPLORE_OBSERVE_SECONDS",
    float,
    _EXPLORE_DEFAULTS.observe_seconds,
    "exploration: longest recorded window of one new song (shorter when it loops or stops)",
    minimum=0.1,
)
EXPLORE_PRESS_SECONDS = Setting(
    "GBSYNTH_EXPLORE_PRESS_SECONDS",
    float,
    _EXPLORE_DEFAULTS.press_seconds,
    "exploration: longest wait macro (no input, listening for music that comes in time)",
    minimum=0,
)
EXPLORE_SETTLE_SECONDS = Setting(
    "GBSYNTH_EXPLORE_SETTLE_SECONDS",
    float,
    _EXPLORE_DEFAULTS.settle_seconds,
    "exploration: quiet after each input, not judged, before listening",
    minimum=0,
)
EXPLORE_ROM_SECONDS = Setting(
    "GBSYNTH_EXPLORE_ROM_SECONDS",
    float,
    3600.0,
    "emulated seconds of idle exploration spent on one ROM at most (0: no cap); a worker "
    "whose ROMs all reached it stops exploring",
    minimum=0,
)
EXPLORE_MAX_STATES = Setting(
    "GBSYNTH_EXPLORE_MAX_STATES",
    int,
    DEFAULT_MAX_STATES,
    "save states one ROM's exploration keeps (about 70 KiB each, more with cartridge RAM)",
    minimum=1,
)

EMULATED_SECONDS = metrics.counter(
    "emulated_seconds", "emulated seconds recorded, by kind of file", ["kind"]
)
WRITES_PUBLISHED = metrics.counter("writes_published", "sound-register writes published")
REALTIME_FACTOR = metrics.gauge(
    "emulator_realtime_factor", "emulated seconds per wall second of the last job"
)
JOBS = metrics.counter(
    "jobs", "emulation jobs finished, by outcome and origin", ["outcome", "origin"]
)
JOB_FAILURES = metrics.counter("job_failures", "failed jobs by reason", ["reason"])
HANGS = metrics.counter("hangs_detected", "programs the watchdog found hung")
JOB_SECONDS = metrics.histogram("job_seconds", "wall time of one emulation job", ["kind"])
SONGS_FOUND = metrics.counter(
    "emulator_songs_found", "songs heard for the first time (and recorded), by ROM", ["rom"]
)
SONGS_KNOWN = metrics.gauge("emulator_songs_known", "songs this worker knows of a ROM", ["rom"])
EXPLORE_STATES = metrics.gauge(
    "emulator_explore_states", "save states archived by the running or last exploration"
)
EXPLORE_BRANCHES = metrics.counter(
    "emulator_explore_branches", "exploration branches played from archived states"
)
EXPLORED_SECONDS = metrics.gauge(
    "emulator_explored_seconds", "emulated seconds of idle exploration spent on a ROM", ["rom"]
)


def explore_settings_from_env() -> ExploreSettings:
    return ExploreSettings(
        boot_seconds=EXPLORE_BOOT_SECONDS.get(),
        observe_seconds=EXPLORE_OBSERVE_SECONDS.get(),
        press_seconds=EXPLORE_PRESS_SECONDS.get(),
        settle_seconds=EXPLORE_SETTLE_SECONDS.get(),
    )


class EmulatorWorker(Processor):
    """Runs jobs and yields their recording chunks as they are made (no Kafka inside)."""

    def __init__(
        self,
        rom_dir: Path,
        *,
        record_seconds: float = 300.0,
        piece_seconds: float = 1.0,
        explore: ExploreSettings | None = None,
        explore_when_idle: bool = True,
        idle_seconds: float = 5.0,
        rom_seconds: float = 3600.0,
        max_states: int = DEFAULT_MAX_STATES,
        clock=time.monotonic,
    ) -> None:
        self.rom_dir = Path(rom_dir)
        self.record_seconds = record_seconds
        self.piece_seconds = piece_seconds
        self.explore = explore or ExploreSettings()
        self.explore_when_idle = explore_when_idle
        self.idle_seconds = idle_seconds
        self.rom_seconds = rom_seconds
        self.max_states = max_states
        self.clock = clock
        self.song_books: dict[str, SongBook] = {}
        """Each ROM's songs (by path in the folder), kept across idle explorations, so none is
        recorded twice. Jobs from the topic start from no songs: a redo elsewhere must send
        the same chunks."""
        self.explored_seconds: dict[str, float] = {}
        """Emulated seconds of idle exploration spent on each ROM."""
        self.last_job_at = clock()
        self._roms: list[EmulationJob] | None = None
        self._warned_no_roms = False

    # -- jobs from the topic ---------------------------------------------------------------
    def process(self, message: Message) -> Iterator[Output]:
        self.last_job_at = self.clock()
        record = codec("Job").decode(message.value or b"")
        try:
            job = EmulationJob.from_record(record)
        except JobError as exc:
            raise CodecError(str(exc)) from exc
        error = yield from self.run_job(job, origin="topic")
        if error is not None:
            yield dead_letter(message, error, SERVICE)
        self.last_job_at = self.clock()

    def run_job(self, job: EmulationJob, origin: str) -> Iterator[Output]:
        """Yield the job's chunks; returns (as the generator's value) an error, or None."""
        started = time.perf_counter()
        writer = None
        try:
            path = resolve_in_folder(self.rom_dir, job.path)
            session = open_session(
                path,
                kind=job.kind,
                subsong=job.subsong,
                seed=job.seed,
                explore=job.explore,
                file_name=job.path,
                songs=self._song_book(job) if origin == "idle" else None,
                max_states=self.max_states,
            )
            writer = ChunkWriter(session.recording_id, session.source, session.seed)
            counted = [0, 0]  # songs and branches already in the metrics
            total = int(round(job.seconds * CPU_HZ))
            for piece in session.pieces(job.seconds, self.piece_seconds):
                last = piece.end_cycle >= total
                for chunk in writer.add(
                    piece.start_cycle, piece.end_cycle, piece.writes, piece.phases, last=last
                ):
                    yield Output(TOPIC_RECORDINGS, encode_chunk(chunk), session.recording_id)
                WRITES_PUBLISHED.labels(service=SERVICE).inc(len(piece.writes))
                EMULATED_SECONDS.labels(service=SERVICE, kind=job.kind.value).inc(
                    (piece.end_cycle - piece.start_cycle) / CPU_HZ
                )
                cycles = piece.end_cycle - piece.start_cycle
                self._count_search(session, job, origin, cycles, counted)
        except (JobError, SourceError) as exc:
            reason = getattr(exc, "reason", "bad_job")
            if reason == "hang":
                HANGS.labels(service=SERVICE).inc()
            JOB_FAILURES.labels(service=SERVICE, reason=reason).inc()
            JOBS.labels(service=SERVICE, outcome="failed", origin=origin).inc()
            log.warning("job %s (%s) failed: %s", job.job_id, job.path, exc)
            if writer is not None and writer.sequence and not writer.finished:
                # Close what was recorded before the failure, so it is usable downstream.
                end = writer.end_cycle
                for chunk in writer.add(end, end, ApuWrites.empty(), last=True):
                    yield Output(TOPIC_RECORDINGS, encode_chunk(chunk), writer.recording_id)
            return f"{reason}: {exc}"
        wall = time.perf_counter() - started
        JOB_SECONDS.labels(service=SERVICE, kind=job.kind.value).observe(wall)
        REALTIME_FACTOR.labels(service=SERVICE).set(job.seconds / max(wall, 1e-9))
        JOBS.labels(service=SERVICE, outcome="done", origin=origin).inc()
        log.info(
            "job %s (%s) done: %.0f s emulated in %.2f s (%.0fx real time)",
            job.job_id,
            job.path,
            job.seconds,
            wall,
            job.seconds / max(wall, 1e-9),
        )
        return None

    def _song_book(self, job: EmulationJob) -> SongBook | None:
        if job.kind is not SourceKind.ROM:
            return None
        return self.song_books.setdefault(job.path, SongBook())

    def _count_search(
        self, session, job: EmulationJob, origin: str, cycles: int, counted: list[int]
    ) -> None:
        """Metrics of a ROM search as it goes: songs found, states, branches, time spent."""
        if not isinstance(session, RomSession) or session.search is None:
            return
        stats = session.search.stats
        SONGS_FOUND.labels(service=SERVICE, rom=job.path).inc(stats.new_songs - counted[0])
        EXPLORE_BRANCHES.labels(service=SERVICE).inc(stats.branches - counted[1])
        counted[:] = [stats.new_songs, stats.branches]
        SONGS_KNOWN.labels(service=SERVICE, rom=job.path).set(len(session.songs))
        EXPLORE_STATES.labels(service=SERVICE).set(len(session.search.archive))
        if origin == "idle":
            spent = self.explored_seconds.get(job.path, 0.0) + cycles / CPU_HZ
            self.explored_seconds[job.path] = spent
            EXPLORED_SECONDS.labels(service=SERVICE, rom=job.path).set(spent)

    # -- exploring on our own --------------------------------------------------------------
    def tick(self) -> Iterator[Output]:
        if not self.explore_when_idle or self.clock() - self.last_job_at < self.idle_seconds:
            return
        job = self.next_exploration()
        if job is None:
            self.last_job_at = self.clock()  # nothing to explore: look again later
            return
        error = yield from self.run_job(job, origin="idle")
        if error is not None:
            # A file that fails once will fail again: stop picking it.
            self._roms = [j for j in self._roms or [] if j.path != job.path]
        self.last_job_at = self.clock()

    def next_exploration(self) -> EmulationJob | None:
        """The ROM of the folder explored least, with a fresh seed (None when there is no ROM,
        or every ROM has had its ``rom_seconds``)."""
        if self._roms is None:
            jobs, _ = discover_jobs(self.rom_dir, seconds=self.record_seconds, explore=self.explore)
            self._roms = [j for j in jobs if j.kind is SourceKind.ROM]
        if not self._roms:
            if not self._warned_no_roms:
                log.info("no ROMs in %s to explore while idle", self.rom_dir)
                self._warned_no_roms = True
            return None
        spent = self.explored_seconds
        open_roms = [
            j
            for j in self._roms
            if not self.rom_seconds or spent.get(j.path, 0.0) < self.rom_seconds
        ]
        if not open_roms:
            return None
        least = min(spent.get(j.path, 0.0) for j in open_roms)
        candidates = [j for j in open_roms if spent.get(j.path, 0.0) == least]
        pick = candidates[secrets.randbelow(len(candidates))]
        return EmulationJob(
            pick.path, pick.kind, secrets.randbits(31), self.record_seconds, explore=self.explore
        )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rom-dir", type=Path, default=None, help=f"ROM folder (default ${ROM_DIR.name})"
    )
    parser.add_argument(
        "--enqueue-on-start",
        action="store_true",
        default=None,
        help=f"publish jobs for the whole folder first (default ${ENQUEUE_ON_START.name})",
    )


def run(args: argparse.Namespace) -> int:
    rom_dir = args.rom_dir or Path(ROM_DIR.get())
    if not rom_dir.is_dir():
        print(f"gbsynth emulator-worker: ROM folder {rom_dir} does not exist", file=sys.stderr)
        return 2
    explore = explore_settings_from_env()
    if args.enqueue_on_start or (args.enqueue_on_start is None and ENQUEUE_ON_START.get()):
        from gbsynth.emulator.enqueue import enqueue_folder

        enqueue_folder(rom_dir, seconds=RECORD_SECONDS.get(), seed=0, explore=explore)
    worker = EmulatorWorker(
        rom_dir,
        record_seconds=RECORD_SECONDS.get(),
        piece_seconds=PIECE_SECONDS.get(),
        explore=explore,
        explore_when_idle=EXPLORE_WHEN_IDLE.get(),
        idle_seconds=IDLE_SECONDS.get(),
        rom_seconds=EXPLORE_ROM_SECONDS.get(),
        max_states=EXPLORE_MAX_STATES.get(),
    )
    return run_service(
        worker,
        service=SERVICE,
        topics=[TOPIC_JOBS],
        output_topics=[TOPIC_RECORDINGS],
    )
