"""What the local stack tells the developer: progress lines and the tails of logs.

On stderr, so that `env`'s stdout stays machine-readable.
"""

from __future__ import annotations

import sys
from pathlib import Path


def say(line: str) -> None:
    """Print one ``[stack]`` progress line at once (the output may be a pipe)."""
    print(f"[stack] {line}", file=sys.stderr, flush=True)


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, to show why something failed."""
    try:
        with path.open("rb") as log:
            log.seek(0, 2)
            log.seek(max(0, log.tell() - 64 * 1024))
            text = log.read().decode(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(f"    {line}" for line in text.splitlines()[-lines:])
