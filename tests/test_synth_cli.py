"""`gbsynth render` as a user runs it: every input kind, the options, and clear refusals."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile

from gbsynth.common.avro import Segment, SegmentFeatures
from gbsynth.common.events import CPU_HZ, ApuWrites, Recording, Source, SourceKind
from gbsynth.common.formats import write_iodump, write_recordings, write_segments
from gbsynth.synth import render, to_pcm16

SOURCE = Source("ab" * 32, "tune.gbs", SourceKind.GBS, "Tune", 1)


def gbsynth(*args):
    return subprocess.run(
        [sys.executable, "-m", "gbsynth", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def tune(seconds: float = 2.0) -> ApuWrites:
    """A few notes on the pulse and noise channels."""
    events = [(100, 0xFF24, 0x77), (100, 0xFF25, 0xFF)]
    for k in range(int(seconds * 8)):
        t = 200 + k * CPU_HZ // 8
        period = 0x700 + 16 * (k % 8)
        events += [(t, 0xFF12, 0xF3), (t, 0xFF13, period & 0xFF), (t, 0xFF14, 0x80 | period >> 8)]
        if k % 2:
            events += [(t + 50, 0xFF21, 0xA1), (t + 50, 0xFF22, 0x35), (t + 50, 0xFF23, 0x80)]
    return ApuWrites.from_arrays(*zip(*events, strict=True))


def recording(seconds: float = 2.0, rid: str = "r1") -> Recording:
    return Recording(rid, SOURCE, tune(seconds), int(seconds * CPU_HZ))


def test_recordings_file_to_wav_matches_the_library(tmp_path):
    rec = recording()
    path = tmp_path / "song.avro"
    write_recordings(path, [rec])
    out = tmp_path / "song.wav"
    result = gbsynth("render", path, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "2.00 s" in result.stderr
    data, rate = soundfile.read(out, dtype="int16")
    info = soundfile.info(out)
    assert rate == 44_100 and info.subtype == "PCM_16" and info.channels == 2
    np.testing.assert_array_equal(data, to_pcm16(render(rec)))


def test_options_rate_mono_no_highpass_seconds_and_format(tmp_path):
    rec = recording()
    path = tmp_path / "song.avro"
    write_recordings(path, [rec])
    out = tmp_path / "x.wav"
    result = gbsynth(
        "render",
        path,
        "--out",
        out,
        "--rate",
        22050,
        "--mono",
        "--no-highpass",
        "--seconds",
        3.5,
        "--format",
        "float",
    )
    assert result.returncode == 0, result.stderr
    data, rate = soundfile.read(out, dtype="float32")
    assert rate == 22_050 and data.ndim == 1 and data.shape[0] == int(3.5 * 22_050)
    expected = render(rec, int(3.5 * CPU_HZ), rate=22_050, stereo=False, highpass=False)
    np.testing.assert_allclose(data, expected, atol=1e-7)


def test_segments_file_and_index(tmp_path):
    features = SegmentFeatures(1.0, 10, 9, 4, -20.0)
    writes = tune(2.0)
    segments = [
        Segment(f"s{i}", "r1", SOURCE, 0, CPU_HZ, writes.between(0, CPU_HZ), features)
        for i in range(3)
    ]
    path = tmp_path / "segments.avro"
    write_segments(path, segments)
    out = tmp_path / "seg.wav"
    assert gbsynth("render", path, "--out", out, "--index", 2).returncode == 0
    assert soundfile.info(out).frames == 44_100
    result = gbsynth("render", path, "--out", out, "--index", 3)
    assert result.returncode == 2
    assert "holds 3 segments" in result.stderr


def test_iodump_input(tmp_path):
    rec = recording()
    path = tmp_path / "song.iodump"
    write_iodump(rec, path)
    out = tmp_path / "d.wav"
    result = gbsynth("render", path, "--out", out, "--seconds", 2)
    assert result.returncode == 0, result.stderr
    data, _ = soundfile.read(out, dtype="int16")
    np.testing.assert_array_equal(data, to_pcm16(render(rec)))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "no 'subsong N' line"),
        (b"hello world\n", "not an iodumper line"),
        (bytes(range(256)), "neither an Avro"),
        (b"Obj\x01garbage", "not an Avro container"),
        (b"00000000 ff10=80\n\nsubsong 0\n", "no sound-register writes"),
    ],
)
def test_invalid_and_empty_inputs_fail_with_one_line(tmp_path, content, message):
    path = tmp_path / "input"
    if content is not None:
        path.write_bytes(content)
    result = gbsynth("render", path, "--out", tmp_path / "o.wav")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gbsynth render: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o.wav").exists()


def test_silent_recording_is_refused(tmp_path):
    # Writes that never make a channel sound: master volume (a click: the boot state's
    # CH1 DAC is on) and a note at volume 0 on CH2.
    events = [(10, 0xFF24, 0x33), (20, 0xFF17, 0x08), (30, 0xFF19, 0x87)]
    quiet = Recording("q", SOURCE, ApuWrites.from_arrays(*zip(*events, strict=True)), CPU_HZ)
    path = tmp_path / "quiet.avro"
    write_recordings(path, [quiet])
    result = gbsynth("render", path, "--out", tmp_path / "o.wav")
    assert result.returncode == 2
    assert "is silent" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o.wav").exists() and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "1000"], "--rate must be within"),
        (["--seconds", "0"], "--seconds must be positive"),
        (["--index", "-1"], "--index counts from 0"),
    ],
)
def test_bad_options(tmp_path, args, message):
    path = tmp_path / "song.avro"
    write_recordings(path, [recording(0.5)])
    result = gbsynth("render", path, "--out", tmp_path / "o.wav", *args)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_output(tmp_path):
    path = tmp_path / "song.avro"
    write_recordings(path, [recording(0.5)])
    result = gbsynth("render", path, "--out", tmp_path / "missing" / "o.wav")
    assert result.returncode == 2 and "cannot write" in result.stderr
    assert "Traceback" not in result.stderr
