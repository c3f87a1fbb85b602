"""Importing this module registers every built-in method: each public module of this package is
imported, so a new method is one file (its ``@register`` does the rest)."""
import importlib
import pkgutil
from pathlib import Path

for _m in pkgutil.iter_modules([str(Path(__file__).parent)]):
    if not _m.name.startswith("_") and _m.name not in ("base", "faithfulness", "registry"):
        importlib.import_module(f"{__package__}.{_m.name}")
