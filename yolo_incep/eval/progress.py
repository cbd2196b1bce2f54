"""compare's progress bar on stderr: Ultralytics' own TQDM, one line per phase of a row (predicting, evaluating,
resampling) with the rows done, the phase's frames or resamples done and its time left, and after the first row an
estimate of the time left for the whole comparison. Silent where stderr is not a terminal (logs, CI) or when asked."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator


class Progress:
    """The bars of one comparison of `rows` rows."""

    def __init__(self, rows: int, enabled: bool = True, file=None):
        self.file = file or sys.stderr
        self.enabled = enabled and _is_terminal(self.file)
        self.rows, self.done, self.start = rows, 0, time.perf_counter()

    @contextlib.contextmanager
    def phase(self, name: str, what: str, total: int, unit: str) -> Iterator[Callable[[int], None]]:
        """A bar for one phase of row `name`; yields update(n), to call with each n `unit`s done."""
        if not self.enabled:
            yield lambda n=1: None
            return
        from ultralytics.utils import TQDM

        bar = TQDM(total=total, desc=f"compare {self.done + 1}/{self.rows}{self._left()} {name} {what}",
                   unit=unit, file=self.file, leave=False, disable=False)
        try:
            yield lambda n=1: n and bar.update(n)
        finally:
            bar.close()

    def row_done(self) -> None:
        self.done += 1

    def _left(self) -> str:
        """' (~3m left)' for the whole comparison once a row is done (rows alike: the mean so far times the rows to
        come)."""
        if not self.done:
            return ""
        s = (time.perf_counter() - self.start) / self.done * (self.rows - self.done)
        return f" (~{s / 60:.0f}m left)" if s >= 90 else f" (~{s:.0f}s left)"


def _is_terminal(file) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # a closed or file-less stream
        return False
