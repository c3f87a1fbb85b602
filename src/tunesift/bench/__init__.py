"""``tunesift bench``: select with each method, fine-tune the base model on each selection, evaluate,
repeat over seeds, and publish a leaderboard with its variance.

Every cell (method x seed) is a JSON file keyed by everything that produced it (pool fingerprint,
method and parameters, budget, seed, base and scoring models, training config, evaluations,
tunesift version): a killed bench resumes at the first unfinished cell, and a changed setting
recomputes only the cells it touches.  A cell that fails is written as an error cell, shown in the
leaderboard with its message, and retried on the next run; it never stops the other cells.
With ``workers`` the cells run in parallel as Ray tasks, one device each; the driver writes each
cell's file as it arrives.

References always included unless switched off: ``random`` at the same budget (the baseline the
field's benchmark studies find hard to beat), the full pool, and the base model untrained.

Modules: ``config`` (BenchConfig, presets), ``plan`` (cells and their keys), ``run`` (the run loop),
``stats`` (Welch intervals), ``report`` (leaderboard and its files).
"""
from .config import BASE, FULL, PRESETS, RANDOM, BenchConfig
from .plan import Cell, key_of, plan_cells
from .report import feasibility, leaderboard, load_records, write_reports
from .run import run_bench, run_cell, write_cell
from .stats import welch_ci

_welch_ci = welch_ci    # the names bench.py had before it became a package
_key = key_of
_load = load_records

__all__ = ["BASE", "FULL", "PRESETS", "RANDOM", "BenchConfig", "Cell", "key_of", "plan_cells", "feasibility",
           "leaderboard", "load_records", "write_reports", "run_bench", "run_cell", "write_cell", "welch_ci"]
