"""Test ROMs for the explorer: games whose music hides behind buttons, built with our own
assembler and sound driver, so exploration tests do not depend on luck or on other people's
files.

Each ROM reads the joypad (FF00) once a frame in its main loop and plays short songs
(the first bars of composed songs, so each loops within seconds) through ``DriverPlay``
from the VBlank handler:

- ``sound_test_rom``: silent at power-on; Left/Right select one of 6 songs, A plays the
  selected one, B stops the music.
- ``game_rom``: a title (song 1); Start opens a menu (song 2); A there starts a level
  (song 3); after ``LEVEL_SECONDS`` in the level, a game-over jingle (song 4, stopped after
  ``JINGLE_SECONDS``); Start then returns to the title.
- ``combo_rom``: silent until Select and B are held together for ``COMBO_FRAMES`` frames;
  then its one song plays.

``HiddenMusicRom.songs`` lists the songs each ROM holds, so a test can tell which ones were found.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gbsynth.music import driver as D
from gbsynth.music.asm import assemble
from gbsynth.music.composer import compose
from gbsynth.music.rom import (
    CART_ROM_ONLY,
    PLAYER_START,
    PLAYER_VBLANK,
    RomBuildError,
    finish_rom,
)
from gbsynth.music.song import Song, module_source

SONG_BARS = 4
"""Bars kept of each composed song: a loop of a few seconds."""
LEVEL_SECONDS = 30
JINGLE_SECONDS = 6
COMBO_FRAMES = 30
SOUND_TEST_SONGS = 6
FRAMES_PER_SECOND = D.FRAMES_PER_SECOND


@dataclass(frozen=True)
class HiddenMusicRom:
    name: str
    rom: bytes
    songs: tuple[Song, ...]
    """Every song the ROM can play, in its song table's order."""


def excerpt(song: Song, bars: int) -> Song:
    """The first ``bars`` bars of ``song``, looping as a whole."""
    if not 0 < bars <= song.bars:
        raise RomBuildError(f"cannot keep {bars} bars of a {song.bars}-bar song")
    rows = bars * song.bar_rows
    channels = [
        [replace(e, length=min(e.length, rows - e.start)) for e in events if e.start < rows]
        for events in song.channels
    ]
    return replace(song, bars=bars, loop_bar=0, channels=channels, sections=[])


def short_songs(count: int, seed: int) -> tuple[Song, ...]:
    return tuple(excerpt(compose(seed, index), SONG_BARS) for index in range(count))


# The frame loop every test ROM shares: VBlank plays the driver, the main loop reads the
# joypad after each VBlank and calls the ROM's GameFrame with hNew = buttons just pressed.
SHELL = (
    r"""
rP1     equ $FF00
rIF     equ $FF0F
rIE     equ $FFFF
wPlaying equ $DF00              ; the VBlank handler plays while this is not 0
hCur    equ $FF80               ; buttons held (A B Select Start Right Left Up Down = bits 0-7)
hPrev   equ $FF81
hNew    equ $FF82               ; buttons pressed this frame
hState  equ $FF83
hSel    equ $FF84
hTimerLo equ $FF85
hTimerHi equ $FF86
hHeld   equ $FF87

"""
    + PLAYER_START
    + r"""
        ld hl, hCur
        ld b, 8
.clear:
        ld [hl+], a
        dec b
        jr nz, .clear
        call GameInit
        di
        ld a, $01               ; VBlank only
        ldh [rIE], a
        xor a
        ldh [rIF], a
        ei
.frame:
        halt
        call ReadJoypad
        call GameFrame
        jr .frame

"""
    + PLAYER_VBLANK
    + r"""

; ReadJoypad: hCur, hPrev, hNew from P1 (a pressed button reads 0).
ReadJoypad:
        ld a, $20               ; directions
        ldh [rP1], a
        ldh a, [rP1]
        ldh a, [rP1]
        cpl
        and $0F
        swap a
        ld b, a
        ld a, $10               ; A, B, Select, Start
        ldh [rP1], a
        ldh a, [rP1]
        ldh a, [rP1]
        ldh a, [rP1]
        cpl
        and $0F
        or b
        ld b, a
        ld a, $30
        ldh [rP1], a
        ldh a, [hCur]
        ldh [hPrev], a
        cpl
        and b
        ldh [hNew], a
        ld a, b
        ldh [hCur], a
        ret

; PlaySong: A = song number. StopMusic: silence (APU off).
PlaySong:
        di
        call DriverInit
        ld a, 1
        ld [wPlaying], a
        reti

StopMusic:
        di
        xor a
        ld [wPlaying], a
        ldh [rNR52], a
        reti

; CountFrame: hTimer += 1; Z set when it reaches DE.
CountFrame:
        ldh a, [hTimerLo]
        add 1
        ldh [hTimerLo], a
        ldh a, [hTimerHi]
        adc 0
        ldh [hTimerHi], a
        cp d
        ret nz
        ldh a, [hTimerLo]
        cp e
        ret

ResetTimer:
        xor a
        ldh [hTimerLo], a
        ldh [hTimerHi], a
        ret
"""
)

