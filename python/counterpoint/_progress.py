"""A progress bar for runs of a batch: tqdm's (notebook-aware) when installed, else a
line on stderr redrawn at most ten times a second."""

from __future__ import annotations

import sys
import time
import warnings
from importlib.util import find_spec
from typing import Any


def progress_label(progress: Any) -> str | None:
    """The bar's description for a batch's ``progress=`` argument (None: no bar).

    ``True`` shows a bar described as "batch", a string one described by the string.
    """
    if progress is False or progress is None:
        return None
    if progress is True:
        return "batch"
    if isinstance(progress, str) and progress.strip():
        return progress
    raise ValueError(
        "progress must be True (a progress bar), a non-empty string (a bar with that "
        f"description) or False, got {progress!r}")


class Progress:
    """Counts finished and failed runs out of ``total``."""

    def __init__(self, total: int, description: str) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self._description = description
        self._bar: Any = None
        self._drawn = 0.0
        self._closed = False
        if find_spec("tqdm") is not None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=description, unit="run")
        else:
            self._draw()

    def advance(self, finished: int, failed: int = 0) -> None:
        # A batch that raised early (abatch without return_exceptions) closed its bar
        # while runs it did not wait for still end.
        if self._closed:
            return
        try:
            self._advance(finished, failed)
        except Exception as exc:  # noqa: BLE001 - a broken bar must not stop the batch
            self._closed = True
            warnings.warn(f"the batch's progress bar stopped: {exc!r}", RuntimeWarning,
                          stacklevel=2)

    def _advance(self, finished: int, failed: int) -> None:
        self.done += finished
        self.failed += failed
        if self._bar is not None:
            if failed:
                self._bar.set_postfix(failed=self.failed, refresh=False)
            self._bar.update(finished)
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
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        else:
            self._draw("\n")
