"""Datasets in and out: formats, validation, canonical examples, atomic writes."""
from .errors import DataError, SkipReport, TunesiftError
from .formats import FORMATS, detect_format, to_record
from .hf import from_hf, read_source, take_rows
from .io import (Dataset, Example, atomic_path, container_of, from_records, read_dataset, write_dataset,
                 write_json, write_records)
from .sources import export_sharegpt

__all__ = ["DataError", "SkipReport", "TunesiftError", "FORMATS", "detect_format", "to_record", "Dataset",
           "Example", "atomic_path", "container_of", "from_records", "read_dataset", "write_dataset", "write_json",
           "write_records", "export_sharegpt", "from_hf", "read_source", "take_rows"]
