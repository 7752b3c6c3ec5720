"""The note decoder (``gbsynth.music.notes``) on hand-made register writes, and on demo
songs against the composer's own note list."""

from __future__ import annotations

import numpy as np
import pytest

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES, ApuWrites
from gbsynth.emulator.sources import GbsSession
from gbsynth.music import driver as D
from gbsynth.music.composer import compose
from gbsynth.music.notes import (
    ENVELOPE_TICK_CYCLES,
    LEGATO,
    LENGTH_TICK_CYCLES,
    STEP,
    TRIGGER,
    decode_notes,
    midi_of_register,
)
from gbsynth.music.rom import gbs_file
from gbsynth.music.song import assemble_module

A4 = 1750  # 131072 / (2048 - 1750) = 439.8 Hz
C5 = 1798  # 524.3 Hz
SECOND = CPU_HZ


def writes(*rows: tuple[int, int, int]) -> ApuWrites:
    cycles, registers, values = zip(*rows, strict=True)
    return ApuWrites.from_arrays(cycles, registers, values)


def pulse1(cycle: int, x: int, trigger: bool = True, nrx4: int = 0) -> list[tuple[int, int, int]]:
    """NR13 then NR14 at ``cycle`` (the order drivers use)."""
    return [(cycle, 0xFF13, x & 0xFF), (cycle, 0xFF14, (0x80 if trigger else 0) | nrx4 | x >> 8)]


POWER_ON = [(0, 0xFF26, 0x80), (0, 0xFF25, 0xFF), (0, 0xFF24, 0x77)]


def test_trigger_retrigger_and_dac_off():
    w = writes(*POWER_ON, (0, 0xFF12, 0xF0), *pulse1(100, A4), *pulse1(SECOND, C5),
               (2 * SECOND, 0xFF12, 0x00))  # fmt: skip
    notes = decode_notes(w, 3 * SECOND)
    assert notes.channel.tolist() == [0, 0]
    assert notes.start.tolist() == [100, SECOND]
    assert notes.end.tolist() == [SECOND, 2 * SECOND]  # ended by the retrigger, then the DAC
    assert notes.pitch[0] == pytest.approx(69.0, abs=0.01)
    assert notes.pitch[1] == pytest.approx(72.0, abs=0.05)
    assert notes.kind.tolist() == [TRIGGER, TRIGGER]
    assert notes.volume.tolist() == [15, 15]
    assert notes.seconds[1] == pytest.approx(1.0)


def test_envelope_decay_and_silent_starts():
    # volume 12 falling by one every 2 ticks of 64 Hz: silent after 24 ticks (0.375 s)
    w = writes(
        *POWER_ON,
        (0, 0xFF17, 0xC2),
        (0, 0xFF18, A4 & 0xFF),
        (0, 0xFF19, 0x80 | A4 >> 8),
        (SECOND, 0xFF17, 0x02),
        (SECOND, 0xFF19, 0x86),  # volume 0 falling: no note
        (2 * SECOND, 0xFF17, 0x0A),
        (2 * SECOND, 0xFF19, 0x86),
    )  # 0 rising: a note
    # fmt: skip
    notes = decode_notes(w, 3 * SECOND)
    assert notes.start.tolist() == [0, 2 * SECOND]
    assert notes.end.tolist() == [24 * ENVELOPE_TICK_CYCLES, 3 * SECOND]
    assert notes.volume.tolist() == [12, 0]


def test_length_counter_ends_the_note():
    # NR11 length 48: 64 - 48 = 16 ticks of 256 Hz, counted only with NR14 bit 6
    w = writes(*POWER_ON, (0, 0xFF11, 0x80 | 48), (0, 0xFF12, 0xF0), *pulse1(0, A4, nrx4=0x40),
               (SECOND, 0xFF11, 0x80 | 48), *pulse1(SECOND, A4))  # fmt: skip
    notes = decode_notes(w, 2 * SECOND)
    assert notes.end.tolist() == [16 * LENGTH_TICK_CYCLES, 2 * SECOND]


def test_pitch_changes_without_trigger_legato_step_and_vibrato():
    f = FRAME_CYCLES
    rows = [*POWER_ON, (0, 0xFF12, 0xF0), *pulse1(0, A4)]
    rows += pulse1(10 * f, A4 + 2, trigger=False)  # vibrato-sized: the same note
    rows += pulse1(20 * f, C5, trigger=False)  # held 10 frames: legato
    rows += pulse1(30 * f, A4, trigger=False)  # an arpeggio: one frame each
    rows += pulse1(31 * f, C5, trigger=False)
    rows += pulse1(32 * f, A4, trigger=False)
    notes = decode_notes(writes(*rows), 40 * f)
    assert notes.start.tolist() == [0, 20 * f, 30 * f, 31 * f, 32 * f]
    assert notes.kind.tolist() == [TRIGGER, LEGATO, STEP, STEP, LEGATO]
    assert np.round(notes.pitch).tolist() == [69, 72, 69, 72, 69]
    assert notes.is_onset.tolist() == [True, True, False, False, True]


