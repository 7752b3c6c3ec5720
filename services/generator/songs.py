"""What the generator makes of a sampled song: parameters, audio, files and a piano roll.

Plain logic without HTTP or Kafka, so the service, the offline command and the tests
share it:

* ``SongSource``: what samples songs (``LoadedModel`` wraps the trainer's ``Sampler``);
* ``SongParams`` and ``song_key``: a request, and the digest that names its song (the
  same checkpoint and parameters always give the same song, so the key is a cache key);
* ``generate``: sample a song, rendering it to 16-bit PCM piece by piece as the model
  writes it (``sink`` gets the WAV header first, then audio as soon as it exists);
* ``wav_bytes``, ``vgm_bytes``, ``avro_bytes``, ``gb_bytes``, ``piano_roll``: the song as
  a file (``gb_bytes``: a Game Boy ROM that replays it, ``gbsynth export-gb``) or as the
  notes the page draws; ``song_file_bytes``: any of them by format name.

A streamed WAV and one rendered from the finished song are byte-identical: the
synthesizer gives the same samples however time is cut into pieces, and the header
is known up front (the song's length is fixed by ``seconds``).
"""

from __future__ import annotations

import hashlib
import json
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gbsynth.common.events import (
    CPU_HZ,
    FRAME_CYCLES,
    ApuWrites,
    Recording,
    RecordingError,
    Source,
    SourceKind,
)
from gbsynth.synth import Synth, channel_activity, to_pcm16
from gbsynth.trainer.song_plan import SongPlan

WAV_HEADER_BYTES = 44
CHANNELS = 2
BYTES_PER_SAMPLE = 2  # 16-bit PCM

FIRST_CHUNK_CYCLES = CPU_HZ // 8
"""Audio span rendered before the first chunk goes out: short, for a quick first sound."""
CHUNK_CYCLES = CPU_HZ // 2
"""Audio span gathered per later chunk: fewer, larger synthesizer calls."""


class SongError(RuntimeError):
    """Sampling broke the contract (writes going back in time, illegal registers)."""


class Cancelled(Exception):
    """The song was abandoned (client gone or deadline passed) before it was finished."""


class SongSource(Protocol):
    """Something that samples songs: a loaded checkpoint, in the service."""

    @property
    def step(self) -> int:
        """Training step of the model."""
        ...

    @property
    def sha256(self) -> str:
        """SHA-256 of the checkpoint file (identifies the model exactly)."""
        ...

    @property
    def name(self) -> str:
        """Short name of the checkpoint (its file name)."""
        ...

    def stream(
        self,
        seconds: float,
        *,
        temperature: float = 1.0,
        top_p: float = 0.95,
        seed: int = 0,
        prime: ApuWrites | None = None,
        plan: SongPlan | None = None,
    ) -> Iterator[ApuWrites]:
        """Consecutive pieces of the song (absolute cycles from 0) until ``seconds`` are covered."""
        ...


@dataclass(frozen=True, eq=False)
class SongParams:
    """What a song request asks for (already validated by the caller)."""

    seconds: float = 30.0
    temperature: float = 1.0
    top_p: float = 0.95
    seed: int = 0
    prime: ApuWrites | None = None
    sample_rate: int = 44_100
    plan: str = ""
    """The song plan (``SongPlan.parse``: ``free``, ``AABA@6``, ``AABA:aaba@6``); empty: the
    seed's default (none with a prime)."""

    def song_plan(self) -> SongPlan | None:
        return SongPlan.parse(self.plan) if self.plan else None

    @property
    def duration_cycles(self) -> int:
        return int(round(self.seconds * CPU_HZ))

    def prime_digest(self) -> str:
        if self.prime is None:
            return ""
        digest = hashlib.sha256()
        for column in (self.prime.cycles, self.prime.registers, self.prime.values):
            digest.update(np.ascontiguousarray(column).tobytes())
        return digest.hexdigest()


