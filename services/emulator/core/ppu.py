"""PPU timing without pixels: LCD on/off, modes 2/3/0/1, LY, LYC, STAT and VBlank interrupts.

The PPU's state is a function of time: with the LCD on, the position since it
was switched on (``now - LCD_BASE``) gives the frame line (LY) and the dot in
the line, and the dot gives the mode: OAM scan (mode 2) for 80 dots, drawing
(mode 3) for 172 dots plus the fine-scroll penalty SCX & 7, the sprites' fetch
penalties (from a table rebuilt when OAM, LCDC or SCX change) and 6 dots where
the window shows, then HBlank (mode 0) to the end of the 456-dot line; lines
144-153 are VBlank (mode 1). On the first line after the LCD is switched on
there is no OAM scan (mode 0 is reported instead). On line 153 LY reads 153
only for its first few dots, then 0.

What the CPU sees is offset from that timeline by a few dots, as measured by
mooneye's tests: LY (and the LY=LYC flag going low) changes 4 dots before the
line, STAT shows mode 0 3 dots before the mode 0 interrupt, and VRAM/OAM reads
are blocked a little before mode 3/mode 2 show (writes have their own windows).
The LY=LYC flag is frozen while the LCD is off, and a STAT write in HBlank,
VBlank or on the LYC line requests the interrupt (the DMG quirk).

The interrupt sources are evaluated lazily: ``ppu_sync`` walks the points where
the STAT line may change (line start, LY=0 on line 153, mode 3 start, mode 0
start) from the last sync to `now` and requests the STAT interrupt on each
rising edge of the ORed enabled conditions (so a condition that keeps the line
high blocks the others, as on hardware), and the VBlank interrupt at each
start of line 144. With no STAT source enabled only VBlank needs events, which
it gets in closed form; long spans skip whole frames.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gbsynth.emulator.core.state import (
    LCD_BASE,
    LCDC,
    LY_CACHE_UNTIL,
    LY_CACHE_VALUE,
    LYC,
    LYC_LATCH,
    NEVER,
    PPU_NEXT,
    PPU_SYNCED,
    SCX,
    SCY,
    SPRITE_COUNT,
    SPRITE_DOTS,
    SPRITE_TABLE_VALID,
    SPRITE_TILES,
    STAT_ENABLE,
    STAT_LINE,
)

IF_ADDR = 0xFF0F
INT_VBLANK = 0x01
INT_STAT = 0x02

LINE_DOTS = 456
LINES = 154
FRAME_DOTS = LINE_DOTS * LINES
VBLANK_LINE = 144
VBLANK_START = VBLANK_LINE * LINE_DOTS
OAM_SCAN_DOTS = 80
MODE3_MIN_DOTS = 172
LY153_ZERO_DOT = 4
"""On line 153, LY reads 0 from this dot on."""
LCD_ON_DELAY = 0
"""Cycles from the LCDC write that switches the LCD on to line 0 dot 0."""
LY_READ_LEAD = 4
"""The LY register (as read) changes this many dots before the line's modes do; in those
dots the LY=LYC flag reads 0 and OAM is already blocked for the next line's scan."""
LINE_END = LINE_DOTS - LY_READ_LEAD
ACCESS_LEAD = 4
"""VRAM (and, on later lines, OAM) is blocked this many dots before mode 3 (mode 2) shows."""
WINDOW_DOTS = 6
"""Mode 3 is this much longer on lines where the window shows."""
MODE0_READ_EARLY = 3
"""STAT reads (and VRAM/OAM access) see mode 0 this many dots before the mode 0 interrupt."""
BOOT_POSITION = FRAME_DOTS + 153 * LINE_DOTS + 352
"""PPU position at power-on cycle 0: line 153 (LY reads 0, VBlank), as the boot ROM leaves it."""


@njit(cache=True)
def _build_sprite_table(st: np.ndarray, mem: np.ndarray) -> None:
    """For each visible line, the dots its sprites add to mode 3.

    The OAM scan keeps the first 10 sprites (in OAM order) that cover a line. Each
    visible one (X < 168) costs 6 dots, and the first one over a background tile also
    waits for that tile's fetch to finish: 5 - min(5, (X + SCX) mod 8) more dots.
    Built once per change of OAM, LCDC or SCX rather than per line.
    """
    for line in range(VBLANK_LINE):
        st[SPRITE_DOTS + line] = 0
        st[SPRITE_COUNT + line] = 0
        st[SPRITE_TILES + line] = 0
    st[SPRITE_TABLE_VALID] = 1
    lcdc = st[LCDC]
    if (lcdc & 0x02) == 0:
        return
    height = 16 if lcdc & 0x04 else 8
    fine = st[SCX] & 7
    for i in range(40):
        top = int(mem[0xFE00 + 4 * i]) - 16
        x = int(mem[0xFE01 + 4 * i])
        tile = (x + fine) >> 3
        wait = 5 - min(5, (x + fine) & 7)
        for line in range(max(0, top), min(VBLANK_LINE, top + height)):
            if st[SPRITE_COUNT + line] == 10:
                continue
            st[SPRITE_COUNT + line] += 1
            if x >= 168:
                continue
            dots = 6
            if not (st[SPRITE_TILES + line] >> tile) & 1:
                st[SPRITE_TILES + line] |= 1 << tile
                dots += wait
            st[SPRITE_DOTS + line] += dots


