"""A dependency-free progress line for long runs on a terminal (or a log)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``update(done)`` redraws ``[#####.....] done/total  rate/s`` in place on a
    terminal; elsewhere it prints a line at most every few seconds."""

    def __init__(self, total: int, label: str, *, stream: TextIO = sys.stderr) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream
        self.started = time.perf_counter()
        self._tty = stream.isatty()
        self._last_print = 0.0

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if not self._tty and now - self._last_print < 2 and done < self.total:
            return
        self._last_print = now
        elapsed = max(now - self.started, 1e-9)
        width = 30
        filled = int(width * min(done, self.total) / self.total)
        bar = "#" * filled + "." * (width - filled)
        line = f"{self.label} [{bar}] {done}/{self.total}  {done / elapsed:,.0f}/s"
        if self._tty:
            self.stream.write("\r" + line)
            if done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
