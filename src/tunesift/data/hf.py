"""Hugging Face ``datasets`` and pandas in and out.

In: a ``datasets.Dataset`` (or a ``DatasetDict`` with one split), a pandas ``DataFrame``, a folder
written by ``save_to_disk``, or ``hf:owner/name[:split]`` loaded through ``datasets``.  Each row
becomes a record, validated like a file's (line = row + 1).  Out: ``take_rows`` gives the chosen rows
back as the input's own type (``Dataset.select`` keeps its features; a DataFrame keeps its index).
Files stay with tunesift's own readers: line-level errors and writing back in the input's format.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .errors import DataError, TunesiftError
from .example import Dataset
from .fingerprint import fingerprint as fingerprint_of
from .readers import MAX_EXAMPLE_BYTES, _build, read_dataset

HF_PREFIX = "hf:"
HF_EXTRA = 'pip install "tunesift[hf]"'


def _datasets():
    try:
        import datasets
    except ImportError:
        raise TunesiftError(f"Hugging Face datasets need the package 'datasets': {HF_EXTRA}") from None
    return datasets


def is_hf(obj: Any) -> bool:
    mod = type(obj).__module__ or ""
    return mod.startswith("datasets") and type(obj).__name__ in ("Dataset", "DatasetDict")


def is_frame(obj: Any) -> bool:
    import pandas as pd
    return isinstance(obj, pd.DataFrame)


def is_saved_dataset(path: str | Path) -> bool:
    """A folder ``save_to_disk`` wrote: one Dataset (state.json) or a DatasetDict (dataset_dict.json)."""
    p = Path(path)
    return p.is_dir() and ((p / "state.json").is_file() or (p / "dataset_dict.json").is_file())


def one_split(obj: Any, split: str | None = None, where: str = "the DatasetDict") -> Any:
    """A DatasetDict's one split (or the named one); a Dataset as it is."""
    if type(obj).__name__ != "DatasetDict":
        return obj
    if split is None and len(obj) == 1:
        return next(iter(obj.values()))
    if split is None or split not in obj:
        raise TunesiftError(f"{where} has splits {sorted(obj)}: pick one"
                            + (f" (no split {split!r})" if split else "") + ", e.g. data['train'] or hf:NAME:train")
    return obj[split]


def load_source(spec: str) -> tuple[Any, str]:
    """``hf:owner/name[:split]`` or a ``save_to_disk`` folder -> (datasets.Dataset, name)."""
    datasets = _datasets()
    if spec.startswith(HF_PREFIX):
        ident, _, split = spec[len(HF_PREFIX):].partition(":")
        if not ident:
            raise TunesiftError(f"{spec!r}: expected hf:owner/name[:split]")
        try:
            obj = datasets.load_dataset(ident, split=split or None)
        except TunesiftError:
            raise
        except Exception as e:   # no hub, no such dataset, no such split: one clear message
            raise TunesiftError(
                f"cannot load {ident!r} through Hugging Face datasets ({type(e).__name__}: {str(e)[:300]}). "
                "Where the hub is unreachable, save it on a machine that reaches it "
                f"(datasets.load_dataset({ident!r}).save_to_disk('DIR')) and pass DIR") from None
        return one_split(obj, split or None, spec), spec
    obj = datasets.load_from_disk(spec)
    return one_split(obj, None, spec), str(spec)


def from_hf(obj: Any, name: str | None = None, format: str | None = None, on_error: str = "raise",
            limit: int | None = None) -> Dataset:
    """A tunesift Dataset over a ``datasets.Dataset`` or a pandas DataFrame (row i -> line i + 1)."""
    if is_frame(obj):
        import pyarrow as pa
        n = len(obj) if limit is None else min(limit, len(obj))
        # through Arrow: NaN becomes None and nested columns plain lists, as a file's records are
        records = pa.Table.from_pandas(obj.iloc[:n], preserve_index=False).to_pylist()
        key = pd_fingerprint(obj)
        name, container = name or "<pandas.DataFrame>", "pandas"
    elif is_hf(obj):
        obj = one_split(obj)
        part = obj if limit is None or limit >= len(obj) else obj.select(range(limit))
        records = part.to_list()
        key = getattr(obj, "_fingerprint", None) or fingerprint_of(repr(records))
        name, container = name or "<datasets.Dataset>", "hf"
    else:
        raise TunesiftError(f"expected a datasets.Dataset or a pandas.DataFrame, got {type(obj).__name__}")
    if not records:
        raise DataError(name, None, None, "empty", "no rows")
    fingerprint = fingerprint_of(container, key, length=40)
    return _build(name, container, fingerprint, iter(enumerate(records, 1)), format, on_error, MAX_EXAMPLE_BYTES,
                  limit)


def read_source(data: Any, format: str | None = None, on_error: str = "raise",
                limit: int | None = None) -> tuple[Dataset, Any]:
    """Any input tunesift takes -> (its examples, the in-memory object they came from or None)."""
    if isinstance(data, Dataset):
        return data, None
    if is_hf(data) or is_frame(data):
        return from_hf(data, format=format, on_error=on_error, limit=limit), data
    if str(data).startswith(HF_PREFIX) or is_saved_dataset(data):
        obj, name = load_source(str(data))
        return from_hf(obj, name, format=format, on_error=on_error, limit=limit), obj
    return read_dataset(data, format=format, on_error=on_error, limit=limit), None


def pd_fingerprint(df: Any) -> str:
    import pandas as pd
    return f"{list(df.columns)}|{int(pd.util.hash_pandas_object(df.astype(str), index=True).sum())}"


def to_hf(records: list[dict]) -> Any:
    return _datasets().Dataset.from_list(records)


def take_rows(obj: Any, rows: Sequence[int]) -> Any:
    """The given rows of the input, as the input's own type."""
    rows = [int(r) for r in rows]
    if is_frame(obj):
        return obj.iloc[rows]
    if is_hf(obj):
        return one_split(obj).select(rows)
    raise TunesiftError(f"cannot take rows of a {type(obj).__name__}")