def song_key(checkpoint_sha256: str, params: SongParams) -> str:
    """Digest naming the song these parameters give with this checkpoint.

    The sample rate is left out: it changes the audio, not the song.
    """
    ident = {
        "checkpoint": checkpoint_sha256,
        "seconds": repr(float(params.seconds)),
        "temperature": repr(float(params.temperature)),
        "top_p": repr(float(params.top_p)),
        "seed": int(params.seed),
        "prime": params.prime_digest(),
        "plan": params.plan,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, eq=False)
class Song:
    """A sampled song: its writes (cut to its length) and where it came from."""

    key: str
    params: SongParams
    writes: ApuWrites
    duration_cycles: int
    model_step: int
    checkpoint_sha256: str
    checkpoint_name: str
    sample_seconds: float = 0.0
    """Wall time spent sampling (rendering excluded)."""
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.duration_cycles / CPU_HZ

    @property
    def events_per_second(self) -> float:
        """Writes sampled per wall second of sampling."""
        return len(self.writes) / self.sample_seconds if self.sample_seconds > 0 else 0.0

    def recording(self) -> Recording:
        """The song as a recording (source: the checkpoint), for the Avro event log."""
        source = Source(
            sha256=self.checkpoint_sha256,
            file_name=self.checkpoint_name,
            kind=SourceKind.GENERATED,
            title=f"gbsynth song (step {self.model_step}, seed {self.params.seed})",
        )
        return Recording(
            recording_id=f"gen-{self.key[:24]}",
            source=source,
            writes=self.writes,
            duration_cycles=self.duration_cycles,
            seed=int(self.params.seed),
        )


# -- audio -----------------------------------------------------------------------------------


def pcm_samples(duration_cycles: int, rate: int) -> int:
    """Samples per side of a song of ``duration_cycles`` at ``rate`` (the synthesizer's count)."""
    return -((-duration_cycles * rate) // CPU_HZ)


def wav_header(frames: int, rate: int) -> bytes:
    """The canonical 44-byte header of a 16-bit stereo PCM WAV file of ``frames`` frames."""
    block = CHANNELS * BYTES_PER_SAMPLE
    data = frames * block
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + data, b"WAVE",
        b"fmt ", 16, 1, CHANNELS, rate, rate * block, block, 8 * BYTES_PER_SAMPLE,
        b"data", data,
    )  # fmt: skip


def wav_size(duration_cycles: int, rate: int) -> int:
    """Bytes of the WAV file of a song (header included)."""
    return WAV_HEADER_BYTES + pcm_samples(duration_cycles, rate) * CHANNELS * BYTES_PER_SAMPLE


class PieceRenderer:
    """Renders a song's writes as they arrive into 16-bit PCM chunks.

    Writes at the newest cycle are held back until later writes (or the end) show that
    the cycle is complete, because the synthesizer takes each span's writes at once.
    """

    def __init__(self, duration_cycles: int, rate: int) -> None:
        self.duration_cycles = int(duration_cycles)
        self.synth = Synth(rate)
        self._pending: list[ApuWrites] = []
        self._newest: int | None = None
        self._first = True

    def feed(self, piece: ApuWrites) -> bytes:
        """Take the next piece (cycles from the previous piece's last on, within the song);
        return the PCM that is ready (possibly none)."""
        if len(piece):
            self._pending.append(piece)
            self._newest = int(piece.cycles[-1])
        if self._newest is None:
            return b""
        end = min(self._newest, self.duration_cycles)
        threshold = FIRST_CHUNK_CYCLES if self._first else CHUNK_CYCLES
        if end - self.synth.cycle < threshold:
            return b""
        return self._render_to(end)

    def finish(self) -> bytes:
        """The rest of the song, to its full length."""
        return self._render_to(self.duration_cycles)

    def _render_to(self, end: int) -> bytes:
        writes = ApuWrites.concat(self._pending)
        rest = writes.between(end, self.duration_cycles)
        self._pending = [rest] if len(rest) else []
        self._first = False
        return to_pcm16(self.synth.render(writes.between(self.synth.cycle, end), end)).tobytes()


