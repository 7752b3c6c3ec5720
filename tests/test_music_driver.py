"""The sound driver, run in our emulator from GBS files of hand-made songs: what each
command and effect writes, frame by frame."""

from __future__ import annotations

import numpy as np
import pytest

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES
from gbsynth.emulator.sources import GbsSession
from gbsynth.music import driver as D
from gbsynth.music.rom import gbs_file
from gbsynth.music.song import Drum, Event, Instrument, Song, SongError, assemble_module

WAVE = bytes(range(0x01, 0xF2, 0x10))  # 01 11 21 ... F1
LEAD = Instrument("lead", nrx1=0x80, envelope=0xF0)
BASS = Instrument("bass", nrx1=0x00, envelope=0x20)
NOISE = Instrument("noise")
KIT = [Drum("kick", 0xF1, 0x40, 0x70, 3), Drum("hat", 0x81, 0x00, 0x00, 0)]
C4 = 24


def rest(start: int, length: int) -> Event:
    return Event(start, length, None)


def song(
    channels: dict[int, list[Event]],
    bars: int = 1,
    bpm: float = 120.0,
    instruments: list[Instrument] | None = None,
    loop_bar: int = 0,
) -> Song:
    rows = bars * 16
    tracks = [channels.get(c, [rest(0, rows)]) for c in range(4)]
    return Song(
        "Test",
        0,
        "major",
        D.tempo_value(bpm),
        4,
        4,
        bars,
        loop_bar,
        tracks,
        instruments or [LEAD, BASS, NOISE],
        KIT,
        WAVE,
    )


def record(s: Song, seconds: float | None = None):
    """The song's writes, by default over one pass (before it loops)."""
    seconds = s.seconds - 0.05 if seconds is None else seconds
    gbs = gbs_file(assemble_module([s]), title=s.title)
    return GbsSession(gbs, "test.gbs").record(seconds).writes


