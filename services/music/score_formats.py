"""Which score format a file is, from its first bytes, and one entry point to read any of them.

``sniff_score`` looks at the first ``SNIFF_BYTES`` bytes (a ProTracker signature sits at
offset 1080) and the file suffix; ``read_score`` hands the whole file to the right reader.
Every failure comes out as ``ScoreError`` with a short ``reason``.
"""

from __future__ import annotations

import importlib
import re

from gbsynth.music.score import Score, ScoreError

SNIFF_BYTES = 1084
"""How many leading bytes ``sniff_score`` needs."""

SCORE_KINDS = ("musicxml", "mod", "midi", "abc")
MUSICXML_SUFFIXES = frozenset({".mxl", ".musicxml", ".xml"})

# ProTracker and compatible signatures at offset 1080. The 4-channel ones are read; the
# others are still recognised, so the MOD reader can say why it refuses them.
MOD_SIGNATURES_4 = frozenset({b"M.K.", b"M!K!", b"FLT4", b"4CHN"})
_MOD_SIGNATURE_OTHER = re.compile(rb"^(?:\dCHN|\d\dCH|\d\dCN|FLT8|CD81|OKTA|OCTA|TDZ\d)$")
_ABC_HEAD = re.compile(rb"^(?:\xef\xbb\xbf)?(?:%[^\n]*\n|\s*\n)*(?:X:\s*\d|%abc)")


def sniff_score(head: bytes, suffix: str) -> str | None:
    """``"musicxml"``, ``"mod"``, ``"midi"``, ``"abc"`` or None, from a file's first bytes
    (at least ``SNIFF_BYTES`` of them when the file is that long) and its suffix."""
    suffix = suffix.lower()
    if not suffix.startswith(".") and suffix:
        suffix = "." + suffix
    if head[:4] == b"MThd" or (head[:4] == b"RIFF" and head[8:12] == b"RMID"):
        return "midi"
    if head[:4] == b"PK\x03\x04":
        # A compressed MusicXML file is a zip whose first entry is usually the container.
        if suffix == ".mxl" or b"META-INF/container.xml" in head or b"musicxml" in head:
            return "musicxml"
        return None
    if _looks_like_musicxml(head):
        return "musicxml"
    signature = head[1080:1084]
    if signature in MOD_SIGNATURES_4 or _MOD_SIGNATURE_OTHER.match(signature):
        return "mod"
    if suffix == ".mod" and len(head) >= 600:
        return "mod"  # a 15-sample Soundtracker module has no signature; the reader says so
    if suffix == ".abc" or _ABC_HEAD.match(head):
        return "abc"
    return None


def _looks_like_musicxml(head: bytes) -> bool:
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            head = head.decode("utf-16", errors="ignore").encode()
        except UnicodeError:
            return False
    start = head.lstrip()[:1]
    return start == b"<" and (b"<score-partwise" in head or b"<score-timewise" in head)


def read_score(data: bytes, name: str, kind: str | None = None) -> Score:
    """A checked ``Score`` from a whole file. ``kind`` (one of ``SCORE_KINDS``) skips sniffing.

    Raises ``ScoreError`` when the file is no score this project reads, or a broken one.
    """
    if kind is None:
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        kind = sniff_score(data[:SNIFF_BYTES], suffix)
        if kind is None:
            raise ScoreError(f"{name}: not a MusicXML, MIDI, MOD or ABC file", "unknown_format")
    if kind not in SCORE_KINDS:
        raise ScoreError(f"{name}: unknown score kind {kind!r}", "unknown_format")
    module_name = f"gbsynth.music.{kind}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        # The MIDI reader lives on another branch until it is merged.
        raise ScoreError(f"{kind} reader not available", "unsupported") from None
    return getattr(module, f"read_{kind}")(data, name)
