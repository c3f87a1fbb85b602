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


# Each module's layer; a module may import its own layer and the ones below (docs/architecture.md).
RANK = {"data": 0, "report.svg": 0, "models": 1, "signals": 2, "selectors": 3, "train": 4, "methods": 5,
        "evaluate": 6, "api": 7, "report": 7, "inspect": 7, "recycle": 8, "bench": 8, "serve": 8, "cli": 9}


def _rank(module: str) -> int:
    parts = module.split(".")[1:]
    return RANK.get(".".join(parts[:2]), RANK[parts[0]])


def test_imports_only_go_down():
    import ast
    src = ROOT / "src"
    files = {".".join(p.relative_to(src).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (src / "tunesift").rglob("*.py")}
    up = []
    for mod, path in files.items():
        if mod == "tunesift":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = mod.split(".")
            if node.level:
                base = base[:len(base) - node.level + (1 if path.name == "__init__.py" else 0)]
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
            for t in [target] + [f"{target}.{a.name}" for a in node.names]:
                if t in files and t != "tunesift" and _rank(t) > _rank(mod):
                    up.append(f"{mod} -> {t}")
    assert not up, "upward imports:\n" + "\n".join(sorted(set(up)))
