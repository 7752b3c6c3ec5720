"""The event representation the model reads and writes: one position per register write.

Each write becomes one *event* of three tokens, predicted one after the other
by factorized heads (``gbsynth.trainer.model``):

=========  ======  =====================================================================
token      count   meaning
=========  ======  =====================================================================
``dt``     193     time since the previous event, as a bucket index into ``DT_CYCLES``:
                   0 cycles; then every multiple of 4 from 4 to 256 (64 buckets, exact:
                   the CPU writes at M-cycle boundaries); then 128 log-spaced buckets up
                   to ``DT_MAX_CYCLES`` = 262,144 cycles (62.5 ms, about 3.7 frames).
``reg``    49      the register, ``address - 0xFF10`` for 0xFF10-0xFF3F (0-47: the
                   channel registers, the master registers NR50-NR52 and wave RAM), or
                   ``WAIT`` = 48, an event that only moves time on (a gap longer than
                   ``DT_MAX_CYCLES`` is a run of waits).
``val``    256     the byte written (0 for ``WAIT``).
=========  ======  =====================================================================

Events are an ``int64`` array of shape ``(n, 3)``: columns ``dt``, ``reg``, ``val``.
``encode`` first drops the writes that change nothing (``audible_writes``: a
register rewritten with the value it holds, where the APU model provably ignores
that; the rendered audio is identical, tested on ``../shared`` music). Drivers
rewrite most registers every frame, so this keeps 15% of nightmode.gbs's writes
(about 150 events per second of music) and 25-65% of other music. The remaining
register and value sequence decodes exactly; only time is quantised. The encoder
quantises against the *decoded* clock (error feedback), so errors never accumulate:
every decoded write is within ``MAX_TIMING_ERROR_CYCLES`` (6,910 cycles, 1.6 ms, a
tenth of a frame) of its true time, and writes 256 cycles apart or closer keep their
exact spacing (to 2 cycles). Order is always kept, so decoded times never go
backwards.

The model reads these events flattened, one token per position (``flatten``: dt,
reg, then val unless a wait; the ``writes`` representation of
``gbsynth.trainer.representation``): exact, every channel, wave RAM and the timing
in the stream, but several hundred tokens per second of music.
"""

from __future__ import annotations

import numba
import numpy as np

from gbsynth.common.events import CYCLE_DTYPE, REGISTER_FIRST, REGISTER_LAST, ApuWrites

N_EXACT_DT = 64
"""Exact buckets 4, 8, ..., 256 cycles."""
N_LOG_DT = 128
DT_MAX_CYCLES = 1 << 18


def _dt_table() -> np.ndarray:
    exact = np.arange(0, 4 * N_EXACT_DT + 1, 4, dtype=np.int64)  # 0, 4, ..., 256
    ratios = np.geomspace(4 * N_EXACT_DT, DT_MAX_CYCLES, N_LOG_DT + 1)[1:]
    # Round to M-cycles; the table stays strictly increasing (ratios grow by > 4 cycles).
    logs = (np.round(ratios / 4) * 4).astype(np.int64)
    table = np.concatenate([exact, logs])
    assert np.all(np.diff(table) > 0) and table[-1] == DT_MAX_CYCLES
    return table


DT_CYCLES: np.ndarray = _dt_table()
"""Cycles each ``dt`` bucket stands for (strictly increasing, starting at 0)."""
N_DT = len(DT_CYCLES)
N_REGISTERS = REGISTER_LAST - REGISTER_FIRST + 1  # 48
WAIT = N_REGISTERS
"""The ``reg`` token of an event that writes nothing and only moves time on."""
N_REG = N_REGISTERS + 1
N_VAL = 256

