"""On-disk formats: Avro container files of recordings or segments, and gbsplay's I/O dump.

Avro object container files carry their writer schema in the header, so a file
says what it holds (``file_kind``) and any later reader resolves it to the
newest schema revision. A recordings file holds each recording as its
RecordingChunk records (the same records as on Kafka, unframed); a segments
file holds Segment records.

The text dump is the layout of ``gbsplay -o iodumper``::

    00000000 ff10=80        <- register set-up gbsplay performs before a subsong
    ...
    00000000 ffff=05
                            <- blank line
    subsong 0               <- subsong number, counting from 0
    00000f50 ff26=80        <- cycles since the previous write (hex), address=value
    00010508 ff24=77

Deltas are ``%08lx`` of a C long, so a negative one (gbsplay's clock restarting
for the next subsong) prints as 16 hex digits of two's complement. Each
subsong's deltas count from 0 at its ``subsong`` line. The set-up block of the
next subsong comes straight after the previous subsong's last write.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import fastavro
import numpy as np

from gbsynth import __version__
from gbsynth.common.avro import (
    CodecError,
    RecordingAssembler,
    Segment,
    record_to_segment,
    recording_to_chunks,
    schema_family,
    segment_to_record,
)
from gbsynth.common.events import (
    REGISTER_FIRST,
    REGISTER_LAST,
    ApuWrites,
    Recording,
    RecordingError,
    Source,
    SourceKind,
    sha256_hex,
)
from gbsynth.common.files import atomic_output

PathLike = str | os.PathLike[str]

CONTAINER_CODEC = "deflate"
"""Block compression of container files: the int64 cycle columns shrink a lot."""

# -- Avro container files --------------------------------------------------------------------


def file_kind(path: PathLike) -> str:
    """The record type an Avro container file holds: ``RecordingChunk``, ``Segment``, ..."""
    try:
        with open(path, "rb") as fo:
            reader = fastavro.reader(fo)
            schema = reader.writer_schema
    except OSError:
        raise
    except Exception as exc:
        raise CodecError(f"{path}: not an Avro container file ({exc})") from exc
    name = schema.get("name", "") if isinstance(schema, dict) else ""
    return name.rsplit(".", 1)[-1]


def _write_container(path: PathLike, record_type: str, records: Iterable[dict[str, Any]]) -> None:
    schema = schema_family(record_type).schema
    with atomic_output(path) as fo:
        fastavro.writer(
            fo,
            schema,
            records,
            codec=CONTAINER_CODEC,
            codec_compression_level=1,
            metadata={"gbsynth.version": __version__},
        )


def _read_container(path: PathLike, record_type: str) -> Iterator[dict[str, Any]]:
    kind = file_kind(path)
    if kind != record_type:
        raise CodecError(f"{path} holds {kind or 'unknown'} records, not {record_type} records")
    with open(path, "rb") as fo:
        try:
            yield from fastavro.reader(fo, reader_schema=schema_family(record_type).schema)
        except CodecError:
            raise
        except Exception as exc:
            raise CodecError(f"{path}: damaged Avro file: {type(exc).__name__}: {exc}") from exc


def write_recordings(
    path: PathLike,
    recordings: Iterable[Recording],
    *,
    max_writes: int | None = None,
    max_cycles: int | None = None,
    emulator_version: str = "",
) -> None:
    """Write recordings to an Avro container file as their RecordingChunk records."""

    def chunks() -> Iterator[dict[str, Any]]:
        for rec in recordings:
            yield from recording_to_chunks(
                rec, max_writes, max_cycles, emulator_version=emulator_version
            )

    _write_container(path, "RecordingChunk", chunks())


def iter_recordings(path: PathLike) -> Iterator[Recording]:
    """Yield the recordings of a recordings file one by one (memory: one recording)."""
    assembler = RecordingAssembler(idle_timeout_s=float("inf"), max_pending_writes=2**62)
    for chunk in _read_container(path, "RecordingChunk"):
        try:
            recording = assembler.add(chunk)
        except CodecError as exc:
            raise CodecError(f"{path}: {exc}") from exc
        if recording is not None:
            yield recording
    if len(assembler):
        incomplete = ", ".join(f"{rid} (chunks {seqs})" for rid, seqs in assembler.pending())
        raise CodecError(f"{path}: incomplete recordings: {incomplete}")


def read_recordings(path: PathLike) -> list[Recording]:
    """Every recording in a recordings file, in file order."""
    return list(iter_recordings(path))


def write_segments(path: PathLike, segments: Iterable[Segment]) -> None:
    """Write segments to an Avro container file."""
    _write_container(path, "Segment", (segment_to_record(s) for s in segments))


def iter_segments(path: PathLike) -> Iterator[Segment]:
    for record in _read_container(path, "Segment"):
        yield record_to_segment(record)


def read_segments(path: PathLike) -> list[Segment]:
    """Every segment in a segments file, in file order."""
    return list(iter_segments(path))


def read_any(path: PathLike) -> list[Recording] | list[Segment]:
    """Recordings or segments, whichever the file holds."""
    kind = file_kind(path)
    if kind == "RecordingChunk":
        return read_recordings(path)
    if kind == "Segment":
        return read_segments(path)
    raise CodecError(f"{path} holds {kind or 'unknown'} records, not recordings or segments")


# -- gbsplay's iodumper text -----------------------------------------------------------------


class IodumpError(ValueError):
    """Text that is not in gbsplay's iodumper layout."""


