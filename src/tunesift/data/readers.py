"""Read instruction datasets (JSON, JSONL, JSONL.gz, Parquet, CSV) into canonical examples.

Reading keeps each record's raw dict and where it came from (line for text files, row for Parquet
and CSV), so every error can name its location and the selection can be written back unchanged.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Iterator

from .errors import DataError, SkipReport
from .example import Dataset, Example, container_of
from .formats import FORMATS, Format, Normalised, detect_format
from .fingerprint import fingerprint as fingerprint_of

MAX_EXAMPLE_BYTES = 1_000_000
ID_KEYS = ("id", "idx", "uid", "question_id", "key")


# ---------------------------------------------------------------- raw record iterators
def _decode(raw: bytes, path: str, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, line, None, "not_utf8", f"byte {raw[e.start]:#04x} at column {e.start + 1} is not UTF-8") from None


def _iter_jsonl(data: bytes, path: str, max_bytes: int) -> Iterator[tuple[int, Any]]:
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        if len(raw) > max_bytes:
            yield lineno, DataError(path, lineno, None, "too_large",
                                    f"example is {len(raw):,} bytes, over the {max_bytes:,}-byte limit")
            continue
        try:
            text = _decode(raw, path, lineno)
            rec = json.loads(text)
        except DataError as e:
            yield lineno, e
            continue
        except json.JSONDecodeError as e:
            yield lineno, DataError(path, lineno, None, "malformed_json", f"malformed JSON at column {e.colno}: {e.msg}")
            continue
        yield lineno, rec


def _iter_json_array(data: bytes, path: str, max_bytes: int) -> Iterator[tuple[int, Any]]:
    """Walk a JSON array record by record, so errors name a line and a truncated file still
    yields every complete record before the damage (ShareGPT's PyPI copy is cut mid-string)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(path, line, None, "not_utf8", f"byte {data[e.start]:#04x} is not UTF-8") from None
    dec = json.JSONDecoder()
    n = len(text)
    pos = _skip_ws(text, 0)
    if pos >= n or text[pos] != "[":
        if pos < n and text[pos] == "{":   # a single object, or {"data": [...]}-style wrappers
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(path, e.lineno, None, "malformed_json", f"malformed JSON: {e.msg}") from None
            for k in ("data", "examples", "train", "rows"):
                if isinstance(obj.get(k), list):
                    yield from ((1, r) for r in obj[k])
                    return
            yield 1, obj
            return
        raise DataError(path, 1, None, "malformed_json", "expected a JSON array of records")
    pos = _skip_ws(text, pos + 1)
    if pos < n and text[pos] == "]":
        return
    line, counted = 1, 0          # line numbers are counted incrementally: O(file), not O(file * records)

    def line_at(p: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, p)
        counted = p
        return line

    while pos < n:
        start_line = line_at(pos)
        try:
            rec, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            # No way to resynchronise inside a broken array: report it and stop here.
            yield start_line, DataError(path, e.lineno, None, "malformed_json",
                                        f"malformed or truncated JSON ({e.msg}); records after this point are unreadable")
            return
        if end - pos > max_bytes:
            yield start_line, DataError(path, start_line, None, "too_large",
                                        f"example is {end - pos:,} bytes, over the {max_bytes:,}-byte limit")
        else:
            yield start_line, rec
        pos = _skip_ws(text, end)
        if pos < n and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
        elif pos < n and text[pos] == "]":
            return
        else:
            where = line_at(min(pos, n))
            msg = "the JSON array is not closed (truncated file?)" if pos >= n else "expected ',' or ']' between records"
            yield where, DataError(path, where, None, "malformed_json", msg)
            return
    where = line_at(n)
    yield where, DataError(path, where, None, "malformed_json", "the JSON array is not closed (truncated file?)")


def _skip_ws(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _iter_parquet(path: str) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    for i, rec in enumerate(table.to_pylist(), 1):
        yield i, rec


def _iter_csv(data: bytes, path: str) -> Iterator[tuple[int, Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(path, line, None, "not_utf8", f"byte {data[e.start]:#04x} is not UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for rec in reader:
        yield reader.line_num, {k: v for k, v in rec.items() if k is not None}


def iter_raw(path: str | Path, max_example_bytes: int = MAX_EXAMPLE_BYTES) -> tuple[str, str, Iterator[tuple[int, Any]]]:
    """(container, fingerprint, iterator of (line, record-or-DataError))."""
    path = str(path)
    if not os.path.exists(path):
        raise DataError(path, None, None, "not_found", "no such file")
    container = container_of(path)
    with open(path, "rb") as f:
        data = f.read()
    fingerprint = fingerprint_of(data)
    if container in ("jsonl.gz", "json.gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DataError(path, None, None, "bad_gzip", f"cannot decompress: {e}") from None
    if container == "parquet":
        it = _iter_parquet(path)
    elif container == "csv":
        it = _iter_csv(data, path)
    elif container == "json" or (container == "json.gz"):
        it = _iter_json_array(data, path, max_example_bytes)
    else:
        it = _iter_jsonl(data, path, max_example_bytes)
    return container, fingerprint, it


# ---------------------------------------------------------------- dataset reading
def read_dataset(path: str | Path, format: str | None = None, on_error: str = "raise",
                 max_example_bytes: int = MAX_EXAMPLE_BYTES, limit: int | None = None) -> Dataset:
    """Read, detect the format, normalise, validate.

    ``on_error="raise"`` stops at the first bad record with a ``DataError`` naming file, line and
    field; ``"skip"`` skips it and counts it by reason in ``dataset.skipped``.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    path = str(path)
    container, fingerprint, it = iter_raw(path, max_example_bytes)
    return _build(path, container, fingerprint, it, format, on_error, max_example_bytes, limit)


def from_records(records: list[dict], name: str = "<memory>", format: str | None = None,
                 on_error: str = "raise") -> Dataset:
    """A Dataset from in-memory records (line = position + 1), validated like a file."""
    fingerprint = fingerprint_of(records, length=40)
    return _build(name, "jsonl", fingerprint, iter(enumerate(records, 1)), format, on_error, MAX_EXAMPLE_BYTES, None)


SKIP_HINT = ("to skip bad records and count them instead, pass --on-error skip (on_error='skip' in Python); "
             "`tunesift inspect FILE` lists them all")


def _stop(err: DataError) -> DataError:
    """The first bad record stops the run (the default): say how to skip and count instead."""
    return DataError(err.path, err.line, err.field, err.reason, f"{err.detail}; {SKIP_HINT}")


def _build(path: str, container: str, fingerprint: str, it, format, on_error, max_example_bytes, limit) -> Dataset:
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    skipped = SkipReport()
    records: list[tuple[int, dict]] = []
    seen = 0
    for line, rec in it:
        seen += 1
        if isinstance(rec, DataError):
            if on_error == "raise":
                raise _stop(rec)
            skipped.add(rec)
            continue
        if not isinstance(rec, dict):
            err = DataError(path, line, None, "bad_type", f"expected an object per record, got {type(rec).__name__}")
            if on_error == "raise":
                raise _stop(err)
            skipped.add(err)
            continue
        records.append((line, rec))
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise DataError(path, None, None, "empty", "no readable records" +
                        (f" ({skipped.total} skipped: {dict(skipped.counts)})" if skipped.total else ""))
    if format and format not in FORMATS:
        raise DataError(path, None, None, "unknown_format", f"unknown format {format!r}; known: {sorted(FORMATS)}")
    fmt: Format = FORMATS[format] if format else detect_format([r for _, r in records[:200]], path)

    examples: list[Example] = []
    ids_seen: dict[str, int] = {}
    for line, rec in records:
        try:
            norm: Normalised = fmt.normalise(rec, (path, line))
        except DataError as e:
            if on_error == "raise":
                raise _stop(e) from None
            skipped.add(e)
            continue
        eid = _stable_id(rec, norm.messages, ids_seen)
        examples.append(Example(eid, len(examples), line, norm.messages, rec, norm.instruction, norm.input))
    if not examples:
        raise DataError(path, None, None, "empty", f"every record was skipped: {dict(skipped.counts)}")
    fp = fingerprint_of(fingerprint, fmt.name, limit, max_example_bytes)
    return Dataset(path, container, fmt.name, examples, fp, skipped, seen)


def _stable_id(rec: dict, messages: list[dict], seen: dict[str, int]) -> str:
    """The record's own id where it has one, else a content hash; duplicates get a #n suffix."""
    base = None
    for k in ID_KEYS:
        v = rec.get(k)
        if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v) != "":
            base = str(v)
            break
    if base is None:
        h = hashlib.sha1(json.dumps(messages, ensure_ascii=False, sort_keys=True).encode()).hexdigest()
        base = h[:16]
    n = seen.get(base, 0)
    seen[base] = n + 1
    return base if n == 0 else f"{base}#{n}"

