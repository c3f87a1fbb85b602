"""Importing this module registers every built-in method (new modules: add one line)."""
from . import grape, ifd, perplexity, random_baseline, rifd, superfiltering  # noqa: F401
