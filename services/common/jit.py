"""Guarding numba's on-disk cache against stale machine code.

numba keys a cached function on its own source file only, but jitted code inlines
functions and bakes in constants from other modules: after an edit to one of those, the
cached code of the others would silently run the old version. A package with jitted code
calls ``drop_stale_jit_cache`` at import, before its functions compile, with every source
its code depends on; when their digest changed since the last import, the package's
cached code is deleted and compiles afresh.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path


def drop_stale_jit_cache(package: Path, sources: Iterable[Path], stamp_name: str) -> None:
    """Delete ``package``'s cached numba code if any of ``sources`` changed since last time.

    Looks in the package's ``__pycache__`` folders and, for this package's modules, in
    ``NUMBA_CACHE_DIR``. The digest is kept in ``<stamp_name>`` in ``NUMBA_CACHE_DIR``
    when set, else in the package's ``__pycache__``.
    """
    digest = hashlib.sha256()
    for path in sources:
        try:
            digest.update(path.name.encode() + path.read_bytes())
        except OSError:
            return
    stamp_text = digest.hexdigest()
    cache_dir = os.environ.get("NUMBA_CACHE_DIR")
    # The stamp lives beside the cache it vouches for: with NUMBA_CACHE_DIR (the Docker
    # image) the package folder may be read-only, and a stamp that cannot be written
    # would drop the cache compiled at build time on every start.
    stamp = Path(cache_dir or package / "__pycache__") / stamp_name
    try:
        if stamp.read_text() == stamp_text:
            return
    except OSError:
        pass
    stems = {path.stem for path in package.rglob("*.py")}
    doomed = [p for pattern in ("*.nbi", "*.nbc") for p in package.rglob(pattern)]
    if cache_dir and Path(cache_dir).is_dir():
        # numba mirrors each source folder below NUMBA_CACHE_DIR.
        for pattern in ("*.nbi", "*.nbc"):
            for cached in Path(cache_dir).rglob(pattern):
                if package.name in cached.parts and cached.name.split(".", 1)[0] in stems:
                    doomed.append(cached)
    for cached in doomed:
        try:
            cached.unlink()
        except OSError:
            pass
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(stamp_text)
    except OSError:
        pass  # read-only install: nothing was cached here either