def wav_bytes(song: Song, rate: int | None = None) -> bytes:
    """The whole song as a WAV file (the same bytes ``generate`` streams)."""
    rate = song.params.sample_rate if rate is None else rate
    synth = Synth(rate)
    parts = [wav_header(pcm_samples(song.duration_cycles, rate), rate)]
    step = 10 * CPU_HZ  # bounded synthesizer calls, as gbsynth render does
    for begin in range(0, song.duration_cycles, step):
        end = min(song.duration_cycles, begin + step)
        parts.append(to_pcm16(synth.render(song.writes.between(begin, end), end)).tobytes())
    return b"".join(parts)


# -- sampling --------------------------------------------------------------------------------


def check_piece(piece: ApuWrites, previous_cycle: int) -> None:
    """Raise ``SongError`` unless a sampled piece is a legal continuation."""
    try:
        piece.validate()
    except RecordingError as exc:
        raise SongError(f"the model sampled an illegal piece: {exc}") from exc
    if len(piece) and int(piece.cycles[0]) < previous_cycle:
        raise SongError(
            f"the model's piece starts at cycle {int(piece.cycles[0])}, before the previous "
            f"piece's last write at {previous_cycle}"
        )


def generate(
    source: SongSource,
    params: SongParams,
    *,
    sink: Callable[[bytes], None] | None = None,
    cancel: threading.Event | None = None,
    deadline: float | None = None,
    max_events_per_second: float | None = None,
) -> Song:
    """Sample a song; with ``sink``, stream it as a WAV file while it is sampled.

    ``sink`` receives the WAV header, then PCM chunks as the model writes the song
    (the first after about ``FIRST_CHUNK_CYCLES`` of music). ``cancel`` (an event)
    or ``deadline`` (``time.monotonic()``) stop the work between pieces with
    ``Cancelled``. Writes past the song's length are cut off.

    ``max_events_per_second`` stops a model caught in a loop of fast writes (an
    undertrained model may write a register every few cycles, which would take minutes
    to sample and render): more events than that per second of music covered (plus one
    second's worth of slack for an opening burst) raise ``SongError``.
    """
    duration = params.duration_cycles
    renderer = PieceRenderer(duration, params.sample_rate) if sink is not None else None
    if sink is not None:
        sink(wav_header(pcm_samples(duration, params.sample_rate), params.sample_rate))
    pieces: list[ApuWrites] = []
    last_cycle = 0
    events = 0
    sampling = 0.0
    render_seconds = 0.0
    stream = source.stream(
        params.seconds,
        temperature=params.temperature,
        top_p=params.top_p,
        seed=params.seed,
        prime=params.prime,
        plan=params.song_plan(),
    )
    try:
        while True:
            _check_stop(cancel, deadline)
            started = time.perf_counter()
            try:
                piece = next(stream)
            except StopIteration:
                sampling += time.perf_counter() - started
                break
            sampling += time.perf_counter() - started
            check_piece(piece, last_cycle)
            if len(piece):
                last_cycle = int(piece.cycles[-1])
            events += len(piece)
            if max_events_per_second is not None and events > max_events_per_second * (
                last_cycle / CPU_HZ + 1.0
            ):
                raise SongError(
                    f"the model wrote {events} events in the first {last_cycle / CPU_HZ:.2f} s "
                    f"of music, more than {max_events_per_second:g} per second "
                    "(GBSYNTH_GENERATOR_MAX_EVENTS_PER_SECOND): it is stuck on fast writes; "
                    "try a lower temperature or a later checkpoint"
                )
            piece = piece.between(0, duration)
            pieces.append(piece)
            if renderer is not None:
                started = time.perf_counter()
                chunk = renderer.feed(piece)
                render_seconds += time.perf_counter() - started
                if chunk:
                    sink(chunk)
            if last_cycle >= duration:
                break  # the song is covered; later writes would be cut anyway
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    if renderer is not None:
        _check_stop(cancel, deadline)
        started = time.perf_counter()
        sink(renderer.finish())
        render_seconds += time.perf_counter() - started
    writes = ApuWrites.concat(pieces)
    return Song(
        key=song_key(source.sha256, params),
        params=params,
        writes=writes,
        duration_cycles=duration,
        model_step=int(source.step),
        checkpoint_sha256=source.sha256,
        checkpoint_name=source.name,
        sample_seconds=sampling,
        stats={"render_seconds": render_seconds},
    )


