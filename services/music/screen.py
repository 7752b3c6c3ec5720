"""A title screen for our ROMs: a few centred lines of text in a small font of our own.

``SCREEN_SOURCE`` is SM83 code (``ShowScreen``) that loads the font into tile
memory, clears the background map and writes the lines, with the LCD off. The
caller must switch the LCD off only during VBlank (real hardware can be damaged
otherwise) and on again afterwards. ``screen_data`` gives the assembler source of
the font and the text.
"""

from __future__ import annotations

COLUMNS = 20
ROWS = 18

# 5x7 glyphs on an 8x8 tile ('#' = ink); the first is the blank tile.
GLYPHS: dict[str, tuple[str, ...]] = {
    " ": ("", "", "", "", "", "", ""),
    "A": (" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "B": ("#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "),
    "C": (" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "),
    "D": ("#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "),
    "E": ("#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"),
    "F": ("#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "),
    "G": (" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"),
    "H": ("#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "I": (" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "J": ("  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "),
    "K": ("#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"),
    "L": ("#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"),
    "M": ("#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"),
    "N": ("#   #", "##  #", "# # #", "#  ##", "#   #", "#   #", "#   #"),
    "O": (" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "),
    "P": ("#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "),
    "Q": (" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"),
    "R": ("#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"),
    "S": (" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "),
    "T": ("#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "),
    "U": ("#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "),
    "V": ("#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "),
    "W": ("#   #", "#   #", "#   #", "# # #", "# # #", "## ##", "#   #"),
    "X": ("#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"),
    "Y": ("#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "),
    "Z": ("#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"),
    "0": (" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "),
    "1": ("  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "2": (" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"),
    "3": ("#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "),
    "4": ("   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "),
    "5": ("#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "),
    "6": ("  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "),
    "7": ("#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "),
    "8": (" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "),
    "9": (" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "),
    "#": (" # # ", " # # ", "#####", " # # ", "#####", " # # ", " # # "),
    "-": ("", "", "", "#####", "", "", ""),
    ".": ("", "", "", "", "", " ##  ", " ##  "),
    ":": ("", " ##  ", " ##  ", "", " ##  ", " ##  ", ""),
    "/": ("    #", "    #", "   # ", "  #  ", " #   ", "#    ", "#    "),
    "'": ("  #  ", "  #  ", " #   ", "", "", "", ""),
    "(": ("   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # "),
    ")": (" #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   "),
    "!": ("  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "", "  #  "),
    "?": (" ### ", "#   #", "    #", "   # ", "  #  ", "", "  #  "),
    ",": ("", "", "", "", " ##  ", "  #  ", " #   "),
    "+": ("", "  #  ", "  #  ", "#####", "  #  ", "  #  ", ""),
}
CHARACTERS = "".join(GLYPHS)
"""Tile number of a character = its index here."""


def glyph_bytes(char: str) -> bytes:
    """The 8 rows of a character's 1-bit tile (a blank top row, then 7 rows)."""
    rows = GLYPHS[char]
    out = [0]
    for row in rows:
        bits = 0
        for x, ch in enumerate(row.ljust(5)):
            if ch == "#":
                bits |= 0x40 >> x  # columns 1-5 of the tile
        out.append(bits)
    return bytes(out)


def screen_text(lines: list[str]) -> list[tuple[int, int, str]]:
    """(row, column, text) of each line, centred, upper case, unknown characters as '?'."""
    lines = lines[:ROWS]
    top = (ROWS - len(lines)) // 2
    out = []
    for i, line in enumerate(lines):
        text = "".join(ch if ch in GLYPHS else "?" for ch in line.upper())[:COLUMNS].strip()
        out.append((top + i, (COLUMNS - len(text)) // 2, text))
    return out


def screen_data(lines: list[str]) -> str:
    """Assembler source of the font and the lines (``ScreenFont``, ``ScreenText``)."""
    out = ["ScreenFont:"]
    for char in CHARACTERS:
        data = ", ".join(f"${b:02X}" for b in glyph_bytes(char))
        out.append(f"        db {data}  ; {char!r}")
    out.append(f"SCREEN_GLYPHS equ {len(CHARACTERS)}")
    out.append("ScreenText:                     ; map address, length, tiles; then 0")
    for row, column, text in screen_text(lines):
        if not text:
            continue
        tiles = ", ".join(str(CHARACTERS.index(ch)) for ch in text)
        out.append(f"        dw $9800 + {row} * 32 + {column}")
        out.append(f"        db {len(text)}, {tiles}")
    out.append("        dw 0")
    return "\n".join(out) + "\n"


SCREEN_SOURCE = r"""
; ScreenSetup: wait for VBlank (with the VBlank interrupt: the caller's handler must do
; nothing harmful yet), switch the LCD off, draw, switch it on. Returns with interrupts off.
ScreenSetup:
        ldh a, [$FF40]
        bit 7, a
        jr z, .lcdOff           ; already off: no VBlank to wait for
        ld a, $01
        ldh [$FFFF], a
        xor a
        ldh [$FF0F], a
        ei
        halt                    ; VBlank: the only time the LCD may be switched off
        di
.lcdOff:
        xor a
        ldh [$FF40], a
        call ShowScreen
        ld a, $91               ; LCD on, background on, tiles at $8000, map at $9800
        ldh [$FF40], a
        ret

; ShowScreen: font to tiles $8000+, blank map, the text lines, palette. LCD must be off.
ShowScreen:
        ld hl, $8000
        ld de, ScreenFont
        ld b, SCREEN_GLYPHS
.glyph:
        ld c, 8
.row:
        ld a, [de]              ; 1-bit rows to 2-bit tiles: ink in both planes
        inc de
        ld [hl+], a
        ld [hl+], a
        dec c
        jr nz, .row
        dec b
        jr nz, .glyph
        ld hl, $9800            ; the map: all blank (tile 0)
        ld bc, 32 * 32
.clear:
        xor a
        ld [hl+], a
        dec bc
        ld a, b
        or c
        jr nz, .clear
        ld de, ScreenText
.line:
        ld a, [de]
        ld l, a
        inc de
        ld a, [de]
        ld h, a
        inc de
        or l
        jr z, .palette
        ld a, [de]
        ld b, a
        inc de
.char:
        ld a, [de]
        inc de
        ld [hl+], a
        dec b
        jr nz, .char
        jr .line
.palette:
        ld a, $E4               ; ink black on white
        ldh [$FF47], a
        xor a
        ldh [$FF42], a          ; SCY
        ldh [$FF43], a          ; SCX
        ret
"""
