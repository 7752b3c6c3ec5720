"""Training material: music files, recordings and segments turned into token tracks.

A *track* is one stretch of music as tokens of a representation
(``gbsynth.trainer.representation``) and the source file it came from. The
held-out split is by source file, never by segment: a file's SHA-256 decides
(``is_heldout``), so every piece of a song lands on the same side, on every machine
and after every restart.

``tracks_from_path`` reads what ``gbsynth train``/``evaluate`` accept:

- Avro container files of recordings (``gbsynth emulate --out``) or segments (``gbsynth prune``);
- gbsplay-style I/O dumps (``gbsynth emulate > file``);
- GBS, ROM and VGM files, recorded on the fly with the emulator (every subsong of a GBS);
- folders of any of these (recursively).

Recordings contribute their observing spans only (no sound effects from the
explorer's button presses), each opening with a register snapshot like a segment.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gbsynth.common.avro import CodecError, Segment
from gbsynth.common.events import ApuWrites, Recording, RecordingError, register_snapshot
from gbsynth.common.files import atomic_output
from gbsynth.trainer.representation import Representation

log = logging.getLogger(__name__)

AVRO_MAGIC = b"Obj\x01"
MIN_TRACK_TOKENS = 8
"""Shorter tracks teach nothing and are skipped."""


class DataError(ValueError):
    """A path that holds no usable music, or a file that cannot be read."""


@dataclass(frozen=True, eq=False)
class Track:
    """One stretch of music as tokens, and where it came from."""

    name: str
    source_sha256: str
    tokens: np.ndarray
    """1-D tokens of the representation the tracks were made for."""

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def is_heldout(source_sha256: str, percent: float) -> bool:
    """Whether a source file belongs to the held-out split (stable: a hash of its SHA-256)."""
    if percent <= 0:
        return False
    bucket = int(source_sha256[:8], 16) % 10_000
    return bucket < percent * 100


def _piece(writes: ApuWrites, start: int, end: int) -> ApuWrites:
    """``writes`` from ``start`` to ``end``, rebased to 0 and opening with a snapshot."""
    body = writes.between(start, end).shifted(-start)
    return ApuWrites.concat([register_snapshot(writes, start), body])


def recording_pieces(recording: Recording) -> list[ApuWrites]:
    """The observing spans of a recording, each rebased to 0 and opening with a snapshot."""
    return [_piece(recording.writes, start, end) for start, end in recording.observing_spans()]


def sounding_spans(recording: Recording) -> list[tuple[int, int]]:
    """The observing spans of a recording cut at every silence of the pruner's
    ``silence_gap_seconds`` or longer (a jingle recorded for minutes is its few seconds of
    sound: a model trained on the silence learns to stay silent)."""
    from gbsynth.pruner.prune import sounding_passages

    spans = []
    for start, end in recording.observing_spans():
        piece = _piece(recording.writes, start, end)
        spans.extend((start + a, start + b) for a, b in sounding_passages(piece, end - start))
    return spans


def track_from_writes(
    name: str, source_sha256: str, writes: ApuWrites, rep: Representation,
    span_cycles: int | None = None,
) -> Track | None:  # fmt: skip
    tokens = rep.encode(writes, span_cycles)
    if len(tokens) < MIN_TRACK_TOKENS:
        return None
    return Track(name, source_sha256, tokens)


def tracks_from_recording(
    recording: Recording, rep: Representation, *, drop_silence: bool = False
) -> list[Track]:
    """One track per observing span (or per stretch of sound in one, ``drop_silence``)."""
    out = []
    spans = sounding_spans(recording) if drop_silence else recording.observing_spans()
    for i, (start, end) in enumerate(spans):
        name = f"{recording.recording_id}#{i}"
        writes = _piece(recording.writes, start, end)
        track = track_from_writes(name, recording.source.sha256, writes, rep, end - start)
        if track is not None:
            out.append(track)
    return out


def track_from_segment(segment: Segment, rep: Representation) -> Track | None:
    return track_from_writes(
        segment.segment_id, segment.source.sha256, segment.writes, rep, segment.duration_cycles
    )


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and files under folders named (sorted, hidden files skipped)."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if not name.startswith("."):
                        yield Path(dirpath) / name
        elif path.exists():
            yield path
        else:
            raise DataError(f"{path}: no such file or folder")


def _record_music_file(
    path: Path, rep: Representation, kind, seconds: float, seed: int, drop_silence: bool
) -> list[Track]:
    from gbsynth.common.events import SourceKind
    from gbsynth.emulator.gbs import GbsError, build_player_rom
    from gbsynth.emulator.sources import SourceError, open_session

    subsongs: list[int | None] = [None]
    if kind is SourceKind.GBS:
        try:
            _, header = build_player_rom(path.read_bytes(), 1)
        except GbsError as exc:
            raise DataError(f"{path}: {exc}") from exc
        subsongs = list(range(1, header.song_count + 1))
    tracks = []
    for subsong in subsongs:
        try:
            recording = open_session(path, kind=kind, subsong=subsong, seed=seed).record(seconds)
        except SourceError as exc:
            log.warning("%s%s: %s", path, f" subsong {subsong}" if subsong else "", exc)
            continue
        tracks.extend(tracks_from_recording(recording, rep, drop_silence=drop_silence))
    return tracks


def tracks_from_file(
    path: Path, rep: Representation, *, seconds: float = 120.0, seed: int = 0,
    drop_silence: bool = False,
) -> list[Track]:  # fmt: skip
    """The tracks in one file (see the module docstring for what is accepted).

    Music files are played for ``seconds`` (ROMs explored with ``seed``), cut at long
    silences if ``drop_silence`` (``sounding_spans``). Raises
    ``DataError`` for a file that is none of the accepted kinds or is damaged.
    """
    from gbsynth.common.events import Source, SourceKind, sha256_hex
    from gbsynth.common.formats import IodumpError, parse_iodump, read_any
    from gbsynth.emulator.jobs import detect_kind

    path = Path(path)
    try:
        with path.open("rb") as fo:
            head = fo.read(0x70)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    if head.startswith(AVRO_MAGIC):
        try:
            items = read_any(path)
        except (CodecError, RecordingError) as exc:
            raise DataError(f"{path}: {exc}") from exc
        tracks: list[Track] = []
        for item in items:
            if isinstance(item, Segment):
                track = track_from_segment(item, rep)
                tracks.extend([track] if track is not None else [])
            else:
                tracks.extend(tracks_from_recording(item, rep))
        return tracks
    kind = detect_kind(path, head)
    if kind is not None:
        return _record_music_file(path, rep, kind, seconds, seed, drop_silence)
    try:
        data = path.read_bytes()
        text = data.decode("ascii")
        sections = parse_iodump(text)
    except (UnicodeDecodeError, IodumpError) as exc:
        raise DataError(
            f"{path}: not a recordings/segments file, I/O dump, GBS, ROM or VGM file ({exc})"
        ) from exc
    source = Source(sha256_hex(data), path.name, SourceKind.GBS)
    tracks = []
    for section in sections:
        recording = section.to_recording(source, f"{path.name}#{section.subsong}")
        tracks.extend(tracks_from_recording(recording, rep))
    return tracks


def tracks_from_paths(
    paths: Iterable[Path],
    rep: Representation,
    *,
    seconds: float = 120.0,
    seed: int = 0,
    progress: bool = False,
) -> list[Track]:
    """Every track under ``paths``; raises ``DataError`` when none is found."""
    files = list(iter_files(paths))
    tracks: list[Track] = []
    iterator: Iterable[Path] = files
    if progress:
        from tqdm import tqdm

        iterator = tqdm(files, desc="reading", unit="file")
    for file in iterator:
        tracks.extend(tracks_from_file(file, rep, seconds=seconds, seed=seed))
    if not tracks:
        raise DataError(f"no music found in {', '.join(map(str, paths))}")
    return tracks


def split_tracks(
    tracks: Iterable[Track], heldout_percent: float
) -> tuple[list[Track], list[Track]]:
    """``(train, heldout)`` by source file."""
    train, heldout = [], []
    for track in tracks:
        (heldout if is_heldout(track.source_sha256, heldout_percent) else train).append(track)
    return train, heldout


def save_tracks(path: Path, tracks: list[Track], rep: Representation) -> None:
    """All tracks in one ``.npz`` (tokens concatenated, names, sources, lengths), atomically."""
    path = Path(path)
    with atomic_output(path) as fo:
        np.savez(
            fo,
            tokens=np.concatenate([t.tokens for t in tracks]).astype(np.int16)
            if tracks
            else np.empty(0, np.int16),
            lengths=np.array([len(t) for t in tracks], dtype=np.int64),
            names=np.array([t.name for t in tracks], dtype=str),
            sources=np.array([t.source_sha256 for t in tracks], dtype=str),
            representation=np.array(rep.name),
        )


def load_tracks(path: Path, rep: Representation) -> list[Track]:
    """Tracks saved by ``save_tracks`` for representation ``rep``."""
    try:
        with np.load(path) as data:
            saved_rep = str(data["representation"]) if "representation" in data else "?"
            if saved_rep != rep.name:
                raise DataError(f"{path}: tracks of representation {saved_rep!r}, not {rep.name!r}")
            tokens = data["tokens"].astype(np.int64)
            lengths, names, sources = data["lengths"], data["names"], data["sources"]
    except (OSError, KeyError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: not a saved track file: {exc}") from exc
    ends = np.cumsum(lengths)
    starts = ends - lengths
    return [
        Track(str(name), str(source), tokens[start:end])
        for name, source, start, end in zip(names, sources, starts, ends, strict=True)
    ]


def total_tokens(tracks: Iterable[Track]) -> int:
    return sum(len(t) for t in tracks)


def total_seconds(tracks: Iterable[Track], rep: Representation) -> float:
    """Seconds of music the tracks span."""
    return sum(rep.seconds(t.tokens) for t in tracks)
