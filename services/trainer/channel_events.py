"""Channel events: music as changes of each channel's sound, one flat token per position.

The write-level tokens (``gbsynth.trainer.tokens``) spend a model position on every
register write, in the driver's own register order and code timing. Here a recording
is rewritten as what a listener hears change, channel by channel, on a fixed time grid:

* time is quantised to ticks of ``TICK_CYCLES`` (1/16 of a 59.73 Hz frame, 1.05 ms)
  and moves on with ``SHIFT`` tokens (1..``MAX_SHIFT`` ticks);
* a note is ``NOTE(channel, note)`` for the tone channels (pulse 1, pulse 2, wave), with
  the pitch as a note number plus an optional ``FINE`` offset before it in
  1/``PITCH_STEPS`` semitone steps, and ``HIT`` for the noise channel;
* a pitch change without a retrigger (vibrato, slides, arpeggio steps) is measured from
  the channel's *anchor*, the pitch its last ``NOTE``/``PITCH`` set: ``JUMP(channel, k)``
  plays the anchor + k semitones (arpeggio steps; ``JUMP 0`` returns to the note),
  ``BEND(channel, d)`` the last jump's pitch + d sixteenths (vibrato, short slides), and
  an absolute ``PITCH`` moves the anchor (long slides). Offsets from the note, not from
  the previous step, so a sampled arpeggio or vibrato cannot wander off its note;
* the sound's parameters are tokens emitted only when they change: ``DUTY``, ``ENV`` (the
  NRx2 envelope byte: initial volume, direction, period), ``VOL`` (the volume a sounding
  channel moves to), ``LEVEL`` (wave output level), ``SWEEP`` (NR10), ``NOISE`` (NR43),
  wave shapes (``WAVE_NEW`` and 32 ``NIBBLE`` tokens, or ``WAVE_RECENT(j)``: the j-th most
  recently used shape), ``PAN`` (NR51) and ``MASTER`` (NR50 volumes);
* ``OFF(channel)`` stops a channel (its DAC stays on, as when a length counter runs out),
  ``CUT(channel)`` switches its DAC off;
* ``ARP(channel, xy)`` is a tracker's arpeggio effect held as the channel's state: from
  its last ``NOTE`` on, frame after frame, the decoder plays the note, + x, + y semitones,
  the note again (``ARP 0`` ends it). One token for what a driver writes every frame.

Encoding runs the APU model (``gbsynth.emulator.core.apu``) twice, on the recording and on the
writes the tokens decode to, and emits at each tick the tokens that make the decoded
channel state match the recorded one (closed loop: a volume step that lands on the other
side of an envelope clock, a length counter that stops a note, a zombie-mode volume
trick: whatever the decoder would get wrong is corrected by the next tokens, so errors
never accumulate). The decoder (``StreamDecoder``) is the one the encoder runs, so the
two cannot disagree. Every token sequence that follows the grammar of ``valid_next``
decodes to legal writes; ``decode`` raises ``TokenError`` for one that does not.

Writes of a burst (a driver's update, writes less than ``BURST_GAP_CYCLES`` apart) go to
the first tick at or after the burst's last write: a decoded write comes 0 to 1 tick
(0-1.05 ms, plus the burst's own length) after the recorded one. See
``docs/representation.md`` for the design, round-trip figures and tokens per second.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES, ApuWrites, Recording
from gbsynth.emulator.core import apu as hw
from gbsynth.trainer import tokens as write_tokens

TICKS_PER_FRAME = 16
"""Ticks per frame; an ``ARP`` steps once a frame."""
TICK_CYCLES = FRAME_CYCLES // TICKS_PER_FRAME
"""4,389 cycles: 1/16 of an LCD frame, 1.05 ms."""
MAX_SHIFT = 256
"""Longest time step of one ``SHIFT`` token (16 frames); longer gaps take several."""
BURST_GAP_CYCLES = 2048
"""Writes closer than this belong to one burst (one driver update), timed together."""
PITCH_STEPS = 16
"""Fine pitch steps per semitone (6.25 cents)."""
MAX_BEND = 2 * PITCH_STEPS
"""``BEND`` offsets are -MAX_BEND..MAX_BEND - 1 steps (2 semitones) from the last jump's pitch."""
MAX_JUMP = 24
"""``JUMP`` offsets are -MAX_JUMP..MAX_JUMP - 1 semitones from the channel's anchor."""
MIDI_LOW = 23
"""MIDI note of note number 0 (the wave channel's lowest pitch is MIDI 23.6)."""
N_NOTES = 146
"""Note numbers 0..145: MIDI 23-168, the pulse channels' range up to register 2047."""
WAVE_SLOTS = 16
"""Wave shapes remembered for ``WAVE_RECENT`` (most recently used first)."""
WRITE_SPACING = 4
"""Cycles between the decoder's writes within a tick (one M-cycle)."""

TONE_CHANNELS = 3  # pulse 1, pulse 2, wave
ENVELOPE_CHANNELS = (0, 1, 3)  # channels with an NRx2 volume envelope
_CHANNEL_NAMES = ("pulse1", "pulse2", "wave", "noise")


class TokenError(ValueError):
    """A token sequence that breaks the grammar (see ``valid_next``)."""


# --------------------------------------------------------------------------
# Vocabulary: consecutive ranges of one flat token space.
# --------------------------------------------------------------------------

_RANGES: dict[str, tuple[int, int]] = {}


def _range(name: str, count: int) -> int:
    start = sum(n for _, n in _RANGES.values())
    _RANGES[name] = (start, count)
    return start


SHIFT = _range("SHIFT", MAX_SHIFT)  # SHIFT + k - 1: k ticks
NOTE = _range("NOTE", TONE_CHANNELS * N_NOTES)  # NOTE + channel * N_NOTES + note: trigger
PITCH = _range("PITCH", TONE_CHANNELS * N_NOTES)  # same, without a trigger
FINE = _range("FINE", PITCH_STEPS - 1)  # offsets -PITCH_STEPS/2 .. PITCH_STEPS/2 - 1, not 0
BEND = _range("BEND", TONE_CHANNELS * 2 * MAX_BEND)  # -MAX_BEND..MAX_BEND-1 steps from the jump
JUMP = _range("JUMP", TONE_CHANNELS * 2 * MAX_JUMP)  # -MAX_JUMP..MAX_JUMP-1 semitones from anchor
HIT = _range("HIT", 1)  # noise trigger
NOISE = _range("NOISE", 256)  # NR43 byte
DUTY = _range("DUTY", 2 * 4)  # pulse channel * 4 + duty
PHASE = _range("PHASE", 2 * 8)  # pulse channel * 8 + duty step the next NOTE starts from
ENV = _range("ENV", 3 * 256)  # envelope channel index * 256 + NRx2 byte
VOL = _range("VOL", 3 * 16)  # envelope channel index * 16 + volume
LEVEL = _range("LEVEL", 4)  # wave output level (NR32 bits 5-6)
OFF = _range("OFF", 4)
CUT = _range("CUT", 4)
SWEEP = _range("SWEEP", 128)  # NR10
WAVE_NEW = _range("WAVE_NEW", 1)  # followed by 32 NIBBLE tokens
NIBBLE = _range("NIBBLE", 16)
WAVE_RECENT = _range("WAVE_RECENT", WAVE_SLOTS - 1)  # WAVE_RECENT + j - 1, j = 1..
PAN = _range("PAN", 256)  # NR51
MASTER = _range("MASTER", 64)  # NR50 left volume * 8 + right volume
RESET = _range("RESET", 4)  # power cycle; the sequencer restarted this many steps ago
ARP = _range("ARP", TONE_CHANNELS * 256)  # tone channel * 256 + xy: arpeggio +x, +y; 0: none
VOCAB_SIZE = sum(n for _, n in _RANGES.values())
"""Number of distinct tokens."""

