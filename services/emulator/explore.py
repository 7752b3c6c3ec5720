"""Game exploration that looks for music: a seeded search over save states (Go-Explore style).

Pressing random buttons every frame restarts or stops songs faster than they
play. Instead, the explorer keeps an *archive* of save states ("cells"), each
keyed by the song playing there and a coarse picture of the screen (up to
``STATES_PER_CELL`` states per cell, reached by different inputs, since a sound
test's selection or a level's timer do not show in the key), and repeats:

1. **select** a cell, favouring cells chosen less often and cells whose branches
   paid off, and load one of its states; or, first, a *follow-up*: the inputs that
   just found a song, replayed from the same state after one more direction (the
   next item of a sound test or menu), and the longest wait from where they led;
2. **branch**: play one to ``CHAIN_MACROS`` input *macros* in a row (a tap or a hold
   of one button, a direction then A, two buttons held together, or a wait with no
   input), each followed by ``settle_seconds`` of quiet (not judged: the sound effect
   an input makes dies out) and then *listening*: no input, cut into ``LISTEN_SECONDS``
   chunks whose note starts are hashed into windows (``gbsynth.pruner.songs``), each
   chunk judged with the one before as context;
3. **score**: when the last ``NOVELTY_CHUNKS`` chunks hold enough unheard windows,
   new music starts and an *observe* window opens: recorded, opened with a register
   snapshot so it stands on its own, with the ``LEAD_IN_CHUNKS`` quiet chunks before
   it, and the settle time when it opens right after an input (music an input starts
   begins there), so the song's first notes are in. It lasts at least ``MIN_WINDOW_CHUNKS`` and
   ends when the song loops into windows already heard, falls silent, or switches
   to other new music; past ``observe_seconds`` it is listened to, not recorded. The
   window is kept only if it was a song (``MIN_SONG_WINDOWS`` windows or
   ``MIN_SONG_CHUNKS`` chunks of new music): a seam between two known songs or a sound
   effect is dropped unrecorded. The song enters the ROM's ``SongBook``, so reaching it
   again is recognised and not recorded twice;
4. **archive** every state reached whose cell is new, credit the cell and the macro
   (inputs that found something are tried more often on this ROM; long waits, which
   cost more emulated time, less often).

Every recorded observe window is the first hearing of one song, so a recording's
observe windows count the songs found (``songs_in``). The search is deterministic
for a seed; states are kept without the cartridge ROM (about 70 KiB each) and at most
``max_states`` of them (the least promising cell is evicted).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES, ApuWrites, Phase, register_snapshot
from gbsynth.emulator.core.machine import GameBoy
from gbsynth.pruner.analysis import NoteOnsets, note_starts
from gbsynth.pruner.songs import NoteStream, SongBook

# Joypad bits as the emulator's set_buttons() takes them.
BUTTON_A = 0x01
BUTTON_B = 0x02
BUTTON_SELECT = 0x04
BUTTON_START = 0x08
BUTTON_RIGHT = 0x10
BUTTON_LEFT = 0x20
BUTTON_UP = 0x40
BUTTON_DOWN = 0x80
BUTTON_NAMES = {
    BUTTON_A: "A", BUTTON_B: "B", BUTTON_SELECT: "Select", BUTTON_START: "Start",
    BUTTON_RIGHT: "Right", BUTTON_LEFT: "Left", BUTTON_UP: "Up", BUTTON_DOWN: "Down",
}  # fmt: skip

LISTEN_SECONDS = 1.0
"""Granularity of listening: each chunk of no-input time is judged on its own notes."""
LISTEN_CHUNKS = 2
"""Chunks listened to after an input macro (a wait macro listens for its whole length)."""
EXTRA_CHUNKS = 4
"""Chunks listened to beyond a macro's listening while unheard notes are too few to judge."""
CHAIN_MACROS = 3
"""Most macros played in a row from a loaded state before the next selection."""
NOVELTY_CHUNKS = 2
"""New music is judged on the last this many chunks together: ..."""
MIN_NEW_WINDOWS = 4
"""... at least this many of their note windows unheard (slow music has few a second; a
seam between known songs has up to WINDOW_NOTES - 1, which MIN_SONG_WINDOWS then dismisses)
..."""
NEW_SHARE = 0.5
"""... and at least this share of their windows."""
MIN_SONG_WINDOWS = 24
MIN_SONG_CHUNKS = 4
"""New music is a song (recorded, counted) once this many of its note windows are heard, or
this many of its chunks (or observe_seconds, if shorter) were new music; less, and it was a
seam between songs or a sound effect."""
SPARSE_NOTES = 3
"""A chunk with fewer note starts is too sparse to tell whether a song goes on or loops."""
LEAD_IN_CHUNKS = 2
"""Unrecorded chunks kept until judged: a new song's window opens with them (a song's first
second may hold too few notes to judge), and with the settle time before them if they
follow an input."""
QUIET_CHUNKS_END = 3
"""An observe window ends after this many chunks in a row without a note start."""
LOOPED_CHUNKS_END = 6
"""... or after this many chunks in a row of music already heard: the song looped (a phrase
repeated within a song is shorter)."""
FOLLOW_UP_FIRST = ("tap Right", "tap Left", "tap Down", "tap Up")
"""When inputs find a song, they are tried again from the same state after each of these
(in a sound test or a menu, the next item's song is one direction away)."""
MAX_FOLLOW_UP_MACROS = 8
"""Follow-ups grow one direction at a time up to this many macros."""
SWITCH_AFTER_HEARD = 3
"""An open window whose song has been heard repeating for this many chunks ends at the next
new music: the game switched songs (the next window opens after a one-chunk seam)."""
MIN_WINDOW_CHUNKS = 16
"""A window that has not fallen silent lasts at least this many chunks, looped or not: twice
the pruner's shortest segment, so a song with a short loop still gives one."""
STATES_PER_CELL = 8
"""Save states one cell keeps, reached by different inputs (one is replaced when full)."""
DEFAULT_MAX_STATES = 256
"""Save states kept in the archive (about 70 KiB each for a cartridge without RAM)."""
TAP_FRAMES = 5
"""Frames a tap holds its button: long enough for games that read the joypad every other
frame; holds and two-button combinations last longer."""
HOLD_FRAMES = 40
COMBO_FRAMES = 60


