"""Songs told apart by their notes: the same song reached twice is recognised.

A song is known by the set of its *note windows*: hashes (``sequence_hashes``) of
every run of ``WINDOW_NOTES`` consecutive note starts (channel and pitch, timing
left out), as the pruner finds repeats. Hearing any stretch of a song again, from
wherever playback starts, gives windows already in its set, so

- a stretch whose windows are mostly (``SAME_SONG_SHARE``) in one song's set is that song;
- windows in no set are new music: a new song, or a part of a known one not yet heard;
- a song's ``signature`` is the smallest hash of its set: once a whole loop has been
  heard it is the same whatever the starting point, a short stable name for logs.

``NoteStream`` hashes note starts as they arrive in pieces (windows run across the
pieces of one continuous stretch); ``SongBook`` holds the songs of one ROM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gbsynth.pruner.analysis import NoteOnsets, sequence_hashes

WINDOW_NOTES = 8
"""Note starts per window: enough that two songs of one driver rarely share a window, few
enough that a second of music holds several."""
_NO_SONG = -2
"""Owner of windows heard but dismissed as no song."""
SAME_SONG_SHARE = 0.5
"""A stretch is a known song when at least this share of its windows belong to that song."""


class NoteStream:
    """Hashes the note starts of one continuous stretch of listening, piece by piece."""

    def __init__(self, window: int = WINDOW_NOTES) -> None:
        if window < 1:
            raise ValueError("window must be at least one note")
        self.window = window
        self._channels = np.empty(0, np.int64)
        self._pitches = np.empty(0, np.int64)

    def reset(self) -> None:
        """The stretch ended (input, a jump to a saved state): windows do not run across it."""
        self._channels = np.empty(0, np.int64)
        self._pitches = np.empty(0, np.int64)

    def feed(self, onsets: NoteOnsets) -> np.ndarray:
        """uint64 hashes of the windows that end on one of ``onsets`` (in order)."""
        channels = np.concatenate([self._channels, onsets.channels.astype(np.int64)])
        pitches = np.concatenate([self._pitches, onsets.pitches.astype(np.int64)])
        tail = max(0, len(channels) - (self.window - 1))  # the notes a later window needs
        self._channels, self._pitches = channels[tail:], pitches[tail:]
        complete = len(channels) - self.window + 1
        if complete <= 0:
            return np.empty(0, np.uint64)
        return sequence_hashes(channels, pitches, self.window)[:complete]


@dataclass
class Song:
    """One song of a ROM: every note window heard of it so far."""

    index: int
    windows: set[int] = field(default_factory=set)

    @property
    def signature(self) -> str:
        """16 hex digits: the smallest window hash (the same from any starting point once a
        whole loop is known)."""
        return f"{min(self.windows):016x}" if self.windows else "0" * 16


@dataclass(frozen=True)
class Hearing:
    """What a stretch of note windows is: ``song`` (index, or None: no known song holds most
    of them) and how many of its windows no song holds."""

    song: int | None
    windows: int
    unheard: int


class SongBook:
    """The songs of one ROM, found so far."""

    def __init__(self) -> None:
        self.songs: list[Song] = []
        self._owner: dict[int, int] = {}  # window hash -> song index

    def __len__(self) -> int:
        return len(self.songs)

    def hear(self, windows: np.ndarray) -> Hearing:
        """Which known song (if any) ``windows`` belong to, and how much of them is new."""
        if len(windows) == 0:
            return Hearing(None, 0, 0)
        owners = [self._owner.get(int(h), -1) for h in np.unique(windows)]
        counts = np.bincount([o for o in owners if o >= 0], minlength=1)  # -1: unheard
        unheard = owners.count(-1)
        song = int(np.argmax(counts)) if counts.any() else None
        if song is not None and counts[song] < SAME_SONG_SHARE * len(owners):
            song = None
        return Hearing(song, len(owners), unheard)

    def learn(self, windows: np.ndarray, song: int | None = None) -> int:
        """Add ``windows`` to ``song`` (None: a new song); returns the song's index.

        Windows another song already holds stay with it (two songs may share a phrase).
        """
        if song is None:
            song = len(self.songs)
            self.songs.append(Song(song))
        target = self.songs[song]
        for h in windows:
            h = int(h)
            if h not in self._owner:
                self._owner[h] = song
                target.windows.add(h)
        return song

    def dismiss(self, song: int) -> None:
        """The last song learned was not one (too short: a seam, a sound effect): drop it,
        keeping its windows as heard music of no song, so they are not new again."""
        if song != len(self.songs) - 1:
            raise ValueError("only the song learned last can be dismissed")
        for h in self.songs.pop().windows:
            self._owner[h] = _NO_SONG

    def signatures(self) -> list[str]:
        return [s.signature for s in self.songs]