_KIND = np.empty(VOCAB_SIZE, dtype=object)
_ARG = np.zeros(VOCAB_SIZE, dtype=np.int64)
for _name, (_start, _count) in _RANGES.items():
    _KIND[_start : _start + _count] = _name
    _ARG[_start : _start + _count] = np.arange(_count)
_KIND_LIST = list(_KIND)
_ARG_LIST = _ARG.tolist()


def _fine_token(offset: int) -> int:
    half = PITCH_STEPS // 2
    if offset == 0 or not -half <= offset < half:
        raise ValueError(f"fine offset {offset} out of range")
    return FINE + (offset + half if offset < 0 else offset + half - 1)


def _fine_of(arg: int) -> int:
    half = PITCH_STEPS // 2
    return arg - half if arg < half else arg - half + 1


def _bend_token(channel: int, steps: int) -> int:
    return BEND + channel * 2 * MAX_BEND + steps + MAX_BEND


def _jump_token(channel: int, semitones: int) -> int:
    return JUMP + channel * 2 * MAX_JUMP + semitones + MAX_JUMP


def _jump_of(arg: int) -> tuple[int, int]:
    channel, index = divmod(arg, 2 * MAX_JUMP)
    return channel, index - MAX_JUMP


def _bend_of(arg: int) -> tuple[int, int]:
    channel, index = divmod(arg, 2 * MAX_BEND)
    return channel, index - MAX_BEND


# --------------------------------------------------------------------------
# Pitch: 11-bit frequency registers <-> pitch steps (note * PITCH_STEPS + fine).
# --------------------------------------------------------------------------


