"""The music-seeking explorer: songs told apart, hidden songs found, memory bounded."""

import numpy as np
import pytest

from gbsynth.common.events import CPU_HZ, ApuWrites, Phase, register_snapshot
from gbsynth.emulator.core.machine import GameBoy
from gbsynth.emulator.explore import ExploreSettings, MusicSearch, songs_in
from gbsynth.emulator.sources import RomSession
from gbsynth.music import test_roms
from gbsynth.music.rom import song_rom
from gbsynth.pruner.analysis import NoteOnsets, note_starts
from gbsynth.pruner.songs import NoteStream, SongBook

SEED = 3
TEN_MINUTES = 600


def _onsets(channels, pitches) -> NoteOnsets:
    n = len(channels)
    return NoteOnsets(
        np.arange(n, dtype=np.int64),
        np.asarray(channels, np.uint8),
        np.asarray(pitches, np.int16),
        np.ones(n, bool),
    )


def test_note_windows_run_across_pieces():
    rng = np.random.default_rng(0)
    channels, pitches = rng.integers(0, 4, 60), rng.integers(40, 80, 60)
    whole = NoteStream().feed(_onsets(channels, pitches))
    stream = NoteStream()
    parts = [
        stream.feed(_onsets(channels[a:b], pitches[a:b])) for a, b in ((0, 5), (5, 31), (31, 60))
    ]
    assert np.array_equal(np.concatenate(parts), whole)
    assert len(whole) == 60 - 8 + 1


def test_a_song_is_recognised_from_wherever_it_is_heard():
    rng = np.random.default_rng(1)
    loop, other = (
        list(zip(rng.integers(0, 4, 40).tolist(), rng.integers(40, 80, 40).tolist(), strict=True))
        for _ in range(2)
    )

    def windows(notes):
        return NoteStream().feed(_onsets(*zip(*notes, strict=True)))

    book = SongBook()
    first = book.learn(windows(loop * 2), None)
    later = book.hear(windows((loop * 3)[17:57]))  # another starting point
    assert later.song == first and later.unheard == 0
    stranger = book.hear(windows(other * 2))
    assert stranger.song is None and stranger.unheard == stranger.windows
    assert book.learn(windows(other * 2), None) == 1
    assert book.songs[0].signature == book.songs[0].signature and len(book.signatures()) == 2
    book.dismiss(1)
    assert len(book) == 1 and book.hear(windows(other)).unheard == 0  # heard, but no song


def _song_windows(song) -> set[int]:
    """What the song sounds like alone: its note windows over two passes."""
    gb = GameBoy(song_rom([song], title="truth"))
    gb.start_recording()
    gb.run_cycles(int(2 * song.seconds * CPU_HZ) + CPU_HZ)
    return {int(h) for h in NoteStream().feed(note_starts(gb.take_writes()))}


def _explore_until_all_found(rom: test_roms.HiddenMusicRom, seed: int) -> RomSession:
    session = RomSession(rom.rom, rom.name, seed=seed, explore=ExploreSettings())
    for _ in session.pieces(TEN_MINUTES, piece_seconds=10.0):
        if len(session.songs) >= len(rom.songs):
            break
    return session


@pytest.mark.parametrize(
    "build", [test_roms.sound_test_rom, test_roms.game_rom, test_roms.combo_rom]
)
def test_exploration_finds_every_hidden_song_within_ten_minutes(build):
    rom = build()
    session = _explore_until_all_found(rom, SEED)
    found = session.songs.songs
    assert len(found) == len(rom.songs), f"found {len(found)} of {len(rom.songs)} songs"
    assert session.cycle <= TEN_MINUTES * CPU_HZ
    # Each song of the ROM is one found song: most of what was heard of it is that song.
    matched = set()
    for truth in map(_song_windows, rom.songs):
        shares = [len(s.windows & truth) / len(s.windows) for s in found]
        best = int(np.argmax(shares))
        assert shares[best] >= 0.5 and best not in matched
        matched.add(best)


def test_game_rom_songs_hide_behind_buttons():
    rom = test_roms.combo_rom()
    gb = GameBoy(rom.rom)
    gb.start_recording()
    gb.run_cycles(20 * CPU_HZ)
    assert len(note_starts(gb.take_writes())) == 0  # nothing plays without the combination
    gb.set_buttons(0x06)  # Select + B
    gb.run_cycles(test_roms.COMBO_FRAMES * 70_224 + 5 * CPU_HZ)
    assert len(note_starts(gb.take_writes())) > 10


