"""Game exploration: seeded, reproducible random play with quiet recording periods.

After the boot period, the explorer alternates between *observing* (no input:
the game plays its own music, which we record), *pressing* random buttons
(re-rolled every frame, to get past title screens and into levels) and
*settling* (no input, not recorded: sound effects the presses caused die out).
The same ROM, seed and settings always give the same run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from gbsynth.common.events import CPU_HZ, FRAME_CYCLES, Phase

# Joypad bits as the emulator's set_buttons() takes them.
BUTTON_A = 0x01
BUTTON_B = 0x02
BUTTON_SELECT = 0x04
BUTTON_START = 0x08
BUTTON_RIGHT = 0x10
BUTTON_LEFT = 0x20
BUTTON_UP = 0x40
BUTTON_DOWN = 0x80

# Per-frame chance that each face button is held: Start and A often (they
# advance menus), B and Select rarely (they tend to back out).
FACE_BUTTON_PROBABILITY = np.array(
    [(BUTTON_A, 0.45), (BUTTON_START, 0.30), (BUTTON_B, 0.08), (BUTTON_SELECT, 0.03)]
)
# At most one direction at a time, or none.
DIRECTION_CHOICES = np.array([0, BUTTON_RIGHT, BUTTON_LEFT, BUTTON_UP, BUTTON_DOWN])
DIRECTION_PROBABILITY = np.array([0.40, 0.15, 0.15, 0.15, 0.15])


@dataclass(frozen=True)
class ExploreSettings:
    """Phase lengths in emulated seconds (defaults as Synthic's explorer)."""

    boot_seconds: float = 10.0
    observe_seconds: float = 30.0
    press_seconds: float = 20.0
    settle_seconds: float = 3.0

    def __post_init__(self) -> None:
        for name in ("boot_seconds", "observe_seconds", "press_seconds", "settle_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.observe_seconds <= 0:
            raise ValueError("observe_seconds must be positive, or nothing is ever recorded")


@dataclass(frozen=True)
class PhaseSpan:
    phase: Phase
    start_cycle: int
    end_cycle: int


def _cycles(seconds: float) -> int:
    # Whole frames, so button re-rolls line up with phase edges.
    return int(round(seconds * CPU_HZ / FRAME_CYCLES)) * FRAME_CYCLES


def phase_schedule(settings: ExploreSettings, total_cycles: int) -> Iterator[PhaseSpan]:
    """Boot, then observe / press / settle repeated, cut at ``total_cycles``.

    Observing comes first after boot so that title-screen music is recorded.
    """
    cycle = 0
    boot = _cycles(settings.boot_seconds)
    if boot:
        end = min(boot, total_cycles)
        yield PhaseSpan(Phase.BOOT, 0, end)
        cycle = end
    cycle_phases = (
        (Phase.OBSERVE, _cycles(settings.observe_seconds)),
        (Phase.PRESS, _cycles(settings.press_seconds)),
        (Phase.SETTLE, _cycles(settings.settle_seconds)),
    )
    while cycle < total_cycles:
        for phase, length in cycle_phases:
            if length == 0 or cycle >= total_cycles:
                continue
            end = min(cycle + length, total_cycles)
            yield PhaseSpan(phase, cycle, end)
            cycle = end


def random_buttons(rng: np.random.Generator, frames: int) -> np.ndarray:
    """One joypad mask per frame (uint8), drawn from the tables above."""
    masks = np.zeros(frames, dtype=np.uint8)
    for bit, probability in FACE_BUTTON_PROBABILITY:
        masks |= np.where(rng.random(frames) < probability, int(bit), 0).astype(np.uint8)
    masks |= rng.choice(DIRECTION_CHOICES, size=frames, p=DIRECTION_PROBABILITY).astype(np.uint8)
    return masks
