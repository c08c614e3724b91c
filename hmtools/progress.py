"""Progress of long work: a tqdm bar on a terminal; in a log file (stderr not a terminal: Slurm,
nohup, CI) a plain log line every ``HMTOOLS_PROGRESS_SECONDS`` (default 60) and one at the end,
never carriage returns."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger("hmtools.progress")


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("HMTOOLS_PROGRESS_SECONDS", "60")))
    except ValueError:
        return 60.0


def _hms(s: float) -> str:
    s = int(round(s))
    return (
        f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


class LogProgress:
    """Iterates like tqdm and reports as log lines (see module doc)."""

    def __init__(
        self,
        iterable: Iterable[T],
        desc: str = "",
        unit: str = "it",
        total: int | None = None,
        interval: float | None = None,
    ):
        self.iterable, self.desc, self.unit = iterable, desc or "progress", unit
        if total is None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.total = total
        self.interval = _interval() if interval is None else interval
        self.n = 0
        self.postfix = ""
        self._t0 = self._last = time.monotonic()

    def set_postfix(self, **kw: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def line(self) -> str:
        el = time.monotonic() - self._t0
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        pct = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        eta = ""
        if self.total and 0 < self.n < self.total:
            eta = f", ~{_hms(el / self.n * (self.total - self.n))} left"
        post = f" [{self.postfix}]" if self.postfix else ""
        return f"{self.desc}: {done} {self.unit}s{pct}, {_hms(el)} elapsed{eta}{post}"

    def __iter__(self) -> Iterator[T]:
        for item in self.iterable:
            yield item
            self.n += 1
            now = time.monotonic()
            if now - self._last >= self.interval and (self.total is None or self.n < self.total):
                self._last = now
                log.info(self.line())
        log.info(self.line())

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        pass


def progress_bar(iterable: Iterable[T], *, disable: bool = False, **kw: Any) -> Any:
    """``tqdm(iterable, **kw)`` on a terminal, :class:`LogProgress` otherwise; ``disable``
    (``--quiet``) silences both."""
    if disable:
        return tqdm(iterable, disable=True, **kw)
    if sys.stderr.isatty():
        return tqdm(iterable, **kw)
    return LogProgress(iterable, kw.get("desc", ""), kw.get("unit", "it"), kw.get("total"))