@dataclass(frozen=True)
class ExploreSettings:
    """The explorer's time spans, in emulated seconds (the Job record carries these four)."""

    boot_seconds: float = 10.0
    """Listening from power-on before the first input (title music plays here)."""
    observe_seconds: float = 90.0
    """Longest recorded window of one song (it ends earlier when the song loops or stops)."""
    press_seconds: float = 20.0
    """Longest wait macro: no input, listening, for music that comes by itself in time."""
    settle_seconds: float = 0.5
    """Unrecorded quiet after each input, so the sound effects it caused die out."""

    def __post_init__(self) -> None:
        for name in ("boot_seconds", "observe_seconds", "press_seconds", "settle_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.observe_seconds <= 0:
            raise ValueError("observe_seconds must be positive, or nothing is ever recorded")


@dataclass(frozen=True)
class Macro:
    """An input sequence: ``(buttons, frames)`` steps, then settle and ``listen_chunks``."""

    name: str
    steps: tuple[tuple[int, int], ...]
    listen_chunks: int = LISTEN_CHUNKS

    def seconds(self, settings: ExploreSettings) -> float:
        """Emulated time it takes, listening included (an open window aside)."""
        frames = sum(f for _, f in self.steps)
        settle = settings.settle_seconds if self.steps else 0.0
        return frames * FRAME_CYCLES / CPU_HZ + settle + self.listen_chunks * LISTEN_SECONDS


def standard_macros(press_seconds: float) -> list[Macro]:
    """Taps and holds of each button, direction-then-A, two-button holds and waits."""
    macros = []
    for bit, name in BUTTON_NAMES.items():
        macros.append(Macro(f"tap {name}", ((bit, TAP_FRAMES),)))
    for bit, name in BUTTON_NAMES.items():
        macros.append(Macro(f"hold {name}", ((bit, HOLD_FRAMES),)))
    for bit in (BUTTON_RIGHT, BUTTON_LEFT, BUTTON_UP, BUTTON_DOWN):
        steps = ((bit, TAP_FRAMES), (0, 10), (BUTTON_A, TAP_FRAMES))
        macros.append(Macro(f"{BUTTON_NAMES[bit]} then A", steps))
    faces = (BUTTON_A, BUTTON_B, BUTTON_SELECT, BUTTON_START)
    for i, first in enumerate(faces):
        for second in faces[i + 1 :]:
            name = f"hold {BUTTON_NAMES[first]}+{BUTTON_NAMES[second]}"
            macros.append(Macro(name, ((first | second, COMBO_FRAMES),)))
    waits = sorted({4.0, 10.0, max(LISTEN_SECONDS, press_seconds)})
    for seconds in waits:
        if seconds <= max(press_seconds, LISTEN_SECONDS):
            chunks = max(1, int(round(seconds / LISTEN_SECONDS)))
            macros.append(Macro(f"wait {seconds:g} s", (), listen_chunks=chunks))
    return macros


@dataclass(frozen=True)
class Span:
    """A stretch of the exploration in recording order: ``cycles`` long, in ``phase``, with
    the writes kept (cycles relative to the span's start; empty unless recorded)."""

    phase: Phase
    cycles: int
    writes: ApuWrites


@dataclass
class Cell:
    """Archived save states of one (song, screen) and how promising they have been.

    A cell keeps up to ``STATES_PER_CELL`` states reached by different inputs: what the
    key cannot see (a sound test's selection, a menu's cursor) differs between them.
    """

    key: tuple[int, int]
    """(song playing, -1 for none; screen signature)."""
    states: list[tuple[dict[str, np.ndarray], ApuWrites]]
    """Save states and the sound registers at each (a snapshot that opens a window)."""
    order: int
    chosen: int = 0
    found: int = 0
    """New cells and songs (songs count 5) its branches led to."""

    def weight(self) -> float:
        # Go-Explore's count-based pull towards cells seldom chosen, times how often
        # choosing this one paid off, and a little more where music plays.
        playing = 1.5 if self.key[0] >= 0 else 1.0
        payoff = 1.0 + 2.0 * self.found / (1.0 + self.chosen)
        return playing * payoff / math.sqrt(1.0 + self.chosen)


@dataclass
class SearchStats:
    """What a search did, for logs, metrics and the benchmark."""

    branches: int = 0
    macros: int = 0
    cells: int = 0
    evicted: int = 0
    new_songs: int = 0
    song_found_at: list[int] = field(default_factory=list)
    """Emulated cycle (of this search) at which each new song was first heard."""
    song_found_by: list[str] = field(default_factory=list)
    """The inputs that led there from the archived state: macro names, "boot" at power-on."""


def screen_signature(gb: GameBoy) -> int:
    """A coarse picture of the screen: which tiles the shown background map uses (scrolling,
    animation and sprites do not change it; new text or a new scene does), or 0 with the
    LCD off."""
    lcdc = gb.peek(0xFF40)
    if not lcdc & 0x80:
        return 0
    base = 0x9C00 if lcdc & 0x08 else 0x9800
    used = np.zeros(256, dtype=np.uint8)
    used[gb.mem[base : base + 0x400]] = 1
    return zlib.crc32(np.packbits(used).tobytes()) or 1


class MusicSearch:
    """The search over one machine; ``spans()`` runs it and yields what to record."""

    def __init__(
        self,
        gb: GameBoy,
        settings: ExploreSettings,
        seed: int,
        songs: SongBook | None = None,
        max_states: int = DEFAULT_MAX_STATES,
    ) -> None:
        if max_states < 1:
            raise ValueError("max_states must be at least 1")
        self.gb = gb
        self.settings = settings
        self.rng = np.random.default_rng(seed)
        self.songs = songs if songs is not None else SongBook()
        self.max_states = max_states
        self.macros = standard_macros(settings.press_seconds)
        self._index = {m.name: i for i, m in enumerate(self.macros)}
        waits = [i for i, m in enumerate(self.macros) if not m.steps]
        self._longest_wait = max(waits, key=lambda i: self.macros[i].listen_chunks)
        self._follow_ups: list[tuple[Cell, tuple[dict[str, np.ndarray], ApuWrites], list[int]]] = []
        self.macro_uses = np.zeros(len(self.macros))
        listen = LISTEN_CHUNKS * LISTEN_SECONDS
        self._macro_cost = np.sqrt([m.seconds(settings) / listen for m in self.macros])
        self.macro_found = np.zeros(len(self.macros))
        self.archive: dict[tuple[int, int], Cell] = {}
        self._states = 0  # save states in the archive
        self.stats = SearchStats()
        self.cycle = 0
        """Emulated cycles run by this search (the recording's clock)."""
        self._shadow = ApuWrites.empty()
        self._stream = NoteStream()
        self._playing = -1  # song heard in the last chunk, -1: none known
        self._order = 0
        self._path: list[str] = []  # macros played since the last state was loaded
        self._chunk = int(round(LISTEN_SECONDS * CPU_HZ / FRAME_CYCLES)) * FRAME_CYCLES

    # -- running the machine -----------------------------------------------------------------
    def _run(self, buttons: int, cycles: int) -> ApuWrites:
        gb = self.gb
        gb.set_buttons(buttons)
        gb.start_recording()
        gb.run_cycles(cycles)
        writes = gb.take_writes()
        if len(writes):
            self._shadow = register_snapshot(ApuWrites.concat([self._shadow, writes]), 1 << 62)
        self.cycle += cycles
        return writes

    def _press(self, macro: Macro) -> Iterator[Span]:
        """Plays the macro's inputs (a press span), then its settle time; returns the settle
        time as ``(registers before it, its writes, cycles)``, or None without one. Its
        span is yielded by ``_listen``: music the input started may begin in it, and a
        window that opens right after it starts with it."""
        total = 0
        for buttons, frames in macro.steps:
            self._run(buttons, frames * FRAME_CYCLES)
            total += frames * FRAME_CYCLES
        if macro.steps:
            self.gb.set_buttons(0)
            yield Span(Phase.PRESS, total, ApuWrites.empty())
        settle = int(round(self.settings.settle_seconds * CPU_HZ / FRAME_CYCLES)) * FRAME_CYCLES
        if not (settle and macro.steps):
            return None
        opening = self._shadow
        return opening, self._run(0, settle), settle

    def _listen(
        self, chunks: int, settled: tuple[ApuWrites, ApuWrites, int] | None = None
    ) -> Iterator[Span]:
        """No input for ``chunks`` chunks, or until the window of a new song heard in them
        ends; records what is new (see the module doc). ``settled``: the settle time just
        before (from ``_press``), not judged but kept as the oldest lead-in."""
        self._stream.reset()
        self._playing = -1
        # Unrecorded stretches kept a while: (registers before, writes, cycles).
        pending: list[tuple[ApuWrites, ApuWrites, int]] = [] if settled is None else [settled]
        song: int | None = None  # the song an open window records, None: no window open
        held: list[Span] | None = None  # the window's spans until the song is confirmed
        recorded = quiet = heard = listened = fresh = 0
        longest = max(1, int(round(self.settings.observe_seconds / LISTEN_SECONDS)))
        done = 0
        previous: tuple[ApuWrites, ApuWrites] | None = None  # the chunk before, as context
        recent: list[tuple[int, int]] = []  # (unheard, windows) of the last NOVELTY_CHUNKS
        undecided = False  # unheard notes, too few yet to call them new music
        # An open window outlasts the listening; so does a song whose first notes are sparse.
        while done < chunks or song is not None or (undecided and done < chunks + EXTRA_CHUNKS):
            done += 1
            opening = self._shadow
            writes = self._run(0, self._chunk)
            notes = self._notes(previous, opening, writes)
            previous = (opening, writes)
            windows = self._stream.feed(notes)
            hearing = self.songs.hear(windows)
            if hearing.song is not None:
                self._playing = hearing.song
            recent = [*recent[1 - NOVELTY_CHUNKS :], (hearing.unheard, hearing.windows)]
            unheard = sum(u for u, _ in recent)
            new = unheard >= max(MIN_NEW_WINDOWS, NEW_SHARE * sum(w for _, w in recent))
            # Unheard windows too few yet, or notes too few to make a window: listen on.
            undecided = not new and (hearing.unheard > 0 or (len(notes) and not hearing.windows))
            spans: list[Span] = []
            if song is not None:
                # A window is open: it goes on while the music is new (or too sparse to
                # judge) and ends when the song loops or falls silent. Past observe_seconds
                # the song is listened to without recording, up to twice that, so that its
                # rest is known and not taken for a new song later.
                quiet = 0 if len(notes) else quiet + 1
                # New music after the song was heard looping is another song starting.
                switched = new and heard >= SWITCH_AFTER_HEARD
                heard = 0 if new or len(notes) < SPARSE_NOTES else heard + 1
                fresh += 1 if new else 0
                listened += 1
                looped = heard >= LOOPED_CHUNKS_END and listened >= MIN_WINDOW_CHUNKS
                ends = looped or switched or quiet >= QUIET_CHUNKS_END
                if not ends and listened < 2 * longest:
                    self.songs.learn(windows, song)
                    if recorded < longest:
                        recorded += 1
                        spans.append(Span(Phase.OBSERVE, self._chunk, writes))
                    else:
                        spans.append(Span(Phase.SETTLE, self._chunk, ApuWrites.empty()))
                else:
                    if held is not None:
                        # Too little of it to be a song (a seam between songs, a sound
                        # effect): not recorded; its windows stay heard, so it is not again.
                        self.songs.dismiss(song)
                        yield from (Span(Phase.SETTLE, x.cycles, ApuWrites.empty()) for x in held)
                        held = None
                    song = None
                    yield Span(Phase.SETTLE, self._chunk, ApuWrites.empty())
                    continue
            elif new:
                # New music: a window opens with the quiet chunks kept before it, so its
                # first notes are in (those chunks never follow another window).
                song = self.songs.learn(windows, None)
                self._playing = song
                lead_in = [*pending, (opening, writes, self._chunk)]
                found_at = self.cycle - sum(cycles for _, _, cycles in lead_in)
                quiet = 0 if len(notes) else 1
                heard = 0
                first_opening, first_writes, first_cycles = lead_in[0]
                spans.append(
                    Span(
                        Phase.OBSERVE, first_cycles, ApuWrites.concat([first_opening, first_writes])
                    )
                )
                spans += [Span(Phase.OBSERVE, cycles, w) for _, w, cycles in lead_in[1:]]
                # Chunks listened to so far (the settle time is none).
                recorded = listened = len(lead_in) - (lead_in[0] is settled)
                fresh = 1
                pending = []
                held = []
            else:
                if hearing.song is not None:
                    self.songs.learn(windows, hearing.song)  # more of a known song
                pending.append((opening, writes, self._chunk))
                while len(pending) > LEAD_IN_CHUNKS:
                    yield Span(Phase.SETTLE, pending.pop(0)[2], ApuWrites.empty())
                continue
            if held is None:
                yield from spans
                continue
            held += spans
            lasting = fresh >= min(MIN_SONG_CHUNKS, longest)
            if lasting or len(self.songs.songs[song].windows) >= MIN_SONG_WINDOWS:
                # Enough of it heard: a song. Its window is recorded from the start.
                self.stats.new_songs += 1
                self.stats.song_found_at.append(found_at)
                self.stats.song_found_by.append(" / ".join(self._path) or "boot")
                yield from held
                held = None
        for _, _, cycles in pending:
            yield Span(Phase.SETTLE, cycles, ApuWrites.empty())

    def _notes(
        self, previous: tuple[ApuWrites, ApuWrites] | None, opening: ApuWrites, writes: ApuWrites
    ) -> NoteOnsets:
        """The note starts of a chunk, judged with the chunk before as context: what counts
        as a start depends on the notes just before it, and must not depend on where the
        chunks happen to begin (or the same music would hash differently each time)."""
        if previous is None:
            return note_starts(writes, opening)
        before_opening, before = previous
        both = note_starts(ApuWrites.concat([before, writes.shifted(self._chunk)]), before_opening)
        keep = both.cycles >= self._chunk
        return NoteOnsets(
            both.cycles[keep] - self._chunk,
            both.channels[keep],
            both.pitches[keep],
            both.starts[keep],
        )

    # -- the archive ---------------------------------------------------------------------------
    def _cell_key(self) -> tuple[int, int]:
        return (self._playing, screen_signature(self.gb))

    def _saved(self) -> tuple[dict[str, np.ndarray], ApuWrites]:
        return self.gb.save_state(include_rom=False), self._shadow

    def _archive(self, key: tuple[int, int]) -> Cell:
        """A new cell for the current state, evicting the least promising cell at the cap."""
        while self.archive and self._states + 1 > self.max_states:
            victim = min(self.archive.values(), key=lambda c: (c.weight(), c.order))
            del self.archive[victim.key]
            self._states -= len(victim.states)
            self.stats.evicted += len(victim.states)
        cell = Cell(key, [self._saved()], self._order)
        self._order += 1
        self._states += 1
        self.archive[key] = cell
        self.stats.cells += 1
        return cell

    def _add_state(self, cell: Cell) -> None:
        """Keep the current state as another way into ``cell`` (replacing one when full)."""
        if len(cell.states) < STATES_PER_CELL and self._states < self.max_states:
            cell.states.append(self._saved())
            self._states += 1
        else:
            cell.states[int(self.rng.integers(len(cell.states)))] = self._saved()

    def _select(self) -> Cell:
        cells = list(self.archive.values())
        weights = np.array([c.weight() for c in cells])
        return cells[int(self.rng.choice(len(cells), p=weights / weights.sum()))]

    def _pick_macro(self) -> int:
        # Inputs that found something on this ROM are tried more, in proportion to how
        # often they paid off (at most 5 times as often), never to the exclusion of others.
        # Long waits cost as much emulated time as several taps: tried less often.
        weights = 1.0 + 4.0 * np.minimum(1.0, self.macro_found / (1.0 + self.macro_uses))
        weights /= self._macro_cost
        return int(self.rng.choice(len(self.macros), p=weights / weights.sum()))

    # -- the search ----------------------------------------------------------------------------
    def spans(self) -> Iterator[Span]:
        """Boot listening, then branches from selected cells, for as long as it is asked."""
        boot_chunks = int(round(self.settings.boot_seconds / LISTEN_SECONDS))
        if boot_chunks:
            yield from self._listen(boot_chunks)
        self._archive(self._cell_key())
        while True:
            if self._follow_ups:
                cell, start, plan = self._follow_ups.pop(0)
            else:
                cell = self._select()
                start = cell.states[int(self.rng.integers(len(cell.states)))]
                plan = None
            cell.chosen += 1
            self.gb.load_state(start[0])
            self._shadow = start[1]
            self._path = []
            self.stats.branches += 1
            steps = (
                plan if plan is not None else [None] * (1 + int(self.rng.integers(CHAIN_MACROS)))
            )
            for planned in steps:
                index = self._pick_macro() if planned is None else planned
                macro = self.macros[index]
                self.macro_uses[index] += 1
                self._path.append(macro.name)
                self.stats.macros += 1
                songs_before = len(self.songs)
                settled = yield from self._press(macro)
                yield from self._listen(macro.listen_chunks, settled)
                found_song = len(self.songs) > songs_before
                gain = 5 * (len(self.songs) - songs_before)
                key = self._cell_key()
                if key not in self.archive:
                    self._archive(key)
                    gain += 1
                else:
                    self._add_state(self.archive[key])
                if gain:
                    cell.found += gain
                    self.macro_found[index] += gain
                if found_song:
                    done = [self._index[name] for name in self._path]
                    self._plan_follow_ups(cell, start, done)

    def _plan_follow_ups(
        self, cell: Cell, start: tuple[dict[str, np.ndarray], ApuWrites], path: list[int]
    ) -> None:
        """A song was found by ``path`` from ``start``: try it again after each direction
        first (the next item of a sound test or menu), and wait on where it led (a level
        whose time runs out), before any random branch."""
        self._follow_ups.append((cell, self._saved(), [self._longest_wait]))
        if len(path) >= MAX_FOLLOW_UP_MACROS:
            return
        for name in FOLLOW_UP_FIRST:
            plan = [self._index[name], *path]
            self._follow_ups.append((cell, start, plan))


def songs_in(phases: list | tuple) -> int:
    """Songs found in an explored ROM recording: each observe window (a run of OBSERVE marks
    after another phase) is the first hearing of one song."""
    count, previous = 0, None
    for mark in phases:
        if mark.phase is Phase.OBSERVE and previous is not Phase.OBSERVE:
            count += 1
        previous = mark.phase
    return count
