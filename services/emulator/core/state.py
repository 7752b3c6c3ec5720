"""The machine state: one int64 array of named scalar slots and one uint8 memory array.

Every hardware block is a set of numba functions over these arrays, so the run
loop can pass them around without Python objects, and saving the machine is
copying arrays.

``mem`` (uint8) holds, in order:

* ``[0x0000, 0x10000)``: the backing store of the address space as the CPU sees
  it where it is plain memory (VRAM, WRAM, OAM, I/O register bytes, HRAM, IE).
  The ROM and cartridge-RAM windows here are unused: reads go through pages.
* ``[ROM_BASE, ROM_BASE + rom size)``: the whole cartridge ROM.
* ``[st[CRAM_BASE], ...)``: cartridge RAM (MBC2's 512 nibbles included).

Reads and writes go through a page table of 16 pages of 4 KiB (``RPAGE``,
``WPAGE``): a page slot holds the offset to add to an address to find its byte
in ``mem``, or -1 when the page needs the slow path (banking registers, I/O,
access blocked by the PPU or by OAM DMA). Bank switches rewrite page slots, so
the common case costs one load and one compare.
"""

from __future__ import annotations

import hashlib
from enum import IntEnum
from pathlib import Path

import numpy as np

from gbsynth.common.jit import drop_stale_jit_cache

ROM_BASE = 0x10000
"""Offset of the cartridge ROM inside ``mem``."""

NEVER = 1 << 62
"""A cycle that never comes (no event scheduled)."""

_names: list[str] = []


def _slot(name: str) -> int:
    _names.append(name)
    return len(_names) - 1


# --- CPU (the first eight are the 8-bit registers by their opcode operand index,
# with F in the (HL) slot 6: B C D E H L F A) -------------------------------------
R_B = _slot("B")
R_C = _slot("C")
R_D = _slot("D")
R_E = _slot("E")
R_H = _slot("H")
R_L = _slot("L")
R_F = _slot("F")
R_A = _slot("A")
SP = _slot("SP")
PC = _slot("PC")
IME = _slot("IME")
EI_PENDING = _slot("EI_PENDING")
"""EI was the previous instruction: IME turns on after the next instruction starts."""
HALTED = _slot("HALTED")
STOPPED = _slot("STOPPED")
LOCKED = _slot("LOCKED")
"""An illegal opcode froze the CPU (as on hardware: only a reset helps)."""
HALT_BUG = _slot("HALT_BUG")
"""The next opcode fetch does not advance PC (HALT with IME=0 and an interrupt pending)."""
NOW = _slot("NOW")
"""T-cycles since power-on (the machine's clock)."""

# --- run control -------------------------------------------------------------------
NEXT_EVENT = _slot("NEXT_EVENT")
"""Earliest cycle at which a lazily-synced block may change IF or the run must stop."""
END_CYCLE = _slot("END_CYCLE")
EXIT_REQUEST = _slot("EXIT_REQUEST")
"""Set by a write that needs the run loop to return (a buffer is almost full)."""
BREAK_ON_LD_B_B = _slot("BREAK_ON_LD_B_B")
"""1: stop the run after an ``LD B,B`` (mooneye's debug breakpoint)."""
SENTINEL_PC = _slot("SENTINEL_PC")
"""-1 or an address: stop when a RET/RETI jumps there (a called subroutine returned)."""
LAST_IO_WRITE = _slot("LAST_IO_WRITE")
"""Cycle of the last write to an I/O register (FF00-FF7F, FFFF)."""
WATCHDOG_SPAN = _slot("WATCHDOG_SPAN")
"""A run with no I/O write for this many cycles is a hang (0: never)."""
IDLE_SKIP = _slot("IDLE_SKIP")
"""1: a halted CPU jumps straight to the next event; 0: it steps M-cycle by M-cycle (tests)."""

# --- memory map ----------------------------------------------------------------------
RPAGE = _slot("RPAGE")
for _i in range(1, 16):
    _slot(f"RPAGE{_i}")
WPAGE = _slot("WPAGE")
for _i in range(1, 16):
    _slot(f"WPAGE{_i}")
ROM_SIZE = _slot("ROM_SIZE")
CRAM_BASE = _slot("CRAM_BASE")
CRAM_SIZE = _slot("CRAM_SIZE")

