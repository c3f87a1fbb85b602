"""Planning: every (method, seed) cell and the key of everything that produces it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..data.example import Dataset
from ..data.fingerprint import Hasher, fingerprint
from ..evaluate.tasks import EvalSpec
from ..methods import get_method
from .config import BASE, FULL, RANDOM, BenchConfig


def key_of(*parts: Any) -> str:
    return fingerprint(*parts)


def content_key(path: Path) -> str:
    """An evaluation file's (or folder's) contents, not its path: cells computed on another machine,
    where the data lives elsewhere, are found again here."""
    h = Hasher()
    for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if f.is_file():
            h.update(f.relative_to(path).as_posix() if path.is_dir() else "", f.read_bytes())
    return h.hexdigest(16)


@dataclass
class Cell:
    method: str
    seed: int
    key: str
    path: Path


def plan_cells(pool: Dataset, specs: list[EvalSpec], config: BenchConfig, output_dir: Path) -> list[Cell]:
    """Every (method, seed) cell with the key of everything that produces it."""
    c = config
    # the settings that differ from TrainConfig's defaults (as a method's parameters are the given ones):
    # a new setting with a default leaves the finished cells valid
    default = type(c.train)()
    tcfg = {f.name: getattr(c.train, f.name) for f in dataclasses.fields(c.train)
            if f.name != "seed" and getattr(c.train, f.name) != getattr(default, f.name)}
    evals = [(s.name, s.limit, content_key(s.path), sorted(s.exclude)) for s in specs]
    judge = (c.judge_reward_model, c.judge_model) if any(s.name.endswith("winrate") for s in specs) else None
    common = (pool.fingerprint, c.budget, c.base_model, c.score_model, c.template, tcfg, evals, judge, c.target,
              __version__)
    cells = []
    names = c.methods_all() + ([FULL] if c.include_full else []) + ([BASE] if c.include_base else [])
    for m in names:
        n_seeds = 1 if m == BASE else (c.full_seeds or c.seeds) if m == FULL else c.seeds
        for s in range(n_seeds):
            # parameters as text (how -p gives them and how the method reads them: 16 and "16" are
            # one computation), and the method's revision when a default it computes with has changed
            params = {k: str(v) for k, v in c.method_params.get(m, {}).items()}
            rev = 0 if m in (FULL, BASE, RANDOM) else get_method(m).revision
            k = key_of(m, params, c.method_models.get(m), s, *common, *((("revision", rev),) if rev else ()))
            cells.append(Cell(m, s, k, output_dir / "cells" / f"{m}__seed{s}__{k}.json"))
    return cells
