"""Fuzzed score files: every mutated MusicXML, .mxl and MOD file gives a checked ``Score`` or
a ``ScoreError`` with a reason, never another exception. Mutations are seeded, so a failure
names the seed that reproduces it."""

from __future__ import annotations

import io
import random
import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_score_mod import A4, C4, D4, E4, build_mod
from test_score_musicxml import ATTRS, mxl, note, partwise

from gbsynth.music.mod import read_mod
from gbsynth.music.musicxml import read_musicxml
from gbsynth.music.score import Score, ScoreError
from gbsynth.music.score_formats import SCORE_KINDS, SNIFF_BYTES, read_score, sniff_score

SMALL_LIED = "openscore-lieder/scores/Reichardt_Louise/12_Gesange/7_Volkslied/lc5001925.mxl"
SMALL_MOD = "gbstudio-mods/Music/Overworld/Darkstone.mod"
# A whole element text or attribute value that is a number.
_NUMBER = re.compile(rb"(?<=[>'\"])\d+(?:\.\d+)?(?=[<'\"])")
_ODD_NUMBERS = [b"0", b"-1", b"999999999", b"1e400", b"0.0001", b"65", b"7", b"3", b"128"]


def flip_bits(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def splice(rng: random.Random, data: bytes) -> bytes:
    """Delete, duplicate or overwrite a random stretch."""
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.randint(1, 400))
    choice = rng.randrange(3)
    if choice == 0:
        return data[:i] + data[j:]
    if choice == 1:
        return data[:j] + data[i:j] * rng.randint(1, 5) + data[j:]
    return data[:i] + bytes(rng.randrange(256) for _ in range(j - i)) + data[j:]


def odd_numbers(rng: random.Random, data: bytes) -> bytes:
    """Replace some numbers in an XML text with zero, negative, huge or odd ones."""
    matches = list(_NUMBER.finditer(data))
    if not matches:
        return data
    out = data
    for match in sorted(
        rng.sample(matches, min(len(matches), rng.randint(1, 6))), key=lambda m: -m.start()
    ):
        out = out[: match.start()] + rng.choice(_ODD_NUMBERS) + out[match.end() :]
    return out


def zip_fields(rng: random.Random, data: bytes) -> bytes:
    """Corrupt a length, size or offset field of a zip local or central header."""
    out = bytearray(data)
    heads = [m.start() for m in re.finditer(rb"PK\x01\x02|PK\x03\x04|PK\x05\x06", data)]
    at = rng.choice(heads)
    field = at + rng.choice((18, 22, 26, 28) if out[at + 2] == 3 else (20, 24, 28, 30, 42))
    field = min(field, len(out) - 4)
    out[field : field + 4] = struct.pack(
        "<I", rng.choice((0, 1, 0xFFFFFFFF, rng.randrange(1 << 32)))
    )
    return bytes(out)


