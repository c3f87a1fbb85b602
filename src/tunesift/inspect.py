"""``tunesift inspect``: what a dataset holds and what is wrong with it."""
from __future__ import annotations

import numpy as np

from .data.io import Dataset


def dataset_report(ds: Dataset) -> dict:
    def stats(vals):
        a = np.asarray(vals, dtype=np.int64)
        return {"min": int(a.min()), "median": int(np.median(a)), "p95": int(np.percentile(a, 95)), "max": int(a.max())}
    prompts = [e.prompt for e in ds.examples]
    return {
        "path": ds.path, "format": ds.format, "container": ds.container, "fingerprint": ds.fingerprint,
        "records_read": ds.read_total, "examples": len(ds), "skipped": ds.skipped.to_dict(),
        "multi_turn": sum(sum(m["role"] == "assistant" for m in e.messages) > 1 for e in ds.examples),
        "with_system": sum(any(m["role"] == "system" for m in e.messages) for e in ds.examples),
        "duplicate_prompts": len(prompts) - len(set(prompts)),
        "lengths": {"prompt": stats([len(p) for p in prompts]),
                    "response": stats([len(e.response) for e in ds.examples])},
    }