_WRITE_LINE = re.compile(r"([0-9a-f]{8,16}) ([0-9a-f]{4})=([0-9a-f]{2})")
_SUBSONG_LINE = re.compile(r"subsong (\d+)")


@dataclass(frozen=True, eq=False)
class IodumpSection:
    """One subsong of an I/O dump."""

    subsong: int
    """Subsong number as the dump labels it (counting from 0; gbsplay's command line adds 1)."""
    setup: tuple[tuple[int, int], ...]
    """``(address, value)`` of the set-up writes gbsplay made before the subsong (APU
    reset values, wave RAM, timer and interrupt registers), kept apart from the music."""
    writes: ApuWrites
    """Sound-register writes, in cycles since the subsong started."""
    other_writes: tuple[tuple[int, int, int], ...] = ()
    """``(cycle, address, value)`` of writes outside 0xFF10-0xFF3F after the set-up."""
    end_cycle: int | None = None
    """Cycle at which gbsplay stopped the subsong, when the dump shows it (another subsong
    follows); otherwise unknown."""

    def to_recording(
        self, source: Source, recording_id: str | None = None, duration_cycles: int | None = None
    ) -> Recording:
        """The section as a recording (duration: ``end_cycle``, else just past the last write)."""
        if duration_cycles is None:
            duration_cycles = self.end_cycle
        if duration_cycles is None:
            duration_cycles = int(self.writes.cycles[-1]) + 1 if len(self.writes) else 0
        return Recording(
            recording_id or f"iodump-{source.sha256[:12]}-{self.subsong}",
            source,
            self.writes,
            duration_cycles,
        )


def _signed_delta(text: str) -> int:
    delta = int(text, 16)
    if len(text) > 8 and delta >= 1 << 63:
        delta -= 1 << 64
    return delta


def _is_sound_register(address: int) -> bool:
    return REGISTER_FIRST <= address <= REGISTER_LAST


def _setup_start(lines: list[tuple[int, int, int]]) -> int:
    """Where the trailing set-up block starts in the lines before a ``subsong`` header.

    gbsplay's set-up is the APU reset (FF10..FF3F, all but the first at delta 0) followed by
    writes outside the sound registers; music never writes twice in the same cycle.
    """
    start = len(lines)
    while start > 0 and (lines[start - 1][0] == 0 or not _is_sound_register(lines[start - 1][1])):
        start -= 1
    # The block's first write (FF10) carries the time since the subsong's last write.
    if 0 < start < len(lines) and lines[start - 1][1] == REGISTER_FIRST:
        start -= 1
    return start


