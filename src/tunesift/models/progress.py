"""Progress that reaches a log: a tqdm bar on a terminal, a plain line every ~30 s elsewhere.

Under Slurm, ``nohup`` or CI, stderr is a file: a bar there is either silent (disabled) or a stream
of carriage returns.  ``progress_bar`` takes tqdm's constructor arguments and, with no terminal,
returns a ``LineProgress`` with the same ``update`` / ``set_postfix`` / ``close`` that prints
``stage: done/total unit (pct), rate, ETA`` at most every ``TUNESIFT_PROGRESS_EVERY`` seconds (30).
It lives with the models (the lowest layer with long loops: generation, API calls) so every layer
above reports the same way.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Callable, TextIO

from tqdm.auto import tqdm

EVERY_ENV = "TUNESIFT_PROGRESS_EVERY"


def has_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    # a notebook is no TTY, but tqdm.auto draws a widget there
    return bool(getattr(stream, "isatty", lambda: False)()) or "ipykernel" in sys.modules


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class LineProgress:
    """tqdm's counting interface, written as one line per interval (and one at the end, if any)."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", every: float = 30.0,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.unit, self.every = total, desc or "progress", unit, every
        self.stream, self.clock = stream, clock
        self.n, self.postfix = 0, ""
        self.start = self.last = clock()
        self.lines = 0

    def line(self) -> str:
        dt = self.clock() - self.start
        rate = self.n / dt if dt > 0 else 0.0
        done = f"{self.n:,}" + (f"/{self.total:,} {self.unit} ({self.n / self.total:.0%})" if self.total else f" {self.unit}")
        eta = ""
        if self.total and rate > 0 and self.n < self.total:
            eta = f", ETA {_clock((self.total - self.n) / rate)}"
        # slow stages (a 270M fine-tune on a CPU) read as seconds per unit, as tqdm writes them
        speed = f"{1 / rate:,.1f} s/{self.unit}" if 0 < rate < 1 else f"{rate:,.1f} {self.unit}/s"
        return f"{self.desc}: {done}, {speed}, {_clock(dt)} elapsed{eta}{self.postfix}"

    def _emit(self) -> None:
        stream = self.stream or sys.stderr
        stream.write(self.line() + "\n")
        stream.flush()
        self.lines += 1
        self.last = self.clock()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.clock() - self.last >= self.every:
            self._emit()

    def set_postfix(self, refresh: bool = True, **kw: Any) -> None:
        self.postfix = "".join(f", {k}={v}" for k, v in kw.items())

    def close(self) -> None:
        if self.lines:      # a stage that printed progress also says that it finished
            self._emit()
            self.lines = 0

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def wanted(progress: bool | None) -> bool:
    """A loop's ``progress`` flag; None (callers that pass none, e.g. a selector inside a method)
    follows the ``tunesift`` logger: on at INFO, as the CLI sets it, off under ``-q`` or when a
    library user has configured no logging."""
    return progress if progress is not None else logging.getLogger("tunesift").isEnabledFor(logging.INFO)


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False,
                 leave: bool = False, **tqdm_kwargs: Any):
    """A tqdm bar where there is a terminal, else a ``LineProgress``; ``disable`` silences both."""
    if disable or has_terminal():
        return tqdm(total=total, desc=desc, unit=unit, disable=disable, leave=leave, **tqdm_kwargs)
    return LineProgress(total, desc, unit, float(os.environ.get(EVERY_ENV, 30)))
