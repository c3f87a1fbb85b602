"""Write datasets and reports atomically: a temp file in the target directory, then ``os.replace``."""
from __future__ import annotations

import csv
import gzip
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

from .example import Dataset, container_of


# ---------------------------------------------------------------- atomic writing
def _umask() -> int:
    try:   # Linux reports it without changing it (setting it races with other threads' file creation)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)   # elsewhere the only way to read it is to set it
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path beside ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes the file 0600 and the mode survives os.replace: give it what open() would.
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_records(records: list[dict], path: str | Path, container: str | None = None, indent: int | None = 2) -> None:
    """Write raw records atomically in the container that ``path``'s extension names."""
    container = container or container_of(path)
    with atomic_path(path) as tmp:
        if container == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq
            pq.write_table(pa.Table.from_pylist(records), tmp)
        elif container == "csv":
            cols: list[str] = []
            for r in records:
                cols += [k for k in r if k not in cols]
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=cols)
                w.writeheader()
                for r in records:
                    w.writerow({k: (json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v)
                                for k, v in r.items()})
        else:
            if container in ("json", "json.gz"):
                body = json.dumps(records, ensure_ascii=False, indent=indent) + "\n"
            else:
                body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            raw = body.encode("utf-8")
            if container.endswith(".gz"):
                raw = gzip.compress(raw, mtime=0)
            with open(tmp, "wb") as f:
                f.write(raw)


def write_json(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=2, default=str)
            f.write("\n")


def write_dataset(dataset: Dataset, indices: Iterable[int], path: str | Path) -> int:
    """Write the chosen examples' raw records, in input order, in the input's format."""
    idx = sorted(set(int(i) for i in indices))
    write_records([dataset.examples[i].raw for i in idx], path)
    return len(idx)