def parse_iodump(text: str) -> list[IodumpSection]:
    """Parse ``gbsplay -o iodumper`` output into one section per subsong.

    Lines of gbsplay's progress (``dumping subsong N``, from stderr) are ignored;
    anything else that is not a write line, a blank line or a ``subsong`` header
    raises ``IodumpError`` naming the line.
    """
    pending: list[tuple[int, int, int]] = []  # (delta, address, value) since the last header
    blocks: list[tuple[int, list[tuple[int, int, int]]]] = []  # (subsong, lines after header)
    subsong: int | None = None
    prelude: list[tuple[int, int, int]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("dumping subsong"):
            continue
        match = _WRITE_LINE.fullmatch(line)
        if match:
            pending.append((_signed_delta(match[1]), int(match[2], 16), int(match[3], 16)))
            continue
        header = _SUBSONG_LINE.fullmatch(line)
        if header is None:
            raise IodumpError(f"line {number}: not an iodumper line: {line[:60]!r}")
        if subsong is None:
            prelude = pending
        else:
            blocks.append((subsong, pending))
        subsong, pending = int(header[1]), []
    if subsong is None:
        raise IodumpError("no 'subsong N' line: not gbsplay iodumper output")
    blocks.append((subsong, pending))

    sections = []
    setup_lines = prelude
    for index, (number, lines) in enumerate(blocks):
        is_last = index == len(blocks) - 1
        cut = len(lines) if is_last else _setup_start(lines)
        body, next_setup = lines[:cut], lines[cut:]
        deltas = np.fromiter((d for d, _, _ in body), dtype=np.int64, count=len(body))
        cycles = np.cumsum(deltas)
        addresses = np.fromiter((a for _, a, _ in body), dtype=np.int64, count=len(body))
        values = np.fromiter((v for _, _, v in body), dtype=np.int64, count=len(body))
        sound = (addresses >= REGISTER_FIRST) & (addresses <= REGISTER_LAST)
        try:
            writes = ApuWrites.from_arrays(cycles[sound], addresses[sound], values[sound])
        except RecordingError as exc:
            raise IodumpError(f"subsong {number}: {exc}") from exc
        others = tuple(
            (int(c), int(a), int(v))
            for c, a, v in zip(cycles[~sound], addresses[~sound], values[~sound], strict=True)
        )
        end_cycle = None
        if next_setup:
            end_cycle = (int(cycles[-1]) if len(cycles) else 0) + next_setup[0][0]
        sections.append(
            IodumpSection(
                subsong=number,
                setup=tuple((a, v) for _, a, v in setup_lines),
                writes=writes,
                other_writes=others,
                end_cycle=end_cycle,
            )
        )
        setup_lines = next_setup
    return sections


def _delta_text(delta: int) -> str:
    # C's "%08lx" of a long: negative values wrap to 64-bit two's complement.
    return f"{delta & 0xFFFFFFFFFFFFFFFF:08x}"


def iodump_lines(writes: ApuWrites, start_cycle: int = 0) -> Iterator[str]:
    """``%08lx ffXX=YY`` lines of the writes, each with the cycles since the previous one."""
    deltas = np.diff(writes.cycles, prepend=np.int64(start_cycle))
    for delta, address, value in zip(
        deltas.tolist(), writes.registers.tolist(), writes.values.tolist(), strict=True
    ):
        yield f"{_delta_text(delta)} {address:04x}={value:02x}\n"


def write_iodump(
    recording: Recording | ApuWrites,
    file: TextIO | PathLike,
    *,
    subsong: int | None = None,
    setup: Iterable[tuple[int, int]] = (),
) -> None:
    """Write a recording in gbsplay's iodumper layout, to compare with ``gbsplay -o iodumper``.

    ``subsong`` is the number on the header line (counting from 0); by default the
    recording's source subsong minus 1, else 0. ``setup`` writes (address, value),
    e.g. a parsed section's, come first at delta 0 as gbsplay prints them.
    """
    if isinstance(recording, Recording):
        writes = recording.writes
        if subsong is None and recording.source.subsong:
            subsong = recording.source.subsong - 1
    else:
        writes = recording
    if isinstance(file, str | os.PathLike):
        with open(file, "w", encoding="ascii", newline="\n") as fo:
            write_iodump(writes, fo, subsong=subsong or 0, setup=setup)
        return
    out = io.StringIO()
    for address, value in setup:
        out.write(f"{_delta_text(0)} {address:04x}={value:02x}\n")
    out.write(f"\nsubsong {subsong or 0}\n")
    file.write(out.getvalue())
    file.writelines(iodump_lines(writes))


# -- any file of sound-register writes ---------------------------------------------------------

AVRO_MAGIC = b"Obj\x01"
"""The first bytes of an Avro object container file."""


class EventFileError(ValueError):
    """A file that holds no recordings or segments: missing, unreadable, of another kind or
    damaged. The message is one line and names the file."""


def is_avro_file(path: PathLike) -> bool:
    """Whether ``path`` starts like an Avro container file (``OSError`` if unreadable)."""
    with open(path, "rb") as fo:
        return fo.read(len(AVRO_MAGIC)) == AVRO_MAGIC


def read_event_file(
    path: PathLike, dump_kind: SourceKind = SourceKind.GENERATED
) -> list[Recording] | list[Segment]:
    """The recordings or segments of an Avro container file, or one recording per subsong
    of a gbsplay-style I/O dump (source: the dump file itself, of kind ``dump_kind``, since
    a dump does not say what it was made from).

    Raises ``EventFileError`` for anything else: a missing or unreadable file, a ROM, GBS or
    VGM file (record those first, ``gbsynth emulate``), damaged content.
    """
    path = Path(path)
    if not path.is_file():
        raise EventFileError(f"{path}: no such file")
    try:
        if is_avro_file(path):
            return read_any(path)
        data = path.read_bytes()
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise EventFileError(
                f"{path}: not a recording: neither an Avro recordings/segments file nor an "
                "I/O dump (ROM, GBS and VGM files are recorded first: gbsynth emulate FILE "
                "--out REC.avro)"
            ) from None
        source = Source(sha256_hex(data), path.name, dump_kind)
        return [section.to_recording(source) for section in parse_iodump(text)]
    except (CodecError, IodumpError, RecordingError) as exc:
        raise EventFileError(f"{path}: {str(exc).splitlines()[0]}") from exc
    except OSError as exc:
        raise EventFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