@njit(cache=True, inline="always")
def _mode3_end(st: np.ndarray, mem: np.ndarray, line: int) -> int:
    """Dot at which mode 3 of frame line `line` ends (the STAT mode 0 interrupt)."""
    end = OAM_SCAN_DOTS + MODE3_MIN_DOTS + (st[SCX] & 7)
    if line < VBLANK_LINE:
        if st[SPRITE_TABLE_VALID] == 0:
            _build_sprite_table(st, mem)
        end += st[SPRITE_DOTS + line]
        if (st[LCDC] & 0x20) and line >= mem[0xFF4A] and mem[0xFF4B] <= 166:
            end += WINDOW_DOTS  # the fetcher restarts for the window
    return end


@njit(cache=True, inline="always")
def _line_mode(st: np.ndarray, mem: np.ndarray, pos: int, early: int) -> tuple[int, int, int]:
    """(line 0..153, dot, mode) at position `pos` (dots since LCD on).

    `early`: how many dots before the mode 0 interrupt the mode 0 shows (STAT reads and
    memory access see it MODE0_READ_EARLY dots before the interrupt line does).
    """
    frame_pos = pos % FRAME_DOTS
    line = frame_pos // LINE_DOTS
    dot = frame_pos - line * LINE_DOTS
    if line >= VBLANK_LINE:
        return line, dot, 1
    if dot < OAM_SCAN_DOTS:
        if pos < OAM_SCAN_DOTS:
            return line, dot, 0  # first line after LCD on: no OAM scan
        return line, dot, 2
    if dot < _mode3_end(st, mem, line) - early:
        return line, dot, 3
    return line, dot, 0


@njit(cache=True, inline="always")
def _ly(line: int, dot: int) -> int:
    if line == LINES - 1 and dot >= LY153_ZERO_DOT:
        return 0
    return line


@njit(cache=True, inline="always")
def _coincidence(st: np.ndarray, line: int, dot: int) -> bool:
    """The LY=LYC flag: compared against the line's LY, low while LY changes (last dots)."""
    return dot < LINE_END and _ly(line, dot) == st[LYC]


@njit(cache=True)
def _stat_level(st: np.ndarray, mem: np.ndarray, pos: int) -> int:
    """The STAT interrupt line (OR of the enabled conditions) at position `pos`."""
    enable = st[STAT_ENABLE]
    if enable == 0:
        return 0
    line, dot, mode = _line_mode(st, mem, pos, 0)
    if (enable & 0x40) and _coincidence(st, line, dot):
        return 1
    if (enable & 0x08) and mode == 0:
        return 1
    if (enable & 0x10) and mode == 1:
        return 1
    if (enable & 0x20) and (mode == 2 or (line == VBLANK_LINE and dot < LY153_ZERO_DOT)):
        return 1  # the OAM condition also fires as VBlank starts
    return 0


