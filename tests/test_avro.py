"""Avro schemas, the message codec, recording <-> chunks and reassembly."""

import io
import json
import random

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gbsynth.common import avro
from gbsynth.common.avro import (
    RECORD_TYPES,
    CodecError,
    RecordingAssembler,
    Segment,
    SegmentFeatures,
    chunks_to_recording,
    codec,
    decode_chunk,
    decode_segment,
    encode_chunk,
    encode_recording,
    encode_segment,
    recording_to_chunks,
    schema_dir,
    schema_family,
)
from gbsynth.common.events import (
    ApuWrites,
    Phase,
    PhaseMark,
    Recording,
    Source,
    SourceKind,
    register_snapshot,
)

SRC = Source(sha256="cd" * 32, file_name="song.gbs", kind=SourceKind.GBS, title="Song", subsong=2)


def make_recording(n=10_000, seed=0, rid="rec-1", phases=(), gap=300) -> Recording:
    rng = np.random.default_rng(seed)
    cycles = np.cumsum(rng.integers(0, gap, n))
    writes = ApuWrites.from_arrays(cycles, rng.integers(0xFF10, 0xFF40, n), rng.integers(0, 256, n))
    duration = int(cycles[-1]) + 1 + 1000 if n else 5000
    return Recording(rid, SRC, writes, duration, seed=seed, phases=tuple(phases))


# -- schemas ---------------------------------------------------------------------------------


def test_every_schema_documents_every_record_and_field():
    files = sorted(schema_dir().glob("*.avsc"))
    assert len(files) >= 6

    def check(node, where):
        if isinstance(node, dict):
            if node.get("type") in ("record", "enum"):
                assert node.get("doc"), f"{where}: {node.get('name')} has no doc"
            if node.get("type") == "record":
                assert node.get("namespace", "gbsynth.v1") == "gbsynth.v1"
                for f in node["fields"]:
                    assert f.get("doc"), f"{where}: field {f['name']} has no doc"
                    check(f["type"], where)
            for key in ("items", "values"):
                if key in node:
                    check(node[key], where)
        elif isinstance(node, list):
            for branch in node:
                check(branch, where)

    for path in files:
        check(json.loads(path.read_text()), path.name)


def test_shared_source_definition_is_identical():
    def source_of(path):
        schema = json.loads(path.read_text())
        return next(f["type"] for f in schema["fields"] if f["name"] == "source")

    chunk = source_of(schema_dir() / "recording_chunk.v2.avsc")
    assert source_of(schema_dir() / "recording_chunk.v1.avsc") == chunk
    assert source_of(schema_dir() / "segment.v1.avsc") == chunk
    # revision 3 / 2: score kinds, licence and arrangement
    assert source_of(schema_dir() / "segment.v2.avsc") == source_of(
        schema_dir() / "recording_chunk.v3.avsc"
    )


@pytest.mark.parametrize("name", list(RECORD_TYPES))
def test_each_revision_reads_data_of_the_previous_one(name):
    """Schema evolution: revision N resolves data written with revision N-1."""
    family = schema_family(name)
    for rev in range(2, family.latest + 1):
        older, newer = family.revisions[rev - 1], family.revisions[rev]
        record = _example(name)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, older, record)
        buf.seek(0)
        read = fastavro.schemaless_reader(buf, older, newer)
        for key in record:
            if isinstance(record[key], dict):  # a nested record: the fields both revisions have
                assert {k: read[key][k] for k in record[key] if k in read[key]} == {
                    k: v for k, v in record[key].items() if k in read[key]
                }
            else:
                assert read[key] == record[key]


def test_chunk_v2_reads_v1_messages_with_default_version():
    chunk = recording_to_chunks(make_recording(100), emulator_version="0.1.0")[0]
    c = codec("RecordingChunk")
    assert c.family.latest >= 2
    old = c.encode(chunk, revision=1)
    assert old[2] == 1
    assert c.decode(old)["emulator_version"] == ""
    assert c.decode(c.encode(chunk))["emulator_version"] == "0.1.0"


