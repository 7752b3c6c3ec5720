"""The pruner: keep the music of recordings, drop silence, sound effects, noise and repeats.

- ``analysis``: what a recording sounds like, from its register writes (onsets, pitches,
  levels, loudness, rhythm, note-sequence hashes), without rendering.
- ``songs``: songs told apart by their note windows (``SongBook``), for the explorer.
- ``prune``: ``prune_recording(recording, PruneConfig) -> PruneResult`` (segments and a
  reason for each stretch dropped).
- ``main``: ``gbsynth pruner``, the service (``apu.recordings`` -> ``apu.segments``).
- ``offline``: ``gbsynth prune RECORDING... --out DIR``.
"""
