"""Progress reporting moved down to ``models.progress`` (generation and API calls use it too); the old
import path keeps working."""
from ..models.progress import EVERY_ENV, LineProgress, has_terminal, progress_bar, wanted  # noqa: F401
