"""Declared divergences between a method's official code, its paper and tunesift's default.

Each method lists its own ``Divergence`` rows on the class (``faithfulness = (...)``), next to the
code they describe; ``docs/faithfulness.md`` is rendered from those rows by ``render_markdown`` (and
a test checks the file is current), so the table cannot drift from the code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Divergence:
    topic: str           # what the row is about, e.g. "direct-pass truncation"
    official: str        # the official code's rule, with its file and line
    paper: str = ""      # the paper's rule ("" where the paper says nothing more precise)
    default: str = "official"   # which tunesift follows by default: official | paper | ours
    parameter: str = ""  # how to get the other behaviour, e.g. "truncation=drop"

    def __post_init__(self):
        if self.default not in ("official", "paper", "ours"):
            raise TypeError(f"Divergence.default must be official, paper or ours; got {self.default!r}")


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ") or "—"


def render_markdown(methods: Iterable[type]) -> str:
    """The faithfulness table: one row per method and declared divergence."""
    lines = ["# Faithfulness to the authors' code", "",
             "Generated from each method's `faithfulness` declaration (`python scripts/faithfulness.py`); "
             "do not edit by hand. One row per divergence between the official code, the paper and "
             "tunesift's default; `parameter` gives the other behaviour.", "",
             "| method | topic | official code | paper | tunesift default | other behaviour |",
             "|---|---|---|---|---|---|"]
    for cls in methods:
        rows = getattr(cls, "faithfulness", ())
        if not rows:
            lines.append(f"| `{cls.name}` | — | {_cell(getattr(cls, 'code', ''))} | — | no divergence declared | — |")
        for d in rows:
            lines.append(f"| `{cls.name}` | {_cell(d.topic)} | {_cell(d.official)} | {_cell(d.paper)} | "
                         f"{d.default} | {_cell(d.parameter)} |")
    return "\n".join(lines) + "\n"
