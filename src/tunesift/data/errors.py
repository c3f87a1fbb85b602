"""Errors and skip accounting for bad input.

Every problem with an input record becomes a ``DataError`` that names the file, the line and the
field.  With ``on_error="skip"`` the reader records it in a ``SkipReport`` instead of raising, so a
dropped record is always counted and reported, never silent.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class TunesiftError(Exception):
    """Base class of every error tunesift raises on purpose."""


class DataError(TunesiftError):
    """A problem with one input record (or the whole file)."""

    def __init__(self, path: str, line: int | None, field: str | None, reason: str, detail: str):
        self.path, self.line, self.field, self.reason, self.detail = path, line, field, reason, detail
        where = str(path) + (f", line {line}" if line is not None else "")
        what = f", field '{field}'" if field else ""
        super().__init__(f"{where}{what}: {detail} [{reason}]")


@dataclass
class SkipReport:
    """Records skipped under ``on_error='skip'``: counts by reason plus the first few locations."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 20

    def add(self, err: DataError) -> None:
        self.counts[err.reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(err))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict:
        return {"total": self.total, "by_reason": dict(self.counts), "first": list(self.examples)}