def _check_stop(cancel: threading.Event | None, deadline: float | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("the request was abandoned")
    if deadline is not None and time.monotonic() > deadline:
        raise Cancelled("the request took longer than its time limit")


# -- files -----------------------------------------------------------------------------------


def vgm_bytes(song: Song) -> bytes:
    """The song as a VGM 1.61 file (44,100 Hz timing, as the format allows)."""
    from gbsynth.common.vgm import write_vgm

    return write_vgm(
        song.writes,
        song.duration_cycles,
        title=f"gbsynth song, seed {song.params.seed}",
        notes=json.dumps(song_description(song), sort_keys=True),
    )


def avro_bytes(song: Song) -> bytes:
    """The song's event log as an Avro recordings file (``gbsynth render`` plays it)."""
    from gbsynth.common.formats import write_recordings

    with tempfile.TemporaryDirectory(prefix="gbsynth-song-") as folder:
        path = Path(folder) / "song.avro"
        write_recordings(path, [song.recording()])
        return path.read_bytes()


def gb_bytes(song: Song) -> bytes:
    """The song as a Game Boy ROM (MBC5) that replays its writes, one LCD frame at a time:
    each write lands within a frame of its time in the song (``gbsynth export-gb``; runs on
    a flash cart or in any emulator)."""
    from gbsynth.music.replay_rom import export_writes

    # The header keeps 15 characters of the title; the player's screen shows it whole.
    title = f"GBSYNTH {song.params.seed}"
    rom, _stream = export_writes(song.writes, song.duration_cycles, title=title)
    return rom


SONG_FILE_FORMATS = ("wav", "vgm", "avro", "gb", "json")


def song_file_bytes(song: Song, fmt: str, rate: int | None = None) -> bytes:
    """The song as a file of format ``fmt`` (one of ``SONG_FILE_FORMATS``; ``json``: its
    description and piano roll); ``rate``: the WAV sample rate (default the song's)."""
    if fmt == "wav":
        return wav_bytes(song, rate)
    if fmt == "vgm":
        return vgm_bytes(song)
    if fmt == "avro":
        return avro_bytes(song)
    if fmt == "gb":
        return gb_bytes(song)
    if fmt == "json":
        return json.dumps(
            {
                "song": song_description(song),
                "piano_roll": piano_roll(song.writes, song.duration_cycles),
            },
            separators=(",", ":"),
        ).encode()
    raise ValueError(f"unknown song file format {fmt!r} (not one of {SONG_FILE_FORMATS})")


def song_description(song: Song) -> dict[str, Any]:
    """Where a song came from, as JSON-friendly fields."""
    return {
        "key": song.key,
        "seconds": song.seconds,
        "temperature": song.params.temperature,
        "top_p": song.params.top_p,
        "seed": song.params.seed,
        "primed": song.params.prime is not None,
        "plan": song.params.plan
        or str(SongPlan.default(song.params.seed, primed=song.params.prime is not None)),
        "model_step": song.model_step,
        "checkpoint_sha256": song.checkpoint_sha256,
        "events": len(song.writes),
    }


# -- piano roll ------------------------------------------------------------------------------

# (name, frequency low register, frequency high register or trigger register, clock of the
# tone generator in Hz: pitch = clock / (2048 - x)).
_TONE_CHANNELS = (
    ("pulse 1", 0xFF13, 0xFF14, 131_072.0),
    ("pulse 2", 0xFF18, 0xFF19, 131_072.0),
    ("wave", 0xFF1D, 0xFF1E, 65_536.0),
)
_NR43, _NR44 = 0xFF22, 0xFF23
ACTIVE_LEVEL = 0.02
"""A channel swinging less than this fraction of full scale counts as silent in the roll."""


def _value_at(writes: ApuWrites, register: int, times: np.ndarray, initial: int) -> np.ndarray:
    """The value ``register`` holds at each cycle of ``times`` (last write at or before)."""
    mask = writes.registers == register
    cycles, values = writes.cycles[mask], writes.values[mask].astype(np.int64)
    if not len(values):
        return np.full(len(times), initial, dtype=np.int64)
    index = np.searchsorted(cycles, times, side="right") - 1
    return np.where(index >= 0, values[np.clip(index, 0, None)], initial)


def _trigger_frames(writes: ApuWrites, register: int, frames: int) -> np.ndarray:
    mask = (writes.registers == register) & ((writes.values & 0x80) != 0)
    hit = np.zeros(frames + 1, dtype=bool)
    hit[np.minimum(writes.cycles[mask] // FRAME_CYCLES, frames)] = True
    return hit[:frames]


def _runs(pitch: np.ndarray, level: np.ndarray, triggers: np.ndarray) -> list[list[float]]:
    """Notes ``[start_s, end_s, pitch, level]`` from per-frame pitch and level."""
    active = level >= ACTIVE_LEVEL
    frame_s = FRAME_CYCLES / CPU_HZ
    notes: list[list[float]] = []
    start = None
    for i in range(len(level) + 1):
        ends = (
            i == len(level)
            or not active[i]
            or (start is not None and (pitch[i] != pitch[start] or triggers[i]))
        )
        if start is not None and ends:
            notes.append(
                [
                    round(start * frame_s, 4),
                    round(i * frame_s, 4),
                    float(pitch[start]),
                    round(float(level[start:i].mean()), 3),
                ]
            )
            start = None
        if i < len(level) and active[i] and start is None:
            start = i
    return notes


def piano_roll(writes: ApuWrites, duration_cycles: int) -> dict[str, Any]:
    """Per-channel notes of a song, frame by frame (59.7 per second), for drawing.

    Tone channels (pulse 1, pulse 2, wave) give MIDI note numbers from their frequency
    registers (rounded to semitones; pulse 1's hardware sweep is not followed); the
    noise channel gives the log2 of its LFSR clock in Hz as its "pitch". A note is a run
    of frames in which the channel sounds (``channel_activity``) at one pitch, split at
    each trigger. Levels are the channel's swing as a fraction of full scale.
    """
    activity = channel_activity(writes, duration_cycles)
    frames = activity.shape[0]
    mids = np.arange(frames, dtype=np.int64) * FRAME_CYCLES + FRAME_CYCLES // 2
    channels = []
    for index, (name, low, high, clock) in enumerate(_TONE_CHANNELS):
        x = _value_at(writes, low, mids, 0) | ((_value_at(writes, high, mids, 0) & 7) << 8)
        hz = clock / (2048 - x)
        midi = np.round(69 + 12 * np.log2(hz / 440.0)).astype(np.int64)
        notes = _runs(midi, activity[:, index], _trigger_frames(writes, high, frames))
        channels.append({"name": name, "kind": "tone", "notes": notes})
    nr43 = _value_at(writes, _NR43, mids, 0)
    divisor = np.where((nr43 & 7) == 0, 0.5, (nr43 & 7).astype(np.float64))
    lfsr_hz = 524_288.0 / divisor / np.exp2((nr43 >> 4) + 1)
    noise_pitch = np.round(np.log2(lfsr_hz), 1)
    channels.append(
        {
            "name": "noise",
            "kind": "noise",
            "notes": _runs(noise_pitch, activity[:, 3], _trigger_frames(writes, _NR44, frames)),
        }
    )
    return {
        "seconds": duration_cycles / CPU_HZ,
        "frame_seconds": FRAME_CYCLES / CPU_HZ,
        "channels": channels,
    }