def test_the_same_seed_finds_the_same_songs():
    rom = test_roms.sound_test_rom()
    a = RomSession(rom.rom, rom.name, seed=SEED, explore=ExploreSettings()).record(200)
    b_session = RomSession(rom.rom, rom.name, seed=SEED, explore=ExploreSettings())
    b = b_session.record(200)
    assert a == b and songs_in(a.phases) == len(b_session.songs) >= 2
    c = RomSession(rom.rom, rom.name, seed=SEED + 1, explore=ExploreSettings()).record(200)
    assert c.writes != a.writes


def test_each_recorded_window_is_a_new_song_opened_with_a_snapshot():
    rom = test_roms.game_rom()
    session = RomSession(rom.rom, rom.name, seed=SEED, explore=ExploreSettings())
    recording = session.record(300)
    spans = recording.observing_spans()
    assert len(spans) == songs_in(recording.phases) == len(session.songs) >= 3
    for start, end in spans:
        inside = (recording.writes.cycles >= start) & (recording.writes.cycles < end)
        assert inside.any() and recording.writes.registers[inside][0] == 0xFF26  # snapshot first
    outside = np.ones(len(recording.writes), bool)
    for start, end in spans:
        outside &= (recording.writes.cycles < start) | (recording.writes.cycles >= end)
    assert not outside.any()  # nothing recorded while pressing or settling


def test_music_an_input_starts_is_recorded_from_its_first_notes():
    """A sound test's song starts with the A press, in the settle time after it: a window
    that opens right after the press records that time too (a song's intro plays once)."""
    rom = test_roms.sound_test_rom()
    recording = RomSession(rom.rom, rom.name, seed=SEED, explore=ExploreSettings()).record(80)
    marks = recording.phases
    opened = [
        mark.cycle
        for before, mark in zip(marks, marks[1:], strict=False)
        if before.phase is Phase.PRESS and mark.phase is Phase.OBSERVE
    ]
    assert opened
    settle = int(ExploreSettings().settle_seconds * CPU_HZ)
    for start in opened:
        context = register_snapshot(recording.writes, start)
        first = recording.writes.between(start + 1, start + settle).shifted(-start)
        assert len(note_starts(first, context)) > 0


def test_songs_known_before_are_not_recorded_again():
    rom = test_roms.game_rom()
    book = SongBook()
    first = RomSession(rom.rom, rom.name, seed=SEED, explore=ExploreSettings(), songs=book)
    first.record(120)
    known = len(book)
    assert known >= 2
    again = RomSession(rom.rom, rom.name, seed=SEED + 7, explore=ExploreSettings(), songs=book)
    recording = again.record(120)
    # The title song plays at power-on again, known: not recorded a second time.
    assert songs_in(recording.phases) == len(book) - known
    assert recording.observing_spans() == [] or recording.observing_spans()[0][0] > 0


def test_save_states_are_capped_and_leave_the_rom_out():
    rom = test_roms.sound_test_rom()
    gb = GameBoy(rom.rom)
    state = gb.save_state(include_rom=False)
    assert state["mem"].nbytes < 0x10000 + 0x100
    gb.run_cycles(CPU_HZ)
    gb.load_state(state)
    assert gb.cycle == 0
    search = MusicSearch(GameBoy(rom.rom), ExploreSettings(), seed=SEED, max_states=3)
    spans = search.spans()
    while search.cycle < 300 * CPU_HZ:
        next(spans)
    assert sum(len(c.states) for c in search.archive.values()) <= 3
    assert search.stats.cells > len(search.archive) or search.stats.evicted > 0


def test_snapshot_context_finds_legato_notes():
    """A note triggered before a chunk and bent inside it is heard with the snapshot."""
    before = ApuWrites.from_arrays(
        [0, 0, 0, 0], [0xFF26, 0xFF12, 0xFF13, 0xFF14], [0x80, 0xF0, 0x00, 0x86]
    )
    writes = ApuWrites.from_arrays([70_224 * 10], [0xFF13], [0x80])  # a few semitones up
    assert len(note_starts(writes)) == 0
    assert len(note_starts(writes, register_snapshot(before, 1))) == 1
