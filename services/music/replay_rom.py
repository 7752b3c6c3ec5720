"""A Game Boy ROM that replays a recording on real hardware (``gbsynth export-gb``).

The recording's writes are grouped into ticks (by default LCD frames of 70,224
cycles, replayed from the VBlank handler; ``--tick-hz`` uses the timer interrupt
instead) and stored as a byte stream in as many MBC5 banks as needed. Each tick
the player writes that tick's (register, value) pairs in their recorded order,
so every write lands within one tick of its recorded time. Tick boundaries are
placed in the widest gap between writes (in cycles modulo the tick), so the
burst of writes a driver makes in one call stays in one tick.

Stream bytes: ``$10-$3F v`` write v to $FF10-$FF3F; ``$00`` end of the tick;
``$01 lo hi`` end of the tick, then skip that many ticks; ``$02`` the stream goes
on at $4000 of the next bank; ``$03`` the recording is over (the sound is
switched off, or with ``--loop`` the stream starts again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES, ApuWrites, register_snapshot
from gbsynth.emulator.core.cartridge.header import BANK_SIZE
from gbsynth.music.asm import assemble
from gbsynth.music.rom import CART_MBC5, IDLE_WITH_INTERRUPTS, finish_rom
from gbsynth.music.screen import SCREEN_SOURCE, screen_data

TICK_END = 0x00
TICK_WAIT = 0x01
NEXT_BANK = 0x02
STREAM_END = 0x03
MAX_WAIT = 0xFFFF
FIRST_DATA_BANK = 1
MAX_BANKS = 512
WRITE_CYCLES = 56
"""T-cycles the player spends on one write (its inner loop), to warn about crowded ticks."""
TIMER_CLOCKS = ((0x05, 16), (0x06, 64), (0x07, 256), (0x04, 1024))
"""TAC value (timer on) and T-cycles per timer increment."""


class ExportError(ValueError):
    """The input cannot be exported (unreadable, empty, too large)."""


@dataclass(frozen=True)
class Tick:
    """How the player is clocked: VBlank (every frame) or the timer."""

    cycles: int
    tac: int = 0
    tma: int = 0

    @property
    def uses_timer(self) -> bool:
        return bool(self.tac)

    @property
    def hz(self) -> float:
        return CPU_HZ / self.cycles


VBLANK_TICK = Tick(FRAME_CYCLES)


MAX_TICK_HZ = 4096
"""The player spends ~300 cycles even on a tick with nothing to write: 1024-cycle ticks at most."""


def timer_tick(hz: float) -> Tick:
    """The timer setting whose period is closest to ``hz``."""
    if not 16 <= hz <= MAX_TICK_HZ:
        raise ExportError(f"--tick-hz {hz:g} is outside 16..{MAX_TICK_HZ}")
    want = CPU_HZ / hz
    best = None
    for tac, step in TIMER_CLOCKS:
        count = min(256, max(1, round(want / step)))
        error = abs(count * step - want)
        if best is None or error < best[0]:
            best = (error, Tick(count * step, tac, (256 - count) & 0xFF))
    assert best is not None
    return best[1]


def tick_phase(cycles: np.ndarray, tick_cycles: int) -> int:
    """An offset that puts tick boundaries in the middle of the widest gap between writes."""
    if len(cycles) == 0:
        return 0
    positions = np.unique(cycles % tick_cycles)
    gaps = np.diff(np.append(positions, positions[0] + tick_cycles))
    widest = int(np.argmax(gaps))
    middle = (int(positions[widest]) + int(gaps[widest]) // 2 + 1) % tick_cycles
    return (tick_cycles - middle) % tick_cycles


def _wait_bytes(skip: int) -> bytes:
    """End the tick, then skip ``skip`` ticks (longer waits are chained)."""
    out = bytearray()
    while skip > MAX_WAIT:
        out += bytes([TICK_WAIT, 0xFF, 0xFF])
        skip -= MAX_WAIT + 1
    out += bytes([TICK_END]) if skip == 0 else bytes([TICK_WAIT, skip & 0xFF, skip >> 8])
    return bytes(out)


@dataclass
class Stream:
    banks: list[bytes]
    ticks: int
    """Ticks the recording lasts."""
    phase: int
    busiest_tick: int
    """Most writes in one tick."""


def encode_stream(writes: ApuWrites, duration_cycles: int, tick: Tick = VBLANK_TICK) -> Stream:
    """The player's byte stream for ``writes``, cut into 16 KiB banks."""
    period = tick.cycles
    phase = tick_phase(writes.cycles, period)
    ticks = (writes.cycles + phase) // period
    end_tick = max(int(ticks[-1]) + 1 if len(ticks) else 0, -(-(duration_cycles + phase) // period))
    pairs = np.empty(2 * len(writes), dtype=np.uint8)
    pairs[0::2] = writes.registers & 0xFF
    pairs[1::2] = writes.values
    pair_bytes = pairs.tobytes()
    starts = np.flatnonzero(np.diff(ticks, prepend=-1)) if len(ticks) else np.empty(0, np.int64)
    bounds = np.append(starts, len(ticks))

    banks: list[bytes] = []
    bank = bytearray()

    def place(unit: bytes) -> None:
        nonlocal bank
        if len(bank) + len(unit) + 1 > BANK_SIZE:  # keep a byte for the bank switch
            bank.append(NEXT_BANK)
            banks.append(bytes(bank))
            bank = bytearray()
        bank += unit

    def place_writes(data: bytes) -> None:
        nonlocal bank
        while data:
            room = (BANK_SIZE - 1 - len(bank)) // 2 * 2
            if room <= 0:
                bank.append(NEXT_BANK)
                banks.append(bytes(bank))
                bank = bytearray()
                continue
            bank += data[:room]
            data = data[room:]

    previous = -1
    if len(starts) == 0 or ticks[0] > 0:
        first = int(ticks[0]) if len(starts) else end_tick
        place(_wait_bytes(max(0, first - 1)))  # tick 0 has nothing; wait for the first writes
        previous = 0
    busiest = 0
    for i, start in enumerate(starts.tolist()):
        stop = int(bounds[i + 1])
        this_tick = int(ticks[start])
        if previous >= this_tick:  # pragma: no cover - ticks only grow
            raise AssertionError("ticks out of order")
        place_writes(pair_bytes[2 * start : 2 * stop])
        busiest = max(busiest, stop - start)
        following = int(ticks[stop]) if stop < len(ticks) else end_tick
        place(_wait_bytes(following - this_tick - 1))
        previous = this_tick
    place(bytes([STREAM_END]))
    banks.append(bytes(bank))
    if FIRST_DATA_BANK + len(banks) > MAX_BANKS:
        raise ExportError(
            f"the recording needs {len(banks)} banks of 16 KiB; an MBC5 cartridge has "
            f"{MAX_BANKS - FIRST_DATA_BANK} for data"
        )
    return Stream(banks, end_tick, phase, busiest)


def decode_stream(banks: list[bytes]) -> tuple[list[tuple[int, int, int]], int]:
    """What the player does with a stream: (tick, register, value) of each write, and the tick
    at which it reads the end."""
    writes: list[tuple[int, int, int]] = []
    tick = bank = pos = 0
    while True:
        data = banks[bank]
        byte = data[pos]
        if byte >= 0x10:
            writes.append((tick, 0xFF00 | byte, data[pos + 1]))
            pos += 2
        elif byte == TICK_END:
            tick, pos = tick + 1, pos + 1
        elif byte == TICK_WAIT:
            tick, pos = tick + 1 + (data[pos + 1] | data[pos + 2] << 8), pos + 3
        elif byte == NEXT_BANK:
            bank, pos = bank + 1, 0
        elif byte == STREAM_END:
            return writes, tick
        else:
            raise ExportError(f"bad stream byte ${byte:02X} in bank {bank} at ${pos:04X}")


PLAYER_SOURCE = (
    r"""
rTIMA   equ $FF05
rTMA    equ $FF06
rTAC    equ $FF07
rIF     equ $FF0F
rNR52   equ $FF26
rIE     equ $FFFF
MBC5_BANK_LOW  equ $2000
MBC5_BANK_HIGH equ $3000
wBank    equ $C000              ; 2: bank of the stream
wPointer equ $C002              ; 2: next stream byte
wWait    equ $C004              ; 2: ticks to skip
wStopped equ $C006

        section "vblank", $0040
        jp Tick
        section "timer", $0050
        jp Tick

        section "entry", $0100
        nop
        jp Main

        section "player", $0150
Main:
        di
        ld sp, $FFFE
        ld a, 1
        ld [wStopped], a        ; the tick handler waits until the stream is set up
        call ScreenSetup
        xor a
        ld [wStopped], a
        call Restart
        ld a, TIMER_MODULO
        ldh [rTMA], a
        ldh [rTIMA], a          ; the first tick one period from now
        ld a, TIMER_CONTROL
        ldh [rTAC], a
        ld a, INTERRUPTS
"""
    + IDLE_WITH_INTERRUPTS
    + r"""

Restart:                        ; the stream from its start
        ld a, LOW(FIRST_BANK)
        ld [wBank], a
        ld [MBC5_BANK_LOW], a
        ld a, HIGH(FIRST_BANK)
        ld [wBank + 1], a
        ld [MBC5_BANK_HIGH], a
        xor a
        ld [wPointer], a
        ld [wWait], a
        ld [wWait + 1], a
        ld a, $40
        ld [wPointer + 1], a
        ret

Tick:
        push af
        push bc
        push de
        push hl
        ld a, [wStopped]
        and a
        jr nz, .done
        ld a, [wWait]
        ld l, a
        ld a, [wWait + 1]
        ld h, a
        or l
        jr z, .play
        dec hl
        ld a, l
        ld [wWait], a
        ld a, h
        ld [wWait + 1], a
        jr .done
.play:
        ld a, [wPointer]
        ld l, a
        ld a, [wPointer + 1]
        ld h, a
.next:
        ld a, [hl+]
        cp $10
        jr c, .command
        ld c, a                 ; a register: $FF00 + c gets the next byte
        ld a, [hl+]
        ldh [c], a
        jr .next
.command:
        and a
        jr z, .save             ; $00: this tick is over
        dec a
        jr z, .wait             ; $01: over, and skip some ticks
        dec a
        jr z, .bank             ; $02: on in the next bank
        ld a, LOOP              ; $03: the end
        and a
        jr z, .stop
        call Restart
        jr .done
.stop:
        ld a, 1
        ld [wStopped], a
        xor a
        ldh [rNR52], a          ; sound off
        jr .done
.wait:
        ld a, [hl+]
        ld [wWait], a
        ld a, [hl+]
        ld [wWait + 1], a
.save:
        ld a, l
        ld [wPointer], a
        ld a, h
        ld [wPointer + 1], a
.done:
        pop hl
        pop de
        pop bc
        pop af
        reti
.bank:
        ld a, [wBank]
        add 1
        ld [wBank], a
        ld [MBC5_BANK_LOW], a
        ld a, [wBank + 1]
        adc 0
        ld [wBank + 1], a
        ld [MBC5_BANK_HIGH], a
        ld hl, $4000
        jr .next
"""
)


def player_rom(
    stream: Stream, *, title: str, tick: Tick = VBLANK_TICK, loop: bool = False
) -> bytes:
    """An MBC5 ROM: the player in bank 0, the stream from bank 1 on."""
    minutes, seconds = divmod(round(stream.ticks * tick.cycles / CPU_HZ), 60)
    lines = [title, "", f"{minutes}:{seconds:02d}", "", "", "GBSYNTH REPLAY"]
    program = assemble(
        PLAYER_SOURCE + SCREEN_SOURCE + screen_data(lines),
        name="replay player",
        symbols={
            "FIRST_BANK": FIRST_DATA_BANK,
            "TIMER_MODULO": tick.tma,
            "TIMER_CONTROL": tick.tac,
            "INTERRUPTS": 0x04 if tick.uses_timer else 0x01,
            "LOOP": int(loop),
        },
    )
    image = bytearray(program.image(0, BANK_SIZE, fill=0x00))
    for bank in stream.banks:
        image += bank + bytes(BANK_SIZE - len(bank))
    return finish_rom(image, title=title, cartridge_type=CART_MBC5)


def export_writes(
    writes: ApuWrites,
    duration_cycles: int,
    *,
    title: str = "GBSYNTH",
    tick: Tick = VBLANK_TICK,
    loop: bool = False,
) -> tuple[bytes, Stream]:
    """A replay ROM of ``writes`` (cycles from 0) lasting ``duration_cycles``."""
    stream = encode_stream(writes, duration_cycles, tick)
    return player_rom(stream, title=title, tick=tick, loop=loop), stream


def window(
    writes: ApuWrites, duration: int, start: int, length: int | None
) -> tuple[ApuWrites, int]:
    """Writes between ``start`` and ``start + length`` cycles, rebased, opened with the register
    state at ``start`` (so the window plays on its own)."""
    if start <= 0 and length is None:
        return writes, duration
    end = duration if length is None else min(duration, start + length)
    if start >= end:
        raise ExportError(f"the window starts at {start / CPU_HZ:g} s, past the recording's end")
    head = register_snapshot(writes, start) if start > 0 else ApuWrites.empty()
    body = writes.between(start, end).shifted(-start)
    return ApuWrites.concat([head, body]), end - start


# -- reading recordings -------------------------------------------------------------------


def read_input(path: Path, index: int) -> tuple[ApuWrites, int, str]:
    """(writes, duration in cycles, title) of recording ``index`` in an Avro recordings or
    segments file, or of subsong ``index`` of a gbsplay iodumper text."""
    from gbsynth.common.avro import CodecError
    from gbsynth.common.formats import IodumpError, parse_iodump, read_any

    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    with open(path, "rb") as fo:
        magic = fo.read(4)
    if magic == b"Obj\x01":
        try:
            items = read_any(path)
        except (CodecError, OSError) as exc:
            raise ExportError(str(exc)) from None
        if not items:
            raise ExportError(f"{path}: the file holds no recordings")
        if not 0 <= index < len(items):
            raise ExportError(f"{path}: --index {index} is outside 0..{len(items) - 1}")
        item = items[index]
        title = item.source.title or Path(item.source.file_name).stem
        return item.writes, item.duration_cycles, title
    try:
        text = path.read_text(encoding="ascii")
        sections = parse_iodump(text)
    except (UnicodeDecodeError, IodumpError) as exc:
        raise ExportError(
            f"{path}: not an Avro recordings/segments file nor gbsplay iodumper text ({exc})"
        ) from None
    if not 0 <= index < len(sections):
        raise ExportError(f"{path}: --index {index} is outside 0..{len(sections) - 1}")
    section = sections[index]
    duration = section.end_cycle
    if duration is None:
        duration = int(section.writes.cycles[-1]) + 1 if len(section.writes) else 0
    return section.writes, duration, path.stem
