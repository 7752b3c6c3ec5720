"""Random and mutated ROM images never crash the process and never run past the watchdog.

A run either ends at its cycle budget or stops with a hang reason; the only
exception allowed is ``RomError`` when the header itself is unusable.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import SHARED
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gbsynth.common.events import CPU_HZ
from gbsynth.emulator.core import state as S
from gbsynth.emulator.core.cartridge.header import CARTRIDGE_TYPES, build_rom
from gbsynth.emulator.core.machine import GameBoy, RomError

BUDGET = CPU_HZ // 2  # half an emulated second per input
WATCHDOG_SECONDS = 0.1
SLACK = 64  # an instruction or interrupt dispatch may end a few cycles past the budget
EXAMPLES = int(os.environ.get("GBSYNTH_FUZZ_EXAMPLES", "150"))
"""Inputs per fuzz test; raise it for a longer campaign."""

SEED_ROMS = [
    SHARED / "roms" / "blargg" / "cpu_instrs" / "individual" / "02-interrupts.gb",
    SHARED / "roms" / "music" / "gbt-player" / "effects_test.gb",
    SHARED / "roms" / "mooneye" / "acceptance" / "ppu" / "stat_irq_blocking.gb",
]


def run_bounded(image: bytes) -> None:
    try:
        gb = GameBoy(image, capture_capacity=64, watchdog_seconds=WATCHDOG_SECONDS)
    except RomError:
        return
    gb.set_buttons(int.from_bytes(image[0x150:0x151] or b"\0", "little"))
    start = gb.cycle
    reason = gb.run_cycles(BUDGET, raise_on_hang=False)
    assert reason in (S.EXIT_END, *S.HANG_EXITS), reason
    assert gb.cycle <= start + BUDGET + SLACK
    if reason == S.EXIT_END:
        assert gb.cycle >= start + BUDGET
    writes = gb.take_writes()
    writes.validate()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    cartridge_type=st.sampled_from(sorted(CARTRIDGE_TYPES)),
    rom_size_code=st.integers(0, 3),
    ram_size_code=st.integers(0, 5),
)
def test_random_rom_images(seed, cartridge_type, rom_size_code, ram_size_code):
    rng = np.random.default_rng(seed)
    size = 0x8000 << rom_size_code
    noise = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    image = build_rom(
        {0: noise[:0x100], 0x150: noise[0x150:]},
        cartridge_type=cartridge_type,
        rom_size_code=rom_size_code,
        ram_size_code=ram_size_code,
    )
    run_bounded(image)


@pytest.fixture(scope="module")
def seed_images(shared_dir) -> list[bytes]:
    return [path.read_bytes() for path in SEED_ROMS]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    which=st.integers(0, len(SEED_ROMS) - 1),
    seed=st.integers(0, 2**32 - 1),
    mutations=st.integers(1, 64),
)
def test_mutated_real_roms(seed_images, which, seed, mutations):
    image = bytearray(seed_images[which])
    rng = np.random.default_rng(seed)
    positions = rng.integers(0, len(image), mutations)
    image_array = np.frombuffer(image, dtype=np.uint8).copy()
    image_array[positions] = rng.integers(0, 256, mutations, dtype=np.uint8)
    # Half the time keep the header intact, so the mutated code actually runs.
    if seed & 1:
        image_array[0x100:0x150] = np.frombuffer(seed_images[which][0x100:0x150], dtype=np.uint8)
    run_bounded(image_array.tobytes())


@settings(max_examples=EXAMPLES, deadline=None)
@given(code=st.binary(min_size=1, max_size=64), buttons=st.integers(0, 255))
def test_random_code_in_a_valid_cartridge(code, buttons):
    """Short random programs (all opcodes, I/O pokes, jumps anywhere) in a valid ROM."""
    entry = bytes([0x00, 0xC3, 0x50, 0x01])  # nop; jp 0x0150
    image = build_rom({0x100: entry, 0x150: code + bytes([0x18, 0xFE])})
    gb = GameBoy(image, watchdog_seconds=WATCHDOG_SECONDS)
    gb.set_buttons(buttons)
    reason = gb.run_cycles(BUDGET, raise_on_hang=False)
    assert reason in (S.EXIT_END, *S.HANG_EXITS)
    assert gb.cycle <= BUDGET + SLACK
