"""Emulation jobs: what to record, found in a ROM folder, named safely.

A job names a file *relative to the workers' ROM folder*; a worker resolves it
with ``resolve_in_folder`` and refuses anything that would leave the folder
(``..``, absolute paths, symlinks pointing outside).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from gbsynth.common.events import SourceKind
from gbsynth.emulator.explore import ExploreSettings
from gbsynth.emulator.gbs import GbsError, parse_gbs_header

ROM_SUFFIXES = {".gb", ".gbc", ".sgb"}
VGM_SUFFIXES = {".vgm", ".vgz"}
GBS_SUFFIXES = {".gbs"}
MAX_FILE_BYTES = 8 * 1024 * 1024
HEAD_BYTES = 2048
"""Bytes read to detect a file's kind (a ProTracker module's signature is at offset 1080)."""


class JobError(ValueError):
    """A job cannot be run as given (bad path, unknown kind, unreadable file)."""


@dataclass(frozen=True)
class EmulationJob:
    path: str
    """Relative to the ROM folder, forward slashes."""
    kind: SourceKind
    seed: int
    seconds: float
    subsong: int | None = None
    explore: ExploreSettings | None = None

    @property
    def job_id(self) -> str:
        """Deterministic: the same work always has the same id."""
        key = f"{self.path}|{self.kind.value}|{self.subsong or 0}|{self.seed}|{self.seconds}"
        return hashlib.sha256(key.encode()).hexdigest()[:24]

    def to_record(self, enqueued_unix_ms: int | None = None) -> dict[str, Any]:
        """The ``gbsynth.v1.Job`` Avro record."""
        return {
            "job_id": self.job_id,
            "path": self.path,
            "kind": self.kind.value,
            "subsong": self.subsong,
            "seed": self.seed,
            "seconds": float(self.seconds),
            "explore": asdict(self.explore) if self.explore else None,
            "enqueued_unix_ms": int(time.time() * 1000)
            if enqueued_unix_ms is None
            else enqueued_unix_ms,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> EmulationJob:
        try:
            kind = SourceKind(record["kind"])
            explore = record.get("explore")
            job = cls(
                path=str(record["path"]),
                kind=kind,
                seed=int(record["seed"]),
                seconds=float(record["seconds"]),
                subsong=record.get("subsong"),
                explore=ExploreSettings(**explore) if explore else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise JobError(f"malformed job record: {exc}") from exc
        if not job.seconds > 0:
            raise JobError(f"job asks for {job.seconds} seconds; must be positive")
        return job


def resolve_in_folder(rom_dir: Path, relative: str) -> Path:
    """The real path of ``relative`` inside ``rom_dir``; ``JobError`` if it escapes."""
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or ".." in pure.parts or "\x00" in relative:
        raise JobError(f"job path {relative!r} must be relative and stay inside the ROM folder")
    root = Path(rom_dir).resolve()
    target = (root / pure).resolve()
    if not target.is_relative_to(root):
        raise JobError(f"job path {relative!r} leaves the ROM folder (symlink?)")
    if not target.is_file():
        raise JobError(f"job path {relative!r} is not a file in the ROM folder")
    return target


def detect_kind(path: Path, head: bytes) -> SourceKind | None:
    """What a file is, by its signature first and its suffix second."""
    suffix = path.suffix.lower()
    if head[:3] == b"GBS":
        return SourceKind.GBS
    if head[:4] == b"Vgm " or (head[:2] == b"\x1f\x8b" and suffix in VGM_SUFFIXES):
        return SourceKind.VGM
    if suffix in ROM_SUFFIXES:
        return SourceKind.ROM
    return detect_score_kind(head, suffix)


def detect_score_kind(head: bytes, suffix: str) -> SourceKind | None:
    """MusicXML, MIDI, MOD or ABC, from the first ``HEAD_BYTES`` of a file (and its suffix)."""
    from gbsynth.music.score_formats import sniff_score

    kind = sniff_score(head, suffix)
    return SourceKind(kind) if kind else None


def read_source_file(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise JobError(f"{path.name} is {size} bytes; the limit is {MAX_FILE_BYTES}")
    return path.read_bytes()


def _walk(rom_dir: Path) -> Iterator[Path]:
    root = rom_dir.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.resolve().is_relative_to(root) and path.is_file():
                yield path


def discover_jobs(
    rom_dir: Path,
    *,
    seconds: float,
    seed: int = 0,
    explore: ExploreSettings | None = None,
) -> tuple[list[EmulationJob], list[str]]:
    """A job for every ROM, every GBS subsong, every VGM and every part of every score under
    ``rom_dir`` (a score's jobs record its parts whole, whatever ``seconds`` says).

    Returns the jobs and a list of skipped files with the reason. ROMs get the
    exploration settings; GBS and VGM files play without input.
    """
    jobs: list[EmulationJob] = []
    skipped: list[str] = []
    root = Path(rom_dir).resolve()
    for path in _walk(root):
        rel = path.resolve().relative_to(root).as_posix()
        try:
            with path.open("rb") as fh:
                head = fh.read(HEAD_BYTES)
        except OSError as exc:
            skipped.append(f"{rel}: {exc.strerror}")
            continue
        kind = detect_kind(path, head)
        if kind is None:
            continue
        if kind is SourceKind.GBS:
            try:
                header = parse_gbs_header(read_source_file(path))
            except (GbsError, JobError) as exc:
                skipped.append(f"{rel}: {exc}")
                continue
            for subsong in range(1, header.song_count + 1):
                jobs.append(EmulationJob(rel, kind, seed, seconds, subsong=subsong))
        elif kind is SourceKind.VGM:
            jobs.append(EmulationJob(rel, kind, seed, seconds))
        elif kind.is_score:
            # one job per part the piece is recorded in, each as long as its music
            from gbsynth.emulator.score_source import part_seconds
            from gbsynth.emulator.sources import SourceError

            try:
                lengths = part_seconds(path, read_source_file(path), kind, seed)
            except (SourceError, JobError) as exc:
                skipped.append(f"{rel}: {exc}")
                continue
            for part, length in enumerate(lengths, start=1):
                jobs.append(EmulationJob(rel, kind, seed, length, subsong=part))
        else:
            jobs.append(EmulationJob(rel, kind, seed, seconds, explore=explore))
    return jobs, skipped
