"""The live progress line of long runs (generation, contexts): done/target, rate and ETA.

The line is the job's output, not a log record: it goes to the driver's stdout and is flushed at
once, so it shows in the terminal and, line by line as it happens, in ``ray job logs`` (Ray
captures a submitted driver's stdout; a block-buffered pipe would hold it back until exit).
"""

from __future__ import annotations

import math
import sys


def eta(remaining: float, rate: float) -> str:
    """``remaining`` units at ``rate`` units/s as ``H:MM:SS``; ``?`` while the rate is unknown (0)."""
    if remaining <= 0:
        return "0:00:00"
    if rate <= 0 or not math.isfinite(rate):
        return "?"
    s = int(round(remaining / rate))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_line(label: str, done: int, target: int, rate: float, unit: str = "rows", extra: str = "") -> str:
    """``label: done/target (pct) | rate unit/min | ETA H:MM:SS[ | extra]`` (pure); ``rate`` in units/s."""
    pct = f"{100 * done / target:.0f}%" if target else "-"
    line = f"{label}: {done}/{target} ({pct}) | {60 * rate:,.1f} {unit}/min | ETA {eta(target - done, rate)}"
    return f"{line} | {extra}" if extra else line


def progress(line: str) -> None:
    """Print one progress line to stdout, flushed."""
    sys.stdout.write(f"[progress] {line}\n")
    sys.stdout.flush()
