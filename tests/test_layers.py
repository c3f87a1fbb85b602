"""The package's imports run one way: no import cycle, imports inside functions included."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = next((p for p in (ROOT.parent / "shared" / "tools" / "import_cycles.py",
                         Path("/work/shared/tools/import_cycles.py")) if p.exists()), None)


@pytest.mark.skipif(TOOL is None, reason="shared/tools/import_cycles.py is not available")
def test_no_import_cycles():
    r = subprocess.run([sys.executable, str(TOOL), str(ROOT / "src"), "tunesift"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 import cycles" in r.stdout


def test_generation_is_a_model_primitive():
    # generation moved down to models; evaluate keeps the old names for callers
    from tunesift.evaluate import generate as from_evaluate
    from tunesift.evaluate.tasks import prompts_of
    from tunesift.models.generate import generate, prompts_of as primitive
    assert from_evaluate is generate and prompts_of is primitive