def _pitch_tables(clock_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """(register -> pitch step, pitch step -> register) for a channel whose frequency is
    ``clock_hz / (2048 - register)``. A register reached from some step maps back to that
    step, so register -> step -> register is exact wherever steps are finer than registers
    (above about 740 Hz for pulse); elsewhere the decoded register is within a step."""
    registers = np.arange(2048)
    exact = PITCH_STEPS * (69 + 12 * np.log2(clock_hz / (2048 - registers) / 440.0) - MIDI_LOW)
    steps = np.arange(N_NOTES * PITCH_STEPS) - PITCH_STEPS // 2
    hi = np.clip(np.searchsorted(exact, steps), 1, 2047)
    nearer_lo = (steps - exact[hi - 1]) < (exact[hi] - steps)
    to_register = np.where(nearer_lo, hi - 1, hi)
    to_register[steps < exact[0]] = 0
    to_step = np.round(exact).astype(np.int64)
    reached = np.zeros(2048, dtype=bool)
    best = np.full(2048, np.inf)
    for step, register in zip(steps, to_register, strict=True):
        distance = abs(step - exact[register])
        if distance < best[register]:
            best[register] = distance
            to_step[register] = step
            reached[register] = True
    to_step = np.clip(to_step, steps[0], steps[-1])
    return to_step, to_register.astype(np.int64)


_PULSE_STEP, _PULSE_REGISTER = _pitch_tables(131_072.0)
_WAVE_STEP, _WAVE_REGISTER = _pitch_tables(65_536.0)
_STEP_OFFSET = PITCH_STEPS // 2  # to_register is indexed by step + this


def _step_of(channel: int, register: int) -> int:
    return int((_WAVE_STEP if channel == 2 else _PULSE_STEP)[register])


def _register_of(channel: int, step: int) -> int:
    table = _WAVE_REGISTER if channel == 2 else _PULSE_REGISTER
    return int(table[min(max(step + _STEP_OFFSET, 0), len(table) - 1)])


def _split_step(step: int) -> tuple[int, int]:
    note = (step + PITCH_STEPS // 2) // PITCH_STEPS
    return note, step - note * PITCH_STEPS


NOTE_RANGE = {
    0: (_split_step(int(_PULSE_STEP[0]))[0], _split_step(int(_PULSE_STEP[-1]))[0]),
    1: (_split_step(int(_PULSE_STEP[0]))[0], _split_step(int(_PULSE_STEP[-1]))[0]),
    2: (_split_step(int(_WAVE_STEP[0]))[0], _split_step(int(_WAVE_STEP[-1]))[0]),
}
"""Playable note numbers per tone channel (registers 0..2047)."""


# --------------------------------------------------------------------------
# Register layout helpers.
# --------------------------------------------------------------------------

_BASE = (0xFF10, 0xFF15, 0xFF1A, 0xFF1F)  # NRx0 of each channel
_NR50, _NR51 = 0xFF24, 0xFF25
_WAVE_RAM = 0xFF30


def _reg(apu: np.ndarray, address: int) -> int:
    return int(apu[hw.REGS + address - 0xFF10])


def _on(apu: np.ndarray, channel: int) -> bool:
    return bool(apu[hw.CHANNEL_BASE + channel * hw.CHANNEL_STRIDE + hw.CH_ON])


def _volume(apu: np.ndarray, channel: int) -> int:
    return int(apu[hw.CHANNEL_BASE + channel * hw.CHANNEL_STRIDE + hw.CH_VOLUME])


def _dac(apu: np.ndarray, channel: int) -> bool:
    if channel == 2:
        return bool(_reg(apu, 0xFF1A) & 0x80)
    return bool(_reg(apu, _BASE[channel] + 2) & 0xF8)


def _frequency(apu: np.ndarray, channel: int) -> int:
    return _reg(apu, _BASE[channel] + 3) | ((_reg(apu, _BASE[channel] + 4) & 7) << 8)


def _wave_shape(apu: np.ndarray) -> bytes:
    return bytes(apu[hw.WAVE_RAM : hw.WAVE_RAM + 16].astype(np.uint8).tolist())


def _master(apu: np.ndarray) -> int:
    nr50 = _reg(apu, _NR50)
    return ((nr50 >> 4) & 7) * 8 + (nr50 & 7)


# --------------------------------------------------------------------------
# Zombie-mode volume changes: the writes that move a sounding channel's volume.
# --------------------------------------------------------------------------

# Representative NRx2 values for each way a write can step the volume (DAC kept on).
_ZOMBIE_STEPS = (0x08, 0x09, 0x10, 0x11)


def _zombie(volume: int, old: int, running: bool, value: int) -> int:
    """The volume after writing ``value`` to NRx2 (holding ``old``) of a sounding channel,
    as ``gbsynth.emulator.core.apu._write_envelope`` computes it."""
    if (old & 7) == 0 and running:
        volume += 1
    elif (old & 0x08) == 0:
        volume += 2
    if (old ^ value) & 0x08:
        volume = 16 - volume
    return volume & 0x0F


@lru_cache(maxsize=65_536)
def _volume_writes(volume: int, old: int, running: bool, target: int, final: int) -> tuple:
    """Shortest sequence of NRx2 values that takes a sounding channel from ``volume`` (NRx2
    holding ``old``) to ``target`` with NRx2 left at ``final`` (breadth-first search)."""
    start = (volume, old)
    parents: dict[tuple[int, int], tuple[tuple[int, int], int] | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == (target, final):
            path = []
            while parents[node] is not None:
                node, value = parents[node]  # type: ignore[misc]
                path.append(value)
            return tuple(reversed(path))
        for value in (*_ZOMBIE_STEPS, final):
            nxt = (_zombie(node[0], node[1], running, value), value)
            if nxt not in parents:
                parents[nxt] = (node, value)
                queue.append(nxt)
    return ()


# --------------------------------------------------------------------------
# The sound chip as the synthesizer runs it.
# --------------------------------------------------------------------------

_SEQUENCER_PERIOD = 8192  # gbsynth.synth.core.FRAME_SEQUENCER_PERIOD


# Chip state slots beside the APU's (int64 array): the next sequencer step, and per pulse
# channel the duty step, the cycle of the next duty step and the step at the last trigger.
_SEQ, _POS, _NEXT, _TRIG = 0, 1, 3, 5
_CHIP_SIZE = 7
_ON = [hw.CHANNEL_BASE + c * hw.CHANNEL_STRIDE + hw.CH_ON for c in range(4)]


@numba.njit(cache=True)
def _pulse_period(apu, channel):  # pragma: no cover
    base = hw.REGS + 5 * channel
    return 4 * (2048 - (apu[base + 3] | ((apu[base + 4] & 7) << 8)))


@numba.njit(cache=True)
def _duty_steps(apu, state, cycle):  # pragma: no cover
    """Duty steps due strictly before ``cycle`` (the period is constant between events)."""
    for channel in range(2):
        due = state[_NEXT + channel]
        if due < cycle and apu[hw.CHANNEL_BASE + channel * hw.CHANNEL_STRIDE + hw.CH_ON]:
            period = _pulse_period(apu, channel)
            count = (cycle - 1 - due) // period + 1
            state[_POS + channel] = (state[_POS + channel] + count) & 7
            state[_NEXT + channel] = due + count * period


@numba.njit(cache=True)
def _steps_until(apu, state, cycle):  # pragma: no cover
    """Sequencer steps at or before ``cycle``; stops after one that stops a channel and
    returns its cycle, else -1."""
    while state[_SEQ] <= cycle:
        step = state[_SEQ]
        _duty_steps(apu, state, step)
        was_on = 0
        for c in range(4):
            was_on |= apu[hw.CHANNEL_BASE + c * hw.CHANNEL_STRIDE + hw.CH_ON] << c
        hw.apu_frame_sequencer_step(apu)
        state[_SEQ] = step + _SEQUENCER_PERIOD
        now_on = 0
        for c in range(4):
            now_on |= apu[hw.CHANNEL_BASE + c * hw.CHANNEL_STRIDE + hw.CH_ON] << c
        if was_on & ~now_on:
            return step
    return -1


@numba.njit(cache=True)
def _advance(apu, state, cycle):  # pragma: no cover
    while state[_SEQ] <= cycle:
        _steps_until(apu, state, state[_SEQ])
    _duty_steps(apu, state, cycle)


@numba.njit(cache=True)
def _chip_write(apu, state, address, value, cycle):  # pragma: no cover
    _advance(apu, state, cycle)
    powered = (apu[hw.REGS + 0x16] & 0x80) != 0
    hw.apu_write(apu, address, value, cycle)
    if not powered:
        return
    if address == 0xFF26 and (value & 0x80) == 0:
        state[_POS] = 0
        state[_POS + 1] = 0
    elif (address == 0xFF14 or address == 0xFF19) and (value & 0x80) != 0:
        channel = 0 if address == 0xFF14 else 1
        state[_NEXT + channel] = cycle + _pulse_period(apu, channel)
        state[_TRIG + channel] = state[_POS + channel]


@numba.njit(cache=True)
def _sound_key(apu, channel, pulse_step, wave_step, key):  # pragma: no cover
    """What ``_Encoder.correct`` compares of a channel (all 0 but the DAC while it is off)."""
    key[:] = 0
    base = hw.REGS + 5 * channel
    on = apu[hw.CHANNEL_BASE + channel * hw.CHANNEL_STRIDE + hw.CH_ON]
    key[0] = on
    key[1] = (apu[hw.REGS + 0x0A] & 0x80) if channel == 2 else (apu[base + 2] & 0xF8) != 0
    if not on:
        return
    if channel < 3:
        frequency = apu[base + 3] | ((apu[base + 4] & 7) << 8)
        key[2] = wave_step[frequency] if channel == 2 else pulse_step[frequency]
    if channel < 2:
        key[3] = apu[base + 1] >> 6
    if channel == 0:
        key[4] = apu[hw.REGS] & 0x7F
    if channel == 2:
        key[5] = (apu[hw.REGS + 0x0C] >> 5) & 3
        for i in range(16):
            key[6 + i] = apu[hw.WAVE_RAM + i]
    else:
        key[5] = apu[base + 2] & 0x0F
        key[6] = apu[hw.CHANNEL_BASE + channel * hw.CHANNEL_STRIDE + hw.CH_VOLUME]
    if channel == 3:
        key[7] = apu[base + 3]


@numba.njit(cache=True)
def _sound_keys_differ(orig, decoded, pulse_step, wave_step):  # pragma: no cover
    """Per channel: might ``_Encoder.correct`` have something to emit?"""
    out = np.zeros(4, dtype=np.bool_)
    a = np.zeros(22, dtype=np.int64)
    b = np.zeros(22, dtype=np.int64)
    for channel in range(4):
        _sound_key(orig, channel, pulse_step, wave_step, a)
        _sound_key(decoded, channel, pulse_step, wave_step, b)
        for i in range(22):
            if a[i] != b[i]:
                out[channel] = True
    return out


@numba.njit(cache=True)
def _apply_burst(apu, state, cycles, registers, values, lo, hi, snapshots, triggered):
    """The recording's writes ``lo:hi``; per channel triggered (and sounding), the APU state
    right after its last trigger in ``snapshots`` and its duty step + 1 in ``triggered``
    (0: not triggered); ``triggered[4]``: cycle of a power-on (-1: none)."""  # pragma: no cover
    triggered[:] = 0
    triggered[4] = -1
    for i in range(lo, hi):
        address = registers[i]
        value = values[i]
        if address == 0xFF26 and (value & 0x80) != 0 and (apu[hw.REGS + 0x16] & 0x80) == 0:
            triggered[4] = cycles[i]
        _chip_write(apu, state, address, value, cycles[i])
        if (value & 0x80) != 0 and (
            address == 0xFF14 or address == 0xFF19 or address == 0xFF1E or address == 0xFF23
        ):
            channel = (address - 0xFF14) // 5
            if apu[hw.CHANNEL_BASE + channel * hw.CHANNEL_STRIDE + hw.CH_ON]:
                snapshots[channel, :] = apu
                triggered[channel] = (state[_TRIG + channel] if channel < 2 else 0) + 1


class _Chip:
    """The APU model, its frame sequencer and the pulse channels' duty steps, stepped as
    ``gbsynth.synth.core`` steps them (sequencer steps at multiples of 8,192 cycles, before
    a write at the same cycle; a pulse channel's duty step moves on every period while it
    is on and survives triggers, so where a note's waveform starts depends on history)."""

    def __init__(self) -> None:
        self.apu = hw.new_apu_state()
        self.state = np.zeros(_CHIP_SIZE, dtype=np.int64)
        self.state[_SEQ] = _SEQUENCER_PERIOD
        self.state[_NEXT] = _pulse_period(self.apu, 0)
        self.state[_NEXT + 1] = _pulse_period(self.apu, 1)

    def copy(self) -> _Chip:
        twin = object.__new__(_Chip)
        twin.apu = self.apu.copy()
        twin.state = self.state.copy()
        return twin

    @property
    def sequencer(self) -> int:
        """Cycle of the next frame-sequencer step."""
        return int(self.state[_SEQ])

    def duty_position(self, channel: int) -> int:
        """The duty step a pulse channel is at."""
        return int(self.state[_POS + channel])

    def trigger_position(self, channel: int) -> int:
        """The duty step a pulse channel was at when it was last triggered."""
        return int(self.state[_TRIG + channel])

    def advance_to(self, cycle: int) -> None:
        """Everything due up to a write at ``cycle``."""
        _advance(self.apu, self.state, cycle)

    def steps_until(self, cycle: int) -> int:
        """Sequencer steps up to ``cycle``, stopping after one that stops a channel: its
        cycle, else -1."""
        return int(_steps_until(self.apu, self.state, cycle))

    def write(self, address: int, value: int, cycle: int) -> None:
        _chip_write(self.apu, self.state, address, value, cycle)


# --------------------------------------------------------------------------
# The decoder.
# --------------------------------------------------------------------------


class StreamDecoder:
    """Turns tokens into APU writes one token at a time (for streaming while sampling).

    ``push`` returns the writes the token makes; they are final (no later token changes
    them), timed at the current tick. The decoder runs the APU model on its own writes
    (needed to synthesise volume changes, and by the encoder's closed loop).
    """

    def __init__(self) -> None:
        self.chip = _Chip()
        self.tick = 0
        self.cycle = 0
        """Cycle of the decoder's next write."""
        self._last_cycle = 0  # just after the last write made
        self._phase: list[int | None] = [None, None]
        self.anchor: list[int | None] = [None] * TONE_CHANNELS
        """Per tone channel: the pitch step its last NOTE/PITCH set (JUMP offsets start here)."""
        self.jump = [0] * TONE_CHANNELS
        """Per tone channel: the semitones of its last JUMP since then (BEND offsets add to it)."""
        self.arp = [0] * TONE_CHANNELS
        """Per tone channel: its ``ARP`` byte xy (0: no arpeggio)."""
        self.arp_origin: list[int | None] = [None] * TONE_CHANNELS
        """Per tone channel: the tick of its last NOTE (an arpeggio steps a frame after)."""
        self._fine = 0
        self._fine_pending = False
        self._nibbles: list[int] | None = None
        self.recent: list[bytes] = []
        self._cycles: list[int] = []
        self._registers: list[int] = []
        self._values: list[int] = []

    # -- time ---------------------------------------------------------------

    @property
    def apu(self) -> np.ndarray:
        """The APU state the decoded writes have led to."""
        return self.chip.apu

    def fork(self) -> StreamDecoder:
        """An independent decoder in the same state (its writes start empty)."""
        twin = object.__new__(StreamDecoder)
        twin.__dict__.update(self.__dict__)
        twin.chip = self.chip.copy()
        twin._phase = list(self._phase)
        twin.anchor = list(self.anchor)
        twin.jump = list(self.jump)
        twin.arp, twin.arp_origin = list(self.arp), list(self.arp_origin)
        twin.recent = list(self.recent)
        twin._nibbles = None if self._nibbles is None else list(self._nibbles)
        twin._cycles, twin._registers, twin._values = [], [], []
        return twin

    def _write(self, address: int, value: int, cycle: int | None = None) -> None:
        cycle = self.cycle if cycle is None else cycle
        self.chip.write(address, value, cycle)
        self._cycles.append(cycle)
        self._registers.append(address)
        self._values.append(value)
        self.cycle = cycle + WRITE_SPACING
        self._last_cycle = self.cycle

    # -- grammar ------------------------------------------------------------

    def valid_next(self) -> np.ndarray:
        """Boolean mask over the vocabulary: the tokens that may come next."""
        mask = np.zeros(VOCAB_SIZE, dtype=bool)
        if self._nibbles is not None:
            mask[NIBBLE : NIBBLE + 16] = True
            return mask
        if self._fine_pending:
            mask[NOTE : PITCH + TONE_CHANNELS * N_NOTES] = True
            return mask
        mask[:] = True
        mask[NIBBLE : NIBBLE + 16] = False
        mask[WAVE_RECENT + max(len(self.recent) - 1, 0) : WAVE_RECENT + WAVE_SLOTS - 1] = False
        return mask

    # -- tokens -------------------------------------------------------------

    def push(self, token: int) -> ApuWrites:
        """Apply one token; returns the writes it makes. Raises ``TokenError``."""
        first = len(self._cycles)
        self._apply(int(token))
        return self._take(first)

    def _take(self, first: int) -> ApuWrites:
        writes = ApuWrites(
            np.array(self._cycles[first:], dtype=np.int64),
            np.array(self._registers[first:], dtype=np.uint16),
            np.array(self._values[first:], dtype=np.uint8),
        )
        del self._cycles[first:], self._registers[first:], self._values[first:]
        return writes

    def _apply(self, token: int) -> None:
        if not 0 <= token < VOCAB_SIZE:
            raise TokenError(f"token {token} outside the vocabulary 0..{VOCAB_SIZE - 1}")
        kind, arg = _KIND_LIST[token], _ARG_LIST[token]
        if self._nibbles is not None:
            if kind != "NIBBLE":
                raise TokenError(f"a wave shape needs 32 NIBBLE tokens, got {kind}")
            self._nibbles.append(arg)
            if len(self._nibbles) == 32:
                nibbles, self._nibbles = self._nibbles, None
                shape = bytes((nibbles[i] << 4) | nibbles[i + 1] for i in range(0, 32, 2))
                self._load_wave(shape)
            return
        if self._fine_pending and kind not in ("NOTE", "PITCH"):
            raise TokenError(f"FINE must be followed by NOTE or PITCH, got {kind}")
        if kind == "SHIFT":
            self._arpeggio_steps(self.tick + arg + 1)
            self.tick += arg + 1
            self.cycle = max(self.cycle, self.tick * TICK_CYCLES)
        elif kind in ("NOTE", "PITCH"):
            channel, note = divmod(arg, N_NOTES)
            step = note * PITCH_STEPS + (self._fine if self._fine_pending else 0)
            self._fine_pending = False
            self.anchor[channel], self.jump[channel] = step, 0
            if kind == "NOTE":
                self.arp_origin[channel] = self.tick
            self._set_pitch(channel, step, trigger=kind == "NOTE")
        elif kind == "ARP":
            channel, xy = divmod(arg, 256)
            self.arp[channel] = xy
            if self.arp_origin[channel] is None:
                self.arp_origin[channel] = self.tick
        elif kind == "FINE":
            self._fine = _fine_of(arg)
            self._fine_pending = True
        elif kind in ("BEND", "JUMP"):
            channel, offset = (_bend_of if kind == "BEND" else _jump_of)(arg)
            anchor = self.anchor_of(channel)
            if kind == "JUMP":
                self.jump[channel] = offset
                offset = 0
            step = anchor + self.jump[channel] * PITCH_STEPS + offset
            self._set_pitch(channel, step, trigger=False)
        elif kind == "HIT":
            self._write(0xFF23, 0x80)
        elif kind == "NOISE":
            self._write(0xFF22, arg)
        elif kind == "DUTY":
            channel, duty = divmod(arg, 4)
            self._write(_BASE[channel] + 1, duty << 6)
        elif kind == "PHASE":
            channel, position = divmod(arg, 8)
            self._phase[channel] = position
        elif kind == "ENV":
            index, value = divmod(arg, 256)
            self._write(_BASE[ENVELOPE_CHANNELS[index]] + 2, value)
        elif kind == "VOL":
            index, volume = divmod(arg, 16)
            self._set_volume(ENVELOPE_CHANNELS[index], volume)
        elif kind == "LEVEL":
            self._write(0xFF1C, arg << 5)
        elif kind == "OFF":
            self._stop(arg)
        elif kind == "CUT":
            self._write(_BASE[arg] + 2 if arg != 2 else 0xFF1A, 0)
        elif kind == "SWEEP":
            self._write(0xFF10, arg)
        elif kind == "WAVE_NEW":
            self._nibbles = []
        elif kind == "NIBBLE":
            raise TokenError("NIBBLE outside a wave shape (WAVE_NEW comes first)")
        elif kind == "WAVE_RECENT":
            if arg + 1 >= len(self.recent):
                raise TokenError(f"WAVE_RECENT {arg + 1}: only {len(self.recent)} shapes known")
            self._load_wave(self.recent[arg + 1])
        elif kind == "RESET":
            # Power off and on in the frame-sequencer interval the recording did (``arg``
            # steps before this tick's): the sequencer's steps keep their times.
            boundary = (self.tick * TICK_CYCLES // _SEQUENCER_PERIOD - arg) * _SEQUENCER_PERIOD
            last = self._cycles[-1] + WRITE_SPACING if self._cycles else self._last_cycle
            self._write(0xFF26, 0, max(last, boundary + 1))
            self._write(0xFF26, 0x80)
        elif kind == "PAN":
            self._write(_NR51, arg)
        elif kind == "MASTER":
            self._write(_NR50, ((arg >> 3) << 4) | (arg & 7))

    def arpeggio_steps(self, channel: int, until: int) -> list[tuple[int, int]]:
        """(tick, semitones above the anchor) of the channel's arpeggio steps after the
        current tick, up to tick ``until``: one a frame from its last NOTE on."""
        origin, xy = self.arp_origin[channel], self.arp[channel]
        if not xy or origin is None:
            return []
        offsets = (0, xy >> 4, xy & 0x0F)
        first = max(1, (self.tick - origin) // TICKS_PER_FRAME + 1)
        last = (until - origin) // TICKS_PER_FRAME
        return [(origin + f * TICKS_PER_FRAME, offsets[f % 3]) for f in range(first, last + 1)]

    def _arpeggio_steps(self, until: int) -> None:
        """Play the arpeggio steps after the current tick up to ``until``, in time order."""
        steps = sorted(
            (tick, channel, semitones)
            for channel in range(TONE_CHANNELS)
            for tick, semitones in self.arpeggio_steps(channel, until)
        )
        for tick, channel, semitones in steps:
            self.cycle = max(self.cycle, tick * TICK_CYCLES)
            self.jump[channel] = semitones
            self.chip.advance_to(self.cycle)
            if _on(self.apu, channel):
                pitch = self.anchor_of(channel) + semitones * PITCH_STEPS
                self._set_pitch(channel, pitch, trigger=False)

    def anchor_of(self, channel: int) -> int:
        """The channel's anchor; before any NOTE/PITCH, the pitch its register holds."""
        if self.anchor[channel] is None:
            self.anchor[channel] = _step_of(channel, _frequency(self.apu, channel))
        return self.anchor[channel]

    def _set_pitch(self, channel: int, step: int, *, trigger: bool) -> None:
        register = _register_of(channel, step)
        base = _BASE[channel]
        if trigger and channel < 2 and self._phase[channel] is not None:
            self._trigger_at_phase(channel, register, self._phase[channel])
            self._phase[channel] = None
            return
        if trigger and channel == 2 and not _dac(self.apu, 2):
            self._write(0xFF1A, 0x80)
        if trigger or (register & 0xFF) != _reg(self.apu, base + 3):
            self._write(base + 3, register & 0xFF)
        if trigger or (register >> 8) != (_reg(self.apu, base + 4) & 7):
            self._write(base + 4, (0x80 if trigger else 0) | (register >> 8))

    def _trigger_at_phase(self, channel: int, register: int, position: int) -> None:
        """Trigger a pulse channel so that its waveform starts at duty step ``position``:
        first run it at the top frequency (a step every 4 cycles, inaudible) for as many
        steps as needed, then set the real pitch and trigger again between two steps."""
        base = _BASE[channel]
        nr10 = _reg(self.apu, 0xFF10)
        sweep_overflows = channel == 0 and nr10 & 0x07 and not nr10 & 0x08
        if sweep_overflows:  # the sweep's overflow check would stop the channel at 0x7FF
            self._write(0xFF10, 0)
        self._write(base + 3, 0xFF)
        start = self.cycle
        self._write(base + 4, 0x87)
        steps = (position - self.chip.duty_position(channel)) & 7
        at = start + 4 * steps  # the last wanted step is at start + 4 * steps
        if sweep_overflows:
            self._write(0xFF10, nr10, at + 1)
        self._write(base + 3, register & 0xFF, at + 2)
        self._write(base + 4, 0x80 | (register >> 8), at + 3)

    def _set_volume(self, channel: int, volume: int) -> None:
        if not _on(self.apu, channel):
            return  # only a sounding channel has a volume to move
        self.chip.advance_to(self.cycle)
        nrx2 = _reg(self.apu, _BASE[channel] + 2)
        running = bool(self.apu[hw.CHANNEL_BASE + channel * hw.CHANNEL_STRIDE + hw.CH_ENV_RUNNING])
        for value in _volume_writes(_volume(self.apu, channel), nrx2, running, volume, nrx2):
            self._write(_BASE[channel] + 2, value)

    def _stop(self, channel: int) -> None:
        """Stop a channel and leave its DAC as it was (DAC off, then back on)."""
        if not _on(self.apu, channel):
            return
        address = 0xFF1A if channel == 2 else _BASE[channel] + 2
        old = _reg(self.apu, address)
        self._write(address, 0)
        self._write(address, old)

    def _load_wave(self, shape: bytes) -> None:
        """Wave RAM is only writable with the wave channel stopped: DAC off, load, DAC back."""
        dac = _reg(self.apu, 0xFF1A) & 0x80
        self._write(0xFF1A, 0)
        for i, byte in enumerate(shape):
            self._write(_WAVE_RAM + i, byte)
        if dac:
            self._write(0xFF1A, 0x80)
        if shape in self.recent:
            self.recent.remove(shape)
        self.recent.insert(0, shape)
        del self.recent[WAVE_SLOTS:]


def valid_next(decoder: StreamDecoder) -> np.ndarray:
    """Mask of the tokens that may follow what ``decoder`` has read (see ``StreamDecoder``)."""
    return decoder.valid_next()


def decode(tokens: np.ndarray) -> tuple[ApuWrites, int]:
    """The writes ``tokens`` stand for and the duration they cover, in cycles."""
    decoder = StreamDecoder()
    for token in np.asarray(tokens).tolist():
        decoder._apply(token)
    if decoder._nibbles is not None or decoder._fine_pending:
        raise TokenError("tokens end inside a wave shape or after FINE")
    return decoder._take(0), max(decoder.tick * TICK_CYCLES, decoder.cycle)


# --------------------------------------------------------------------------
# The encoder.
# --------------------------------------------------------------------------


@dataclass
class _Trigger:
    """A channel's settings at the moment the recording triggered it."""

    frequency: int
    nrx2: int
    duty: int
    sweep: int
    noise: int
    level: int
    shape: bytes
    position: int
    """Pulse channels: the duty step the waveform starts from."""


def _snapshot(apu: np.ndarray, channel: int, position: int = 0) -> _Trigger:
    base = _BASE[channel]
    return _Trigger(
        frequency=_frequency(apu, channel) if channel < 3 else 0,
        nrx2=_reg(apu, base + 2),
        duty=_reg(apu, base + 1) >> 6,
        sweep=_reg(apu, 0xFF10) & 0x7F,
        noise=_reg(apu, 0xFF22),
        level=(_reg(apu, 0xFF1C) >> 5) & 3,
        shape=_wave_shape(apu) if channel == 2 else b"",
        position=position,
    )


def _shift_to(decoder: StreamDecoder, tick: int) -> list[int]:
    """Move ``decoder`` on to ``tick`` with SHIFT tokens; returns them."""
    out = []
    while decoder.tick < tick:
        token = SHIFT + min(tick - decoder.tick, MAX_SHIFT) - 1
        decoder._apply(token)
        out.append(token)
    return out


class _Encoder:
    def __init__(self, arpeggios: dict[tuple[int, int], int] | None = None) -> None:
        self.decoder = StreamDecoder()
        self.arpeggios = arpeggios or {}
        """(channel, tick) of a trigger -> its ``ARP`` byte (``_arpeggios``)."""
        self.out: list[int] = []
        self.power_on: int | None = None
        """Cycle the recording powered the APU on at since the last tick, if it did."""
        self.emitted_tick = 0

    def emit(self, tick: int, token: int) -> None:
        self.out.extend(_shift_to(self.decoder, tick))
        self.out.append(token)
        self.decoder._apply(token)

    def emit_pitch(self, tick: int, channel: int, frequency: int, *, trigger: bool) -> None:
        step = _step_of(channel, frequency)
        decoder = self.decoder
        if not trigger and step != _step_of(channel, _frequency(decoder.apu, channel)):
            # Arpeggio steps as JUMPs from the note, vibrato as BENDs around the last jump;
            # what neither reaches moves the anchor (PITCH).
            semitones, rest = divmod(step - decoder.anchor_of(channel), PITCH_STEPS)
            if rest == 0 and -MAX_JUMP <= semitones < MAX_JUMP:
                self.emit(tick, _jump_token(channel, semitones))
                return
            bend = step - decoder.anchor_of(channel) - decoder.jump[channel] * PITCH_STEPS
            if -MAX_BEND <= bend < MAX_BEND:
                self.emit(tick, _bend_token(channel, bend))
                return
        note, fine = _split_step(step)
        if fine:
            self.emit(tick, _fine_token(fine))
        self.emit(tick, (NOTE if trigger else PITCH) + channel * N_NOTES + note)

    def emit_wave(self, tick: int, shape: bytes) -> None:
        recent = self.decoder.recent
        if shape in recent[1:]:
            self.emit(tick, WAVE_RECENT + recent.index(shape) - 1)
            return
        self.emit(tick, WAVE_NEW)
        for byte in shape:
            self.emit(tick, NIBBLE + (byte >> 4))
            self.emit(tick, NIBBLE + (byte & 0x0F))

    def settings(self, tick: int, channel: int, want: _Trigger) -> None:
        """Tokens that give the decoder the settings a trigger needs."""
        have = _snapshot(self.decoder.apu, channel)
        if channel == 2:
            if want.shape != have.shape:
                self.emit_wave(tick, want.shape)
            if want.level != have.level:
                self.emit(tick, LEVEL + want.level)
            return
        if channel < 2 and want.duty != have.duty:
            self.emit(tick, DUTY + channel * 4 + want.duty)
        if channel == 0 and want.sweep != have.sweep:
            self.emit(tick, SWEEP + want.sweep)
        if channel == 3 and want.noise != have.noise:
            self.emit(tick, NOISE + want.noise)
        if want.nrx2 != have.nrx2:
            self.emit(tick, ENV + ENVELOPE_CHANNELS.index(channel) * 256 + want.nrx2)

    def trigger(self, tick: int, channel: int, want: _Trigger, arp: int | None = None) -> None:
        """Tokens that trigger ``channel`` as ``want`` says (with arpeggio ``arp`` unless
        None: a restart of a note keeps the decoder's)."""
        self.settings(tick, channel, want)
        if channel == 3:
            self.emit(tick, HIT)
            return
        if arp is not None and arp != self.decoder.arp[channel]:
            self.emit(tick, ARP + channel * 256 + arp)
        if channel < 2:
            # Where the decoder's waveform would start without help: try it on a copy.
            trial = self.decoder.fork()
            _shift_to(trial, tick)
            note = _split_step(_step_of(channel, want.frequency))
            if note[1]:
                trial._apply(_fine_token(note[1]))
            trial._apply(NOTE + channel * N_NOTES + note[0])
            if trial.chip.trigger_position(channel) != want.position:
                self.emit(tick, PHASE + channel * 8 + want.position)
        self.emit_pitch(tick, channel, want.frequency, trigger=True)

    def sync(self, tick: int, chip: _Chip, triggers: dict[int, _Trigger]) -> None:
        """Tokens at ``tick`` that make the decoder's state match the recording's (``chip``)."""
        orig = chip.apu
        if any(self.decoder.arp) and self.decoder.tick < tick:
            if not triggers and self.power_on is None and self._settled(tick, orig):
                return
            self.out.extend(_shift_to(self.decoder, tick))  # its arpeggio steps come first
        self.decoder.chip.advance_to(max(tick * TICK_CYCLES, self.decoder.cycle))
        d = self.decoder.apu
        if self.power_on is not None:
            steps = tick * TICK_CYCLES // _SEQUENCER_PERIOD - self.power_on // _SEQUENCER_PERIOD
            self.emit(tick, RESET + min(max(steps, 0), 3))
            self.power_on = None
        for channel in range(4):
            if channel in triggers:
                arp = self.arpeggios.get((channel, tick), 0) if channel < 3 else None
                self.trigger(tick, channel, triggers[channel], arp)
        if _reg(orig, _NR51) != _reg(d, _NR51):
            self.emit(tick, PAN + _reg(orig, _NR51))
        if _master(orig) != _master(d):
            self.emit(tick, MASTER + _master(orig))
        differs = _sound_keys_differ(orig, d, _PULSE_STEP, _WAVE_STEP)
        for channel in range(4):
            if differs[channel]:
                self.correct(tick, channel, chip)

    def _settled(self, tick: int, orig: np.ndarray) -> bool:
        """Whether the decoder, moved on to ``tick`` (its arpeggios stepping on the way),
        would match the recording there with no token: then nothing is emitted, and no
        time shift either (a running arpeggio costs no token a frame)."""
        probe = self.decoder.fork()
        _shift_to(probe, tick)
        probe.chip.advance_to(max(tick * TICK_CYCLES, probe.cycle))
        d = probe.apu
        if _reg(orig, _NR51) != _reg(d, _NR51) or _master(orig) != _master(d):
            return False
        differs = _sound_keys_differ(orig, d, _PULSE_STEP, _WAVE_STEP)
        return not any(
            differs[channel] and not self._arpeggio_covers(probe, tick, channel, orig)
            for channel in range(4)
        )

    @staticmethod
    def _arpeggio_covers(decoder: StreamDecoder, tick: int, channel: int, orig) -> bool:
        """Whether the only difference on ``channel`` is a pitch the decoder's arpeggio
        reaches within two ticks, or one pitch step (1/16 semitone) off it: drivers' note
        tables and update times differ that much from the decoder's grid."""
        if channel == 3 or not decoder.arp[channel] or not _on(orig, channel):
            return False
        d = decoder.apu
        want = _step_of(channel, _frequency(orig, channel))
        if abs(want - _step_of(channel, _frequency(d, channel))) <= 1:
            pitch_only = True
        else:
            soon = decoder.arpeggio_steps(channel, tick + 2)
            anchor = decoder.anchor_of(channel)
            pitch_only = bool(soon) and abs(want - anchor - soon[0][1] * PITCH_STEPS) <= 1
        if not pitch_only:
            return False
        # Nothing else differs: compare with the decoder's pitch put in the recording's.
        same = orig.copy()
        base = _BASE[channel]
        register = _frequency(d, channel)
        same[hw.REGS + base + 3 - 0xFF10] = register & 0xFF
        same[hw.REGS + base + 4 - 0xFF10] = (orig[hw.REGS + base + 4 - 0xFF10] & ~7) | (
            register >> 8
        )
        return not _sound_keys_differ(same, d, _PULSE_STEP, _WAVE_STEP)[channel]

    def correct(self, tick: int, channel: int, chip: _Chip) -> None:
        orig, d = chip.apu, self.decoder.apu
        base = _BASE[channel]
        o_on, d_on = _on(orig, channel), _on(d, channel)
        if not o_on:
            if d_on or _dac(orig, channel) != _dac(d, channel):
                if not _dac(orig, channel):
                    self.emit(tick, CUT + channel)
                elif d_on:
                    self.emit(tick, OFF + channel)
                elif channel != 2:  # DAC back on without a note: the envelope byte
                    self.emit(
                        tick, ENV + ENVELOPE_CHANNELS.index(channel) * 256 + _reg(orig, base + 2)
                    )
            return
        if not d_on or (channel == 2 and _wave_shape(orig) != _wave_shape(d)):
            # Restart the note in the decoder.
            position = chip.duty_position(channel) if channel < 2 else 0
            self.trigger(tick, channel, _snapshot(chip.apu, channel, position))
        if (
            channel < 3
            and _step_of(channel, _frequency(orig, channel))
            != _step_of(channel, _frequency(d, channel))
            and not self._arpeggio_covers(self.decoder, tick, channel, orig)
        ):
            self.emit_pitch(tick, channel, _frequency(orig, channel), trigger=False)
        if channel < 2 and _reg(orig, base + 1) >> 6 != _reg(d, base + 1) >> 6:
            self.emit(tick, DUTY + channel * 4 + (_reg(orig, base + 1) >> 6))
        if channel == 0 and _reg(orig, 0xFF10) & 0x7F != _reg(d, 0xFF10) & 0x7F:
            self.emit(tick, SWEEP + (_reg(orig, 0xFF10) & 0x7F))
        if channel == 2:
            level = (_reg(orig, 0xFF1C) >> 5) & 3
            if level != (_reg(d, 0xFF1C) >> 5) & 3:
                self.emit(tick, LEVEL + level)
            return
        if channel == 3 and _reg(orig, 0xFF22) != _reg(d, 0xFF22):
            self.emit(tick, NOISE + _reg(orig, 0xFF22))
        # A sounding channel's envelope: direction and period act now (the initial volume
        # only at the next trigger, which brings its own ENV), then the volume itself.
        o_env, d_env = _reg(orig, base + 2), _reg(d, base + 2)
        if (o_env & 0x0F) != (d_env & 0x0F):
            self.emit(tick, ENV + ENVELOPE_CHANNELS.index(channel) * 256 + o_env)
        if _on(d, channel) and _volume(orig, channel) != _volume(d, channel):
            self.emit(tick, VOL + ENVELOPE_CHANNELS.index(channel) * 16 + _volume(orig, channel))


ARPEGGIO_FRAMES = 6
"""Frames after a trigger the encoder reads to recognise an arpeggio (two cycles)."""


def _arpeggios(
    cycles: np.ndarray, registers: np.ndarray, values: np.ndarray, ticks: np.ndarray, end: int
) -> dict[tuple[int, int], int]:
    """The ``ARP`` byte xy of each tone-channel trigger (keyed by channel and the trigger's
    tick) whose next frames play the note, + x, + y, the note, ... (x, y <= 15 semitones,
    within a pitch step: drivers' note tables round differently), as a tracker's arpeggio
    does; 0 where they do not (at least two frames before the next trigger are needed)."""
    found: dict[tuple[int, int], int] = {}
    for channel in range(TONE_CHANNELS):
        low, high = _BASE[channel] + 3, _BASE[channel] + 4
        at = np.flatnonzero((registers == low) | (registers == high))
        if not len(at):
            continue
        is_low = registers[at] == low
        # The 11-bit frequency after each of these writes (registers forward-filled).
        last_low = np.maximum.accumulate(np.where(is_low, np.arange(len(at)), -1))
        last_high = np.maximum.accumulate(np.where(~is_low, np.arange(len(at)), -1))
        low_value = np.where(last_low >= 0, values[at][np.maximum(last_low, 0)], 0)
        high_value = np.where(last_high >= 0, values[at][np.maximum(last_high, 0)], 0)
        frequency = low_value | ((high_value & 7) << 8)
        steps = (_WAVE_STEP if channel == 2 else _PULSE_STEP)[frequency]
        triggers = np.flatnonzero(~is_low & (values[at] & 0x80 != 0))
        write_cycles = cycles[at]
        for n, k in enumerate(triggers.tolist()):
            tick = int(ticks[at[k]])
            stop = int(write_cycles[triggers[n + 1]]) if n + 1 < len(triggers) else end
            frames = tick + TICKS_PER_FRAME * np.arange(1, ARPEGGIO_FRAMES + 1)
            # Read each frame half a frame after its update: bursts drift a tick or two.
            sample = (frames + TICKS_PER_FRAME // 2) * TICK_CYCLES
            sample = sample[sample < stop]
            if len(sample) < 2:
                continue
            after = np.searchsorted(write_cycles, sample, side="right") - 1
            offsets = steps[after] - steps[k]
            semitones = np.round(offsets / PITCH_STEPS).astype(np.int64)
            if np.any(np.abs(offsets - semitones * PITCH_STEPS) > 1):
                continue
            x, y = int(semitones[0]), int(semitones[1])
            if not (0 <= x <= 15 and 0 <= y <= 15) or x == y == 0:
                continue
            expected = np.array([(0, x, y)[f % 3] for f in range(1, len(sample) + 1)])
            if np.array_equal(semitones, expected):
                found[(channel, tick)] = (x << 4) | y
    return found


def _burst_ticks(cycles: np.ndarray) -> np.ndarray:
    """The tick each write is decoded at: the first tick at or after its burst's last write."""
    if not len(cycles):
        return np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.diff(cycles) >= BURST_GAP_CYCLES) + 1
    ends = np.append(starts, len(cycles)) - 1
    burst_tick = -(-cycles[ends] // TICK_CYCLES)
    return np.repeat(burst_tick, np.diff(np.append(0, ends + 1)))


def encode(writes: ApuWrites, duration_cycles: int) -> np.ndarray:
    """Tokens (1-D int16) for ``writes`` over ``duration_cycles`` (see the module docstring).

    Raises ``ValueError`` for writes outside the sound registers or past the duration.
    """
    writes = write_tokens.audible_writes(writes)
    if len(writes):
        writes.validate()
        if int(writes.cycles[-1]) >= duration_cycles:
            raise ValueError(f"write at cycle {int(writes.cycles[-1])} past {duration_cycles}")
    cycles = np.ascontiguousarray(writes.cycles, dtype=np.int64)
    registers = writes.registers.astype(np.int64)
    values = writes.values.astype(np.int64)
    ticks = _burst_ticks(cycles)
    groups = np.flatnonzero(np.diff(ticks)) + 1
    starts = np.append(0, groups).tolist() if len(ticks) else []
    ends = np.append(groups, len(ticks)).tolist() if len(ticks) else []
    chip = _Chip()
    encoder = _Encoder(_arpeggios(cycles, registers, values, ticks, duration_cycles))
    end_tick = -(-duration_cycles // TICK_CYCLES)
    snapshots = np.zeros((4, hw.APU_STATE_SIZE), dtype=np.int64)
    triggered = np.zeros(5, dtype=np.int64)  # per channel: duty step + 1 if triggered; power
    for lo, hi in zip(starts, ends, strict=True):
        tick, first = int(ticks[lo]), int(cycles[lo])
        # Sequencer steps before the burst: a length counter may stop a channel.
        while (stop := chip.steps_until(first)) >= 0:
            stop_tick = -(-stop // TICK_CYCLES)
            if stop_tick < tick and stop_tick * TICK_CYCLES < first:
                chip.advance_to(stop_tick * TICK_CYCLES)
                encoder.sync(stop_tick, chip, {})
        _apply_burst(chip.apu, chip.state, cycles, registers, values, lo, hi, snapshots, triggered)
        if triggered[4] >= 0:
            encoder.power_on = int(triggered[4])
        triggers = {
            channel: _snapshot(snapshots[channel], channel, int(triggered[channel]) - 1)
            for channel in range(4)
            if triggered[channel]
        }
        chip.advance_to(tick * TICK_CYCLES)
        encoder.sync(tick, chip, triggers)
    # Length counters may still stop channels after the last write.
    while (stop := chip.steps_until(duration_cycles - 1)) >= 0:
        stop_tick = -(-stop // TICK_CYCLES)
        if stop_tick < end_tick:
            chip.advance_to(stop_tick * TICK_CYCLES)
            encoder.sync(stop_tick, chip, {})
    gap = end_tick - encoder.decoder.tick
    while gap > 0:
        step = min(gap, MAX_SHIFT)
        encoder.out.append(SHIFT + step - 1)
        gap -= step
    return np.array(encoder.out, dtype=np.int16)


def encode_recording(recording: Recording) -> list[np.ndarray]:
    """Tokens of each observing span of a recording (``data.recording_pieces``: rebased to
    0, opening with a register snapshot), each covering its span's whole duration."""
    from gbsynth.trainer.data import recording_pieces

    spans = recording.observing_spans()
    pieces = recording_pieces(recording)
    return [encode(w, end - start) for w, (start, end) in zip(pieces, spans, strict=True)]


def round_trip_fidelity(
    writes: ApuWrites, duration_cycles: int, rate: int = 44_100
) -> tuple[float, float, np.ndarray]:
    """How closely the decoded tokens sound like ``writes`` (``gbsynth.synth.render.
    sounds_alike``: 20 ms envelope and log band correlations), and the tokens."""
    from gbsynth.synth.render import sounds_alike

    tokens = encode(writes, duration_cycles)
    decoded, _ = decode(tokens)
    envelopes, bands = sounds_alike(
        writes, decoded.between(0, duration_cycles), duration_cycles, rate
    )
    return envelopes, bands, tokens


# --------------------------------------------------------------------------
# Token operations.
# --------------------------------------------------------------------------


def token_seconds(tokens: np.ndarray) -> float:
    """Seconds of music the tokens cover (their ``SHIFT`` ticks)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    shifts = tokens[(tokens >= SHIFT) & (tokens < SHIFT + MAX_SHIFT)] - SHIFT + 1
    return float(shifts.sum()) * TICK_CYCLES / CPU_HZ


def transpose(tokens: np.ndarray, semitones: int) -> np.ndarray | None:
    """The tokens with every tone-channel note moved by ``semitones``; ``None`` if a note
    would leave its channel's range. Noise, bends and fine offsets are unchanged."""
    tokens = np.asarray(tokens).astype(np.int64)
    out = tokens.copy()
    for start in (NOTE, PITCH):
        sel = (tokens >= start) & (tokens < start + TONE_CHANNELS * N_NOTES)
        channel, note = np.divmod(tokens[sel] - start, N_NOTES)
        note = note + semitones
        low = np.array([NOTE_RANGE[c][0] for c in range(TONE_CHANNELS)])[channel]
        high = np.array([NOTE_RANGE[c][1] for c in range(TONE_CHANNELS)])[channel]
        if np.any((note < low) | (note > high)):
            return None
        out[sel] = start + channel * N_NOTES + note
    return out.astype(np.int16)


def stretch(tokens: np.ndarray, factor: float) -> np.ndarray:
    """The tokens played ``factor`` times as long (tempo augmentation): every event's time
    is scaled and rounded to ticks; events keep their order."""
    if not factor > 0:
        raise ValueError(f"stretch factor must be positive, not {factor}")
    tokens = np.asarray(tokens).astype(np.int64)
    is_shift = (tokens >= SHIFT) & (tokens < SHIFT + MAX_SHIFT)
    ticks = np.cumsum(np.where(is_shift, tokens - SHIFT + 1, 0))
    out: list[int] = []
    done = 0
    for token, tick, shift in zip(tokens.tolist(), ticks.tolist(), is_shift.tolist(), strict=True):
        if shift:
            continue
        target = int(round(tick * factor))
        while target > done:
            step = min(target - done, MAX_SHIFT)
            out.append(SHIFT + step - 1)
            done += step
        out.append(token)
    target = int(round(int(ticks[-1]) * factor)) if len(ticks) else 0
    while target > done:
        step = min(target - done, MAX_SHIFT)
        out.append(SHIFT + step - 1)
        done += step
    return np.array(out, dtype=np.int16)


def _note_name(note: int) -> str:
    midi = note + MIDI_LOW
    names = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
    return f"{names[midi % 12]}{midi // 12 - 1}"


def describe(tokens: np.ndarray) -> list[str]:
    """One human-readable line per token, e.g. ``NOTE pulse1 A4`` or ``SHIFT 4``."""
    lines = []
    for token in np.asarray(tokens).tolist():
        if not 0 <= token < VOCAB_SIZE:
            lines.append(f"? {token}")
            continue
        kind, arg = _KIND_LIST[token], _ARG_LIST[token]
        if kind == "SHIFT":
            text = f"SHIFT {arg + 1}"
        elif kind in ("NOTE", "PITCH"):
            channel, note = divmod(arg, N_NOTES)
            text = f"{kind} {_CHANNEL_NAMES[channel]} {_note_name(note)}"
        elif kind == "FINE":
            text = f"FINE {_fine_of(arg):+d}/{PITCH_STEPS}"
        elif kind == "BEND":
            channel, steps = _bend_of(arg)
            text = f"BEND {_CHANNEL_NAMES[channel]} {steps:+d}/{PITCH_STEPS}"
        elif kind == "JUMP":
            channel, semitones = _jump_of(arg)
            text = f"JUMP {_CHANNEL_NAMES[channel]} {semitones:+d}"
        elif kind in ("ENV", "VOL"):
            index, value = divmod(arg, 256 if kind == "ENV" else 16)
            name = _CHANNEL_NAMES[ENVELOPE_CHANNELS[index]]
            text = f"{kind} {name} " + (f"0x{value:02X}" if kind == "ENV" else f"{value}")
        elif kind == "DUTY":
            text = f"DUTY {_CHANNEL_NAMES[arg // 4]} {arg % 4}"
        elif kind == "PHASE":
            text = f"PHASE {_CHANNEL_NAMES[arg // 8]} {arg % 8}"
        elif kind in ("OFF", "CUT"):
            text = f"{kind} {_CHANNEL_NAMES[arg]}"
        elif kind in ("NOISE", "SWEEP", "PAN"):
            text = f"{kind} 0x{arg:02X}"
        elif kind == "MASTER":
            text = f"MASTER L{arg >> 3} R{arg & 7}"
        elif kind == "WAVE_RECENT":
            text = f"WAVE_RECENT {arg + 1}"
        elif kind == "RESET":
            text = f"RESET {arg}"
        elif kind == "ARP":
            channel, xy = divmod(arg, 256)
            steps = f"+{xy >> 4} +{xy & 0x0F}" if xy else "off"
            text = f"ARP {_CHANNEL_NAMES[channel]} {steps}"
        elif kind in ("NIBBLE", "LEVEL"):
            text = f"{kind} {arg}"
        else:
            text = kind
        lines.append(text)
    return lines
