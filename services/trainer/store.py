"""The trainer service's local dataset: one small file per segment consumed.

Each segment from ``apu.segments`` is stored as ``<sha256(segment id)>.npz``
(its tokens as int16 and their representation, the segment id, the source
file's SHA-256 and its arrival number, so a restart loads the tracks in the same order), written to
a temporary name and renamed, so a crash leaves either the whole file or
nothing. Adding a segment twice (Kafka delivers at least once) is a no-op. The
store decides the held-out split by source file (``data.is_heldout``) and
keeps both splits in memory for training and evaluation; past ``max_tokens``
training tokens the oldest segments are deleted, so a trainer that runs for
months keeps the newest music in bounded memory and disk.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from gbsynth.common.files import atomic_output
from gbsynth.trainer.data import Track, is_heldout

log = logging.getLogger(__name__)


class SegmentStore:
    """Segments on disk, loaded into a training and a held-out list of tracks."""

    def __init__(
        self,
        directory: Path,
        heldout_percent: float,
        max_tokens: int | None = None,
        representation: str = "",
    ) -> None:
        self.directory = Path(directory)
        self.max_tokens = max_tokens
        """Training tokens kept at most: beyond it the oldest segments are deleted."""
        self.representation = representation
        """Tracks stored for another representation are not loaded (and are replaced)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.heldout_percent = heldout_percent
        self.train: list[Track] = []
        self.heldout: list[Track] = []
        self._known: set[str] = set()
        self.version = 0
        """Bumped on every change, so users rebuild what they derived from the tracks."""
        self._next_sequence = 0
        self._load()

    @staticmethod
    def _file_name(segment_id: str) -> str:
        return hashlib.sha256(segment_id.encode()).hexdigest()[:40] + ".npz"

    def _load(self) -> None:
        found = []
        for path in self.directory.glob("*.npz"):
            try:
                with np.load(path) as data:
                    if str(data["representation"]) != self.representation:
                        path.unlink(missing_ok=True)  # made for another model: stale
                        continue
                    track = Track(
                        str(data["segment_id"]),
                        str(data["source_sha256"]),
                        data["tokens"].astype(np.int64),
                    )
                    sequence = int(data["sequence"])
            except (OSError, KeyError, ValueError) as exc:
                log.warning("skipping unreadable dataset file %s: %s", path, exc)
                continue
            found.append((sequence, track.name, track))
        # Arrival order, so a restarted trainer's batches index the same tracks.
        for sequence, _, track in sorted(found, key=lambda item: item[:2]):
            self._remember(track)
            self._next_sequence = max(self._next_sequence, sequence + 1)
        self._forget_oldest()
        for stray in self.directory.glob(".*.partial"):
            stray.unlink(missing_ok=True)  # a write cut short by a crash
        if self._known:
            log.info(
                "dataset %s: %d segments (%d training tokens, %d held out)",
                self.directory, len(self._known), self.tokens("train"), self.tokens("heldout"),
            )  # fmt: skip

    def _remember(self, track: Track) -> None:
        self._known.add(track.name)
        held = is_heldout(track.source_sha256, self.heldout_percent)
        (self.heldout if held else self.train).append(track)
        self.version += 1

    def __contains__(self, segment_id: str) -> bool:
        return segment_id in self._known

    def __len__(self) -> int:
        return len(self._known)

    def add(self, track: Track) -> bool:
        """Store a segment's track (``track.name`` is the segment id); False if already held."""
        if track.name in self._known:
            return False
        path = self.directory / self._file_name(track.name)
        with atomic_output(path, durable=True) as fo:
            np.savez(
                fo,
                tokens=track.tokens.astype(np.int16),
                representation=np.array(self.representation),
                segment_id=np.array(track.name),
                source_sha256=np.array(track.source_sha256),
                sequence=np.array(self._next_sequence),
            )
        self._next_sequence += 1
        self._remember(track)
        self._forget_oldest()
        return True

    def _forget_oldest(self) -> None:
        """Delete the oldest training segments while the training split is over ``max_tokens``.

        A continuous trainer would otherwise grow without bound; it keeps the newest music.
        """
        if self.max_tokens is None:
            return
        total = self.tokens("train")
        while total > self.max_tokens and len(self.train) > 1:
            old = self.train.pop(0)
            total -= len(old)
            self._known.discard(old.name)
            (self.directory / self._file_name(old.name)).unlink(missing_ok=True)
            self.version += 1

    def segments(self, split: str) -> int:
        return len(self.train if split == "train" else self.heldout)

    def tokens(self, split: str) -> int:
        return sum(len(t) for t in (self.train if split == "train" else self.heldout))
