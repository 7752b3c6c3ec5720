"""What the ``gbsynth`` command modules share: expected errors become one line on stderr
and an exit code, never a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping


def run_reporting_errors(
    command: str, body: Callable[[], int], exit_codes: Mapping[type[Exception], int]
) -> int:
    """``body()``'s exit code; an exception of a type in ``exit_codes`` (first match in order)
    is printed as ``gbsynth COMMAND: message`` and gives its code. A closed stdout pipe (the
    reader went away, e.g. ``| head``) is not an error worth a message: exit code 0."""
    try:
        return body()
    except BrokenPipeError:
        # Later flushes of the dead pipe (at interpreter exit) must not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        for kind, code in exit_codes.items():
            if isinstance(exc, kind):
                print(f"gbsynth {command}: {exc}", file=sys.stderr)
                return code
        raise
