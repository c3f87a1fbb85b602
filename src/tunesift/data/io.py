"""Read and write instruction datasets (JSON, JSONL, JSONL.gz, Parquet, CSV).

Split along its seams: ``example`` (the canonical model), ``readers`` (files to examples, with
line-level errors) and ``writers`` (atomic writes in the input's own format).  This module keeps the
names that ``tunesift.data.io`` has always exported.
"""
from .example import CONTAINERS, Dataset, Example, container_of
from .readers import ID_KEYS, MAX_EXAMPLE_BYTES, from_records, iter_raw, read_dataset
from .writers import atomic_path, write_dataset, write_json, write_records

__all__ = ["CONTAINERS", "Dataset", "Example", "container_of", "ID_KEYS", "MAX_EXAMPLE_BYTES", "from_records",
           "iter_raw", "read_dataset", "atomic_path", "write_dataset", "write_json", "write_records"]
