"""GBS (Game Boy Sound System) rips: parse the header and build a player ROM.

A GBS file is a game's music code and data with a 0x70-byte header giving the
load, init and play addresses, the stack pointer, the timer set-up and the
number of subsongs. Like real GBS players (gbsplay among them), we place the
data at its load address in a ROM image, route the RST vectors to
``load + 8*n``, make the VBlank (or timer) interrupt vector call *play*, and put
a small driver at 0x150 that sets up the stack, timer and bank, calls *init*
with the subsong in A (interrupts still off, as the GBS spec says *play* starts
after *init* is done) and then idles in HALT. The emulator then runs that image
like any cartridge (MBC5-style bank switching by writes to 0x2000-0x3FFF).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gbsynth.emulator.core.cartridge.header import BANK_SIZE, write_header

GBS_MAGIC = b"GBS"
GBS_HEADER_SIZE = 0x70
MAX_ROM_SIZE = 8 * 1024 * 1024  # 512 banks of MBC5
IDLE_ADDRESS = 0x150
"""Where the player idles in HALT between play calls."""
START_ADDRESS = IDLE_ADDRESS + 3
"""Where the image boots into: set-up, init, then the idle loop."""

# Timer input clocks (Hz) selected by TAC bits 0-1.
TIMER_CLOCKS_HZ = (4096, 262144, 65536, 16384)
VBLANK_HZ = 4_194_304 / 70_224


class GbsError(ValueError):
    """A file is not a playable GBS rip."""


@dataclass(frozen=True)
class GbsHeader:
    version: int
    song_count: int
    first_song: int  # counting from 1
    load_address: int
    init_address: int
    play_address: int
    stack_pointer: int
    timer_modulo: int
    timer_control: int
    title: str
    author: str
    copyright: str

    @property
    def uses_timer(self) -> bool:
        """Play is called from the timer interrupt rather than VBlank."""
        return bool(self.timer_control & 0x04)

    @property
    def interrupt_enable(self) -> int:
        """IE value while playing: the timer or the VBlank interrupt calls play."""
        return 0x04 if self.uses_timer else 0x01

    @property
    def play_rate_hz(self) -> float:
        """How often play is called: 59.7 Hz VBlank, or the timer's overflow rate."""
        if not self.uses_timer:
            return VBLANK_HZ
        clock = TIMER_CLOCKS_HZ[self.timer_control & 0x03]
        if self.timer_control & 0x80:  # CGB double speed
            clock *= 2
        return clock / (256 - self.timer_modulo)


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


def parse_gbs_header(data: bytes) -> GbsHeader:
    """Read and check a GBS header; raises ``GbsError`` with the reason."""
    if len(data) < GBS_HEADER_SIZE or data[:3] != GBS_MAGIC:
        raise GbsError("not a GBS file (no 'GBS' signature)")
    if len(data) == GBS_HEADER_SIZE:
        raise GbsError("GBS file has a header but no code")
    version, songs, first = data[3], data[4], data[5]
    load, init, play, stack = struct.unpack_from("<HHHH", data, 6)
    if version != 1:
        raise GbsError(f"GBS version {version} is not supported (only version 1 exists)")
    if songs < 1:
        raise GbsError("GBS file declares no subsongs")
    if not 1 <= first <= songs:
        raise GbsError(f"first subsong {first} is outside 1..{songs}")
    if not 0x0400 <= load < 0x8000:
        raise GbsError(f"load address 0x{load:04X} is outside 0x0400-0x7FFF")
    for name, addr in (("init", init), ("play", play)):
        if not load <= addr < 0x8000:
            raise GbsError(f"{name} address 0x{addr:04X} is outside the loaded code")
    if load + len(data) - GBS_HEADER_SIZE > MAX_ROM_SIZE:
        raise GbsError("GBS code is larger than 8 MiB")
    return GbsHeader(
        version=version,
        song_count=songs,
        first_song=first,
        load_address=load,
        init_address=init,
        play_address=play,
        stack_pointer=stack,
        timer_modulo=data[0x0E],
        timer_control=data[0x0F],
        title=_text(data[0x10:0x30]),
        author=_text(data[0x30:0x50]),
        copyright=_text(data[0x50:0x70]),
    )


def build_player_rom(data: bytes, subsong: int) -> tuple[bytes, GbsHeader]:
    """A cartridge image (MBC5 + RAM) that plays ``subsong`` (counting from 1).

    Returns the image and the parsed header.
    """
    header = parse_gbs_header(data)
    if not 1 <= subsong <= header.song_count:
        raise GbsError(f"subsong {subsong} is outside 1..{header.song_count}")
    code = data[GBS_HEADER_SIZE:]
    end = header.load_address + len(code)
    size = max(2 * BANK_SIZE, (end + BANK_SIZE - 1) // BANK_SIZE * BANK_SIZE)
    # MBC5 decodes power-of-two bank counts; pad so every bank number wraps as on hardware.
    size = 1 << (size - 1).bit_length()
    if size > 0x800000:
        raise GbsError(f"{len(code)} bytes of code do not fit in an 8 MiB cartridge")
    rom = bytearray(size)
    rom[header.load_address : end] = code

    load = header.load_address
    for n in range(8):  # RST n -> load + 8n
        struct.pack_into("<BH", rom, 8 * n, 0xC3, load + 8 * n)
    reti = 0xD9
    for vector in (0x40, 0x48, 0x50, 0x58, 0x60):
        rom[vector] = reti
    play_vector = 0x50 if header.uses_timer else 0x40
    struct.pack_into("<BHB", rom, play_vector, 0xCD, header.play_address, reti)

    # The driver: an idle loop first (players that call init themselves jump
    # there afterwards), then the start-up code the cartridge boots into.
    idle = bytes([0x76, 0x18, 0xFD])  # idle: HALT; JR idle
    start = bytes(
        [
            0xF3,  # DI
            0x31, header.stack_pointer & 0xFF, header.stack_pointer >> 8,  # LD SP, stack
            0x3E, header.timer_modulo, 0xE0, 0x06,  # LD A, tma; LDH (TMA), A
            0x3E, header.timer_control, 0xE0, 0x07,  # LD A, tac; LDH (TAC), A
            0x3E, 0x01, 0xEA, 0x00, 0x20,  # LD A, 1; LD (0x2000), A  (bank 1 at 0x4000)
            0x3E, subsong - 1,  # LD A, subsong (GBS numbers them from 0)
            0xCD, header.init_address & 0xFF, header.init_address >> 8,  # CALL init
            0x3E, header.interrupt_enable, 0xE0, 0xFF,  # LD A, ie; LDH (IE), A
            0xAF, 0xE0, 0x0F,  # XOR A; LDH (IF), A  (no stale request fires play early)
            0xFB,  # EI
            0xC3, IDLE_ADDRESS & 0xFF, IDLE_ADDRESS >> 8,  # JP idle
        ]
    )  # fmt: skip
    driver = idle + start
    driver_end = IDLE_ADDRESS + len(driver)
    if load < driver_end:
        raise GbsError(
            f"load address 0x{load:04X} overlaps the player driver (ends 0x{driver_end:04X})"
        )
    rom[IDLE_ADDRESS:driver_end] = driver
    struct.pack_into("<BBH", rom, 0x100, 0x00, 0xC3, START_ADDRESS)  # NOP; JP start

    # MBC5 + RAM (type 0x1A, 8 KiB): GBS drivers may use 0xA000-0xBFFF.
    write_header(rom, title=header.title, cartridge_type=0x1A, ram_size_code=0x02)
    return bytes(rom), header
