"""Importing this module registers every built-in method (new modules: add one line)."""
from . import (cluster, deita_filter, dpp, grape, ifd, kcenter, perplexity, qdit, random_baseline,  # noqa: F401
               rifd, superfiltering, superfiltering_d)
