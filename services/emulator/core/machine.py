"""The driver: a DMG as a Python object around the jitted run loop.

    gb = GameBoy(rom_bytes)              # raises RomError for files it cannot run
    gb.start_recording()                 # cycle 0 of the recording is now
    gb.run_frames(60 * 30)               # 30 emulated seconds
    writes = gb.take_writes()            # ApuWrites, cycles relative to the recording start

The machine starts in the state the DMG boot ROM leaves (PC=0x0100), without
running a boot ROM. Buttons (``set_buttons``) use one bit each, set = pressed:
A=0x01 B=0x02 Select=0x04 Start=0x08 Right=0x10 Left=0x20 Up=0x40 Down=0x80.

``save_state``/``load_state`` copy the whole machine (CPU, memory, cartridge,
timers, APU, the captured writes not yet taken), so the same state and the
same inputs always give the same writes. Debugger-style access: register
properties (``a``, ``f``, ... ``sp``, ``pc``, ``ime``), ``peek``/``poke`` (bus
semantics), ``patch_rom``, and ``call`` to run a subroutine until it returns
(what a GBS player needs).
"""

from __future__ import annotations

import numpy as np

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES, ApuWrites
from gbsynth.emulator.core import state as S
from gbsynth.emulator.core.apu import new_apu_state
from gbsynth.emulator.core.bus import read8, schedule, sync_all, write8
from gbsynth.emulator.core.cartridge import RomError, cart_reset, parse_header
from gbsynth.emulator.core.cartridge.header import KIND_MBC5, CartridgeHeader
from gbsynth.emulator.core.cpu import run
from gbsynth.emulator.core.io import joypad_set_buttons
from gbsynth.emulator.core.ppu import BOOT_POSITION

__all__ = [
    "BUTTON_BITS",
    "DEFAULT_WATCHDOG_SECONDS",
    "EmulatorHang",
    "ExitReason",
    "GameBoy",
    "RomError",
]

ExitReason = S.ExitReason

BUTTON_BITS = {
    "a": 0x01,
    "b": 0x02,
    "select": 0x04,
    "start": 0x08,
    "right": 0x10,
    "left": 0x20,
    "up": 0x40,
    "down": 0x80,
}
DEFAULT_CAPTURE_CAPACITY = 1 << 16
SERIAL_CAPACITY = 4096
DEFAULT_WATCHDOG_SECONDS = 30.0
"""A program that writes no I/O register for this long is reported as hung."""
BOOT_DIV_COUNTER = 0xABC8
"""System counter value at PC=0x0100 after the DMG boot ROM (DIV reads 0xAB)."""
CAPTURE_MARGIN = 4
"""The run returns once the buffer has fewer free slots than this (an instruction writes <= 2)."""
DEFAULT_SENTINEL = 0xFEED
"""Return address pushed by ``call``: in the unusable area, so no real code returns there."""

# I/O registers as the DMG boot ROM leaves them (the ones kept in plain memory).
_BOOT_IO = {0xFF0F: 0xE1, 0xFF47: 0xFC, 0xFF48: 0xFF, 0xFF49: 0xFF, 0xFF4A: 0x00, 0xFF4B: 0x00}


class EmulatorHang(RuntimeError):
    """The emulated program stopped making progress (see ``reason``)."""

    def __init__(self, reason: int, cycle: int, pc: int) -> None:
        self.reason = S.ExitReason(reason)
        self.cycle = cycle
        self.pc = pc
        super().__init__(
            f"emulated program hung: {S.EXIT_NAMES.get(reason, reason)} "
            f"(cycle {cycle}, PC=0x{pc:04X})"
        )


def _next_power_of_two(n: int) -> int:
    p = 1
    while p < n:
        p <<= 1
    return p


