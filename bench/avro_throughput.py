"""Avro codec throughput: columnar RecordingChunk messages against a naive per-write encoding.

Both sides start from the same 1,000,000 writes as ``ApuWrites`` columns and end
with them again, so conversions are counted on both sides:

- gbsynth: ``encode_recording`` (chunking + framed schemaless Avro per chunk) and
  ``decode_chunk`` + ``chunks_to_recording`` (with validation);
- peer: one Avro record per write, ``{cycle: long, register: int, value: int}``,
  as an array, written and read with fastavro's schemaless writer and reader.

Run: ``.venv/bin/python bench/avro_throughput.py [writes]``. Goal: >= 5,000,000 writes/s
each way for gbsynth.
"""

from __future__ import annotations

import io
import sys
import time

import fastavro
import numpy as np

from gbsynth.common.avro import chunks_to_recording, decode_chunk, encode_recording
from gbsynth.common.events import ApuWrites, Recording, Source, SourceKind

NAIVE_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "NaiveWrites",
        "namespace": "bench",
        "fields": [
            {
                "name": "writes",
                "type": {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "Write",
                        "fields": [
                            {"name": "cycle", "type": "long"},
                            {"name": "register", "type": "int"},
                            {"name": "value", "type": "int"},
                        ],
                    },
                },
            }
        ],
    }
)


def make_recording(n: int) -> Recording:
    rng = np.random.default_rng(1)
    # Gaps like real music drivers: bursts of writes a few cycles apart, then a frame's wait.
    gaps = np.where(rng.random(n) < 0.9, rng.integers(12, 40, n), rng.integers(1000, 70_224, n))
    writes = ApuWrites.from_arrays(
        np.cumsum(gaps), rng.integers(0xFF10, 0xFF40, n), rng.integers(0, 256, n)
    )
    source = Source("00" * 32, "bench.gbs", SourceKind.GBS)
    return Recording("bench", source, writes, int(writes.cycles[-1]) + 1)


def best_of(repeats: int, fn):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def naive_encode(writes: ApuWrites) -> bytes:
    records = [
        {"cycle": c, "register": r, "value": v}
        for c, r, v in zip(
            writes.cycles.tolist(), writes.registers.tolist(), writes.values.tolist(), strict=True
        )
    ]
    out = io.BytesIO()
    fastavro.schemaless_writer(out, NAIVE_SCHEMA, {"writes": records})
    return out.getvalue()


def naive_decode(payload: bytes) -> ApuWrites:
    records = fastavro.schemaless_reader(io.BytesIO(payload), NAIVE_SCHEMA)["writes"]
    n = len(records)
    return ApuWrites.from_arrays(
        np.fromiter((w["cycle"] for w in records), np.int64, n),
        np.fromiter((w["register"] for w in records), np.uint16, n),
        np.fromiter((w["value"] for w in records), np.uint8, n),
    )


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rec = make_recording(n)

    enc_s, messages = best_of(5, lambda: encode_recording(rec))
    dec_s, back = best_of(5, lambda: chunks_to_recording([decode_chunk(m) for m in messages]))
    assert back == rec
    ours_bytes = sum(len(m) for m in messages)

    naive_enc_s, payload = best_of(2, lambda: naive_encode(rec.writes))
    naive_dec_s, naive_back = best_of(2, lambda: naive_decode(payload))
    assert naive_back == rec.writes

    print(f"writes: {n:,}")
    print(
        f"gbsynth columnar chunks: {len(messages)} messages, {ours_bytes / n:.2f} bytes/write; "
        f"encode {n / enc_s:,.0f} writes/s ({enc_s * 1e3:.1f} ms), "
        f"decode {n / dec_s:,.0f} writes/s ({dec_s * 1e3:.1f} ms)"
    )
    print(
        f"peer, Avro array of {{cycle, register, value}} records: {len(payload) / n:.2f} "
        f"bytes/write; encode {n / naive_enc_s:,.0f} writes/s ({naive_enc_s * 1e3:.0f} ms), "
        f"decode {n / naive_dec_s:,.0f} writes/s ({naive_dec_s * 1e3:.0f} ms)"
    )
    print(
        f"ratio gbsynth / peer: encode {naive_enc_s / enc_s:.1f}x, "
        f"decode {naive_dec_s / dec_s:.1f}x"
    )
    goal = 5_000_000
    ok = n / enc_s >= goal and n / dec_s >= goal
    print(f"goal >= {goal:,} writes/s each way: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