# --- cartridge (MBC) -------------------------------------------------------------------
MBC_KIND = _slot("MBC_KIND")
MBC_RAM_ENABLED = _slot("MBC_RAM_ENABLED")
MBC_ROM_BANK = _slot("MBC_ROM_BANK")
"""The ROM bank register as written (MBC1: low 5 bits; MBC5: 9 bits)."""
MBC_BANK2 = _slot("MBC_BANK2")
"""MBC1 upper 2-bit register / MBC3 and MBC5 RAM bank or RTC register select."""
MBC_MODE = _slot("MBC_MODE")
"""MBC1 banking mode (0: simple, 1: advanced)."""
MBC_HAS_RTC = _slot("MBC_HAS_RTC")
ROM0_BANK = _slot("ROM0_BANK")
"""Bank mapped at 0000-3FFF (MBC1 mode 1 may map bank 0x20/0x40/0x60 there)."""
ROMX_BANK = _slot("ROMX_BANK")
RAM_OFFSET = _slot("RAM_OFFSET")
"""Offset of the mapped 8 KiB RAM bank in cartridge RAM, or -1 (nothing readable)."""
RTC_BASE_SECONDS = _slot("RTC_BASE_SECONDS")
"""MBC3 clock: its seconds counter is this plus the emulated seconds since power-on."""
RTC_HALT_SECONDS = _slot("RTC_HALT_SECONDS")
"""-1 while the clock runs; the frozen seconds count while its halt bit is set."""
RTC_LATCH_STATE = _slot("RTC_LATCH_STATE")
RTC_LATCHED = _slot("RTC_LATCHED")
for _i in range(1, 5):
    _slot(f"RTC_LATCHED{_i}")

# --- timer --------------------------------------------------------------------------------
DIV_BASE = _slot("DIV_BASE")
"""The 16-bit system counter is ``(now - DIV_BASE) & 0xFFFF``; a DIV write sets DIV_BASE = now."""
TIMA = _slot("TIMA")
TMA = _slot("TMA")
TAC = _slot("TAC")
TIMER_SYNCED = _slot("TIMER_SYNCED")
"""Cycle up to which TIMA has been brought up to date."""
TIMA_OVERFLOW = _slot("TIMA_OVERFLOW")
"""Cycle at which TIMA overflowed (reads 0; TMA is loaded 4 cycles later), or -1."""
TIMA_RELOADED = _slot("TIMA_RELOADED")
"""Cycle of the last TMA reload (writes in that M-cycle see the reload), or -1."""
APU_SYNCED = _slot("APU_SYNCED")
"""Cycle up to which the APU frame sequencer has been stepped."""

# --- serial -------------------------------------------------------------------------------
SB = _slot("SB")
SC = _slot("SC")
SERIAL_DONE = _slot("SERIAL_DONE")
"""Cycle at which the running internal-clock transfer completes, or NEVER."""
SERIAL_COUNT = _slot("SERIAL_COUNT")
"""Bytes captured in the serial buffer since it was last drained."""

# --- joypad -------------------------------------------------------------------------------
P1_SELECT = _slot("P1_SELECT")
BUTTONS = _slot("BUTTONS")
"""Pressed buttons, bit set = pressed: A B Select Start Right Left Up Down (bit 0..7)."""

# --- OAM DMA ------------------------------------------------------------------------------
DMA_SOURCE = _slot("DMA_SOURCE")
DMA_START = _slot("DMA_START")
"""Cycle of the M-cycle before the first byte moves; byte i moves at DMA_START + 4 (i + 1)."""
DMA_COPIED = _slot("DMA_COPIED")
"""Bytes of the running DMA already copied (160 = no DMA running)."""
DMA_REG = _slot("DMA_REG")
DMA_ACTIVE = _slot("DMA_ACTIVE")
"""1 from a DMA register write until the M-cycle after the last byte moved."""
DMA_BLOCK_FROM = _slot("DMA_BLOCK_FROM")
"""OAM is blocked for CPU accesses after this cycle until the DMA ends (a restart keeps it)."""

# --- PPU ------------------------------------------------------------------------------------
LCDC = _slot("LCDC")
STAT_ENABLE = _slot("STAT_ENABLE")
"""STAT bits 3-6 (interrupt source enables) as written."""
SCY = _slot("SCY")
SCX = _slot("SCX")
LYC = _slot("LYC")
LCD_BASE = _slot("LCD_BASE")
"""Cycle at which the PPU was at line 0, dot 0 of its first frame (LCD on)."""
PPU_SYNCED = _slot("PPU_SYNCED")
"""Cycle up to which PPU interrupt sources have been evaluated."""
STAT_LINE = _slot("STAT_LINE")
"""Level of the STAT interrupt line at PPU_SYNCED (an IF request on each rising edge)."""
LYC_LATCH = _slot("LYC_LATCH")
"""The LY=LYC flag frozen when the LCD was switched off (the comparison clock stops)."""
SPRITE_TABLE_VALID = _slot("SPRITE_TABLE_VALID")
"""0 after a change to OAM, LCDC or SCX: the sprite tables below are rebuilt when next needed."""
SPRITE_DOTS = _slot("SPRITE_DOTS")
"""144 slots: dots the sprites on each visible line add to its mode 3."""
for _i in range(1, 144):
    _slot(f"SPRITE_DOTS{_i}")