@njit(cache=True)
def _next_point(st: np.ndarray, mem: np.ndarray, pos: int) -> int:
    """The next position after `pos` where the STAT line may change."""
    dot = pos % LINE_DOTS
    start = pos - dot
    if dot < LY153_ZERO_DOT:
        return start + LY153_ZERO_DOT
    if dot < OAM_SCAN_DOTS:
        return start + OAM_SCAN_DOTS
    end3 = _mode3_end(st, mem, (start % FRAME_DOTS) // LINE_DOTS)
    if dot < end3:
        return start + end3
    if dot < LINE_END:
        return start + LINE_END
    return start + LINE_DOTS


@njit(cache=True)
def _next_vblank(pos: int) -> int:
    """The first start of line 144 strictly after `pos`."""
    k = (pos - VBLANK_START) // FRAME_DOTS + 1
    return VBLANK_START + k * FRAME_DOTS


@njit(cache=True, inline="always")
def lcd_on(st: np.ndarray) -> bool:
    return (st[LCDC] & 0x80) != 0


@njit(cache=True, inline="always")
def _request_stat_edges(st: np.ndarray, mem: np.ndarray, pos: int, stop: int, level: int) -> int:
    """Request the STAT interrupt at each rising edge of the STAT line in (pos, stop], from
    ``level`` at ``pos``; the line's level at ``stop``."""
    while True:
        point = _next_point(st, mem, pos)
        if point > stop:
            break
        new_level = _stat_level(st, mem, point)
        if new_level and not level:
            mem[IF_ADDR] |= INT_STAT
        level = new_level
        pos = point
    return level


@njit(cache=True)
def ppu_sync(st: np.ndarray, mem: np.ndarray, target: int) -> None:
    """Request the VBlank and STAT interrupts due in (PPU_SYNCED, target]."""
    synced = st[PPU_SYNCED]
    if target <= synced:
        return
    st[PPU_SYNCED] = target
    if not lcd_on(st):
        return
    base = st[LCD_BASE]
    pos = synced - base
    end = target - base
    if _next_vblank(pos) <= end:
        mem[IF_ADDR] |= INT_VBLANK
    if st[STAT_ENABLE] == 0:
        st[STAT_LINE] = 0
        return
    level = st[STAT_LINE]
    if end - pos > 2 * FRAME_DOTS:
        # Walk one whole frame (any edge in it recurs in every skipped frame), then jump.
        _request_stat_edges(st, mem, pos, pos + FRAME_DOTS, level)
        pos = end - FRAME_DOTS
        level = _stat_level(st, mem, pos)
    st[STAT_LINE] = _request_stat_edges(st, mem, pos, end, level)


@njit(cache=True)
def ppu_schedule(st: np.ndarray, mem: np.ndarray) -> int:
    """Compute PPU_NEXT: the next cycle at which a PPU interrupt request can happen."""
    if not lcd_on(st):
        st[PPU_NEXT] = NEVER
        return NEVER
    base = st[LCD_BASE]
    pos = st[PPU_SYNCED] - base
    best = _next_vblank(pos)
    if st[STAT_ENABLE]:
        level = st[STAT_LINE]
        limit = pos + FRAME_DOTS + LINE_DOTS
        while pos < limit:
            point = _next_point(st, mem, pos)
            if point >= best:
                break
            new_level = _stat_level(st, mem, point)
            if new_level and not level:
                best = point
                break
            level = new_level
            pos = point
    st[PPU_NEXT] = base + best
    return base + best


@njit(cache=True, inline="always")
def ppu_ly(st: np.ndarray, mem: np.ndarray, now: int) -> int:
    """LY as the CPU reads it: it changes LY_READ_LEAD dots before the line does.

    The value is also cached with the cycle it stays valid until, so that programs
    polling LY (a common way to wait for VBlank) read it without the slow path.
    """
    if not lcd_on(st):
        st[LY_CACHE_VALUE] = 0
        st[LY_CACHE_UNTIL] = NEVER
        return 0
    pos = now - st[LCD_BASE] + LY_READ_LEAD
    frame_pos = pos % FRAME_DOTS
    line = frame_pos // LINE_DOTS
    dot = frame_pos - line * LINE_DOTS
    ly = _ly(line, dot)
    if line == LINES - 1 and dot < LY153_ZERO_DOT:
        left = LY153_ZERO_DOT - dot
    else:
        left = LINE_DOTS - dot
    st[LY_CACHE_VALUE] = ly
    st[LY_CACHE_UNTIL] = now + left
    return ly


@njit(cache=True)
def vram_blocked(st: np.ndarray, mem: np.ndarray, now: int) -> bool:
    """The PPU reads VRAM from just before mode 3 shows in STAT to the end of mode 3."""
    if not lcd_on(st):
        return False
    pos = now - st[LCD_BASE]
    line, dot, _ = _line_mode(st, mem, pos, MODE0_READ_EARLY)
    if line >= VBLANK_LINE:
        return False
    start = OAM_SCAN_DOTS if pos < LINE_DOTS else OAM_SCAN_DOTS - ACCESS_LEAD
    return start <= dot < _mode3_end(st, mem, line) - MODE0_READ_EARLY


@njit(cache=True)
def oam_blocked(st: np.ndarray, mem: np.ndarray, now: int) -> bool:
    """OAM is busy in modes 2 and 3, from a few dots before the line (not on the first line)."""
    if not lcd_on(st):
        return False
    pos = now - st[LCD_BASE]
    line, dot, _ = _line_mode(st, mem, pos, MODE0_READ_EARLY)
    if dot >= LINE_DOTS - ACCESS_LEAD and (line < VBLANK_LINE - 1 or line == LINES - 1):
        return True  # the next line's OAM scan
    if line >= VBLANK_LINE:
        return False
    if pos < LINE_DOTS:
        return OAM_SCAN_DOTS <= dot < _mode3_end(st, mem, line) - MODE0_READ_EARLY  # no scan
    return dot < _mode3_end(st, mem, line) - MODE0_READ_EARLY


@njit(cache=True)
def vram_write_blocked(st: np.ndarray, mem: np.ndarray, now: int) -> bool:
    """Writes reach VRAM except during mode 3 (no early lead as for reads)."""
    if not lcd_on(st):
        return False
    pos = now - st[LCD_BASE]
    line, dot, _ = _line_mode(st, mem, pos, MODE0_READ_EARLY)
    end3 = _mode3_end(st, mem, line) - MODE0_READ_EARLY
    return line < VBLANK_LINE and OAM_SCAN_DOTS <= dot < end3


@njit(cache=True)
def oam_write_blocked(st: np.ndarray, mem: np.ndarray, now: int) -> bool:
    """Writes reach OAM except in mode 2 (but its last M-cycle) and mode 3."""
    if not lcd_on(st):
        return False
    pos = now - st[LCD_BASE]
    line, dot, _ = _line_mode(st, mem, pos, MODE0_READ_EARLY)
    if line >= VBLANK_LINE:
        return False
    if dot < OAM_SCAN_DOTS - ACCESS_LEAD:
        return pos >= LINE_DOTS  # no OAM scan on the first line after LCD on
    return OAM_SCAN_DOTS <= dot < _mode3_end(st, mem, line) - MODE0_READ_EARLY


@njit(cache=True, inline="always")
def ppu_read(st: np.ndarray, mem: np.ndarray, addr: int, now: int) -> int:
    if addr == 0xFF40:
        return int(st[LCDC])
    if addr == 0xFF41:
        if not lcd_on(st):
            return int(0x80 | st[STAT_ENABLE] | (4 if st[LYC_LATCH] else 0))
        line, dot, mode = _line_mode(st, mem, now - st[LCD_BASE], MODE0_READ_EARLY)
        coincidence = 4 if _coincidence(st, line, dot) else 0
        return int(0x80 | st[STAT_ENABLE] | coincidence | mode)
    if addr == 0xFF42:
        return int(st[SCY])
    if addr == 0xFF43:
        return int(st[SCX])
    if addr == 0xFF44:
        return ppu_ly(st, mem, now)
    if addr == 0xFF45:
        return int(st[LYC])
    return int(mem[addr])


@njit(cache=True)
def _refresh_level(st: np.ndarray, mem: np.ndarray, now: int) -> None:
    """After a register change: a rising STAT line requests the interrupt at once."""
    if lcd_on(st):
        level = _stat_level(st, mem, now - st[LCD_BASE])
    else:
        # LCD off: only the frozen LY=LYC flag can hold the line.
        level = 1 if (st[STAT_ENABLE] & 0x40) and st[LYC_LATCH] else 0
    if level and not st[STAT_LINE]:
        mem[IF_ADDR] |= INT_STAT
    st[STAT_LINE] = level


@njit(cache=True)
def ppu_write(st: np.ndarray, mem: np.ndarray, addr: int, value: int, now: int) -> None:
    ppu_sync(st, mem, now)
    if addr == 0xFF40:
        was_on = lcd_on(st)
        if was_on and not value & 0x80:
            st[LYC_LATCH] = 1 if ppu_ly(st, mem, now) == st[LYC] else 0
        st[LCDC] = value
        st[SPRITE_TABLE_VALID] = 0
        st[LY_CACHE_UNTIL] = -1
        if value & 0x80 and not was_on:
            st[LCD_BASE] = now + LCD_ON_DELAY
        _refresh_level(st, mem, now)
    elif addr == 0xFF41:
        # DMG quirk: during the write the HBlank, VBlank and LYC sources are briefly all
        # enabled, so a write in HBlank, VBlank or on the LYC line requests the
        # interrupt (some games rely on it).
        st[STAT_ENABLE] = 0x58
        _refresh_level(st, mem, now)
        st[STAT_ENABLE] = value & 0x78
        _refresh_level(st, mem, now)
    elif addr == 0xFF42:
        st[SCY] = value
    elif addr == 0xFF43:
        st[SCX] = value
        st[SPRITE_TABLE_VALID] = 0
    elif addr == 0xFF45:
        st[LYC] = value
        _refresh_level(st, mem, now)
    elif addr != 0xFF44:
        mem[addr] = value
    ppu_schedule(st, mem)
