"""Scores and tracker modules as music sources: arranged, then played by our sound driver.

A MusicXML, MIDI, MOD or ABC file is read into a ``Score``, arranged for the Game Boy
(``gbsynth.music.arrange``), assembled with our driver into a GBS file and played by
``GbsSession`` on our emulator, so its recording is the driver's real register writes,
with the same events, topics and pruner as any game. A long piece is cut into parts
at bar lines; each part is a recording of its own (``Source.subsong`` = the part,
counting from 1), as are augmented variants (``transpose``, ``tempo_factor``). Once a
part's music is over the recording goes on silent (the song ends with rests and the
driver is not called again), so asking for more seconds than the part lasts is harmless.

The licence comes from the ``MANIFEST.tsv`` of the collection the file is in (the
nearest one in its folder or a parent folder): "unknown" when there is none.
"""

from __future__ import annotations

import csv
import functools
import os
import zlib
from pathlib import Path

from gbsynth.common.events import CPU_HZ, ApuWrites, Source, SourceKind, sha256_hex
from gbsynth.emulator.sources import GbsSession, Piece, Session, SourceError
from gbsynth.music.arrange import DEFAULT_SECONDS_LIMIT, ArrangedPart, arrange_parts
from gbsynth.music.score import Score, ScoreError
from gbsynth.music.score_formats import read_score

MANIFEST_NAME = "MANIFEST.tsv"
MANIFEST_LEVELS = 8
"""Folders looked through, upwards from the file's, for a manifest."""
UNKNOWN_LICENCE = "unknown"


def read_score_file(data: bytes, name: str, kind: SourceKind) -> Score:
    """The score of a file of a score kind; ``ScoreError`` when it is not one or is broken."""
    return read_score(data, name, kind.value)


def arrangement_seed(sha256: str, seed: int) -> int:
    """Seed of a piece's sounds: differs between pieces, and with the job's seed."""
    return (int(sha256[:8], 16) ^ (seed * 0x9E3779B1)) & 0x7FFFFFFF


@functools.lru_cache(maxsize=64)
def _manifest(path: str, mtime: float) -> dict[str, str]:
    licences: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            where, licence = row.get("path"), row.get("licence")
            if where and licence:
                licences[where.strip()] = licence.strip()
    return licences


def licence_of(path: Path) -> str:
    """The file's licence from the nearest ``MANIFEST.tsv`` above it, else "unknown"."""
    real = Path(os.path.realpath(path))
    folder = real.parent
    for _ in range(MANIFEST_LEVELS):
        manifest = folder / MANIFEST_NAME
        if manifest.is_file():
            try:
                table = _manifest(str(manifest), manifest.stat().st_mtime)
            except (OSError, csv.Error):
                return UNKNOWN_LICENCE
            return table.get(real.relative_to(folder).as_posix(), UNKNOWN_LICENCE)
        if folder.parent == folder:
            break
        folder = folder.parent
    return UNKNOWN_LICENCE


def arrange_file(
    data: bytes,
    file_name: str,
    kind: SourceKind,
    *,
    seed: int = 0,
    transpose: int = 0,
    tempo_factor: float = 1.0,
    seconds_limit: float = DEFAULT_SECONDS_LIMIT,
) -> tuple[Score, list[ArrangedPart]]:
    """Read and arrange a score file; ``SourceError`` (with the reader's reason) if it fails."""
    try:
        score = read_score_file(data, file_name, kind)
        parts = arrange_parts(
            score,
            arrangement_seed(sha256_hex(data), seed),
            transpose=transpose,
            tempo_factor=tempo_factor,
            seconds_limit=seconds_limit,
        )
    except ScoreError as exc:
        raise SourceError(f"{file_name}: {exc}", exc.reason) from exc
    except (RecursionError, MemoryError, zlib.error) as exc:
        raise SourceError(f"{file_name}: cannot be read: {exc!r}", "invalid_file") from exc
    return score, parts


class ScoreSession(Session):
    """Plays one part of an arranged score through our driver on the emulator."""

    def __init__(
        self,
        data: bytes,
        file_name: str,
        kind: SourceKind,
        *,
        part: int | None = None,
        seed: int = 0,
        transpose: int = 0,
        tempo_factor: float = 1.0,
        seconds_limit: float = DEFAULT_SECONDS_LIMIT,
        licence: str = UNKNOWN_LICENCE,
        arranged: tuple[Score, list[ArrangedPart]] | None = None,
    ) -> None:
        if arranged is None:
            arranged = arrange_file(
                data,
                file_name,
                kind,
                seed=seed,
                transpose=transpose,
                tempo_factor=tempo_factor,
                seconds_limit=seconds_limit,
            )
        score, parts = arranged
        number = part or 1
        if not 1 <= number <= len(parts):
            raise SourceError(
                f"{file_name}: part {number} asked for; the arrangement has {len(parts)}",
                "invalid_job",
            )
        self.score = score
        self.part = parts[number - 1]
        self.part_count = len(parts)
        source = Source(sha256_hex(data), file_name, kind, score.title[:200], number, licence,
                        transpose, float(tempo_factor))  # fmt: skip
        super().__init__(source, seed)
        self.music_cycles = int(self.part.seconds * CPU_HZ)
        """Where the part's music ends; the recording is silent after it."""
        self._player = GbsSession(self.part.gbs(), file_name, 1)

    @property
    def seconds(self) -> float:
        return self.part.seconds

    def advance(self, cycles: int) -> Piece:
        start, end = self.cycle, self.cycle + cycles
        writes = ApuWrites.empty()
        playing = min(end, self.music_cycles) - start
        if playing > 0:
            writes = self._player.advance(playing).writes
        self.cycle = end
        return Piece(start, end, writes)


def open_score_session(
    path: Path,
    data: bytes,
    name: str,
    kind: SourceKind,
    *,
    part: int | None = None,
    seed: int = 0,
) -> ScoreSession:
    """The session ``open_session`` gives for a score file (licence from its manifest)."""
    return ScoreSession(data, name, kind, part=part, seed=seed, licence=licence_of(path))


def part_seconds(path: Path, data: bytes, kind: SourceKind, seed: int = 0) -> list[float]:
    """Length of each part the file is recorded in (for one job per part)."""
    _, parts = arrange_file(data, path.name, kind, seed=seed)
    return [p.seconds for p in parts]
