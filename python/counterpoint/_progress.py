"""A progress bar for runs of a batch: tqdm's (notebook-aware) when installed, else a
line on stderr redrawn at most ten times a second."""

from __future__ import annotations

import sys
import time
from importlib.util import find_spec
from typing import Any


class Progress:
    """Counts finished and failed runs out of ``total``."""

    def __init__(self, total: int, description: str) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self._description = description
        self._bar: Any = None
        self._drawn = 0.0
        if find_spec("tqdm") is not None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=description, unit="run")

    def advance(self, finished: int, failed: int = 0) -> None:
        self.done += finished
        self.failed += failed
        if self._bar is not None:
            self._bar.update(finished)
            if failed:
                self._bar.set_postfix(failed=self.failed, refresh=False)
            return
        now = time.monotonic()
        if now - self._drawn >= 0.1 or self.done == self.total:
            self._drawn = now
            self._draw()

    def _draw(self, end: str = "") -> None:
        failed = f", {self.failed} failed" if self.failed else ""
        sys.stderr.write(f"\r{self._description}: {self.done}/{self.total} runs{failed}{end}")
        sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            self._draw("\n")
