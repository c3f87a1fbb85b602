"""Generated documents stay in step with the code they describe."""
from pathlib import Path

from tunesift.methods import available_methods
from tunesift.methods.faithfulness import Divergence, render_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_faithfulness_table_is_current():
    want = render_markdown(available_methods().values())
    have = (DOCS / "faithfulness.md").read_text()
    assert have == want, "docs/faithfulness.md is stale: run `python scripts/faithfulness.py`"


def test_every_declared_divergence_is_well_formed():
    for cls in available_methods().values():
        for d in cls.faithfulness:
            assert isinstance(d, Divergence) and d.topic and d.official, (cls.name, d)


def test_every_method_says_what_it_costs():
    assert all(cls.cost for cls in available_methods().values())
