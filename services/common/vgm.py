"""VGM files for the Game Boy DMG: read them as recordings, write recordings as VGM.

VGM 1.61 and later log DMG sound-register writes with command ``0xB3 aa dd``
(register ``0xFF10 + aa``, value ``dd``; bit 7 of ``aa`` selects a second chip)
between wait commands counted in 44,100 Hz samples. A write at sample ``s``
happens at T-cycle ``s * clock // 44100``: computed from the running sample
count, so no rounding error accumulates over a long file.

The header's DMG clock is at offset 0x80; the command stream starts at
``0x34 + uint32@0x34``; the optional GD3 tag (titles, author) at
``0x14 + uint32@0x14``; the loop point at ``0x1C + uint32@0x1C``.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass

import numpy as np
from numba import njit

from gbsynth.common.events import CPU_HZ, REGISTER_FIRST, REGISTER_LAST, ApuWrites

VGM_RATE = 44_100
VGM_MAGIC = b"Vgm "
GD3_MAGIC = b"Gd3 "
MIN_DMG_VERSION = 0x161
HEADER_SIZE = 0x100

_DMG_WRITE = 0xB3

# Total length in bytes (command byte included) of each VGM command, as data;
# 0 marks commands handled specially (waits, end, data blocks) or unknown.
_COMMAND_LENGTH = np.zeros(256, dtype=np.int64)
_COMMAND_LENGTH[0x30:0x50] = 2
_COMMAND_LENGTH[0x4F] = 2
_COMMAND_LENGTH[0x50] = 2
_COMMAND_LENGTH[0x51:0x60] = 3
_COMMAND_LENGTH[0x68] = 12
_COMMAND_LENGTH[0x90:0x96] = [5, 5, 6, 11, 2, 5]
_COMMAND_LENGTH[0xA0:0xC0] = 3
_COMMAND_LENGTH[0xC0:0xE0] = 4
_COMMAND_LENGTH[0xE0:0x100] = 5

# Exit codes of the numba parser.
_END_OK = 0
_END_TRUNCATED = 1
_END_UNKNOWN_COMMAND = 2
_END_FULL = 3


class VgmError(ValueError):
    """A file is not a usable DMG VGM file."""


@dataclass(frozen=True)
class VgmInfo:
    version: int
    dmg_clock: int
    total_samples: int
    loop_samples: int
    data_offset: int
    loop_offset: int  # absolute, 0 when the file does not loop
    title: str
    game: str
    author: str
    second_chip: bool


@njit(cache=True)
def _parse_commands(
    data, pos, loop_pos, clock, max_cycles, max_loops, out_cycles, out_regs, out_values, status
):
    """Walk the command stream; returns the number of writes stored.

    ``status`` receives [exit code, offending offset, final sample count, second-chip writes].
    """
    n = 0
    samples = 0
    loops_done = 0
    second_chip = 0
    size = data.shape[0]
    limit = out_cycles.shape[0]
    while True:
        cycle_now = samples * clock // 44100
        if cycle_now >= max_cycles:
            status[0] = _END_OK
            break
        if pos >= size:
            status[0] = _END_TRUNCATED
            break
        cmd = data[pos]
        if cmd == 0xB3:
            if pos + 2 >= size:
                status[0] = _END_TRUNCATED
                break
            reg = data[pos + 1]
            if reg & 0x80:
                second_chip += 1
            elif reg <= 0x2F:
                if n >= limit:
                    status[0] = _END_FULL
                    break
                out_cycles[n] = cycle_now
                out_regs[n] = 0xFF10 + reg
                out_values[n] = data[pos + 2]
                n += 1
            pos += 3
        elif cmd == 0x61:
            if pos + 2 >= size:
                status[0] = _END_TRUNCATED
                break
            samples += data[pos + 1] | (data[pos + 2] << 8)
            pos += 3
        elif cmd == 0x62:
            samples += 735
            pos += 1
        elif cmd == 0x63:
            samples += 882
            pos += 1
        elif cmd >= 0x70 and cmd <= 0x8F:
            # 0x7n waits n+1 samples; 0x8n (YM2612 DAC write + wait n) waits n.
            samples += (cmd & 0x0F) + 1 if cmd < 0x80 else (cmd & 0x0F)
            pos += 1
        elif cmd == 0x66:
            if loop_pos > 0 and loops_done < max_loops:
                loops_done += 1
                pos = loop_pos
                continue
            status[0] = _END_OK
            break
        elif cmd == 0x67:
            if pos + 6 >= size:
                status[0] = _END_TRUNCATED
                break
            block = (
                data[pos + 3]
                | (data[pos + 4] << 8)
                | (data[pos + 5] << 16)
                | ((data[pos + 6] & 0x7F) << 24)
            )
            pos += 7 + block
        else:
            length = _COMMAND_LENGTH[cmd]
            if length == 0:
                status[0] = _END_UNKNOWN_COMMAND
                break
            pos += length
    status[1] = pos
    status[2] = samples
    status[3] = second_chip
    return n


def _u32(data: bytes, offset: int) -> int:
    return struct.unpack_from("<I", data, offset)[0] if len(data) >= offset + 4 else 0


def _read_gd3(data: bytes, offset: int) -> list[str]:
    if offset <= 0 or offset + 12 > len(data) or data[offset : offset + 4] != GD3_MAGIC:
        return []
    length = _u32(data, offset + 8)
    raw = data[offset + 12 : offset + 12 + length]
    try:
        return raw.decode("utf-16-le", errors="replace").split("\x00")
    except UnicodeDecodeError:  # pragma: no cover - errors="replace" never raises
        return []


def read_vgm_info(data: bytes) -> VgmInfo:
    """Parse and check a VGM header; ``data`` may be gzip-compressed (.vgz)."""
    if len(data) < 0x40 or data[:4] != VGM_MAGIC:
        raise VgmError("not a VGM file (no 'Vgm ' signature)")
    version = _u32(data, 0x08)
    if version < MIN_DMG_VERSION:
        raise VgmError(
            f"VGM version {version >> 8:x}.{version & 0xFF:02x} has no Game Boy DMG chip "
            "(needs 1.61 or later)"
        )
    if len(data) < 0x84:
        raise VgmError("VGM header is truncated")
    clock_field = _u32(data, 0x80)
    dmg_clock = clock_field & 0x3FFFFFFF
    if dmg_clock == 0:
        raise VgmError("VGM file does not use the Game Boy DMG chip (clock 0 at 0x80)")
    rel = _u32(data, 0x34)
    data_offset = 0x34 + rel if rel else 0x40
    if data_offset >= len(data):
        raise VgmError(f"VGM data offset 0x{data_offset:X} is past the end of the file")
    loop_rel = _u32(data, 0x1C)
    gd3_rel = _u32(data, 0x14)
    tags = _read_gd3(data, 0x14 + gd3_rel) if gd3_rel else []
    tags += [""] * (11 - len(tags))
    return VgmInfo(
        version=version,
        dmg_clock=dmg_clock,
        total_samples=_u32(data, 0x18),
        loop_samples=_u32(data, 0x20),
        data_offset=data_offset,
        loop_offset=0x1C + loop_rel if loop_rel else 0,
        title=tags[0] or tags[2],
        game=tags[2],
        author=tags[6],
        second_chip=bool(clock_field & 0x40000000),
    )


def decompress(data: bytes) -> bytes:
    """Undo .vgz gzip compression when present."""
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise VgmError(f"broken gzip (.vgz) data: {exc}") from exc
    return data


def read_vgm(
    data: bytes, *, max_seconds: float | None = None, max_loops: int = 0
) -> tuple[ApuWrites, int, VgmInfo]:
    """Read a DMG VGM file into writes with exact cycle times.

    Returns ``(writes, duration_cycles, info)``. The stream is played once, then
    repeated from its loop point up to ``max_loops`` more times, and cut at
    ``max_seconds`` when given. Writes to the second chip of a dual-chip file are
    skipped (a DMG has one APU).
    """
    data = decompress(data)
    info = read_vgm_info(data)
    buf = np.frombuffer(data, dtype=np.uint8)
    max_cycles = (1 << 62) if max_seconds is None else int(max_seconds * CPU_HZ)
    # A write command is 3 bytes: this bounds the writes of one pass.
    capacity = max(16, buf.shape[0] // 3 + 1) * (max_loops + 1)
    cycles = np.empty(capacity, dtype=np.int64)
    regs = np.empty(capacity, dtype=np.uint16)
    values = np.empty(capacity, dtype=np.uint8)
    status = np.zeros(4, dtype=np.int64)
    n = _parse_commands(
        buf,
        info.data_offset,
        info.loop_offset,
        info.dmg_clock,
        max_cycles,
        max_loops,
        cycles,
        regs,
        values,
        status,
    )
    code, offset, samples = int(status[0]), int(status[1]), int(status[2])
    if code == _END_UNKNOWN_COMMAND:
        raise VgmError(f"unknown VGM command 0x{int(buf[offset]):02X} at offset 0x{offset:X}")
    if code == _END_TRUNCATED:
        raise VgmError(f"VGM command stream is truncated at offset 0x{offset:X}")
    duration = samples * info.dmg_clock // VGM_RATE
    if max_seconds is not None:
        duration = min(duration, max_cycles)
    last = int(cycles[n - 1]) if n else -1
    writes = ApuWrites(cycles[:n].copy(), regs[:n].copy(), values[:n].copy())
    return writes, max(duration, last + 1), info


def _gd3_block(title: str, author: str, notes: str) -> bytes:
    fields = [title, "", "", "", "Nintendo Game Boy", "", author, "", "", "gbsynth", notes]
    body = "".join(f + "\x00" for f in fields).encode("utf-16-le")
    return GD3_MAGIC + struct.pack("<II", 0x100, len(body)) + body


def write_vgm(
    writes: ApuWrites,
    duration_cycles: int,
    *,
    title: str = "",
    author: str = "gbsynth",
    notes: str = "",
) -> bytes:
    """Encode writes as a VGM 1.61 file for the DMG (uncompressed).

    Each write lands on the 44,100 Hz sample nearest its cycle, computed from
    the absolute cycle (no drift); VGM cannot hold finer timing than that.
    """
    writes.validate()
    if len(writes) and (
        writes.registers.min() < REGISTER_FIRST or writes.registers.max() > REGISTER_LAST
    ):
        raise VgmError("writes outside the sound registers")
    sample_of_write = (writes.cycles * VGM_RATE + CPU_HZ // 2) // CPU_HZ
    total_samples = max(
        (duration_cycles * VGM_RATE + CPU_HZ // 2) // CPU_HZ,
        int(sample_of_write[-1]) if len(writes) else 0,
    )
    out = bytearray()

    def wait(samples: int) -> None:
        while samples > 0:
            if samples == 735:
                out.append(0x62)
                return
            if samples == 882:
                out.append(0x63)
                return
            if samples <= 16:
                out.append(0x70 + samples - 1)
                return
            step = min(samples, 0xFFFF)
            out.extend((0x61, step & 0xFF, step >> 8))
            samples -= step

    current = 0
    regs = (writes.registers - REGISTER_FIRST).astype(np.uint8)
    for sample, reg, value in zip(
        sample_of_write.tolist(), regs.tolist(), writes.values.tolist(), strict=True
    ):
        wait(sample - current)
        current = sample
        out.extend((_DMG_WRITE, reg, value))
    wait(total_samples - current)
    out.append(0x66)

    gd3 = _gd3_block(title, author, notes)
    header = bytearray(HEADER_SIZE)
    header[0:4] = VGM_MAGIC
    struct.pack_into("<I", header, 0x08, MIN_DMG_VERSION)
    struct.pack_into("<I", header, 0x18, total_samples)
    struct.pack_into("<I", header, 0x34, HEADER_SIZE - 0x34)
    struct.pack_into("<I", header, 0x80, CPU_HZ)
    gd3_offset = HEADER_SIZE + len(out)
    struct.pack_into("<I", header, 0x14, gd3_offset - 0x14)
    struct.pack_into("<I", header, 0x04, gd3_offset + len(gd3) - 0x04)
    return bytes(header) + bytes(out) + gd3