class GameBoy:
    """A DMG (model ABC) running one cartridge."""

    def __init__(
        self,
        rom: bytes,
        capture_capacity: int = DEFAULT_CAPTURE_CAPACITY,
        watchdog_seconds: float | None = DEFAULT_WATCHDOG_SECONDS,
    ) -> None:
        rom = bytes(rom)
        self.header: CartridgeHeader = parse_header(rom)
        if capture_capacity < 2 * CAPTURE_MARGIN:
            raise ValueError(f"capture_capacity must be at least {2 * CAPTURE_MARGIN}")
        rom_size = max(self.header.rom_size, _next_power_of_two(len(rom)))
        ram_size = self.header.ram_size
        mem = np.zeros(S.ROM_BASE + rom_size + ram_size, dtype=np.uint8)
        mem[S.ROM_BASE : S.ROM_BASE + rom_size] = 0xFF
        mem[S.ROM_BASE : S.ROM_BASE + len(rom)] = np.frombuffer(rom, dtype=np.uint8)
        st = S.new_state()
        st[S.ROM_SIZE] = rom_size
        st[S.CRAM_BASE] = S.ROM_BASE + rom_size
        st[S.CRAM_SIZE] = ram_size
        st[S.MBC_KIND] = self.header.kind
        if self.header.kind == KIND_MBC5:
            st[S.MBC_HAS_RTC] = 1 if "RUMBLE" in self.header.type_name else 0
        else:
            st[S.MBC_HAS_RTC] = 1 if self.header.has_rtc else 0
        self.st = st
        self.mem = mem
        self.apu = new_apu_state()
        self._power_on()
        cart_reset(st)
        self.cap_cycles = np.zeros(capture_capacity, dtype=np.int64)
        self.cap_regs = np.zeros(capture_capacity, dtype=np.uint16)
        self.cap_values = np.zeros(capture_capacity, dtype=np.uint8)
        self.serial_buffer = np.zeros(SERIAL_CAPACITY, dtype=np.uint8)
        st[S.CAPTURE_LIMIT] = capture_capacity - CAPTURE_MARGIN
        st[S.SERIAL_LIMIT] = SERIAL_CAPACITY - CAPTURE_MARGIN
        self._taken: list[ApuWrites] = []
        self._serial = bytearray()
        self._origin = 0
        self.set_watchdog(watchdog_seconds)

    # ------------------------------------------------------------------ power-on
    def _power_on(self) -> None:
        """Registers and I/O as the DMG boot ROM leaves them at PC=0x0100."""
        st, mem = self.st, self.mem
        for slot, value in (
            (S.R_A, 0x01), (S.R_F, 0xB0), (S.R_B, 0x00), (S.R_C, 0x13),
            (S.R_D, 0x00), (S.R_E, 0xD8), (S.R_H, 0x01), (S.R_L, 0x4D),
            (S.SP, 0xFFFE), (S.PC, 0x0100),
        ):  # fmt: skip
            st[slot] = value
        for addr, value in _BOOT_IO.items():
            mem[addr] = value
        st[S.SENTINEL_PC] = -1
        st[S.IDLE_SKIP] = 1
        st[S.DIV_BASE] = -BOOT_DIV_COUNTER
        st[S.TAC] = 0
        st[S.TIMA_OVERFLOW] = -1
        st[S.TIMA_RELOADED] = -1
        st[S.SERIAL_DONE] = S.NEVER
        st[S.SC] = 0
        st[S.P1_SELECT] = 0x00
        st[S.DMA_REG] = 0xFF
        st[S.DMA_COPIED] = 160
        st[S.DMA_ACTIVE] = 0
        st[S.DMA_BLOCK_FROM] = S.NEVER
        st[S.LCDC] = 0x91
        st[S.LCD_BASE] = -BOOT_POSITION
        st[S.PPU_NEXT] = 0
        st[S.NEXT_EVENT] = 0
        st[S.END_CYCLE] = 0

    # ------------------------------------------------------------------ running
    @property
    def cycle(self) -> int:
        """T-cycles since power-on (4,194,304 per second)."""
        return int(self.st[S.NOW])

    def set_watchdog(self, seconds: float | None) -> None:
        """Report a hang after this many emulated seconds without an I/O write (None: never)."""
        self.st[S.WATCHDOG_SPAN] = 0 if not seconds else max(4, int(seconds * CPU_HZ))
        self.st[S.LAST_IO_WRITE] = self.st[S.NOW]

    def break_on_ld_b_b(self, enabled: bool = True) -> None:
        """Stop runs after an ``LD B,B`` instruction (mooneye's breakpoint)."""
        self.st[S.BREAK_ON_LD_B_B] = 1 if enabled else 0

    def run_cycles(self, cycles: int, raise_on_hang: bool = True) -> S.ExitReason:
        """Run for `cycles` T-cycles (or until a breakpoint/return); returns the exit reason.

        A hang raises ``EmulatorHang`` (or is returned, with ``raise_on_hang=False``).
        Capture buffers are drained as they fill, so no write is lost.
        """
        st = self.st
        st[S.END_CYCLE] = st[S.NOW] + max(0, int(cycles))
        while True:
            reason = run(*self._arrays())
            self._drain()
            if reason in (S.EXIT_CAPTURE_FULL, S.EXIT_SERIAL_FULL):
                continue
            if reason in S.HANG_EXITS and raise_on_hang:
                raise EmulatorHang(reason, self.cycle, self.pc)
            return S.ExitReason(reason)

    def run_frames(self, frames: int, raise_on_hang: bool = True) -> S.ExitReason:
        """Run for `frames` LCD frames' worth of cycles (70,224 each)."""
        return self.run_cycles(int(frames) * FRAME_CYCLES, raise_on_hang)

    def run_seconds(self, seconds: float, raise_on_hang: bool = True) -> S.ExitReason:
        return self.run_cycles(int(round(seconds * CPU_HZ)), raise_on_hang)

    def call(
        self,
        address: int,
        max_cycles: int,
        sentinel: int = DEFAULT_SENTINEL,
        raise_on_hang: bool = True,
    ) -> S.ExitReason:
        """Run the subroutine at `address` until it returns (pushes `sentinel` as return address).

        Returns ``state.EXIT_RETURNED`` when it returned, otherwise the reason it stopped
        (e.g. ``EXIT_END`` when `max_cycles` ran out first).
        """
        sp = (self.sp - 2) & 0xFFFF
        self.poke(sp, sentinel & 0xFF)
        self.poke((sp + 1) & 0xFFFF, sentinel >> 8)
        self.sp = sp
        self.pc = address
        self.st[S.HALTED] = 0
        self.st[S.SENTINEL_PC] = sentinel
        try:
            return self.run_cycles(max_cycles, raise_on_hang)
        finally:
            self.st[S.SENTINEL_PC] = -1

    def set_buttons(self, mask: int) -> None:
        """Set the pressed buttons (bit set = pressed, see ``BUTTON_BITS``)."""
        joypad_set_buttons(self.st, self.mem, int(mask) & 0xFF)

    # ------------------------------------------------------------------ capture
    def _arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays the compiled CPU loop and bus work on, in their argument order: state,
        memory, APU, capture (cycles, registers, values) and serial buffers."""
        return (
            self.st,
            self.mem,
            self.apu,
            self.cap_cycles,
            self.cap_regs,
            self.cap_values,
            self.serial_buffer,
        )

    def _drain(self) -> None:
        st = self.st
        n = int(st[S.CAPTURE_COUNT])
        if n:
            self._taken.append(
                ApuWrites(
                    self.cap_cycles[:n] - self._origin,
                    self.cap_regs[:n].copy(),
                    self.cap_values[:n].copy(),
                )
            )
            st[S.CAPTURE_COUNT] = 0
        k = int(st[S.SERIAL_COUNT])
        if k:
            self._serial += self.serial_buffer[:k].tobytes()
            st[S.SERIAL_COUNT] = 0

    def start_recording(self) -> None:
        """Make the current cycle the origin of recorded writes and drop writes not yet taken."""
        self._drain()
        self._taken = []
        self._origin = self.cycle

    @property
    def recording_origin(self) -> int:
        return self._origin

    def take_writes(self) -> ApuWrites:
        """The APU writes captured since the last call, cycles relative to the recording origin."""
        self._drain()
        parts, self._taken = self._taken, []
        return ApuWrites.concat(parts)

    def serial_output(self) -> bytes:
        """Every byte the program has sent over the serial port since power-on."""
        self._drain()
        return bytes(self._serial)

    # ------------------------------------------------------------------ state
    def save_state(self, include_rom: bool = True) -> dict[str, np.ndarray]:
        """The whole machine; ``include_rom=False`` leaves the cartridge ROM out (a few
        dozen KiB instead of up to 8 MiB: for many states of one machine whose ROM is
        never patched), and such a state loads only into this same machine."""
        self._drain()
        pending = ApuWrites.concat(self._taken)
        if include_rom:
            mem = self.mem.copy()
        else:
            cram = int(self.st[S.CRAM_BASE])
            mem = np.concatenate([self.mem[: S.ROM_BASE], self.mem[cram:]])
        return {
            "layout": np.array([S.STATE_LAYOUT], dtype=np.int64),
            "state": self.st.copy(),
            "mem": mem,
            "rom_left_out": np.array([0 if include_rom else 1], dtype=np.uint8),
            "apu": self.apu.copy(),
            "origin": np.array([self._origin], dtype=np.int64),
            "pending_cycles": pending.cycles.copy(),
            "pending_registers": pending.registers.copy(),
            "pending_values": pending.values.copy(),
            "serial": np.frombuffer(bytes(self._serial), dtype=np.uint8).copy(),
        }

    def load_state(self, saved: dict[str, np.ndarray]) -> None:
        for key in ("state", "mem", "apu"):
            if key not in saved:
                raise ValueError(f"saved state has no {key!r} array")
        if "layout" in saved and int(saved["layout"][0]) != S.STATE_LAYOUT:
            raise ValueError("saved state is from another version of the emulator")
        rom_left_out = "rom_left_out" in saved and int(saved["rom_left_out"][0]) == 1
        cram = int(self.st[S.CRAM_BASE])
        mem_size = S.ROM_BASE + len(self.mem) - cram if rom_left_out else len(self.mem)
        if saved["state"].shape != self.st.shape or saved["mem"].shape != (mem_size,):
            raise ValueError("saved state is from another emulator version or cartridge")
        self.st[:] = saved["state"]
        if rom_left_out:
            self.mem[: S.ROM_BASE] = saved["mem"][: S.ROM_BASE]
            self.mem[cram:] = saved["mem"][S.ROM_BASE :]
        else:
            self.mem[:] = saved["mem"]
        self.apu[:] = saved["apu"]
        self._origin = int(saved["origin"][0]) if "origin" in saved else 0
        self._taken = []
        if "pending_cycles" in saved and len(saved["pending_cycles"]):
            self._taken.append(
                ApuWrites(
                    saved["pending_cycles"].copy(),
                    saved["pending_registers"].copy(),
                    saved["pending_values"].copy(),
                )
            )
        self._serial = bytearray(saved["serial"].tobytes()) if "serial" in saved else bytearray()

    # ------------------------------------------------------------------ debugger access
    def peek(self, addr: int) -> int:
        """Read a byte as the CPU would now (I/O reads included), without advancing time."""
        return int(read8(self.st, self.mem, self.apu, addr & 0xFFFF, self.cycle))

    def poke(self, addr: int, value: int) -> None:
        """Write a byte as the CPU would (MBC registers, I/O semantics), without advancing time."""
        write8(
            *self._arrays(),
            addr & 0xFFFF,
            value & 0xFF,
            self.cycle,
        )
        self._drain()

    def patch_rom(self, offset: int, data: bytes) -> None:
        """Overwrite ROM bytes at a file offset (bank * 0x4000 + address in the bank)."""
        size = int(self.st[S.ROM_SIZE])
        if offset < 0 or offset + len(data) > size:
            raise ValueError(f"ROM patch at 0x{offset:X} (+{len(data)}) is outside the ROM")
        start = S.ROM_BASE + offset
        self.mem[start : start + len(data)] = np.frombuffer(bytes(data), dtype=np.uint8)

    def sync(self) -> None:
        """Bring timer, PPU, serial and DMA up to the current cycle (for inspection)."""
        sync_all(self.st, self.mem, self.cycle)
        schedule(self.st, self.cycle)


def _register_property(slot: int, mask: int, doc: str) -> property:
    def getter(self: GameBoy) -> int:
        return int(self.st[slot])

    def setter(self: GameBoy, value: int) -> None:
        self.st[slot] = int(value) & mask

    return property(getter, setter, doc=doc)


for _name, _slot, _mask in (
    ("a", S.R_A, 0xFF), ("f", S.R_F, 0xF0), ("b", S.R_B, 0xFF), ("c", S.R_C, 0xFF),
    ("d", S.R_D, 0xFF), ("e", S.R_E, 0xFF), ("h", S.R_H, 0xFF), ("l", S.R_L, 0xFF),
    ("sp", S.SP, 0xFFFF), ("pc", S.PC, 0xFFFF), ("ime", S.IME, 0x1),
):  # fmt: skip
    setattr(GameBoy, _name, _register_property(_slot, _mask, f"CPU register {_name.upper()}"))
