"""Avro codec for every gbsynth message, and recording <-> chunk conversion.

Messages are schemaless Avro bodies (``schemas/*.avsc``, namespace
``gbsynth.v1``) behind a three-byte frame that says what they are::

    byte 0   0xB5, the gbsynth frame marker
    byte 1   record type: 1 RecordingChunk, 2 Segment, 3 CheckpointAnnouncement,
             4 DeadLetter, 5 Job
    byte 2   schema revision the body was written with (the N of name.vN.avsc)

so a reader always knows the writer's schema: ``Codec.encode`` writes the
newest revision and ``Codec.decode`` reads any revision, resolving it to the
newest (fields added since get their defaults). A message of the wrong type,
a truncated one or one whose columns disagree raises ``CodecError``.

Writes travel columnar (see the schema docs): ``cycles`` as little-endian
int64, ``registers`` as one byte each (address - 0xFF00), ``values`` one byte
each, so encoding a million writes is three ``tobytes`` calls, not a million
Avro records.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import numpy as np

from gbsynth.common.config import Setting
from gbsynth.common.events import (
    CPU_HZ,
    CYCLE_DTYPE,
    REGISTER_DTYPE,
    VALUE_DTYPE,
    ApuWrites,
    Phase,
    PhaseMark,
    Recording,
    RecordingError,
    Source,
    SourceKind,
    register_snapshot,
)

FRAME_MAGIC = 0xB5
FRAME_SIZE = 3

# Record type -> (schema file stem, frame code). Codes are part of the wire format: never reuse.
RECORD_TYPES: dict[str, tuple[str, int]] = {
    "RecordingChunk": ("recording_chunk", 1),
    "Segment": ("segment", 2),
    "CheckpointAnnouncement": ("checkpoint_announcement", 3),
    "DeadLetter": ("dead_letter", 4),
    "Job": ("job", 5),
}

SCHEMA_DIR = Setting(
    "GBSYNTH_SCHEMA_DIR",
    str,
    "",
    "folder of the Avro schema files; empty means the source tree's schemas/ folder, or "
    "PREFIX/share/gbsynth/schemas for an installed package",
)
CHUNK_MAX_WRITES = Setting(
    "GBSYNTH_CHUNK_MAX_WRITES",
    int,
    4096,
    "most writes per recording chunk message",
    minimum=1,
)
CHUNK_MAX_CYCLES = Setting(
    "GBSYNTH_CHUNK_MAX_CYCLES",
    int,
    CPU_HZ,
    "longest span of a recording chunk, in T-cycles (4194304 = one emulated second)",
    minimum=1,
)
ASSEMBLY_IDLE_SECONDS = Setting(
    "GBSYNTH_ASSEMBLY_IDLE_SECONDS",
    float,
    600.0,
    "an incomplete recording that gets no chunk for this long is dropped and reported",
    minimum=0.001,
)
ASSEMBLY_MAX_PENDING_WRITES = Setting(
    "GBSYNTH_ASSEMBLY_MAX_PENDING_WRITES",
    int,
    20_000_000,
    "most writes held in incomplete recordings (about 10 bytes each); the oldest go first",
    minimum=1,
)

_LE_INT64 = np.dtype("<i8")


class CodecError(ValueError):
    """Bytes or records that are not a valid gbsynth message."""


# -- schemas ---------------------------------------------------------------------------------


def schema_dir() -> Path:
    """Where the ``*.avsc`` files are: the setting, else the source tree, else the install."""
    configured = SCHEMA_DIR.get()
    if configured:
        return Path(configured)
    source_tree = Path(__file__).resolve().parents[2] / "schemas"
    installed = Path(sys.prefix) / "share" / "gbsynth" / "schemas"  # pyproject data-files
    if not any(source_tree.glob("*.avsc")) and any(installed.glob("*.avsc")):
        return installed
    return source_tree


@dataclass(frozen=True)
class SchemaFamily:
    """Every revision of one record type's schema, parsed once."""

    name: str
    code: int
    revisions: Mapping[int, Any]
    """revision -> parsed schema"""

    @property
    def latest(self) -> int:
        return max(self.revisions)

    @property
    def schema(self) -> Any:
        """The newest parsed schema (what encoders write and decoders resolve to)."""
        return self.revisions[self.latest]