def frames_of(writes, register: int) -> list[tuple[int, int]]:
    """(frame, value) of each write to a register."""
    mask = writes.registers == register
    return list(
        zip(
            (writes.cycles[mask] // FRAME_CYCLES).tolist(),
            writes.values[mask].tolist(),
            strict=True,
        )
    )


def frequencies(writes, channel: int = 0) -> list[tuple[int, int, bool]]:
    """(frame, 11-bit frequency, triggered) at each NRx4 write of a tone channel."""
    low_reg, high_reg = 0xFF13 + 5 * channel, 0xFF14 + 5 * channel
    low, out = 0, []
    for cycle, reg, value in zip(
        writes.cycles.tolist(), writes.registers.tolist(), writes.values.tolist(), strict=True
    ):
        if reg == low_reg:
            low = value
        elif reg == high_reg:
            out.append((cycle // FRAME_CYCLES, (value & 7) << 8 | low, bool(value & 0x80)))
    return out


def test_init_powers_on_and_loads_the_wave_table_with_the_dac_off():
    writes = record(song({}), 0.1)
    pairs = list(zip(writes.registers.tolist(), writes.values.tolist(), strict=True))
    assert pairs[:5] == [
        (0xFF26, 0x80),
        (0xFF24, 0x77),
        (0xFF25, 0xFF),
        (0xFF10, 0x00),
        (0xFF1A, 0x00),
    ]
    assert pairs[5:21] == [(0xFF30 + i, b) for i, b in enumerate(WAVE)]


def test_notes_trigger_with_instrument_settings_and_rests_silence():
    lead = [Event(0, 4, C4), rest(4, 4), Event(8, 8, C4 + 12)]
    writes = record(song({0: lead}))
    triggers = [f for f in frequencies(writes) if f[2]]
    assert [f[1] for f in triggers] == [D.frequency_register(C4), D.frequency_register(C4 + 12)]
    assert (0xFF11, 0x80) in zip(writes.registers.tolist(), writes.values.tolist(), strict=True)
    nr12 = [v for _, v in frames_of(writes, 0xFF12)]
    assert nr12 == [0xF0, 0x00, 0xF0]  # envelope, the rest (DAC off), envelope


def test_wave_notes_play_an_octave_down_and_restart_the_dac():
    bass = [Event(0, 8, 0, instrument=1), rest(8, 8)]
    writes = record(song({2: bass}))
    ((frame, freq, trig),) = frequencies(writes, channel=2)
    assert trig and freq == D.frequency_register(12)  # C2 on the wave channel
    nr30 = [v for _, v in frames_of(writes, 0xFF1A)]
    assert nr30 == [0x00, 0x00, 0x80, 0x00]  # init, off/on before the trigger, the rest
    assert frames_of(writes, 0xFF1C)[0][1] == 0x20


@pytest.mark.parametrize("bpm", [84.0, 120.0, 171.5])
def test_tempo_sets_the_row_rate(bpm):
    # a note every row for 8 bars
    notes = [Event(r, 1, C4 + (r % 2)) for r in range(128)]
    s = song({0: notes}, bars=8, bpm=bpm)
    writes = record(s)
    frames = [f for f, _, trig in frequencies(writes) if trig]
    rows_expected = D.rows_per_second(s.tempo) * (frames[-1] - frames[0]) / D.FRAMES_PER_SECOND
    assert abs((len(frames) - 1) - rows_expected) <= 1
    steps = set(np.diff(frames).tolist())
    per_row = D.TEMPO_ONE / s.tempo
    assert steps <= {int(per_row), int(per_row) + 1}
    assert abs(s.bpm - bpm) < 0.02


def test_arpeggio_cycles_the_chord_every_frame():
    writes = record(song({0: [Event(0, 16, C4, arpeggio=0x47)]}))
    freqs = [f for _, f, _ in frequencies(writes)][:9]
    chord = [D.frequency_register(C4 + i) for i in (0, 4, 7)]
    assert freqs == chord * 3


def test_slide_glides_to_the_next_note_at_its_speed():
    target = C4 + 5
    lead = [Event(0, 4, C4), Event(4, 12, target, slide=9)]
    writes = record(song({0: lead}))
    freqs = frequencies(writes)
    start = next(i for i, f in enumerate(freqs) if f[2] and i > 0)
    glide = [f for _, f, _ in freqs[start:]]
    assert glide[0] == D.frequency_register(C4)  # retriggered where the old note was
    assert all(b - a == 9 for a, b in zip(glide, glide[1:-1], strict=False))
    assert glide[-1] == D.frequency_register(target)
    assert [fr for fr, _, _ in freqs[start:]] == list(
        range(freqs[start][0], freqs[start][0] + len(glide))
    )


def test_bend_moves_the_pitch_each_frame():
    writes = record(song({0: [Event(0, 16, C4 + 12, bend=-3)]}), 0.4)
    freqs = [f for _, f, _ in frequencies(writes)]
    assert freqs[0] == D.frequency_register(C4 + 12)
    assert np.all(np.diff(freqs) == -3)


def test_vibrato_waits_then_swings_around_the_note():
    vibrato = Instrument(
        "vib", nrx1=0x80, envelope=0xF0, vibrato_delay=5, vibrato_speed=32, vibrato_shift=5
    )
    writes = record(song({0: [Event(0, 32, C4)]}, bars=2, instruments=[vibrato, BASS, NOISE]), 1.0)
    freqs = frequencies(writes)
    base = D.frequency_register(C4)
    amplitude = (2048 - base) >> 5
    first_frame = freqs[0][0]
    assert freqs[1][0] - first_frame == 6  # five frames of delay, then the first step
    offsets = sorted({f - base for _, f, _ in freqs})
    assert offsets == [-amplitude, -(amplitude // 2), 0, amplitude // 2, amplitude]


def test_drum_switches_its_noise_after_its_frames():
    drums = [Event(0, 8, 0, instrument=2), Event(8, 8, 1, instrument=2)]
    writes = record(song({3: drums}))
    nr43 = frames_of(writes, 0xFF22)
    kick_frame = frames_of(writes, 0xFF23)[0][0]
    assert nr43[:3] == [(kick_frame, 0x40), (kick_frame + 3, 0x70), (nr43[2][0], 0x00)]
    assert frames_of(writes, 0xFF21)[:2] == [(kick_frame, 0xF1), (nr43[2][0], 0x81)]


def test_sweep_and_length_come_from_the_instrument():
    swept = Instrument("swept", nrx1=0x40 | 0x20, envelope=0xA2, nrx4=0x40, sweep=0x2B)
    writes = record(song({0: [Event(0, 16, C4)]}, instruments=[swept, BASS, NOISE]), 0.3)
    pairs = list(zip(writes.registers.tolist(), writes.values.tolist(), strict=True))
    at = pairs.index((0xFF11, 0x60))
    assert pairs[at - 1] == (0xFF10, 0x2B)
    assert pairs[at + 1] == (0xFF12, 0xA2)
    assert pairs[at + 3][0] == 0xFF14 and pairs[at + 3][1] & 0xC0 == 0xC0  # trigger + length


def test_envelope_override_and_instrument_change():
    other = Instrument("other", nrx1=0xC0, envelope=0x93)
    lead = [Event(0, 4, C4, envelope=0x55), Event(4, 4, C4), Event(8, 8, C4, instrument=3)]
    writes = record(song({0: lead}, instruments=[LEAD, BASS, NOISE, other]))
    assert [v for _, v in frames_of(writes, 0xFF12)] == [0x55, 0xF0, 0x93]
    assert [v for _, v in frames_of(writes, 0xFF11)] == [0x80, 0x80, 0xC0]


def test_song_loops_to_its_loop_bar():
    # bar 0: intro note C4; bars 1-2: D4 then E4; loops back to bar 1
    lead = [Event(0, 16, C4), Event(16, 16, C4 + 2), Event(32, 16, C4 + 4)]
    s = song({0: lead}, bars=3, bpm=240.0, loop_bar=1)
    writes = record(s, 4 * s.seconds)
    notes = [D.frequency_register(n) for n in (C4, C4 + 2, C4 + 4)]
    played = [f for _, f, trig in frequencies(writes) if trig]
    assert played[:7] == [notes[0]] + [notes[1], notes[2]] * 3


def test_ties_hold_and_long_notes_are_split():
    lead = [Event(0, 40, C4), Event(40, 8, None, hold=True)]
    s = song({0: lead}, bars=3)
    writes = record(s)
    assert len([f for f in frequencies(writes) if f[2]]) == 1  # one trigger: held throughout
    assert [v for _, v in frames_of(writes, 0xFF12)] == [0xF0]


def test_transposed_bars_share_one_pattern():
    from gbsynth.music.song import song_source

    lead = [Event(16 * b + r, 4, C4 + 2 * b + (r // 4)) for b in range(4) for r in range(0, 16, 4)]
    source = song_source(song({0: lead}, bars=4), "S")
    patterns = [line for line in source.splitlines() if line.startswith("S_P")]
    # the lead's four bars are one pattern; silent bars two more (a rest, then held silence)
    assert len(patterns) == 3
    writes = record(song({0: lead}, bars=4))
    played = [f for _, f, trig in frequencies(writes) if trig][:16]
    assert played == [D.frequency_register(C4 + 2 * b + k) for b in range(4) for k in range(4)]


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([Event(0, 8, C4), Event(9, 7, C4)], "without gaps or overlaps"),
        ([Event(0, 8, C4)], "events end at row 8"),
        ([Event(0, 16, 90)], "note 90 at row 0 is outside"),
        ([Event(0, 16, C4, instrument=9)], "no instrument 9"),
    ],
)
def test_bad_songs_are_refused(events, message):
    with pytest.raises(SongError, match=message):
        assemble_module([song({0: events})])


def test_row_rate_matches_the_songs_length():
    lead = [Event(r, 4, C4) for r in range(0, 64, 4)]
    s = song({0: lead}, bars=4, bpm=150.0)
    writes = record(s)
    frames = [f for f, _, trig in frequencies(writes) if trig]
    assert len(frames) == 16
    measured = (frames[-1] - frames[0]) * FRAME_CYCLES / CPU_HZ
    assert measured == pytest.approx(s.seconds * 15 / 16, abs=2 / 59.7)