def _example(name):
    rec = make_recording(50)
    if name == "RecordingChunk":
        return recording_to_chunks(rec)[0]
    if name == "Segment":
        return avro.segment_to_record(_segment(rec))
    return {
        "CheckpointAnnouncement": {
            "path": "ckpt/step-100.pt",
            "step": 100,
            "created_unix_ms": 1_700_000_000_000,
            "train_loss": 2.5,
            "heldout_nll": None,
            "model_config": json.dumps({"layers": 4}),
            "sha256": "ef" * 32,
        },
        "DeadLetter": {
            "topic": "apu.recordings",
            "partition": 3,
            "offset": 42,
            "key": b"k",
            "value": b"\x00garbage",
            "error": "CodecError: bad frame",
            "service": "pruner",
            "failed_unix_ms": 1_700_000_000_000,
        },
        "Job": {
            "job_id": "job-1",
            "path": "music/song.gbs",
            "kind": "gbs",
            "subsong": 3,
            "seed": 7,
            "seconds": 90.0,
            "explore": {
                "boot_seconds": 2.0,
                "observe_seconds": 20.0,
                "press_seconds": 0.2,
                "settle_seconds": 3.0,
            },
            "enqueued_unix_ms": 1_700_000_000_000,
        },
    }[name]


@pytest.mark.parametrize("name", list(RECORD_TYPES))
def test_codec_round_trip_every_type(name):
    record = _example(name)
    c = codec(name)
    payload = c.encode(record)
    assert payload[:3] == bytes((0xB5, RECORD_TYPES[name][1], c.family.latest))
    decoded = c.decode(payload)
    for key, value in record.items():
        assert decoded[key] == value


# -- malformed input -------------------------------------------------------------------------


