"""On-disk formats: Avro container files and gbsplay's iodumper text."""

import io
import shutil
import subprocess

import fastavro
import numpy as np
import pytest

from gbsynth.common.avro import (
    CodecError,
    Segment,
    SegmentFeatures,
    recording_to_chunks,
    schema_family,
)
from gbsynth.common.events import ApuWrites, Phase, PhaseMark, Recording, Source, SourceKind
from gbsynth.common.formats import (
    IodumpError,
    file_kind,
    iter_recordings,
    parse_iodump,
    read_any,
    read_recordings,
    read_segments,
    write_iodump,
    write_recordings,
    write_segments,
)

SRC = Source(sha256="ab" * 32, file_name="x.gbs", kind=SourceKind.GBS, title="X", subsong=1)


def make_recording(n, rid, seed=0):
    rng = np.random.default_rng(seed)
    cycles = np.cumsum(rng.integers(4, 500, n))
    writes = ApuWrites.from_arrays(cycles, rng.integers(0xFF10, 0xFF40, n), rng.integers(0, 256, n))
    return Recording(
        rid,
        SRC,
        writes,
        int(cycles[-1]) + 77 if n else 100,
        seed=seed,
        phases=(PhaseMark(0, Phase.BOOT), PhaseMark(1000, Phase.OBSERVE)),
    )


# -- container files -------------------------------------------------------------------------


def test_recordings_file_round_trip(tmp_path):
    recs = [make_recording(20_000, "a"), make_recording(0, "empty"), make_recording(10, "b", 3)]
    path = tmp_path / "recs.avro"
    write_recordings(path, recs, max_writes=1000, emulator_version="test")
    assert file_kind(path) == "RecordingChunk"
    assert read_recordings(path) == recs
    assert read_any(path) == recs
    assert not list(tmp_path.glob("*.partial"))


def test_segments_file_round_trip(tmp_path):
    rec = make_recording(5000, "a")
    features = SegmentFeatures(2.0, 100, 0b0111, 12, -20.0, 120.0, {"x": 1.0})
    segs = [Segment.cut(rec, s, s + 200_000, features) for s in (0, 300_000, 600_000)]
    path = tmp_path / "segs.avro"
    write_segments(path, segs)
    assert file_kind(path) == "Segment"
    assert read_segments(path) == segs
    assert read_any(path) == segs


def test_wrong_kind_damaged_and_foreign_files(tmp_path):
    recs_path = tmp_path / "recs.avro"
    write_recordings(recs_path, [make_recording(5000, "a")])
    with pytest.raises(CodecError, match="holds RecordingChunk records, not Segment"):
        read_segments(recs_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CodecError, match="not an Avro container file"):
        read_recordings(text)
    data = recs_path.read_bytes()
    truncated = tmp_path / "truncated.avro"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CodecError):
        read_recordings(truncated)


def test_file_with_an_incomplete_recording(tmp_path):
    chunks = recording_to_chunks(make_recording(5000, "a"), max_writes=500)
    path = tmp_path / "partial.avro"
    with open(path, "wb") as fo:
        fastavro.writer(fo, schema_family("RecordingChunk").schema, chunks[:-1])
    with pytest.raises(CodecError, match="incomplete recordings: a"):
        list(iter_recordings(path))


def test_files_written_with_an_older_schema_still_read(tmp_path):
    rec = make_recording(3000, "old")
    path = tmp_path / "v1.avro"
    with open(path, "wb") as fo:
        fastavro.writer(fo, schema_family("RecordingChunk").revisions[1], recording_to_chunks(rec))
    assert read_recordings(path) == [rec]


# -- gbsplay iodumper text -------------------------------------------------------------------


def gbsplay_dump(path, seconds, *subsongs):
    if shutil.which("gbsplay") is None:
        pytest.skip("gbsplay is not on PATH (apt-get install gbsplay)")
    cmd = ["gbsplay", "-o", "iodumper", "-t", str(seconds), "-f", "0", "-T", "0", str(path)]
    result = subprocess.run(
        [*cmd, *map(str, subsongs)], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


def lines_after_header(text, subsong):
    """gbsplay's lines after a subsong's header, up to the next blank line."""
    lines = text.split("\n")
    start = lines.index(f"subsong {subsong}") + 1
    end = start
    while end < len(lines) and lines[end]:
        end += 1
    return lines[start:end]


def test_iodump_matches_gbsplay_line_by_line(shared_dir):
    text = gbsplay_dump(shared_dir / "corpus" / "nightmode.gbs", 5)
    (section,) = parse_iodump(text)
    assert section.subsong == 0
    # The set-up block is kept apart: the APU reset of FF10-FF3F, then timer and interrupts.
    setup_addresses = [a for a, _ in section.setup]
    assert setup_addresses[:48] == list(range(0xFF10, 0xFF40))
    assert set(setup_addresses[48:]) <= {0xFF06, 0xFF07, 0xFFFF}
    assert len(section.writes) > 1000
    assert section.writes.cycles[-1] < 5.1 * 4_194_304
    out = io.StringIO()
    rec = section.to_recording(SRC)
    write_iodump(rec, out, setup=section.setup)
    assert out.getvalue().split("\n") == text.split("\n")


def test_iodump_parses_several_subsongs(shared_dir):
    text = gbsplay_dump(shared_dir / "corpus" / "DevSound_demo.gbs", 1, 1, 3)
    sections = parse_iodump(text)
    assert [s.subsong for s in sections] == [0, 1, 2]
    for s, following in zip(sections, [*sections[1:], None], strict=True):
        assert len(s.setup) == len(sections[0].setup)
        assert [a for a, _ in s.setup][:48] == list(range(0xFF10, 0xFF40))
        out = io.StringIO()
        write_iodump(s.writes, out, subsong=s.subsong)
        ours = out.getvalue().split("\n")[2:-1]
        # The next subsong's set-up follows the music directly, without a blank line.
        theirs = lines_after_header(text, s.subsong)
        if following is not None:
            theirs = theirs[: -len(following.setup)]
        assert ours == theirs
    # gbsplay stops each subsong a little after the time limit; the next set-up shows when.
    for s in sections[:-1]:
        assert s.end_cycle is not None
        assert 4_194_304 <= s.end_cycle < 1.1 * 4_194_304
        assert s.end_cycle > s.writes.cycles[-1]
    assert sections[-1].end_cycle is None


def test_iodump_round_trip_and_format(tmp_path):
    writes = ApuWrites.from_arrays(
        [0x10, 0x10 + 0x1_0000_0000, 0x2_0000_0000], [0x12, 0x26, 0x30], [1, 0x80, 0xFF]
    )
    rec = Recording("r", SRC, writes, 0x2_0000_0001)
    path = tmp_path / "dump.txt"
    write_iodump(rec, path)
    text = path.read_text()
    assert text == ("\nsubsong 0\n00000010 ff12=01\n100000000 ff26=80\nfffffff0 ff30=ff\n")
    (section,) = parse_iodump(text)
    assert section.writes == writes and section.setup == ()


def test_iodump_parse_errors():
    with pytest.raises(IodumpError, match="no 'subsong N' line"):
        parse_iodump("00000000 ff10=80\n")
    with pytest.raises(IodumpError, match="line 3: not an iodumper line"):
        parse_iodump("\nsubsong 0\nhello\n")
    # gbsplay's progress lines (stderr merged in) are ignored.
    sections = parse_iodump("dumping subsong 0\n\nsubsong 0\n00000010 ff12=01\n")
    assert sections[0].writes.cycles.tolist() == [0x10]
