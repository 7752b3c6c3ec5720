"""The notes a recording plays, decoded from its APU register writes: the one decoder.

``decode_notes(writes)`` returns every audible note of the four channels as numpy
columns (``Notes``): channel, start and end (T-cycles at 4,194,304 Hz; seconds as
properties), pitch, volume and how the note began. One numba pass over the writes;
a 30 s song takes about a millisecond.

What counts as a note
- **Start.** A trigger (NRx4 bit 7) of a channel whose DAC is on (pulse/noise: NRx2
  bits 3-7 not all 0; wave: NR30 bit 7), whose starting volume is above 0 or rising
  (wave: NR32 output level not muted) and which is panned to a side in NR51, with
  the APU powered (NR52 bit 7). A note also starts without a trigger when a channel
  that is still running becomes audible again (NR32 or NR51 unmuted).
- **Pitch change without a trigger** (pulse and wave). Drivers rewrite the frequency
  for legato, arpeggios, slides and vibrato. A change of less than
  ``STEP_SEMITONES`` (3/4 of a semitone) from the note's pitch continues the note
  (vibrato, a bend under way); a larger one ends it and starts a new note. The new
  note is a ``LEGATO`` note if it holds one pitch (no frequency change at all) for
  ``LEGATO_FRAMES`` frames (4 frames, 67 ms) at some point: a melody played without
  re-triggering. Otherwise it is a ``STEP``: one step of an arpeggio, a slide or a
  pitch sweep. ``onsets`` (``TRIGGER`` and ``LEGATO`` notes) are the notes a
  listener counts; ``STEP`` notes are ornaments, left out of the rhythm, motif and
  tuning statistics but drawn in piano rolls.
- **End**, whichever comes first: the channel's next note; its DAC turned off; the
  envelope decaying to volume 0 (NRx2 with a falling direction and period p: the
  initial volume v reaches 0 after v x p ticks of 64 Hz); the length counter
  expiring (NRx4 bit 6: 64 - NRx1 bits 0-5 ticks of 256 Hz, wave 256 - NR31); the
  output muted (NR32 level 0, NR51 panning off); the APU powered off; the end of the
  recording.
- **Pitch.** Pulse: MIDI number ``69 + 12 log2(f / 440)`` with
  ``f = 131072 / (2048 - x)`` from the 11-bit frequency ``x`` (NRx3, NRx4 bits 0-2);
  wave: an octave lower (``65536 / (2048 - x)``): it steps through 32 samples, not 8.
  A float: how far a note is from equal temperament is a statistic. A note whose
  frequency moves less than ``STEP_SEMITONES`` from where it began (vibrato, the end
  of a slide) has the pitch it held longest, unbroken. Noise: the NR43
  value at the trigger (clock shift, width and divisor); NR43 changes during a note
  (a drum's second part) do not split it. The channel 1 sweep (NR10) is not followed.
  A pitch above ``HIGHEST_AUDIBLE_MIDI`` (20 kHz) is inaudible: no note.
- **Volume.** Pulse and noise: the envelope's volume at the note's start (0-15; a
  note of starting volume 0 with a rising envelope is audible and has volume 0);
  wave: the output level as 15 (full), 7 (half), 3 (quarter).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES, ApuWrites

CHANNELS = ("pulse 1", "pulse 2", "wave", "noise")
NOISE = 3
"""Channel index of the noise channel; 0-2 are pitched."""

TRIGGER, LEGATO, STEP = 0, 1, 2
"""How a note began (``Notes.kind``): a trigger (or an unmute), a pitch change without a
trigger to a pitch then held, or a step of an arpeggio or slide."""
KIND_NAMES = ("trigger", "legato", "step")

STEP_SEMITONES = 0.75
"""A pitch change without a trigger of at least this much starts a new note; vibrato and
bends under way stay below it."""
LEGATO_FRAMES = 4
"""A note begun by a pitch change is a legato note if its pitch holds still this many frames."""

HIGHEST_AUDIBLE_MIDI = 135.0
"""About 19.9 kHz: drivers silence a channel by setting a frequency above hearing (pulse
frequency register values near 2047), which is no note."""

ENVELOPE_TICK_CYCLES = CPU_HZ // 64
LENGTH_TICK_CYCLES = CPU_HZ // 256
_NEVER = np.int64(1) << 62


@dataclass(frozen=True, eq=False)
class Notes:
    """Notes as numpy columns of equal length, ordered by start (then channel)."""

    channel: np.ndarray
    """uint8: 0 pulse 1, 1 pulse 2, 2 wave, 3 noise."""
    start: np.ndarray
    """int64 T-cycles."""
    end: np.ndarray
    """int64 T-cycles, > start."""
    pitch: np.ndarray
    """float64 MIDI number (69 = A440); noise: the NR43 value."""
    volume: np.ndarray
    """uint8 0-15."""
    kind: np.ndarray
    """uint8 ``TRIGGER``, ``LEGATO`` or ``STEP``."""

    def __len__(self) -> int:
        return int(self.start.shape[0])

    @classmethod
    def empty(cls) -> Notes:
        return cls.from_columns([], [], [], [], [], [])

    @classmethod
    def from_columns(cls, channel, start, end, pitch, volume, kind) -> Notes:
        """Notes from any array-likes, sorted by start then channel."""
        channel = np.asarray(channel, np.uint8)
        start = np.asarray(start, np.int64)
        order = np.lexsort((channel, start))
        return cls(
            channel[order],
            start[order],
            np.asarray(end, np.int64)[order],
            np.asarray(pitch, np.float64)[order],
            np.asarray(volume, np.uint8)[order],
            np.asarray(kind, np.uint8)[order],
        )

    def select(self, mask: np.ndarray) -> Notes:
        """The notes where ``mask`` (bool array or index array) holds, in order."""
        return Notes(self.channel[mask], self.start[mask], self.end[mask], self.pitch[mask],
                     self.volume[mask], self.kind[mask])  # fmt: skip

    def on_channel(self, channel: int) -> Notes:
        return self.select(self.channel == channel)

    @property
    def pitched(self) -> np.ndarray:
        """bool: notes of the pulse and wave channels (their pitch is a MIDI number)."""
        return self.channel != NOISE

    @property
    def is_onset(self) -> np.ndarray:
        """bool: notes a listener counts as new (triggered or legato, not ornament steps)."""
        return self.kind != STEP

    def onsets(self) -> Notes:
        return self.select(self.is_onset)

    @property
    def start_seconds(self) -> np.ndarray:
        return self.start / CPU_HZ

    @property
    def end_seconds(self) -> np.ndarray:
        return self.end / CPU_HZ

    @property
    def seconds(self) -> np.ndarray:
        """Duration of each note in seconds."""
        return (self.end - self.start) / CPU_HZ


def midi_of_register(x, wave: bool = False):
    """MIDI number (float) of an 11-bit frequency register value (scalar or array)."""
    hz = (65536.0 if wave else 131072.0) / (2048 - np.asarray(x, np.float64))
    return 69.0 + 12.0 * np.log2(hz / 440.0)


@nb.njit(cache=True, nogil=True)
def _midi(channel, x):
    hz = 131072.0 / (2048 - x)
    if channel == 2:
        hz *= 0.5
    return 69.0 + 12.0 * np.log2(hz / 440.0)


@nb.njit(cache=True, nogil=True)
def _wave_volume(nr32):
    """NR32's output level on the 0-15 scale: muted 0, full 15, half 7, quarter 3."""
    level = (nr32 >> 5) & 3
    return 0 if level == 0 else 15 >> (level - 1)