SOUND_TEST = r"""
GameInit:
        ret

GameFrame:
        ldh a, [hNew]
        bit 4, a                ; Right: next song
        jr z, .left
        ldh a, [hSel]
        inc a
        cp SONGS
        jr c, .storeNext
        xor a
.storeNext:
        ldh [hSel], a
.left:
        ldh a, [hNew]
        bit 5, a                ; Left: previous song
        jr z, .a
        ldh a, [hSel]
        and a
        jr nz, .previous
        ld a, SONGS
.previous:
        dec a
        ldh [hSel], a
.a:
        ldh a, [hNew]
        bit 0, a                ; A: play the selected song
        jr z, .b
        ldh a, [hSel]
        call PlaySong
.b:
        ldh a, [hNew]
        bit 1, a                ; B: stop
        ret z
        jp StopMusic
"""

GAME = r"""
GameInit:
        xor a                   ; the title and its song
        ldh [hState], a
        jp PlaySong

GameFrame:
        ldh a, [hState]
        and a
        jr z, Title
        dec a
        jr z, Menu
        dec a
        jr z, Level
        jp GameOver

Title:
        ldh a, [hNew]
        bit 3, a                ; Start: the menu
        ret z
        ld a, 1
        ldh [hState], a
        jp PlaySong

Menu:
        ldh a, [hNew]
        bit 0, a                ; A: the level
        ret z
        ld a, 2
        ldh [hState], a
        call ResetTimer
        ld a, 2
        jp PlaySong

Level:
        ld de, LEVEL_FRAMES     ; buttons do nothing; time runs out
        call CountFrame
        ret nz
        ld a, 3
        ldh [hState], a
        call ResetTimer
        ld a, 3
        jp PlaySong

GameOver:
        ldh a, [hNew]
        bit 3, a                ; Start: back to the title
        jr z, .jingle
        xor a
        ldh [hState], a
        jp PlaySong
.jingle:
        ld de, JINGLE_FRAMES
        call CountFrame
        ret nz
        jp StopMusic
"""

COMBO = r"""
GameInit:
        ret

GameFrame:
        ldh a, [hState]
        and a
        ret nz                  ; playing already
        ldh a, [hCur]
        and $06                 ; B and Select, and nothing of them missing
        cp $06
        jr z, .held
        xor a
        ldh [hHeld], a
        ret
.held:
        ldh a, [hHeld]
        inc a
        ldh [hHeld], a
        cp COMBO_FRAMES
        ret c
        ld a, 1
        ldh [hState], a
        xor a
        jp PlaySong
"""


def _build(
    name: str, game: str, songs: tuple[Song, ...], symbols: dict[str, int]
) -> HiddenMusicRom:
    program = assemble(
        SHELL + game + module_source(list(songs)),
        name=name,
        symbols={"DRIVER_ORG": 0x0400, "DRIVER_RAM": D.RAM_START, **symbols},
    )
    if program.end > 0x8000:
        raise RomBuildError(f"{name}: the program ends at 0x{program.end:04X}, past 32 KiB")
    image = bytearray(program.image(0, program.end, fill=0x00))
    return HiddenMusicRom(name, finish_rom(image, title=name, cartridge_type=CART_ROM_ONLY), songs)


def sound_test_rom(seed: int = 1) -> HiddenMusicRom:
    songs = short_songs(SOUND_TEST_SONGS, seed)
    return _build("SOUND TEST", SOUND_TEST, songs, {"SONGS": len(songs)})


def game_rom(seed: int = 2) -> HiddenMusicRom:
    frames = {
        "LEVEL_FRAMES": int(round(LEVEL_SECONDS * FRAMES_PER_SECOND)),
        "JINGLE_FRAMES": int(round(JINGLE_SECONDS * FRAMES_PER_SECOND)),
    }
    return _build("GAME", GAME, short_songs(4, seed), frames)


def combo_rom(seed: int = 3) -> HiddenMusicRom:
    return _build("COMBO", COMBO, short_songs(1, seed), {"COMBO_FRAMES": COMBO_FRAMES})


def hidden_music_roms() -> list[HiddenMusicRom]:
    return [sound_test_rom(), game_rom(), combo_rom()]
