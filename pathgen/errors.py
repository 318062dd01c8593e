"""How a command reports a failure: one line on stderr naming the file or key, and an exit status.

Exit statuses: 0 success, 1 a run that started and failed (a diverged loss, a full disk mid-run, a
slide that failed in a folder), 2 bad input found before any work (a config key, a missing or
corrupt file), 130 interrupted. Set ``PATHGEN_TRACEBACK=1`` to see the full traceback instead.
"""

from __future__ import annotations

import os
import re
import sys

TRACEBACK_ENV = "PATHGEN_TRACEBACK"
_TYPE_PREFIX = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Shard|Layout|Diverged): ")


def error_line(err: BaseException) -> str:
    """The one line that says what went wrong.

    An error raised inside a DataLoader worker reaches the main process with the worker's whole
    traceback in its message; the original error is its last line.
    """
    text = str(err).strip() or type(err).__name__
    lines = text.splitlines()
    if "Original Traceback" in text:
        return _TYPE_PREFIX.sub("", lines[-1].strip())
    return lines[0].strip()


def show_tracebacks() -> bool:
    """True when the user asked for full tracebacks (``PATHGEN_TRACEBACK=1``)."""
    return os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def report_failure(command: str, err: BaseException, status: int = 2) -> int:
    """Print ``pathgen COMMAND: <one line>`` to stderr and return `status` (the exit code)."""
    print(f"pathgen {command}: {error_line(err)}", file=sys.stderr)
    return status