@nb.njit(cache=True, nogil=True)
def _volume_now(env, start_volume, elapsed):
    """Pulse or noise envelope volume ``elapsed`` cycles after the trigger."""
    period = env & 7
    if period == 0:
        return start_volume
    ticks = elapsed // (period * ENVELOPE_TICK_CYCLES)
    if env & 8:
        return min(15, start_volume + ticks)
    return max(0, start_volume - ticks)


@nb.njit(cache=True, nogil=True)
def _hold(runs, c, now, pitch):
    """The open note of channel ``c`` moves to ``pitch`` at ``now`` (``runs[c]``: start and
    pitch of the current steady run, pitch and length of the longest run so far)."""
    held = now - runs[c, 0]
    if held > runs[c, 3]:
        runs[c, 2] = runs[c, 1]
        runs[c, 3] = held
    runs[c, 0] = now
    runs[c, 1] = pitch


@nb.njit(cache=True, nogil=True)
def _open(runs, c, now, pitch):
    runs[c, 0] = now
    runs[c, 1] = pitch
    runs[c, 2] = pitch
    runs[c, 3] = -1.0


@nb.njit(cache=True, nogil=True)
def _close(out, n, c, end, start, volume, kind, runs):
    """Write channel ``c``'s open note, ending at ``end``, as note ``n``; returns the next index.

    Its pitch is the one it held longest; a note begun by a pitch change is a ``LEGATO``
    note if it held one pitch for ``LEGATO_FRAMES`` frames, else a ``STEP``."""
    _hold(runs, c, end, runs[c, 1])
    k = kind[c]
    if k != TRIGGER:
        k = LEGATO if runs[c, 3] >= LEGATO_FRAMES * FRAME_CYCLES else STEP
    out[0, n] = c
    out[1, n] = start[c]
    out[2, n] = end
    out[3, n] = runs[c, 2]
    out[4, n] = volume[c]
    out[5, n] = k
    return n + 1