def test_decode_rejects_wrong_type_truncation_and_garbage():
    chunk_bytes = encode_chunk(recording_to_chunks(make_recording(200))[0])
    with pytest.raises(CodecError, match="expected a Segment message, got a RecordingChunk"):
        decode_segment(chunk_bytes)
    for cut in (0, 2, 3, 10, len(chunk_bytes) // 2, len(chunk_bytes) - 1):
        with pytest.raises(CodecError):
            decode_chunk(chunk_bytes[:cut])
    with pytest.raises(CodecError, match="left over"):
        decode_chunk(chunk_bytes + b"\x00")
    with pytest.raises(CodecError, match="not a gbsynth message"):
        decode_chunk(b'{"json": "instead"}')
    with pytest.raises(CodecError, match="tombstone"):
        decode_chunk(None)
    with pytest.raises(CodecError, match="newer"):
        decode_chunk(bytes((0xB5, 1, 99)) + chunk_bytes[3:])


def test_decode_rejects_columns_of_wrong_length():
    chunk = recording_to_chunks(make_recording(200))[0]
    for column, cut in (("cycles", 8), ("registers", 1), ("values", 1)):
        bad = dict(chunk, **{column: chunk[column][:-cut]})
        with pytest.raises(CodecError, match="columns do not match write_count"):
            decode_chunk(encode_chunk(bad))


def test_invalid_writes_in_columns_are_rejected():
    chunk = recording_to_chunks(make_recording(200))[0]
    backwards = np.frombuffer(chunk["cycles"], "<i8")[::-1].copy()
    with pytest.raises(CodecError, match="backwards"):
        chunks_to_recording([dict(chunk, cycles=backwards.tobytes(), last=True)])
    bad_register = bytearray(chunk["registers"])
    bad_register[5] = 0x40
    with pytest.raises(CodecError, match="outside the sound registers"):
        avro.chunk_writes(dict(chunk, registers=bytes(bad_register)))
    with pytest.raises(CodecError, match="outside its span"):
        avro.chunk_writes(dict(chunk, end_cycle=int(backwards[-1])))


def test_encode_rejects_records_that_do_not_fit_the_schema():
    chunk = recording_to_chunks(make_recording(10))[0]
    with pytest.raises(CodecError, match="cannot encode"):
        encode_chunk(dict(chunk, sequence="zero"))
    with pytest.raises(CodecError, match="cannot encode"):
        encode_chunk({k: v for k, v in chunk.items() if k != "recording_id"})


# -- chunking --------------------------------------------------------------------------------


def test_chunks_tile_the_recording_and_respect_limits():
    rec = make_recording(20_000, phases=[PhaseMark(0, Phase.BOOT), PhaseMark(50_000, Phase.PRESS)])
    chunks = recording_to_chunks(rec, max_writes=1000, max_cycles=100_000)
    assert [c["sequence"] for c in chunks] == list(range(len(chunks)))
    assert [c["last"] for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[0]["start_cycle"] == 0 and chunks[-1]["end_cycle"] == rec.duration_cycles
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a["end_cycle"] == b["start_cycle"]
    assert all(c["write_count"] <= 1000 for c in chunks)
    assert all(c["end_cycle"] - c["start_cycle"] <= 100_000 for c in chunks)
    assert sum(c["write_count"] for c in chunks) == len(rec)
    # Every chunk knows its phase; marks travel in the chunk they fall in.
    assert chunks[0]["start_phase"] == "boot"
    press_chunk = next(c for c in chunks if c["start_cycle"] <= 50_000 < c["end_cycle"])
    assert {"cycle": 50_000, "phase": "press"} in press_chunk["phase_marks"]
    assert sum(len(c["phase_marks"]) for c in chunks) == 2
    assert chunks[-1]["start_phase"] == "press"
    assert chunks_to_recording(chunks) == rec


def test_chunking_is_deterministic():
    rec = make_recording(5000)
    assert encode_recording(rec) == encode_recording(rec)


def test_many_writes_in_one_cycle_stay_together():
    writes = ApuWrites.from_arrays([0] * 10 + [5] * 3, [0xFF10] * 13, range(13))
    rec = Recording("same-cycle", SRC, writes, 10)
    chunks = recording_to_chunks(rec, max_writes=4, max_cycles=1000)
    assert [c["write_count"] for c in chunks] == [10, 3]
    assert chunks_to_recording(chunks) == rec


def test_empty_and_silent_recordings():
    empty = Recording("empty", SRC, ApuWrites.empty(), 0, phases=(PhaseMark(0, Phase.BOOT),))
    chunks = recording_to_chunks(empty)
    assert len(chunks) == 1 and chunks[0]["write_count"] == 0
    assert chunks_to_recording([decode_chunk(encode_chunk(c)) for c in chunks]) == empty
    silent = Recording("silent", SRC, ApuWrites.empty(), 10 * 4_194_304)
    chunks = recording_to_chunks(silent)
    assert len(chunks) == 10
    assert chunks_to_recording(chunks) == silent


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 300),
    gap=st.integers(1, 50),
    max_writes=st.integers(1, 64),
    max_cycles=st.integers(50, 2000),
    shuffle_seed=st.integers(0, 2**32),
)
def test_round_trip_through_messages(n, gap, max_writes, max_cycles, shuffle_seed):
    rec = make_recording(n, seed=n, gap=gap)
    payloads = encode_recording(rec, max_writes=max_writes, max_cycles=max_cycles)
    chunks = [decode_chunk(p) for p in payloads]
    random.Random(shuffle_seed).shuffle(chunks)
    assert chunks_to_recording(chunks) == rec


def test_incomplete_sets_are_rejected():
    chunks = recording_to_chunks(make_recording(5000), max_writes=500)
    with pytest.raises(CodecError, match=r"missing chunks \[3\]"):
        chunks_to_recording(chunks[:3] + chunks[4:])
    with pytest.raises(CodecError, match="no last chunk"):
        chunks_to_recording(chunks[:-1])


# -- reassembly ------------------------------------------------------------------------------


def test_assembler_interleaved_with_duplicates():
    recs = [make_recording(3000, seed=s, rid=f"rec-{s}") for s in range(5)]
    chunks = [c for r in recs for c in recording_to_chunks(r, max_writes=250)]
    rng = random.Random(1)
    stream = chunks + rng.sample(chunks, 20)
    rng.shuffle(stream)
    assembler = RecordingAssembler()
    done = [r for c in stream if (r := assembler.add(decode_chunk(encode_chunk(c))))]
    assert sorted(done, key=lambda r: r.recording_id) == recs
    assert len(assembler) == 0 and assembler.pending_writes == 0
    assert assembler.duplicates == 20
    # A late duplicate of a finished recording is recognised, not re-assembled.
    assert assembler.add(chunks[0]) is None and len(assembler) == 0