SPRITE_COUNT = _slot("SPRITE_COUNT")
"""144 slots of scratch for the table build: sprites found on each line."""
for _i in range(1, 144):
    _slot(f"SPRITE_COUNT{_i}")
SPRITE_TILES = _slot("SPRITE_TILES")
"""144 slots of scratch: bit mask of background tiles that already paid a fetch wait."""
for _i in range(1, 144):
    _slot(f"SPRITE_TILES{_i}")
LY_CACHE_VALUE = _slot("LY_CACHE_VALUE")
LY_CACHE_UNTIL = _slot("LY_CACHE_UNTIL")
"""LY reads before this cycle return LY_CACHE_VALUE (set by each computed LY read)."""
PPU_NEXT = _slot("PPU_NEXT")
"""Cycle of the next PPU event that may set IF (VBlank, or a STAT line change), or NEVER."""

# --- capture ---------------------------------------------------------------------------------
CAPTURE_COUNT = _slot("CAPTURE_COUNT")
CAPTURE_LIMIT = _slot("CAPTURE_LIMIT")
"""The run returns once this many writes are waiting (a few below the buffer capacity)."""
SERIAL_LIMIT = _slot("SERIAL_LIMIT")

STATE_SIZE = len(_names)
STATE_NAMES: tuple[str, ...] = tuple(_names)
STATE_LAYOUT = int.from_bytes(hashlib.sha256(",".join(STATE_NAMES).encode()).digest()[:7], "little")
"""Identifies the slot layout, so a saved state is never loaded into a different one."""

# Exit reasons of the run loop.
EXIT_NONE = 0
EXIT_END = 1
"""The requested number of cycles has run."""
EXIT_CAPTURE_FULL = 2
EXIT_SERIAL_FULL = 3
EXIT_BREAKPOINT = 4
"""LD B,B with BREAK_ON_LD_B_B set."""
EXIT_RETURNED = 5
"""A RET/RETI reached SENTINEL_PC."""
EXIT_HANG_HALT = 6
"""HALT with no enabled interrupt source that can ever wake the CPU."""
EXIT_HANG_LOCKED = 7
"""An illegal opcode locked the CPU."""
EXIT_HANG_NO_IO = 8
"""No I/O register write for WATCHDOG_SPAN cycles."""
EXIT_HANG_STOP = 9
"""STOP for the whole watchdog span: only a button press resumes it."""

EXIT_NAMES = {
    EXIT_NONE: "none",
    EXIT_END: "end",
    EXIT_CAPTURE_FULL: "capture buffer full",
    EXIT_SERIAL_FULL: "serial buffer full",
    EXIT_BREAKPOINT: "breakpoint (LD B,B)",
    EXIT_RETURNED: "returned to sentinel",
    EXIT_HANG_HALT: "halted with no interrupt that can fire",
    EXIT_HANG_LOCKED: "CPU locked by an illegal opcode",
    EXIT_HANG_NO_IO: "no I/O write for the watchdog span",
    EXIT_HANG_STOP: "stopped (STOP) for the watchdog span with no button pressed",
}
HANG_EXITS = frozenset({EXIT_HANG_HALT, EXIT_HANG_LOCKED, EXIT_HANG_NO_IO, EXIT_HANG_STOP})


class ExitReason(IntEnum):
    """Why a run returned (the EXIT_* values, with names for printing)."""

    NONE = EXIT_NONE
    END = EXIT_END
    CAPTURE_FULL = EXIT_CAPTURE_FULL
    SERIAL_FULL = EXIT_SERIAL_FULL
    BREAKPOINT = EXIT_BREAKPOINT
    RETURNED = EXIT_RETURNED
    HANG_HALT = EXIT_HANG_HALT
    HANG_LOCKED = EXIT_HANG_LOCKED
    HANG_NO_IO = EXIT_HANG_NO_IO
    HANG_STOP = EXIT_HANG_STOP

    @property
    def description(self) -> str:
        return EXIT_NAMES[int(self)]


def new_state() -> np.ndarray:
    st = np.zeros(STATE_SIZE, dtype=np.int64)
    return st


def _jit_sources() -> list[Path]:
    """The package's modules with jitted code, and state.py whose constants they inline."""
    package = Path(__file__).resolve().parent
    found = []
    for path in sorted(package.rglob("*.py")):
        try:
            if b"njit" in path.read_bytes() or path.name == "state.py":
                found.append(path)
        except OSError:
            pass
    return found


drop_stale_jit_cache(Path(__file__).resolve().parent, _jit_sources(), "gbsynth_jit_sources.sha256")