@cache
def schema_family(name: str) -> SchemaFamily:
    """Load ``<stem>.v<N>.avsc`` for every N found; revisions must count from 1 without gaps."""
    if name not in RECORD_TYPES:
        raise KeyError(f"unknown record type {name!r}; known: {', '.join(RECORD_TYPES)}")
    stem, code = RECORD_TYPES[name]
    folder = schema_dir()
    revisions: dict[int, Any] = {}
    for path in folder.glob(f"{stem}.v*.avsc"):
        suffix = path.name[len(stem) + 2 : -len(".avsc")]
        if not suffix.isdigit():
            continue
        schema = json.loads(path.read_text())
        full_name = f"{schema.get('namespace', '')}.{schema.get('name', '')}"
        if full_name != f"gbsynth.v1.{name}":
            raise CodecError(f"{path} defines {full_name}, expected gbsynth.v1.{name}")
        # Each revision is parsed on its own: named types repeat across files.
        revisions[int(suffix)] = fastavro.parse_schema(schema, named_schemas={})
    if not revisions:
        raise CodecError(f"no schema files {stem}.v*.avsc in {folder}")
    if sorted(revisions) != list(range(1, len(revisions) + 1)):
        raise CodecError(f"{stem} schema revisions must be 1..N, found {sorted(revisions)}")
    return SchemaFamily(name, code, revisions)


