"""The trainer: an autoregressive model of APU events, trained continuously from segments.

- ``tokens``: the event representation (one position per audible write: dt, reg, val);
- ``model``: the transformer (``GPTConfig``, ``GPT``, ``PRESETS``);
- ``engine``: compiled one-event-at-a-time inference; ``sampling``: ``Sampler``;
- ``checkpoint``: atomic checkpoint files (``newest_checkpoint``, ``load_checkpoint``);
- ``data``/``store``: training material and the service's segment dataset;
- ``train``: the training loop; ``baselines``: n-gram baselines;
- ``main`` (``gbsynth trainer``), ``offline`` (``gbsynth train``), ``evaluate``
  (``gbsynth evaluate``); ``testing``: tiny checkpoints for other services' tests.
"""