def test_a_glide_is_steps():
    rows = [*POWER_ON, (0, 0xFF12, 0xF0), *pulse1(0, A4)]
    for frame in range(1, 20):  # up a semitone every frame
        x = round(2048 - 131072 / (440 * 2 ** (frame / 12)))
        rows += pulse1(frame * FRAME_CYCLES, x, trigger=False)
    notes = decode_notes(writes(*rows), 30 * FRAME_CYCLES)
    assert notes.kind.tolist() == [TRIGGER] + [STEP] * 18 + [LEGATO]


def test_wave_channel_is_an_octave_lower_and_muting_ends_it():
    w = writes(
        *POWER_ON,
        (0, 0xFF1A, 0x80),
        (0, 0xFF1C, 0x20),
        (0, 0xFF1D, A4 & 0xFF),
        (0, 0xFF1E, 0x80 | A4 >> 8),
        (SECOND, 0xFF1C, 0x00),  # NR32 muted
        (2 * SECOND, 0xFF1C, 0x40),  # heard again at half level, without a trigger
        (3 * SECOND, 0xFF1A, 0x00),
    )  # DAC off
    # fmt: skip
    notes = decode_notes(w, 4 * SECOND)
    assert notes.channel.tolist() == [2, 2]
    assert notes.pitch[0] == pytest.approx(57.0, abs=0.01)
    assert notes.start.tolist() == [0, 2 * SECOND]
    assert notes.end.tolist() == [SECOND, 3 * SECOND]
    assert notes.volume.tolist() == [15, 7]
    assert midi_of_register(A4, wave=True) == pytest.approx(notes.pitch[0])


def test_noise_pitch_is_nr43_and_power_off_and_panning_end_notes():
    w = writes(
        *POWER_ON,
        (0, 0xFF21, 0xA0),
        (0, 0xFF22, 0x35),
        (0, 0xFF23, 0x80),
        (0, 0xFF12, 0xF0),
        *pulse1(0, A4),
        (10, 0xFF22, 0x50),  # a drum's second part: the same note
        (SECOND, 0xFF25, 0x77),  # noise panned to neither side
        (2 * SECOND, 0xFF26, 0x00),
    )  # power off
    # fmt: skip
    notes = decode_notes(w, 3 * SECOND)
    assert notes.channel.tolist() == [0, 3]
    assert notes.pitch[1] == 0x35
    assert notes.volume[1] == 10
    assert notes.end.tolist() == [2 * SECOND, SECOND]
    assert not notes.pitched[1]


def test_inaudible_pitch_and_empty_input():
    w = writes(*POWER_ON, (0, 0xFF12, 0xF0), *pulse1(0, 2047), *pulse1(SECOND, A4, trigger=False))
    notes = decode_notes(w, 2 * SECOND)
    assert notes.start.tolist() == [SECOND]  # 131 kHz is no note; A4 then is heard
    assert len(decode_notes(ApuWrites.empty())) == 0


@pytest.mark.parametrize("index", [0, 3])
def test_demo_song_notes_match_the_composers(index):
    """Every note the composer wrote is decoded: same channel, start (within the driver's
    frame quantisation), pitch (drums: their NR43 value); a slide's target is reached."""
    song = compose(0, index)
    seconds = 12.0
    gbs = gbs_file(assemble_module([song]), title=song.title)
    recording = GbsSession(gbs, "song.gbs").record(seconds)
    notes = decode_notes(recording.writes, recording.duration_cycles)
    rows_per_second = D.rows_per_second(song.tempo)
    horizon = seconds - 0.2
    for channel, events in enumerate(song.channels):
        played = [e for e in events if e.note is not None and not e.hold]
        played = [e for e in played if e.start / rows_per_second < horizon]
        got = notes.select((notes.channel == channel) & (notes.kind == TRIGGER))
        got = got.select(got.start_seconds < horizon + 0.04)
        assert len(got) == len(played), (channel, len(got), len(played))
        expected_start = np.array([e.start / rows_per_second for e in played])
        # The player starts a frame in; a row starts on the frame its tempo carries into.
        lag = got.start_seconds - expected_start
        assert lag.min() >= 0 and lag.max() <= 2.5 * FRAME_CYCLES / CPU_HZ
        for event, pitch, start, end in zip(played, got.pitch, got.start, got.end, strict=True):
            if channel == 3:
                assert pitch == song.drums[event.note].poly
            elif event.slide:
                later = notes.select((notes.channel == channel) & (notes.start >= start))
                reached = later.pitch[later.start < start + event.length * CPU_HZ / rows_per_second]
                assert np.any(np.abs(reached - (event.note + D.LOWEST_MIDI)) < 0.1)
            else:
                assert pitch == pytest.approx(event.note + D.LOWEST_MIDI, abs=0.05)
            expected_end = (event.start + event.length) / rows_per_second
            assert end / CPU_HZ <= expected_end + 2.5 * FRAME_CYCLES / CPU_HZ