@nb.njit(cache=True, nogil=True)
def _scan(cycles, registers, values, duration, out):
    # Register state, indexed by channel 0-3 (wave: index 2).
    nrx1 = np.zeros(4, np.int64)
    nrx2 = np.zeros(4, np.int64)  # envelope (wave: NR32)
    freq = np.zeros(4, np.int64)  # 11-bit frequency, pulse and wave
    nr43 = 0
    wave_dac = False
    nr51 = 0xFF
    powered = True
    length_left = np.zeros(4, np.int64)  # length counter ticks left
    length_on = np.zeros(4, np.bool_)  # NRx4 bit 6 of the running note
    running = np.zeros(4, np.bool_)  # the hardware channel is on (until length/DAC/power)
    # The open note of each channel.
    open_ = np.zeros(4, np.bool_)
    n_start = np.zeros(4, np.int64)
    n_pitch = np.zeros(4, np.float64)
    n_vol = np.zeros(4, np.int64)
    n_kind = np.zeros(4, np.int64)
    due = np.full(4, _NEVER, np.int64)  # when the envelope or length counter ends the note
    trig_cycle = np.zeros(4, np.int64)  # when the channel was triggered (envelope origin)
    trig_vol = np.zeros(4, np.int64)
    runs = np.zeros((4, 4), np.float64)  # steady pitch runs of the open notes (_hold)
    n = 0
    count = cycles.shape[0]
    for i in range(count + 1):
        now = duration if i == count else cycles[i]
        # Notes ended by their envelope or length counter before this write.
        for c in range(4):
            if running[c] and due[c] <= now:
                if open_[c] and due[c] > n_start[c]:
                    n = _close(out, n, c, due[c], n_start, n_vol, n_kind, runs)
                open_[c] = False
                running[c] = False
                if length_on[c]:
                    length_left[c] = max(
                        0, length_left[c] - (due[c] - trig_cycle[c]) // LENGTH_TICK_CYCLES
                    )
        if i == count:
            break
        register = registers[i]
        value = np.int64(values[i])
        if register == 0xFF26:
            if (value & 0x80) == 0 and powered:
                powered = False
                for c in range(4):
                    if open_[c] and now > n_start[c]:
                        n = _close(out, n, c, now, n_start, n_vol, n_kind, runs)
                    open_[c] = False
                    running[c] = False
                    nrx1[c] = 0
                    nrx2[c] = 0
                    freq[c] = 0
                    length_on[c] = False
                nr43 = 0
                wave_dac = False
                nr51 = 0
            elif value & 0x80:
                powered = True
            continue
        if not powered or register >= 0xFF30:
            continue  # a powered-off APU ignores writes; wave RAM holds no note state
        offset = register - 0xFF10
        if offset >= 0x14:  # NR50-NR52 block
            if register == 0xFF25:
                nr51 = value
            else:
                continue
            c_first, c_last = 0, 4
        else:
            c_first = offset // 5
            c_last = c_first + 1
            part = offset % 5
            c = c_first
            if part == 1:
                nrx1[c] = value
                length_left[c] = (256 if c == 2 else 64) - (value if c == 2 else value & 0x3F)
            elif part == 2:
                if c == 2:
                    nrx2[2] = value
                else:
                    nrx2[c] = value
                    if (value & 0xF8) == 0:
                        running[c] = False  # DAC off
            elif part == 0:
                if c == 2:
                    wave_dac = (value & 0x80) != 0
                    if not wave_dac:
                        running[2] = False
                else:
                    continue  # NR10 sweep: not followed
            elif part == 3:
                if c == 3:
                    nr43 = value
                    continue
                freq[c] = (freq[c] & 0x700) | value
                # Drivers write NRx3 then NRx4: judge the pitch at NRx4 when it follows.
                if i + 1 < count and registers[i + 1] == register + 1:
                    continue
            else:  # part 4: NRx4
                if c < 3:
                    freq[c] = (freq[c] & 0xFF) | ((value & 7) << 8)
                if value & 0x80:
                    if open_[c] and now > n_start[c]:
                        n = _close(out, n, c, now, n_start, n_vol, n_kind, runs)
                    open_[c] = False
                    if running[c] and length_on[c]:
                        ticks = (now - trig_cycle[c]) // LENGTH_TICK_CYCLES
                        length_left[c] = max(0, length_left[c] - ticks)
                    running[c] = wave_dac if c == 2 else (nrx2[c] & 0xF8) != 0
                    if not running[c]:
                        continue
                    if length_left[c] == 0:
                        length_left[c] = 256 if c == 2 else 64
                    length_on[c] = (value & 0x40) != 0
                    trig_cycle[c] = now
                    env_end = _NEVER
                    if c == 2:
                        trig_vol[c] = _wave_volume(nrx2[2])
                    else:
                        env = nrx2[c]
                        trig_vol[c] = env >> 4
                        period = env & 7
                        if (env & 8) == 0 and period > 0:
                            env_end = now + trig_vol[c] * period * ENVELOPE_TICK_CYCLES
                        elif trig_vol[c] == 0 and not ((env & 8) != 0 and period > 0):
                            env_end = now  # volume 0 and staying there: silent
                    len_end = now + length_left[c] * LENGTH_TICK_CYCLES if length_on[c] else _NEVER
                    due[c] = min(env_end, len_end)
                    if due[c] <= now:
                        running[c] = False
                        continue
                    # The note opens below, where the output is checked.
                if running[c] and (value & 0x40) != 0 and not length_on[c]:
                    # Length counting switched on during the note.
                    length_on[c] = True
                    trig_cycle[c] = now
                    due[c] = min(due[c], now + length_left[c] * LENGTH_TICK_CYCLES)
            # A pitch change without a trigger on a sounding tonal channel.
            midi = _midi(c, freq[c]) if c < 3 else 0.0
            if c < 3 and (part == 3 or part == 4) and open_[c] and midi <= HIGHEST_AUDIBLE_MIDI:
                if abs(midi - n_pitch[c]) >= STEP_SEMITONES:
                    if now > n_start[c]:
                        n = _close(out, n, c, now, n_start, n_vol, n_kind, runs)
                    n_kind[c] = LEGATO  # or STEP: decided when it closes
                    n_pitch[c] = midi
                    n_vol[c] = (
                        trig_vol[c]
                        if c == 2
                        else _volume_now(nrx2[c], trig_vol[c], now - trig_cycle[c])
                    )
                    n_start[c] = now
                    _open(runs, c, now, midi)
                elif midi != runs[c, 1]:
                    _hold(runs, c, now, midi)
                continue
        # Output changes (DAC, NR32 level, NR51 panning, a pitch above hearing): close or
        # reopen notes.
        for c in range(c_first, c_last):
            audible = running[c] and ((nr51 >> c) & 0x11) != 0
            if c == 2:
                audible = audible and (nrx2[2] & 0x60) != 0
            if c < 3:
                audible = audible and _midi(c, freq[c]) <= HIGHEST_AUDIBLE_MIDI
            if open_[c] and not audible:
                if now > n_start[c]:
                    n = _close(out, n, c, now, n_start, n_vol, n_kind, runs)
                open_[c] = False
            elif audible and not open_[c]:
                # A running channel heard again without a trigger.
                open_[c] = True
                n_start[c] = now
                n_kind[c] = TRIGGER
                if c == 2:
                    n_vol[c] = _wave_volume(nrx2[2])
                else:
                    n_vol[c] = _volume_now(nrx2[c], trig_vol[c], now - trig_cycle[c])
                if c < 3:
                    n_pitch[c] = _midi(c, freq[c])
                else:
                    n_pitch[c] = nr43
                _open(runs, c, now, n_pitch[c])
    for c in range(4):
        if open_[c] and duration > n_start[c]:
            n = _close(out, n, c, duration, n_start, n_vol, n_kind, runs)
    return n


def decode_notes(writes: ApuWrites, duration_cycles: int | None = None) -> Notes:
    """Every audible note of ``writes`` (see the module docstring for the rules).

    Notes still sounding at ``duration_cycles`` (default: the cycle after the last
    write) end there.
    """
    if duration_cycles is None:
        duration_cycles = int(writes.cycles[-1]) + 1 if len(writes) else 0
    # A write opens at most four notes (NR51 unmuting all channels).
    size = 4 * len(writes) + 8
    # Rows: channel, start, end, pitch, volume, kind. Float64 holds cycles exactly below 2^53.
    out = np.empty((6, size), np.float64)
    n = _scan(writes.cycles, writes.registers, writes.values, np.int64(duration_cycles), out)
    return Notes.from_columns(*out[:, :n])