MAX_TIMING_ERROR_CYCLES = int(np.max(np.diff(DT_CYCLES)) // 2)
"""Largest difference between a decoded write's time and its recorded time."""

DT, REG, VAL = 0, 1, 2  # column indices

NR52_TOKEN = 0xFF26 - REGISTER_FIRST
"""The power register NR52 (the sampler never lets a song switch the APU off)."""
UNUSED_REGISTER_TOKENS = tuple(range(0xFF27 - REGISTER_FIRST, 0xFF30 - REGISTER_FIRST))
"""0xFF27-0xFF2F: in the sound block but not registers (writes are ignored by the APU)."""


# Registers where writing the value they already hold changes nothing in the APU model
# (gbsynth.emulator.core.apu, which the synthesizer runs): no trigger, no length reload, no
# envelope "zombie" step. NRx2 of the pulse and noise channels (zombie mode) and wave RAM
# (where a write lands depends on the wave channel's position) are never dropped.
_SAME_VALUE_SAFE = np.zeros(REGISTER_LAST - REGISTER_FIRST + 1, dtype=np.bool_)
for _address in (0xFF10, 0xFF13, 0xFF18, 0xFF1A, 0xFF1C, 0xFF1D, 0xFF22, 0xFF24, 0xFF25, 0xFF26):
    _SAME_VALUE_SAFE[_address - REGISTER_FIRST] = True
_LENGTH_REGISTERS = np.array([0xFF11, 0xFF16, 0xFF1B, 0xFF20]) - REGISTER_FIRST  # NRx1
_CONTROL_REGISTERS = np.array([0xFF14, 0xFF19, 0xFF1E, 0xFF23]) - REGISTER_FIRST  # NRx4


@numba.njit(cache=True)
def _audible_mask(registers, values, safe, length_regs, control_regs):  # pragma: no cover
    n = registers.shape[0]
    keep = np.ones(n, dtype=np.bool_)
    known = np.full(48, -1, dtype=np.int64)  # value each register holds, -1: unknown
    # Per channel: did length counting run since the last NRx1 write (so a reload matters)?
    length_ran = np.ones(4, dtype=np.bool_)
    powered = False
    for i in range(n):
        slot = registers[i] - 0xFF10
        value = values[i]
        if slot == 0x16:  # NR52
            if powered and (value & 0x80) == 0:
                known[:] = -1  # power off clears the registers
            elif not powered and (value & 0x80) != 0:
                known[:] = -1
                known[0x16] = value
                powered = True
                continue
            elif powered and known[0x16] == value:
                keep[i] = False
            powered = (value & 0x80) != 0
            known[0x16] = value if powered else -1
            continue
        if not powered or slot >= 0x17:
            continue  # ignored while off, or wave RAM / unused: always kept
        channel = -1
        for c in range(4):
            if slot == length_regs[c]:
                channel = c
        if channel >= 0:
            if known[slot] == value and not length_ran[channel]:
                keep[i] = False
            known[slot] = value
            enable = known[control_regs[channel]]
            length_ran[channel] = enable < 0 or (enable & 0x40) != 0
            continue
        for c in range(4):
            if slot == control_regs[c]:
                channel = c
        if channel >= 0:
            if (value & 0x40) != 0:
                length_ran[channel] = True
            # Without a trigger, only the frequency bits and the length enable count (the
            # same enable bit cannot be an off-to-on change, which would clock the length).
            if (value & 0x80) == 0 and known[slot] >= 0 and (known[slot] ^ value) & 0x47 == 0:
                keep[i] = False
            known[slot] = value
            continue
        # NR30 with the DAC bit clear switches the wave channel off: always kept.
        if safe[slot] and known[slot] == value and (slot != 0x0A or (value & 0x80) != 0):
            keep[i] = False
        known[slot] = value
    return keep


def audible_writes(writes: ApuWrites) -> ApuWrites:
    """``writes`` without the ones that change nothing: a value a register already holds.

    Only writes the APU model provably ignores go (see ``_SAME_VALUE_SAFE``; a length
    register's rewrite only while its length counter has not run since it was set);
    the rendered audio is identical (``tests/test_trainer_tokens.py``). Drivers
    rewrite most registers every frame, so this removes most writes.
    """
    if not len(writes):
        return writes
    keep = _audible_mask(
        writes.registers.astype(np.int64),
        writes.values.astype(np.int64),
        _SAME_VALUE_SAFE,
        _LENGTH_REGISTERS,
        _CONTROL_REGISTERS,
    )
    return ApuWrites(writes.cycles[keep], writes.registers[keep], writes.values[keep])


@numba.njit(cache=True)
def _encode(cycles, registers, values, start_cycle, table, wait_token, out):  # pragma: no cover
    max_dt = table[-1]
    n_buckets = table.shape[0]
    clock = start_cycle  # the decoded clock: quantise against it so errors never pile up
    k = 0
    for i in range(cycles.shape[0]):
        residual = cycles[i] - clock
        while residual > max_dt:
            out[k, 0] = n_buckets - 1
            out[k, 1] = wait_token
            out[k, 2] = 0
            k += 1
            clock += max_dt
            residual -= max_dt
        if residual <= 0:
            bucket = 0
        else:
            hi = np.searchsorted(table, residual)  # table[hi - 1] < residual <= table[hi]
            bucket = hi if table[hi] - residual <= residual - table[hi - 1] else hi - 1
        out[k, 0] = bucket
        out[k, 1] = registers[i] - 0xFF10
        out[k, 2] = values[i]
        k += 1
        clock += table[bucket]
    return k


def encode(writes: ApuWrites, start_cycle: int = 0, *, drop_inaudible: bool = True) -> np.ndarray:
    """Events ``(n, 3)`` int64 for ``writes``, timed from ``start_cycle``.

    With ``drop_inaudible`` (the default) the writes ``audible_writes`` removes are
    left out. Raises ``ValueError`` for writes before ``start_cycle`` or outside
    0xFF10-0xFF3F.
    """
    if drop_inaudible:
        writes = audible_writes(writes)
    n = len(writes)
    if n == 0:
        return np.empty((0, 3), dtype=np.int64)
    if int(writes.cycles[0]) < start_cycle:
        raise ValueError(f"write at cycle {int(writes.cycles[0])} before start {start_cycle}")
    if writes.registers.min() < REGISTER_FIRST or writes.registers.max() > REGISTER_LAST:
        raise ValueError("writes outside the sound registers 0xFF10-0xFF3F")
    span = int(writes.cycles[-1]) - start_cycle
    out = np.empty((n + span // DT_MAX_CYCLES + 1, 3), dtype=np.int64)
    k = _encode(
        np.ascontiguousarray(writes.cycles, dtype=np.int64),
        writes.registers.astype(np.int64),
        writes.values.astype(np.int64),
        np.int64(start_cycle),
        DT_CYCLES,
        np.int64(WAIT),
        out,
    )
    return out[:k].copy()


def check_events(events: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``events`` is an ``(n, 3)`` array of in-range tokens."""
    if events.ndim != 2 or events.shape[1] != 3:
        raise ValueError(f"events must have shape (n, 3), not {events.shape}")
    for column, size, name in ((DT, N_DT, "dt"), (REG, N_REG, "reg"), (VAL, N_VAL, "val")):
        col = events[:, column]
        if col.size and (col.min() < 0 or col.max() >= size):
            raise ValueError(f"{name} tokens must be in 0..{size - 1}")


def decode(events: np.ndarray, start_cycle: int = 0) -> ApuWrites:
    """The writes ``events`` stand for (waits dropped), timed from ``start_cycle``."""
    events = np.asarray(events)
    check_events(events)
    cycles = start_cycle + np.cumsum(DT_CYCLES[events[:, DT]], dtype=np.int64)
    keep = events[:, REG] != WAIT
    return ApuWrites(
        cycles[keep].astype(CYCLE_DTYPE),
        (events[keep, REG] + REGISTER_FIRST).astype(np.uint16),
        events[keep, VAL].astype(np.uint8),
    )


def duration_cycles(events: np.ndarray) -> int:
    """Cycles the events span (the decoded time of the last one)."""
    return int(DT_CYCLES[np.asarray(events)[:, DT]].sum())


# -- one token per position: the "writes" representation ---------------------------------
# Each event becomes up to three tokens of one vocabulary, in order: its dt, its reg and
# (unless it is a wait) its val. The model predicts them one after the other, like any
# other token stream (``gbsynth.trainer.representation``).

REG_BASE = N_DT
VAL_BASE = N_DT + N_REG
VOCAB_SIZE = N_DT + N_REG + N_VAL
"""193 dt tokens, then 49 reg tokens, then 256 val tokens."""
MAX_TOKENS_PER_FRAME = 3 * 64
"""Sampling guard: at most 64 writes (192 tokens) in any span of one frame."""


def flatten(events: np.ndarray) -> np.ndarray:
    """Events ``(n, 3)`` as one token per position (int16): dt, reg and, unless a wait, val."""
    events = np.asarray(events, dtype=np.int64)
    check_events(events)
    columns = np.stack([events[:, DT], events[:, REG] + REG_BASE, events[:, VAL] + VAL_BASE], 1)
    keep = np.ones(columns.shape, dtype=bool)
    keep[:, 2] = events[:, REG] != WAIT
    return columns[keep].astype(np.int16)


def unflatten(flat: np.ndarray) -> np.ndarray:
    """Inverse of ``flatten``: events ``(n, 3)``; a last event cut short is left out.

    Raises ``ValueError`` for tokens out of the vocabulary or out of order.
    """
    flat = np.asarray(flat, dtype=np.int64)
    if flat.ndim != 1 or (flat.size and (flat.min() < 0 or flat.max() >= VOCAB_SIZE)):
        raise ValueError(f"write tokens must be a 1-D array of 0..{VOCAB_SIZE - 1}")
    events = []
    i, n = 0, len(flat)
    while i < n:
        dt = flat[i]
        if dt >= REG_BASE:
            raise ValueError(f"token {i}: expected a dt token, got {dt}")
        if i + 1 >= n:
            break
        reg = flat[i + 1] - REG_BASE
        if not 0 <= reg < N_REG:
            raise ValueError(f"token {i + 1}: expected a reg token, got {flat[i + 1]}")
        if reg == WAIT:
            events.append((dt, reg, 0))
            i += 2
            continue
        if i + 2 >= n:
            break
        val = flat[i + 2] - VAL_BASE
        if not 0 <= val < N_VAL:
            raise ValueError(f"token {i + 2}: expected a val token, got {flat[i + 2]}")
        events.append((dt, reg, val))
        i += 3
    return np.array(events, dtype=np.int64).reshape(-1, 3)


def encode_flat(writes: ApuWrites, span_cycles: int | None = None) -> np.ndarray:
    """The writes as flat tokens from cycle 0, padded with waits up to ``span_cycles``."""
    events = encode(writes)
    if span_cycles is not None:
        left = int(span_cycles) - duration_cycles(events)
        waits = []
        while left > 0:
            bucket = min(int(np.searchsorted(DT_CYCLES, left, side="right")) - 1, N_DT - 1)
            if bucket <= 0:
                break
            waits.append((bucket, WAIT, 0))
            left -= int(DT_CYCLES[bucket])
        if waits:
            events = np.concatenate([events, np.array(waits, dtype=np.int64)])
    return flatten(events)


def decode_flat(flat: np.ndarray) -> tuple[ApuWrites, int]:
    """The writes flat tokens stand for, and the cycles they span."""
    events = unflatten(flat)
    return decode(events), duration_cycles(events)


def flat_token_cycles() -> np.ndarray:
    """Cycles each flat token moves the clock on (only dt tokens do)."""
    out = np.zeros(VOCAB_SIZE, dtype=np.int64)
    out[:N_DT] = DT_CYCLES
    return out


def stretch_flat(flat: np.ndarray, factor: float) -> np.ndarray:
    """The tempo scaled by ``factor`` (> 1: slower): gaps over 256 cycles move to the log
    bucket nearest their scaled length; a driver's short in-frame gaps stay exact."""
    flat = np.asarray(flat)
    table = np.arange(VOCAB_SIZE, dtype=np.int64)
    long_gaps = np.arange(N_EXACT_DT + 1, N_DT)
    scaled = np.log(DT_CYCLES[long_gaps] * float(factor))
    logs = np.log(DT_CYCLES[N_EXACT_DT + 1 :])
    table[long_gaps] = N_EXACT_DT + 1 + np.abs(scaled[:, None] - logs[None, :]).argmin(1)
    return table[flat.astype(np.int64)].astype(flat.dtype)


class FlatStreamDecoder:
    """Flat tokens in, one at a time; each completed write out (``push``), timed from 0.

    ``valid_next`` is the grammar: a dt, then a reg, then (unless a wait) a val. The
    sampler never picks the unused addresses 0xFF27-0xFF2F nor switches the APU off (an
    NR52 value without the power bit), which would silence the rest of a song.
    """

    def __init__(self) -> None:
        self.clock = 0
        self._state = 0  # 0: a dt is due, 1: a reg, 2: a val, 3: NR52's val
        self._reg = -1

    def valid_next(self) -> np.ndarray:
        return _FLAT_ALLOWED[self._state]

    def push(self, token: int) -> ApuWrites:
        token = int(token)
        kind = 0 if 0 <= token < REG_BASE else 1 if REG_BASE <= token < VAL_BASE else 2
        if not 0 <= token < VOCAB_SIZE or kind != min(self._state, 2):
            raise ValueError(f"write token {token} out of order")
        if token < REG_BASE:
            self.clock += int(DT_CYCLES[token])
            self._state = 1
        elif token < VAL_BASE:
            self._reg = token - REG_BASE
            self._state = 0 if self._reg == WAIT else 3 if self._reg == NR52_TOKEN else 2
        else:
            self._state = 0
            return ApuWrites.from_arrays(
                [self.clock], [REGISTER_FIRST + self._reg], [token - VAL_BASE]
            )
        return ApuWrites.empty()


def _flat_allowed() -> np.ndarray:
    allowed = np.zeros((4, VOCAB_SIZE), dtype=np.bool_)
    allowed[0, :N_DT] = True
    allowed[1, REG_BASE:VAL_BASE] = True
    allowed[1, [REG_BASE + t for t in UNUSED_REGISTER_TOKENS]] = False
    allowed[2, VAL_BASE:] = True
    allowed[3, VAL_BASE + 0x80 :] = True
    allowed.setflags(write=False)
    return allowed


_FLAT_ALLOWED = _flat_allowed()
