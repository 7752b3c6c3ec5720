"""ProTracker MOD reader: modules built here cell by cell, real GB Studio modules checked
against their first pattern rows, and broken headers."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from gbsynth.music.mod import drum_key, period_to_pitch, read_mod
from gbsynth.music.score import ScoreError
from gbsynth.music.score_formats import read_score, sniff_score

C4, D4, E4, A4, C5 = 428, 381, 339, 254, 214  # ProTracker periods (C-2 D-2 E-2 A-2 C-3)


def build_mod(
    cells: dict[tuple[int, int, int], tuple[int, int, int, int]],
    orders: list[int] | None = None,
    samples: dict[int, tuple[str, int, int]] | None = None,
    signature: bytes = b"M.K.",
    sample_bytes: int = 2,
) -> bytes:
    """A module from ``{(pattern, row, channel): (sample, period, effect, param)}``;
    ``samples`` maps a sample number to (name, finetune, volume)."""
    orders = orders or [0]
    samples = samples or {n: (f"s{n}", 0, 64) for n in range(1, 32)}
    header = bytearray(b"test song".ljust(20, b"\0"))
    for number in range(1, 32):
        name, finetune, volume = samples.get(number, ("", 0, 0))
        length = sample_bytes // 2 if number in samples else 0
        header += name.encode().ljust(22, b"\0")[:22]
        header += struct.pack(">HBBHH", length, finetune & 0x0F, volume, 0, 1)
    header += bytes([len(orders), 127]) + bytes(orders).ljust(128, b"\0") + signature
    patterns = bytearray(1024 * (max(orders) + 1))
    for (pattern, row, channel), (sample, period, effect, param) in cells.items():
        at = pattern * 1024 + row * 16 + channel * 4
        patterns[at : at + 4] = bytes(
            [
                (sample & 0xF0) | (period >> 8),
                period & 0xFF,
                ((sample & 0x0F) << 4) | effect,
                param,
            ]
        )
    data = bytes(header) + bytes(patterns)
    return data + bytes(sample_bytes * len(samples))


def notes(score, part=None):
    return [
        (n.start, n.length, n.pitch, n.velocity)
        for n in score.notes
        if part is None or n.part == part
    ]


def test_periods_and_finetune():
    assert [period_to_pitch(p) for p in (C4, D4, E4, A4, C5, 856, 113)] == [
        60,
        62,
        64,
        69,
        72,
        48,
        83,
    ]
    assert period_to_pitch(C4, finetune=-8) == 59


def test_note_lengths_volume_and_cuts():
    mod = build_mod(
        {
            (0, 0, 0): (1, C4, 0xC, 0x20),  # volume 32 -> velocity 64, until the next note
            (0, 4, 0): (1, E4, 0, 0),  # sample default volume 64
            (0, 6, 0): (0, 0, 0xC, 0x00),  # volume 0 without a note cuts it
            (0, 8, 0): (1, A4, 0xE, 0xC3),  # cut after 3 of 6 ticks
            (0, 12, 0): (1, C5, 0xC, 0x00),  # a note at volume 0 is silent
            (0, 0, 1): (2, D4, 0, 0),  # rings to the end of the pattern
        },
        samples={1: ("lead", 0, 64), 2: ("pad", -8, 40)},
    )
    score = read_mod(mod, "t.mod")
    assert notes(score, 0) == [(0.0, 1.0, 60, 64), (1.0, 0.5, 64, 127), (2.0, 0.125, 69, 127)]
    # Sample 2 has finetune -8 (a semitone down) and default volume 40.
    assert notes(score, 1) == [(0.0, 16.0, 61, 80)]
    assert score.title == "test song" and [p.name for p in score.parts][0] == "Channel 1"


def test_speed_and_tempo_effects_make_a_tempo_map():
    mod = build_mod(
        {
            (0, 0, 0): (1, C4, 0xF, 0x03),  # speed 3 at 125 BPM: 250 quarters a minute
            (0, 8, 1): (1, D4, 0xF, 0x96),  # BPM 150 at speed 3: 300
            (0, 16, 2): (1, E4, 0xF, 0x06),  # speed 6 at 150 BPM: 150
        }
    )
    score = read_mod(mod, "t.mod")
    assert [(t.at, t.bpm) for t in score.tempos] == [(0.0, 250.0), (2.0, 300.0), (4.0, 150.0)]


def test_break_jump_and_play_once():
    cells = {
        (0, 0, 0): (1, C4, 0, 0),
        (0, 1, 0): (0, 0, 0xD, 0x10),  # break to row 10 of the next position
        (1, 9, 0): (1, D4, 0, 0),  # skipped
        (1, 10, 0): (1, E4, 0, 0),
        (1, 11, 0): (0, 0, 0xB, 0x03),  # jump forward to position 3
        (2, 0, 0): (1, A4, 0, 0),  # position 2 is skipped
        (3, 0, 0): (1, C5, 0, 0),
        (3, 1, 0): (0, 0, 0xB, 0x00),  # jump back to the start: the song ends here
    }
    score = read_mod(build_mod(cells, orders=[0, 1, 2, 3]), "t.mod")
    assert [(s, n, p) for s, n, p, _ in notes(score)] == [
        (0.0, 0.5, 60),
        (0.5, 0.5, 64),
        (1.0, 0.5, 72),
    ]


def test_arpeggio_and_instrument():
    cells = {
        (0, 0, 0): (3, C4, 0x0, 0x47),
        (0, 4, 0): (5, D4, 0xC, 0x40),
        (0, 5, 0): (0, 0, 0x0, 0x37),  # arpeggio on a later row of the same note
    }
    score = read_mod(build_mod(cells), "t.mod")
    assert [(n.pitch, n.instrument, n.arpeggio) for n in score.notes] == [
        (60, 3, 0x47),
        (62, 5, 0x37),
    ]


def test_noise_channel_is_drums():
    cells = {
        (0, 0, 3): (29, C4, 0xC, 0x40),
        (0, 4, 3): (31, C4, 0xC, 0x40),
        (0, 2, 3): (28, C4, 0xC, 0x40),
        (0, 6, 3): (1, C4, 0xC, 0x40),
    }
    samples = {n: (f"ch4_{n - 15}", 0, 0) for n in range(16, 32)}
    samples[1] = ("Snare 2", 0, 64)
    score = read_mod(build_mod(cells, samples=samples), "t.mod")
    assert score.parts[3].drums and not any(p.drums for p in score.parts[:3])
    assert [(n.pitch, n.instrument) for n in score.notes] == [(36, 29), (42, 28), (38, 31), (38, 1)]


def test_drum_key_rule():
    gbt = {n: drum_key(n, None, 60) for n in range(16, 32)}
    assert (gbt[29], gbt[24], gbt[31], gbt[26], gbt[28], gbt[27]) == (36, 36, 38, 38, 42, 46)
    assert (
        drum_key(0, None, 40) == 36 and drum_key(0, None, 55) == 38 and drum_key(0, None, 80) == 42
    )


def test_soundtracker_15_samples():
    mod = build_mod({(0, 0, 0): (1, C4, 0, 0)}, samples={1: ("x", 0, 64)})
    # Drop samples 16-31 and the signature: the 15-sample layout.
    st = mod[: 20 + 15 * 30] + mod[950:952] + mod[952:1080] + mod[1084:]
    assert sniff_score(st[:1084], ".mod") == "mod"
    score = read_score(st, "old.mod")
    assert notes(score) == [(0.0, 16.0, 60, 127)]


@pytest.mark.parametrize(
    ("mutate", "reason", "words"),
    [
        (lambda m: m[:1080] + b"8CHN" + m[1084:], "unsupported", "4-channel"),
        (lambda m: m[:2000], "invalid_file", "patterns need"),
        (lambda m: m[:-1], "invalid_file", "past the end"),
        (lambda m: m[:950] + b"\x00" + m[951:], "invalid_file", "song length"),
        (lambda m: m[:100], "invalid_file", "too short"),
        (lambda m: m[:42] + b"\xff\xff" + m[44:], "invalid_file", "past the end"),
        (lambda m: m[:1084] + bytes(2048) + m[1084 + 2048 :], "empty", "no notes"),
    ],
)
def test_broken_modules(mutate, reason, words):
    mod = build_mod({(0, 0, 0): (1, C4, 0, 0), (1, 0, 0): (1, D4, 0, 0)}, orders=[1, 0])
    with pytest.raises(ScoreError) as caught:
        read_mod(mutate(mod), "bad.mod")
    assert caught.value.reason == reason and words in str(caught.value)


def test_loop_of_breaks_terminates():
    # Every row breaks to row 0 of the next position, and position 0 jumps to itself.
    cells = {(0, 0, 0): (1, C4, 0xD, 0x00), (0, 0, 1): (1, C4, 0xB, 0x00)}
    score = read_mod(build_mod(cells, orders=[0, 0]), "t.mod")
    assert len(score.notes) == 2


GBS_MODS = "gbstudio-mods/Music"


@pytest.fixture
def real(shared_dir: Path):
    def read(path: str) -> bytes:
        full = shared_dir / "pretrain" / GBS_MODS / path
        if not full.is_file():
            pytest.skip(f"{full} not present")
        return full.read_bytes()

    return read


def test_real_module_first_rows(real):
    # Darkstone.mod, order 0 = pattern 0, channel 1: row 0 A-2 (period 254) sample 1 C40,
    # row 4 A-2 C1A, row 8 A-2 C0C, row 12 A-2 C04, row 14 F-2, row 15 E-2; speed 6 at 125 BPM.
    score = read_score(real("Overworld/Darkstone.mod"), "Darkstone.mod")
    assert score.kind == "mod" and score.title == "darkstone"
    assert score.tempos[0].bpm == 125.0
    assert notes(score, 0)[:6] == [
        (0.0, 1.0, 69, 127),
        (1.0, 1.0, 69, 52),
        (2.0, 1.0, 69, 24),
        (3.0, 0.5, 69, 8),
        (3.5, 0.25, 65, 127),
        (3.75, 0.25, 64, 127),
    ]
    assert 400 < len(score.notes) < 600


def test_real_drumbeat(real):
    # Backbeat_Metal_Drumming.mod: F04 (187.5 quarters a minute); channel 4 plays
    # sample 29 (kick) on rows 0, 4, 6 and sample 31 (snare) on row 8, each cut by C00.
    score = read_score(real("Drumbeats/Backbeat_Metal_Drumming.mod"), "x.mod")
    assert score.tempos[0].bpm == 187.5
    assert [(n.start, n.length, n.pitch, n.instrument) for n in score.notes[:4]] == [
        (0.0, 0.25, 36, 29),
        (1.0, 0.25, 36, 29),
        (1.5, 0.25, 36, 29),
        (2.0, 0.25, 38, 31),
    ]
    assert all(n.part == 3 for n in score.notes)