class Codec:
    """Encode and decode one record type's messages (framed schemaless Avro)."""

    def __init__(self, name: str) -> None:
        self.family = schema_family(name)
        self.name = name
        self._prefix = bytes((FRAME_MAGIC, self.family.code, self.family.latest))

    def encode(self, record: Mapping[str, Any], revision: int | None = None) -> bytes:
        """Frame and encode ``record`` with the newest schema (or an older ``revision``)."""
        rev = self.family.latest if revision is None else revision
        schema = self.family.revisions.get(rev)
        if schema is None:
            raise CodecError(f"{self.name} has no schema revision {rev}")
        out = io.BytesIO()
        out.write(bytes((FRAME_MAGIC, self.family.code, rev)))
        try:
            fastavro.schemaless_writer(out, schema, record)
        except Exception as exc:  # fastavro raises ValueError, TypeError, KeyError, ...
            raise CodecError(f"cannot encode {self.name}: {type(exc).__name__}: {exc}") from exc
        return out.getvalue()

    def revision_of(self, payload: bytes) -> int:
        """The schema revision a framed message was written with (checks the frame)."""
        if payload is None:
            raise CodecError(f"expected a {self.name} message, got no value (tombstone)")
        if len(payload) < FRAME_SIZE or payload[0] != FRAME_MAGIC:
            raise CodecError(
                f"not a gbsynth message (expected a {self.name}): "
                f"bad frame {bytes(payload[:FRAME_SIZE]).hex() or 'empty'}"
            )
        code, rev = payload[1], payload[2]
        if code != self.family.code:
            other = next((n for n, (_, c) in RECORD_TYPES.items() if c == code), f"type {code}")
            raise CodecError(f"expected a {self.name} message, got a {other} message")
        if rev not in self.family.revisions:
            raise CodecError(
                f"{self.name} schema revision {rev} is newer than this reader knows "
                f"(up to {self.family.latest}): upgrade gbsynth"
            )
        return rev

    def decode(self, payload: bytes) -> dict[str, Any]:
        """Decode a framed message written with any known revision, as the newest revision."""
        rev = self.revision_of(payload)
        writer = self.family.revisions[rev]
        reader = None if rev == self.family.latest else self.family.schema
        stream = io.BytesIO(payload)
        stream.seek(FRAME_SIZE)
        try:
            record = fastavro.schemaless_reader(stream, writer, reader)
        except Exception as exc:  # EOFError, StopIteration, UnicodeDecodeError, ...
            raise CodecError(
                f"malformed {self.name} (revision {rev}, {len(payload)} bytes): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if stream.tell() != len(payload):
            raise CodecError(
                f"malformed {self.name}: {len(payload) - stream.tell()} bytes left over "
                "after the record"
            )
        return record


@cache
def codec(name: str) -> Codec:
    """The shared ``Codec`` for a record type (``"RecordingChunk"``, ``"Segment"``, ...)."""
    return Codec(name)


def now_unix_ms() -> int:
    return time.time_ns() // 1_000_000


# -- columns ---------------------------------------------------------------------------------


def writes_to_columns(writes: ApuWrites) -> dict[str, Any]:
    """The wire columns of ``writes``: ``write_count``, ``cycles``, ``registers``, ``values``."""
    return {
        "write_count": len(writes),
        "cycles": writes.cycles.astype(_LE_INT64, copy=False).tobytes(),
        # Sound registers are 0xFF10-0xFF3F, so the low byte is the address - 0xFF00.
        "registers": writes.registers.astype(np.uint8).tobytes(),
        "values": writes.values.astype(VALUE_DTYPE, copy=False).tobytes(),
    }


def check_columns(record: Mapping[str, Any], what: str = "message") -> None:
    """Raise ``CodecError`` unless the three columns hold exactly ``write_count`` writes."""
    n = record["write_count"]
    cycles, registers, values = record["cycles"], record["registers"], record["values"]
    if n < 0 or len(cycles) != 8 * n or len(registers) != n or len(values) != n:
        raise CodecError(
            f"{what}: columns do not match write_count={n}: cycles has {len(cycles)} bytes "
            f"(expected {8 * max(n, 0)}), registers {len(registers)}, values {len(values)}"
        )


def columns_to_writes(record: Mapping[str, Any], what: str = "message") -> ApuWrites:
    """Writes from a record's columns, checked: lengths agree with ``write_count``, valid log."""
    check_columns(record, what)
    cycles, registers, values = record["cycles"], record["registers"], record["values"]
    # Copies, so the arrays are writable and do not pin the message buffer.
    cycle_col = np.frombuffer(cycles, dtype=_LE_INT64).astype(CYCLE_DTYPE)
    register_col = np.frombuffer(registers, dtype=np.uint8).astype(REGISTER_DTYPE) | 0xFF00
    value_col = np.frombuffer(values, dtype=VALUE_DTYPE).copy()
    writes = ApuWrites(cycle_col, register_col, value_col)
    try:
        writes.validate()
    except RecordingError as exc:
        raise CodecError(f"{what}: {exc}") from exc
    return writes


def source_to_record(source: Source) -> dict[str, Any]:
    return {
        "sha256": source.sha256,
        "file_name": source.file_name,
        "kind": source.kind.value,
        "title": source.title,
        "subsong": source.subsong,
        "licence": source.licence,
        "transpose": source.transpose,
        "tempo_factor": float(source.tempo_factor),
    }


def record_to_source(record: Mapping[str, Any]) -> Source:
    return Source(
        sha256=record["sha256"],
        file_name=record["file_name"],
        kind=SourceKind(record["kind"]),
        title=record["title"],
        subsong=record["subsong"],
        licence=record.get("licence", ""),
        transpose=int(record.get("transpose", 0)),
        tempo_factor=float(record.get("tempo_factor", 1.0)),
    )


# -- recordings as chunks --------------------------------------------------------------------


def chunk_spans(
    cycles: np.ndarray, duration_cycles: int, max_writes: int, max_cycles: int
) -> list[tuple[int, int, int, int]]:
    """``(start_cycle, end_cycle, first_write, end_write)`` of each chunk.

    Spans tile ``[0, duration_cycles)``; each is at most ``max_cycles`` long and
    holds at most ``max_writes`` writes, except when more than ``max_writes``
    writes share one cycle: they stay together in a one-cycle chunk.
    """
    if max_writes < 1 or max_cycles < 1:
        raise ValueError("max_writes and max_cycles must be at least 1")
    spans = []
    start = lo = 0
    while True:
        end = min(start + max_cycles, duration_cycles)
        hi = int(np.searchsorted(cycles, end, side="left"))
        if hi - lo > max_writes:
            # Cut just before the first write that does not fit.
            end = max(int(cycles[lo + max_writes]), start + 1)
            hi = int(np.searchsorted(cycles, end, side="left"))
        spans.append((start, end, lo, hi))
        start, lo = end, hi
        if start >= duration_cycles:
            return spans


class ChunkWriter:
    """Cuts a recording into RecordingChunk records as it is being made.

    Feed it consecutive pieces (``add``); each piece is cut into chunks of at most
    ``max_writes`` writes and ``max_cycles`` cycles, numbered on from the last.
    The chunks depend only on the pieces and the limits, so re-running the same
    job re-sends byte-identical chunks (harmless duplicates downstream).
    """

    def __init__(
        self,
        recording_id: str,
        source: Source,
        seed: int | None,
        max_writes: int | None = None,
        max_cycles: int | None = None,
        *,
        emulator_version: str = "",
    ) -> None:
        self.recording_id = recording_id
        self.source = source_to_record(source)
        self.seed = seed
        self.max_writes = CHUNK_MAX_WRITES.get() if max_writes is None else max_writes
        self.max_cycles = CHUNK_MAX_CYCLES.get() if max_cycles is None else max_cycles
        self.emulator_version = emulator_version
        self.sequence = 0
        self.end_cycle = 0
        self.phase = Phase.OBSERVE
        self.finished = False

    def add(
        self,
        start_cycle: int,
        end_cycle: int,
        writes: ApuWrites,
        phase_marks: Iterable[PhaseMark] = (),
        *,
        last: bool = False,
    ) -> list[dict[str, Any]]:
        """Chunks for the piece ``[start_cycle, end_cycle)``; ``last`` closes the recording.

        With ``last``, phase marks at or after ``end_cycle`` are kept in the final chunk.
        """
        if self.finished:
            raise ValueError(f"recording {self.recording_id} is already finished")
        if start_cycle != self.end_cycle or end_cycle < start_cycle:
            raise ValueError(
                f"piece [{start_cycle}, {end_cycle}) does not follow cycle {self.end_cycle}"
            )
        marks = list(phase_marks)
        spans = chunk_spans(
            writes.cycles - start_cycle, end_cycle - start_cycle, self.max_writes, self.max_cycles
        )
        chunks = []
        for index, (lo_cycle, hi_cycle, lo, hi) in enumerate(spans):
            final = last and index == len(spans) - 1
            chunk_start, chunk_end = start_cycle + lo_cycle, start_cycle + hi_cycle
            start_phase = self.phase
            in_chunk = []
            for mark in marks:
                if chunk_start <= mark.cycle < chunk_end or (final and mark.cycle >= chunk_start):
                    in_chunk.append({"cycle": mark.cycle, "phase": mark.phase.value})
                    if mark.cycle == chunk_start:
                        start_phase = mark.phase
                    self.phase = mark.phase
            part = ApuWrites(writes.cycles[lo:hi], writes.registers[lo:hi], writes.values[lo:hi])
            chunk = {
                "recording_id": self.recording_id,
                "sequence": self.sequence,
                "last": final,
                "source": self.source,
                "seed": self.seed,
                "start_cycle": chunk_start,
                "end_cycle": chunk_end,
                "start_phase": start_phase.value,
                "phase_marks": in_chunk,
                "emulator_version": self.emulator_version,
            }
            chunk.update(writes_to_columns(part))
            chunks.append(chunk)
            self.sequence += 1
        self.end_cycle = end_cycle
        self.finished = last
        return chunks


def recording_to_chunks(
    recording: Recording,
    max_writes: int | None = None,
    max_cycles: int | None = None,
    *,
    emulator_version: str = "",
) -> list[dict[str, Any]]:
    """Cut a whole recording into RecordingChunk records (newest schema) that tile it.

    Limits default to ``GBSYNTH_CHUNK_MAX_WRITES`` and ``GBSYNTH_CHUNK_MAX_CYCLES``.
    The result depends only on the recording and the limits, so re-sending a
    recording produces byte-identical chunks.
    """
    writer = ChunkWriter(
        recording.recording_id,
        recording.source,
        recording.seed,
        max_writes,
        max_cycles,
        emulator_version=emulator_version,
    )
    return writer.add(0, recording.duration_cycles, recording.writes, recording.phases, last=True)


def check_chunk(chunk: Mapping[str, Any]) -> None:
    """Raise ``CodecError`` unless the chunk's header fields are consistent."""
    if chunk["sequence"] < 0:
        raise CodecError(f"chunk of {chunk['recording_id']}: negative sequence")
    if not 0 <= chunk["start_cycle"] <= chunk["end_cycle"]:
        raise CodecError(
            f"chunk {chunk['sequence']} of {chunk['recording_id']}: bad span "
            f"[{chunk['start_cycle']}, {chunk['end_cycle']})"
        )


def chunk_writes(chunk: Mapping[str, Any]) -> ApuWrites:
    """The chunk's writes (absolute recording cycles), checked against its span."""
    what = f"chunk {chunk['sequence']} of {chunk['recording_id']}"
    writes = columns_to_writes(chunk, what)
    if len(writes) and (
        writes.cycles[0] < chunk["start_cycle"] or writes.cycles[-1] >= chunk["end_cycle"]
    ):
        raise CodecError(
            f"{what}: writes at cycles {int(writes.cycles[0])}..{int(writes.cycles[-1])} "
            f"fall outside its span [{chunk['start_cycle']}, {chunk['end_cycle']})"
        )
    return writes


def chunks_to_recording(chunks: Iterable[Mapping[str, Any]]) -> Recording:
    """Rebuild a recording from all its chunks (any order, duplicates allowed)."""
    by_sequence: dict[int, Mapping[str, Any]] = {}
    for chunk in chunks:
        by_sequence.setdefault(chunk["sequence"], chunk)
    if not by_sequence:
        raise CodecError("no chunks")
    ordered = [by_sequence[s] for s in sorted(by_sequence)]
    first, final = ordered[0], ordered[-1]
    rid = first["recording_id"]
    if not final["last"] or len(ordered) != final["sequence"] + 1:
        missing = sorted(set(range(final["sequence"] + 1)) - set(by_sequence))
        raise CodecError(
            f"recording {rid} is incomplete: "
            + (f"missing chunks {missing[:10]}" if missing else "no last chunk")
        )
    expected_start = 0
    parts = []
    marks: list[PhaseMark] = []
    for chunk in ordered:
        check_chunk(chunk)
        if chunk["recording_id"] != rid:
            raise CodecError(f"chunks of {rid} and {chunk['recording_id']} mixed together")
        if chunk["last"] and chunk is not final:
            raise CodecError(f"recording {rid} has two last chunks")
        if chunk["start_cycle"] != expected_start:
            raise CodecError(
                f"chunks of {rid} do not tile: chunk {chunk['sequence']} starts at "
                f"{chunk['start_cycle']}, expected {expected_start}"
            )
        expected_start = chunk["end_cycle"]
        parts.append(chunk_writes(chunk))
        marks.extend(PhaseMark(m["cycle"], Phase(m["phase"])) for m in chunk["phase_marks"])
    try:
        return Recording(
            recording_id=rid,
            source=record_to_source(first["source"]),
            writes=ApuWrites.concat(parts),
            duration_cycles=final["end_cycle"],
            seed=first["seed"],
            phases=tuple(marks),
        )
    except RecordingError as exc:
        raise CodecError(f"recording {rid}: {exc}") from exc


def encode_chunk(chunk: Mapping[str, Any]) -> bytes:
    return codec("RecordingChunk").encode(chunk)


def decode_chunk(payload: bytes) -> dict[str, Any]:
    """Decode and check a RecordingChunk message (header fields and column lengths)."""
    chunk = codec("RecordingChunk").decode(payload)
    check_chunk(chunk)
    check_columns(chunk, f"chunk {chunk['sequence']} of {chunk['recording_id']}")
    return chunk


def encode_recording(recording: Recording, **chunking: Any) -> list[bytes]:
    """``recording_to_chunks`` then ``encode_chunk`` for each: the Kafka values of a recording."""
    return [encode_chunk(c) for c in recording_to_chunks(recording, **chunking)]


# -- reassembly ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncompleteRecording:
    """A recording the assembler gave up on, and why."""

    recording_id: str
    reason: str
    """``idle`` (no chunk for too long), ``memory`` (evicted to stay under the
    write budget) or ``revoked`` (its partition went to another consumer)."""
    received: tuple[int, ...]
    expected_chunks: int | None
    """Number of chunks, known once the last one arrived."""
    write_count: int
    positions: tuple[Any, ...]


@dataclass
class _Partial:
    chunks: dict[int, Mapping[str, Any]] = field(default_factory=dict)
    last_sequence: int | None = None
    write_count: int = 0
    positions: list[Any] = field(default_factory=list)
    updated: float = 0.0


class RecordingAssembler:
    """Collect chunks of many recordings, in any interleaving and with duplicates.

    ``add`` returns the complete ``Recording`` when its chunk completes one.
    Delivery is at-least-once, so duplicate chunks are ignored, and so are
    chunks of the last ``remember_completed`` recordings already emitted.
    Incomplete recordings are bounded: ``expire()`` drops the ones idle for
    ``idle_timeout_s`` plus any evicted (oldest first) to keep the pending
    writes under ``max_pending_writes``, and returns them for reporting.

    ``position`` (optional, per chunk) is a ``(partition, offset)`` pair: with it
    ``oldest_pending_offsets()`` tells a Kafka consumer how far it may commit
    without losing the chunks of recordings still being assembled.
    """

    def __init__(
        self,
        *,
        idle_timeout_s: float | None = None,
        max_pending_writes: int | None = None,
        remember_completed: int = 10_000,
        clock: Any = time.monotonic,
    ) -> None:
        self.idle_timeout_s = (
            ASSEMBLY_IDLE_SECONDS.get() if idle_timeout_s is None else idle_timeout_s
        )
        self.max_pending_writes = (
            ASSEMBLY_MAX_PENDING_WRITES.get() if max_pending_writes is None else max_pending_writes
        )
        self.remember_completed = remember_completed
        self.clock = clock
        self._partials: OrderedDict[str, _Partial] = OrderedDict()  # least recently updated first
        self._completed: OrderedDict[str, None] = OrderedDict()
        self._dropped: list[IncompleteRecording] = []
        self.pending_writes = 0
        self.duplicates = 0
        self.completed = 0

    def __len__(self) -> int:
        """Number of incomplete recordings held."""
        return len(self._partials)

    def add(self, chunk: Mapping[str, Any], position: Any = None) -> Recording | None:
        """Take one decoded chunk; return the recording it completes, if any.

        Raises ``CodecError`` for a chunk that contradicts the ones already held
        (or whose recording turns out malformed); the recording is then dropped.
        """
        check_chunk(chunk)
        rid = chunk["recording_id"]
        sequence = chunk["sequence"]
        if rid in self._completed:
            self.duplicates += 1
            return None
        partial = self._partials.get(rid)
        if partial is None:
            partial = self._partials[rid] = _Partial()
        self._partials.move_to_end(rid)
        partial.updated = self.clock()
        if position is not None:
            partial.positions.append(position)
        held = partial.chunks.get(sequence)
        if held is not None:
            if (held["start_cycle"], held["end_cycle"], held["write_count"], held["last"]) != (
                chunk["start_cycle"],
                chunk["end_cycle"],
                chunk["write_count"],
                chunk["last"],
            ):
                raise CodecError(
                    f"chunk {sequence} of {rid} arrived twice with different contents "
                    "(was the recording made again with other chunk limits?)"
                )
            self.duplicates += 1
            return None
        if chunk["last"]:
            if partial.last_sequence is not None and partial.last_sequence != sequence:
                self._drop(rid)
                raise CodecError(
                    f"recording {rid} has two last chunks ({partial.last_sequence} and {sequence})"
                )
            partial.last_sequence = sequence
        if partial.last_sequence is not None and sequence > partial.last_sequence:
            self._drop(rid)
            raise CodecError(
                f"chunk {sequence} of {rid} comes after its last chunk {partial.last_sequence}"
            )
        partial.chunks[sequence] = chunk
        partial.write_count += chunk["write_count"]
        self.pending_writes += chunk["write_count"]
        if partial.last_sequence is not None and len(partial.chunks) == partial.last_sequence + 1:
            self._drop(rid)
            self._completed[rid] = None
            while len(self._completed) > self.remember_completed:
                self._completed.popitem(last=False)
            self.completed += 1
            return chunks_to_recording(partial.chunks.values())
        self._evict_for_memory(keep=rid)
        return None

    def _drop(self, rid: str) -> _Partial:
        partial = self._partials.pop(rid)
        self.pending_writes -= partial.write_count
        return partial

    def _report(self, rid: str, reason: str) -> IncompleteRecording:
        partial = self._drop(rid)
        return IncompleteRecording(
            recording_id=rid,
            reason=reason,
            received=tuple(sorted(partial.chunks)),
            expected_chunks=None if partial.last_sequence is None else partial.last_sequence + 1,
            write_count=partial.write_count,
            positions=tuple(partial.positions),
        )

    def _evict_for_memory(self, keep: str) -> None:
        while self.pending_writes > self.max_pending_writes and len(self._partials) > 1:
            oldest = next(iter(self._partials))
            if oldest == keep:
                break
            self._dropped.append(self._report(oldest, "memory"))

    def expire(self, now: float | None = None) -> list[IncompleteRecording]:
        """Drop recordings idle too long; return them with any evicted for memory since."""
        now = self.clock() if now is None else now
        dropped, self._dropped = self._dropped, []
        while self._partials:
            rid, partial = next(iter(self._partials.items()))
            if now - partial.updated < self.idle_timeout_s:
                break
            dropped.append(self._report(rid, "idle"))
        return dropped

    def drop_partitions(self, partitions: Iterable[Hashable]) -> list[IncompleteRecording]:
        """Forget recordings with chunks from these partitions (they were revoked)."""
        lost = set(partitions)
        doomed = [
            rid for rid, p in self._partials.items() if any(pos[0] in lost for pos in p.positions)
        ]
        return [self._report(rid, "revoked") for rid in doomed]

    def oldest_pending_offsets(self) -> dict[Any, int]:
        """Per partition, the smallest offset of a chunk still waiting in an incomplete recording.

        A consumer may commit up to (not past) this offset on that partition.
        """
        oldest: dict[Any, int] = {}
        for partial in self._partials.values():
            for partition, offset in partial.positions:
                if offset < oldest.get(partition, offset + 1):
                    oldest[partition] = offset
        return oldest

    def pending(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        """``(recording_id, sequences received)`` of each incomplete recording."""
        for rid, partial in self._partials.items():
            yield rid, tuple(sorted(partial.chunks))


# -- segments --------------------------------------------------------------------------------


def make_segment_id(recording_id: str, start_cycle: int) -> str:
    """Deterministic segment id: the same cut of the same recording gets the same id."""
    return f"{recording_id}@{start_cycle}"


@dataclass(frozen=True)
class SegmentFeatures:
    """Summary features of a segment (see schemas/segment.v1.avsc)."""

    duration_seconds: float
    write_count: int
    channels_used: int
    """Bitmask: bit 0 pulse 1, bit 1 pulse 2, bit 2 wave, bit 3 noise."""
    distinct_pitches: int
    loudness_db: float
    tempo_bpm: float | None = None
    extra: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Segment:
    """A musical stretch of a recording; ``writes`` are rebased to start at cycle 0."""

    segment_id: str
    recording_id: str
    source: Source
    start_cycle: int
    end_cycle: int
    writes: ApuWrites
    features: SegmentFeatures

    def __post_init__(self) -> None:
        if not 0 <= self.start_cycle <= self.end_cycle:
            raise RecordingError(f"bad segment span [{self.start_cycle}, {self.end_cycle})")
        if len(self.writes) and (
            self.writes.cycles[0] < 0 or self.writes.cycles[-1] >= self.duration_cycles
        ):
            raise RecordingError(
                f"segment {self.segment_id}: writes fall outside [0, {self.duration_cycles})"
            )

    @property
    def duration_cycles(self) -> int:
        return self.end_cycle - self.start_cycle

    @classmethod
    def cut(
        cls, recording: Recording, start_cycle: int, end_cycle: int, features: SegmentFeatures
    ) -> Segment:
        """The segment of ``recording`` between two cycles, with its deterministic id.

        The segment opens (at its cycle 0) with a snapshot of the sound registers as the
        recording left them at ``start_cycle``, so it renders and trains on its own.
        """
        writes = ApuWrites.concat(
            [
                register_snapshot(recording.writes, start_cycle),
                recording.writes.between(start_cycle, end_cycle).shifted(-start_cycle),
            ]
        )
        return cls(
            segment_id=make_segment_id(recording.recording_id, start_cycle),
            recording_id=recording.recording_id,
            source=recording.source,
            start_cycle=start_cycle,
            end_cycle=end_cycle,
            writes=writes,
            features=features,
        )

    def as_recording(self) -> Recording:
        """The segment as a stand-alone recording (id = segment id), e.g. to render it."""
        return Recording(self.segment_id, self.source, self.writes, self.duration_cycles)


def segment_to_record(segment: Segment) -> dict[str, Any]:
    f = segment.features
    record = {
        "segment_id": segment.segment_id,
        "recording_id": segment.recording_id,
        "source": source_to_record(segment.source),
        "start_cycle": segment.start_cycle,
        "end_cycle": segment.end_cycle,
        "features": {
            "duration_seconds": float(f.duration_seconds),
            "write_count": int(f.write_count),
            "channels_used": int(f.channels_used),
            "distinct_pitches": int(f.distinct_pitches),
            "loudness_db": float(f.loudness_db),
            "tempo_bpm": None if f.tempo_bpm is None else float(f.tempo_bpm),
            "extra": {str(k): float(v) for k, v in f.extra.items()},
        },
    }
    record.update(writes_to_columns(segment.writes))
    return record


def record_to_segment(record: Mapping[str, Any]) -> Segment:
    what = f"segment {record['segment_id']}"
    writes = columns_to_writes(record, what)
    f = record["features"]
    try:
        return Segment(
            segment_id=record["segment_id"],
            recording_id=record["recording_id"],
            source=record_to_source(record["source"]),
            start_cycle=record["start_cycle"],
            end_cycle=record["end_cycle"],
            writes=writes,
            features=SegmentFeatures(
                duration_seconds=f["duration_seconds"],
                write_count=f["write_count"],
                channels_used=f["channels_used"],
                distinct_pitches=f["distinct_pitches"],
                loudness_db=f["loudness_db"],
                tempo_bpm=f["tempo_bpm"],
                extra=dict(f["extra"]),
            ),
        )
    except RecordingError as exc:
        raise CodecError(f"{what}: {exc}") from exc


def encode_segment(segment: Segment) -> bytes:
    return codec("Segment").encode(segment_to_record(segment))


def decode_segment(payload: bytes) -> Segment:
    return record_to_segment(codec("Segment").decode(payload))
