"""Primes: the music a requested song continues.

A prime comes either as the three write columns (the project's event model, as on
the wire) or as a file, base64-encoded: an Avro recordings or segments file (what
``gbsynth emulate --out``, the pruner and ``format=avro`` make), a VGM/VGZ file, or a
gbsplay-style I/O dump. The song starts with the prime's writes (from cycle 0, as
recorded) and the model carries on from where it ends.
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gbsynth.common.events import CPU_HZ, ApuWrites, RecordingError


class PrimeError(ValueError):
    """A prime that cannot be used, with a message for the person who sent it."""


def prime_from_columns(
    cycles: Sequence[int], registers: Sequence[int], values: Sequence[int], max_writes: int
) -> ApuWrites:
    """Writes from the three columns; registers as 0xFF10-0xFF3F or their low bytes."""
    if not len(cycles) == len(registers) == len(values):
        raise PrimeError(
            f"prime columns differ in length: {len(cycles)} cycles, {len(registers)} "
            f"registers, {len(values)} values"
        )
    _check_size(len(cycles), max_writes)
    if any(not 0 <= v <= 0xFF for v in values):
        raise PrimeError("prime values must be bytes (0-255)")
    if any(not (0x10 <= r <= 0x3F or 0xFF10 <= r <= 0xFF3F) for r in registers):
        raise PrimeError("prime registers must be 0xFF10-0xFF3F (or their low bytes 0x10-0x3F)")
    if any(not 0 <= c < 1 << 62 for c in cycles):
        raise PrimeError("prime cycles must be non-negative")
    # Low bytes (0x10-0x3F, the wire form) and full addresses may be mixed.
    registers = [r | 0xFF00 for r in registers]
    try:
        return ApuWrites.from_arrays(cycles, registers, values)
    except (RecordingError, OverflowError, ValueError) as exc:
        raise PrimeError(f"prime writes are not a valid write log: {exc}") from exc


def prime_from_file(encoded: str, index: int, max_writes: int) -> ApuWrites:
    """Writes of the ``index``-th recording, segment or dump section of a base64 file."""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PrimeError(f"prime file is not valid base64: {exc}") from exc
    if not data:
        raise PrimeError("prime file is empty")
    try:
        if data[:4] == b"Obj\x01":
            writes = _from_avro(data, index)
        elif data[:4] == b"Vgm " or data[:2] == b"\x1f\x8b":
            writes = _from_vgm(data, index)
        else:
            writes = _from_iodump(data, index)
    except PrimeError:
        raise
    except (ValueError, OSError, EOFError) as exc:  # CodecError, VgmError, IodumpError, ...
        raise PrimeError(f"cannot read the prime file: {str(exc).splitlines()[0]}") from exc
    _check_size(len(writes), max_writes)
    try:
        writes.validate()
    except RecordingError as exc:
        raise PrimeError(f"prime writes are not a valid write log: {exc}") from exc
    return writes


def _check_size(count: int, max_writes: int) -> None:
    if count > max_writes:
        raise PrimeError(
            f"the prime has {count} writes; at most {max_writes} are accepted "
            "(GBSYNTH_GENERATOR_MAX_PRIME_WRITES): send a shorter excerpt"
        )


def _pick(items: list, index: int, kind: str):
    if not items:
        raise PrimeError(f"the prime file holds no {kind}")
    if index >= len(items):
        raise PrimeError(f"prime index {index}, but the file holds {len(items)} {kind}")
    return items[index]


def _from_avro(data: bytes, index: int) -> ApuWrites:
    from gbsynth.common.formats import read_any

    with tempfile.TemporaryDirectory(prefix="gbsynth-prime-") as folder:
        path = Path(folder) / "prime.avro"
        path.write_bytes(data)
        try:
            items = read_any(path)
        except ValueError as exc:
            # Messages name the temporary path; the sender knows it as "the prime file".
            raise PrimeError(str(exc).replace(str(path), "prime file").splitlines()[0]) from exc
    return _pick(items, index, "recordings or segments").writes


def _from_vgm(data: bytes, index: int) -> ApuWrites:
    from gbsynth.common.vgm import read_vgm

    if index != 0:
        raise PrimeError("a VGM file holds one song: prime index must be 0")
    writes, _duration, _info = read_vgm(data, max_seconds=3600.0)
    return writes


def _from_iodump(data: bytes, index: int) -> ApuWrites:
    from gbsynth.common.formats import parse_iodump

    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise PrimeError(
            "the prime file is neither an Avro recordings/segments file, a VGM file nor an I/O dump"
        ) from exc
    return _pick(parse_iodump(text), index, "dump sections").writes


def prime_seconds(writes: ApuWrites) -> float:
    """Where the prime's last write falls, in seconds."""
    return (int(writes.cycles[-1]) + 1) / CPU_HZ if len(writes) else 0.0
