"""Game Boy files: the cartridge header (logo, title, checksums), GBS files and ROMs.

A ROM boots only if its header carries the Nintendo logo and a correct header
checksum (the boot ROM checks both); emulators and tools also look at the title,
cartridge type, sizes and the global checksum. ``finish_rom`` writes all of them.

``gbs_file`` wraps a driver ``Module`` in a GBS header; ``song_rom`` puts the same
module in a ROM whose start-up code calls ``DriverInit`` and whose VBlank handler
calls ``DriverPlay``, idling in HALT in between.
"""

from __future__ import annotations

import struct

from gbsynth.emulator.core.cartridge.header import HEADER_END, write_header
from gbsynth.music.asm import assemble
from gbsynth.music.screen import SCREEN_SOURCE, screen_data
from gbsynth.music.song import Module, Song, assemble_module

HEADER_START = 0x100
CART_ROM_ONLY = 0x00
CART_MBC5 = 0x19
GBS_HEADER_SIZE = 0x70
GBS_STACK = 0xFFFE


class RomBuildError(ValueError):
    """The program does not fit or the header fields are invalid."""


def finish_rom(
    image: bytearray, *, title: str, cartridge_type: int, ram_size_code: int = 0
) -> bytes:
    """Fill in the header of ``image`` (logo, title, type, sizes, checksums); pads to a power
    of two of 32 KiB or more."""
    size = max(0x8000, 1 << (len(image) - 1).bit_length())
    if size > 0x800000:
        raise RomBuildError(f"{size} bytes is more than the 8 MiB a cartridge header can declare")
    image = image + bytes(size - len(image))
    if image[HEADER_START + 4 : HEADER_END].strip(b"\x00"):
        raise RomBuildError("the program overlaps the cartridge header (0x104-0x14F)")
    write_header(
        image, title=title.upper(), cartridge_type=cartridge_type, ram_size_code=ram_size_code
    )
    return bytes(image)


def _gbs_text(text: str) -> bytes:
    raw = "".join(ch if 0x20 <= ord(ch) < 0x7F else "?" for ch in text).encode("ascii")
    return raw[:31].ljust(32, b"\x00")


def gbs_file(module: Module, *, title: str, author: str = "gbsynth", copyright: str = "") -> bytes:
    """A GBS (version 1) file of the module: VBlank timing, one subsong per song."""
    if module.origin < 0x400:
        raise RomBuildError(f"GBS load address 0x{module.origin:04X} is below 0x0400")
    code = module.code
    if module.origin + len(code) > 0x8000:
        end = module.origin + len(code)
        raise RomBuildError(f"driver and songs end at 0x{end:04X}, past 0x7FFF")
    header = struct.pack(
        "<3sBBBHHHHBB",
        b"GBS",
        1,
        module.song_count,
        1,
        module.origin,
        module.init,
        module.play,
        GBS_STACK,
        0x00,  # TMA
        0x00,  # TAC: timer off, play is called at VBlank
    )
    return header + _gbs_text(title) + _gbs_text(author) + _gbs_text(copyright) + code


# The start of every ROM that plays the driver from VBlank (song ROMs here, the test ROMs
# of music/test_roms.py): the vectors, then Main with the stack set and playing off. The
# source around it defines wPlaying, DriverPlay (the driver) and Main's continuation.
PLAYER_START = r"""
        section "vblank", $0040
        jp VBlank

        section "entry", $0100
        nop
        jp Main

        section "main", $0150
Main:
        di
        ld sp, $FFFE
        xor a
        ld [wPlaying], a
"""

# The VBlank handler that goes with PLAYER_START: the driver plays once wPlaying is set.
PLAYER_VBLANK = r"""
VBlank:
        push af
        push bc
        push de
        push hl
        ld a, [wPlaying]
        and a
        call nz, DriverPlay
        pop hl
        pop de
        pop bc
        pop af
        reti
"""

# The end of Main in a ROM that does everything from interrupt handlers: enable the
# interrupts in A (the IE mask), drop any pending one, and halt between them.
IDLE_WITH_INTERRUPTS = r"""
        ldh [rIE], a
        xor a
        ldh [rIF], a
        ei
.idle:
        halt
        jr .idle
"""

# The start-up code of a song ROM: a title screen, then the driver from the VBlank
# handler (every 70,224 cycles) and the CPU halted in between.
ROM_SHELL = (
    r"""
rIF     equ $FF0F
rIE     equ $FFFF
wPlaying equ $DF00              ; the VBlank handler plays once the driver is set up

"""
    + PLAYER_START
    + r"""
        call ScreenSetup
        ld a, SONG_NUMBER
        call DriverInit
        ld a, 1
        ld [wPlaying], a
        ld a, $01               ; VBlank only
"""
    + IDLE_WITH_INTERRUPTS
    + r"""

"""
    + PLAYER_VBLANK
)


def song_screen(song: Song) -> list[str]:
    return [
        song.title,
        "",
        f"{song.key_name} {song.mode}",
        f"{song.bpm:.0f} BPM {song.beats_per_bar}/4",
        "",
        "",
        "GBSYNTH",
    ]


def song_rom(songs: list[Song], *, title: str, song_number: int = 0, origin: int = 0x0400) -> bytes:
    """A 32 KiB ROM that shows the song's title and plays ``songs[song_number]`` forever."""
    from gbsynth.music import driver as D
    from gbsynth.music.song import module_source

    if not 0 <= song_number < len(songs):
        raise RomBuildError(f"song {song_number} is outside 0..{len(songs) - 1}")
    screen = SCREEN_SOURCE + screen_data(song_screen(songs[song_number]))
    program = assemble(
        ROM_SHELL + screen + module_source(songs),
        name="song ROM",
        symbols={"DRIVER_ORG": origin, "DRIVER_RAM": D.RAM_START, "SONG_NUMBER": song_number},
    )
    if program.end > 0x8000:
        raise RomBuildError(f"the songs end at 0x{program.end:04X}, past a 32 KiB ROM")
    image = bytearray(program.image(0, program.end, fill=0x00))
    return finish_rom(image, title=title, cartridge_type=CART_ROM_ONLY)


def song_files(song: Song, origin: int = 0x0400) -> tuple[bytes, bytes]:
    """The song as a GBS file and as a ROM."""
    module = assemble_module([song], origin)
    gbs = gbs_file(module, title=song.title, copyright=f"seed {song.seed}")
    return gbs, song_rom([song], title=song.title, origin=origin)
