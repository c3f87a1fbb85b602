"""The canonical example and dataset that every reader produces and every method consumes."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .errors import DataError, SkipReport
from .fingerprint import fingerprint

CONTAINERS = ("json", "jsonl", "jsonl.gz", "json.gz", "parquet", "csv")


def container_of(path: str | Path) -> str:
    name = str(path).lower()
    for ext in ("jsonl.gz", "json.gz", "ndjson", "jsonl", "json", "parquet", "csv"):
        if name.endswith("." + ext):
            return "jsonl" if ext == "ndjson" else ext
    raise DataError(str(path), None, None, "unknown_container",
                    f"unknown file type; expected one of {', '.join('.' + c for c in CONTAINERS)}")


@dataclass(slots=True)   # no per-instance __dict__: a 10M-row pool is 10M of these
class Example:
    """One canonical example: a stable id, messages, and the raw record it came from."""

    id: str
    index: int                 # position among the records that were read
    line: int                  # 1-based line (text files) or row (Parquet/CSV) in the source
    messages: list[dict]
    raw: dict
    instruction: str | None = None   # Alpaca's instruction/input split, where the format has one
    input: str | None = None

    @property
    def response(self) -> str:
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "assistant")

    @property
    def prompt(self) -> str:
        """The user text of the last turn (instruction and input joined)."""
        last = max(i for i, m in enumerate(self.messages) if m["role"] == "assistant")
        # "" when no user turn precedes it (ShareGPT has conversations that open with the assistant)
        return next((m["content"] for m in reversed(self.messages[:last]) if m["role"] == "user"), "")


def question_text(e: Example, always_newline: bool = False) -> str:
    """Instruction (+ newline + input): the user turn as the judge papers' code builds it.
    ``always_newline``: MoDS's necessity stage adds the newline even when the input is empty."""
    if e.instruction is None:
        return e.prompt
    inp = e.input or ""
    return e.instruction + "\n" + inp if (inp or always_newline) else e.instruction


@dataclass
class Dataset:
    path: str
    container: str
    format: str
    examples: list[Example]
    fingerprint: str
    skipped: SkipReport = field(default_factory=SkipReport)
    read_total: int = 0    # records seen, skipped ones included

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]

    def subset(self, indices: Iterable[int]) -> "Dataset":
        ex = [self.examples[i] for i in indices]
        h = fingerprint(self.fingerprint, [e.id for e in ex])
        return Dataset(self.path, self.container, self.format, ex, h, self.skipped, self.read_total)