def mod_fields(rng: random.Random, data: bytes) -> bytes:
    """Corrupt the song length, an order, a sample length or a pattern effect."""
    if len(data) < 1084:
        return data
    out = bytearray(data)
    choice = rng.randrange(4)
    if choice == 0:
        out[950] = rng.randrange(256)
    elif choice == 1:
        out[952 + rng.randrange(128)] = rng.randrange(256)
    elif choice == 2:
        at = 42 + 30 * rng.randrange(31)
        out[at : at + 2] = struct.pack(">H", rng.randrange(1 << 16))
    else:
        cell = 1084 + 4 * rng.randrange(max(1, (len(data) - 1084) // 4))
        if cell + 4 <= len(out):
            out[cell + 2] = (out[cell + 2] & 0xF0) | rng.choice((0x0, 0xB, 0xC, 0xD, 0xE, 0xF))
            out[cell + 3] = rng.randrange(256)
    return bytes(out)


# Numbers are where the meaning is; most bit flips only break the XML's well-formedness.
TEXT_MUTATORS = [flip_bits, truncate, splice, odd_numbers, odd_numbers, odd_numbers]


def run(reader: Callable[[bytes, str], Score], base: bytes, mutators, count: int, seed: int):
    rng = random.Random(seed)
    outcomes = {"score": 0, "error": 0}
    for case in range(count):
        data = base
        for _ in range(rng.randint(1, 3)):
            data = rng.choice(mutators)(rng, data) or data
        try:
            score = reader(data, f"fuzz{case}")
        except ScoreError as exc:
            assert exc.reason and str(exc), f"seed {seed} case {case}: empty ScoreError"
            outcomes["error"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            raise AssertionError(f"seed {seed} case {case}: {type(exc).__name__}: {exc}") from exc
        score.check()
        outcomes["score"] += 1
    return outcomes


def feature_xml() -> bytes:
    """A small score with chords, ties, backup, repeats, endings, dynamics and tempo."""
    repeat = "<barline location='right'><repeat direction='backward'/></barline>"
    ending = "<barline><ending number='1' type='start'/></barline>"
    dynamics = (
        "<direction><direction-type><dynamics><pp/></dynamics><metronome><beat-unit>half"
        "</beat-unit><per-minute>60</per-minute></metronome></direction-type>"
        "<sound tempo='120' dynamics='40'/></direction>"
    )
    return partwise(
        [
            ATTRS + dynamics + note("C", 4, 4, "<tie type='start'/>") + note("E", 4, 4, "<chord/>"),
            note("C", 4, 2, "<tie type='stop'/>")
            + "<backup><duration>2</duration></backup>"
            + note("G", 3, 6)
            + repeat,
            ending + note("A", 4, 8, alter=-1) + repeat.replace("right", "left"),
        ],
        [
            ATTRS.replace("<time>", "<transpose><chromatic>-3</chromatic></transpose><time>")
            + note("D", 5, 8)
        ]
        * 3,
    )


def real_file(shared_dir: Path | None, path: str) -> bytes | None:
    if shared_dir is None:
        return None
    full = shared_dir / "pretrain" / path
    return full.read_bytes() if full.is_file() else None


@pytest.fixture
def shared_or_none(request) -> Path | None:
    try:
        return request.getfixturevalue("shared_dir")
    except pytest.skip.Exception:
        return None


def test_fuzzed_musicxml_text():
    outcomes = run(read_musicxml, feature_xml(), TEXT_MUTATORS, 600, 1)
    assert outcomes["score"] > 50 and outcomes["error"] > 50


def test_fuzzed_real_musicxml(shared_or_none):
    data = real_file(shared_or_none, SMALL_LIED)
    if data is None:
        pytest.skip("OpenScore lieder not present")
    xml = zipfile.ZipFile(io.BytesIO(data)).read("score.xml")
    run(read_musicxml, xml, TEXT_MUTATORS, 300, 2)
    outcomes = run(read_musicxml, data, [flip_bits, truncate, zip_fields], 200, 3)
    assert outcomes["error"] > 100


def test_fuzzed_mxl_zip():
    outcomes = run(
        read_musicxml, mxl(feature_xml()), [flip_bits, truncate, zip_fields, splice], 300, 4
    )
    assert outcomes["error"] > 100


def test_fuzzed_mod(shared_or_none):
    cells = {
        (0, 0, 0): (1, C4, 0x0, 0x37),
        (0, 1, 1): (2, D4, 0xC, 0x20),
        (0, 2, 2): (3, E4, 0xE, 0xC2),
        (0, 3, 3): (29, A4, 0xF, 0x04),
        (1, 0, 0): (1, C4, 0xD, 0x10),
        (1, 5, 1): (2, D4, 0xB, 0x00),
    }
    base = build_mod(cells, orders=[0, 1, 0], sample_bytes=64)
    mutators = [flip_bits, truncate, splice, mod_fields, mod_fields]
    outcomes = run(read_mod, base, mutators, 600, 5)
    assert outcomes["score"] > 50 and outcomes["error"] > 50
    real = real_file(shared_or_none, SMALL_MOD)
    if real is not None:
        run(read_mod, real, mutators, 200, 6)


@settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(
    st.binary(max_size=SNIFF_BYTES + 200),
    st.sampled_from(["", ".mxl", ".xml", ".mod", ".mid", ".abc", ".bin"]),
)
def test_any_bytes_sniff_and_read(data: bytes, suffix: str):
    kind = sniff_score(data[:SNIFF_BYTES], suffix)
    assert kind is None or kind in SCORE_KINDS
    try:
        read_score(data, "f" + suffix)
    except ScoreError:
        pass
