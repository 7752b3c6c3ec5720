"""The generator: new songs from the newest checkpoint, over HTTP, as WAV, VGM or Avro.

- ``songs``: sampling a song (``generate``), streaming WAV rendering, files, piano roll;
- ``prime``: reading the music a song continues;
- ``models``: the served model, hot swap from the checkpoint folder and ``model.checkpoints``;
- ``service``: sampling threads, admission (429), time limits (504), the song cache;
- ``app``: the FastAPI app (API, page, metrics); ``static/``: the page;
- ``settings``: ``GBSYNTH_GENERATOR_*``; ``main``: ``gbsynth generator``;
  ``offline``: ``gbsynth generate``.
"""