def test_assembler_expires_idle_recordings():
    now = [0.0]
    assembler = RecordingAssembler(idle_timeout_s=60, clock=lambda: now[0])
    a = recording_to_chunks(make_recording(1000, rid="a"), max_writes=100)
    b = recording_to_chunks(make_recording(1000, rid="b"), max_writes=100)
    assembler.add(a[0], position=("p0", 10))
    now[0] = 30
    assembler.add(b[0], position=("p0", 11))
    assembler.add(b[1], position=("p1", 3))
    assert assembler.oldest_pending_offsets() == {"p0": 10, "p1": 3}
    now[0] = 70
    expired = assembler.expire()
    assert [(e.recording_id, e.reason, e.received) for e in expired] == [("a", "idle", (0,))]
    assert assembler.oldest_pending_offsets() == {"p0": 11, "p1": 3}
    assert len(assembler) == 1


def test_assembler_bounds_memory():
    assembler = RecordingAssembler(max_pending_writes=500, idle_timeout_s=1e9)
    for rid in ("a", "b", "c"):
        assembler.add(recording_to_chunks(make_recording(1000, rid=rid), max_writes=200)[0])
    assert assembler.pending_writes <= 500
    dropped = assembler.expire()
    assert [(d.recording_id, d.reason) for d in dropped] == [("a", "memory")]
    assert [rid for rid, _ in assembler.pending()] == ["b", "c"]


def test_assembler_drops_revoked_partitions():
    assembler = RecordingAssembler()
    assembler.add(recording_to_chunks(make_recording(1000, rid="a"), 100)[0], position=("p0", 1))
    assembler.add(recording_to_chunks(make_recording(1000, rid="b"), 100)[0], position=("p1", 1))
    lost = assembler.drop_partitions({"p0"})
    assert [(x.recording_id, x.reason) for x in lost] == [("a", "revoked")]
    assert assembler.oldest_pending_offsets() == {"p1": 1}


def test_assembler_rejects_contradicting_chunks():
    rec = make_recording(1000)
    small = recording_to_chunks(rec, max_writes=100)
    big = recording_to_chunks(rec, max_writes=300)
    assembler = RecordingAssembler()
    assembler.add(small[1])
    with pytest.raises(CodecError, match="different contents"):
        assembler.add(big[1])
    assembler.add(small[-1])
    with pytest.raises(CodecError, match="after its last chunk"):
        assembler.add(dict(small[-1], sequence=small[-1]["sequence"] + 1, last=False))


# -- segments --------------------------------------------------------------------------------


def _segment(rec):
    features = SegmentFeatures(
        duration_seconds=1.5,
        write_count=42,
        channels_used=0b1011,
        distinct_pitches=9,
        loudness_db=-14.5,
        tempo_bpm=None,
        extra={"note_density": 3.25},
    )
    return Segment.cut(rec, 1000, 1000 + rec.duration_cycles // 2, features)


def test_segment_round_trip_and_rebasing():
    rec = make_recording(2000)
    seg = _segment(rec)
    assert seg.segment_id == f"{rec.recording_id}@1000"
    assert seg.writes.cycles[0] >= 0 and seg.writes.cycles[-1] < seg.duration_cycles
    snapshot = register_snapshot(rec.writes, 1000)
    assert len(snapshot) > 0  # a cut-out segment opens with the register state at its start
    assert seg.writes == ApuWrites.concat(
        [snapshot, rec.writes.between(seg.start_cycle, seg.end_cycle).shifted(-1000)]
    )
    back = decode_segment(encode_segment(seg))
    assert back == seg
    assert back.features.extra == {"note_density": 3.25}
    assert back.as_recording().duration_cycles == seg.duration_cycles


def test_segment_with_writes_outside_its_span_is_rejected():
    record = avro.segment_to_record(_segment(make_recording(2000)))
    with pytest.raises(CodecError, match="outside"):
        avro.record_to_segment(dict(record, end_cycle=record["start_cycle"] + 1))
