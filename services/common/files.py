"""Atomic file writes: a reader sees the old file or the whole new one, never half of one.

Data goes to a temporary file beside the target (same folder, so the rename
stays on one file system) named ``.<name>.<random>.partial``, and is renamed
onto the target only once complete. A write cut short (crash, exception)
leaves at most such a ``.partial`` file, which the owners of a folder may sweep
up (``glob(".*.partial")``). ``durable=True`` also flushes the data to disk
before the rename, for files a restarted service must find intact after a power
cut (checkpoints, the trainer's dataset).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

PARTIAL_SUFFIX = ".partial"


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, durable: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into; it replaces ``path`` on success.

    On an exception inside the ``with`` block the temporary file is deleted and
    ``path`` keeps its old content (or stays absent).
    """
    path = Path(path)
    fd, tmp = _create_partial(path)
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_partial(path: Path) -> tuple[int, Path]:
    # Not tempfile.mkstemp: its files are private (0600) while the target should get the
    # usual permissions (0666 less the umask), as open() would give it.
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def atomic_write(path: str | os.PathLike[str], data: bytes, *, durable: bool = False) -> None:
    """Replace ``path``'s content with ``data`` atomically (see ``atomic_output``)."""
    with atomic_output(path, durable=durable) as stream:
        stream.write(data)
