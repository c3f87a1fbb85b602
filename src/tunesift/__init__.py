"""tunesift: pick the instruction-tuning examples worth keeping, with the field's published methods."""
__version__ = "0.2.0"

from .api import ScoreResult, SelectionResult, score, select  # noqa: E402
from .data import Dataset, DataError, TunesiftError, read_dataset  # noqa: E402
from .methods import Method, available_methods, get_method, register  # noqa: E402
from .selectors import Budget  # noqa: E402

__all__ = ["__version__", "score", "select", "ScoreResult", "SelectionResult", "Dataset", "DataError",
           "TunesiftError", "read_dataset", "Method", "available_methods", "get_method", "register", "Budget"]
