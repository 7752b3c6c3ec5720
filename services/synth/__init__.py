"""The APU synthesizer: render a recording of sound-register writes as a DMG sounds.

See ``gbsynth.synth.render`` for the API (``render``, ``Synth``, ``channel_activity``)
and ``gbsynth.synth.core`` for the engine.
"""

from gbsynth.synth.render import (
    LATENCY_SAMPLES,
    Synth,
    SynthError,
    channel_activity,
    render,
    rms_envelope,
    samples_before,
    to_pcm16,
)

__all__ = [
    "LATENCY_SAMPLES",
    "Synth",
    "SynthError",
    "channel_activity",
    "render",
    "rms_envelope",
    "samples_before",
    "to_pcm16",
]
