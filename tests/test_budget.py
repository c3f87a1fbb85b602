import numpy as np
import pytest

from tunesift.data import TunesiftError
from tunesift.selectors import Budget, band, top_k


@pytest.mark.parametrize("spec,kind,value", [(1000, "count", 1000), ("1000", "count", 1000), ("5%", "fraction", 0.05),
                                             (0.05, "fraction", 0.05), (".1", "fraction", 0.1), (">=0.8", "threshold", 0.8),
                                             ("< 1", "threshold", 1.0), ("all", "all", 0), (None, "all", 0)])
def test_parse(spec, kind, value):
    b = Budget.parse(spec)
    assert b.kind == kind and b.value == pytest.approx(value)


@pytest.mark.parametrize("bad", ["ten", "150%", -3, 1.5, "5 %%", True])
def test_parse_rejects(bad):
    with pytest.raises(TunesiftError):
        Budget.parse(bad)


def test_top_k_ties_nan_eligibility_threshold():
    s = np.array([0.5, 0.9, 0.5, np.nan, 0.9, 0.1])
    assert list(top_k(s, 3)) == [1, 4, 0]                      # ties by index
    assert list(top_k(s, 3, higher_is_better=False)) == [5, 0, 2]
    assert list(top_k(s, "50%")) == [1, 4, 0]
    assert list(top_k(s, 10, eligible=[True, False, True, True, True, True])) == [4, 0, 2, 5]
    assert list(top_k(s, ">=0.5")) == [1, 4, 0, 2]
    assert list(top_k(s, "all")) == [1, 4, 0, 2, 5]


def test_band():
    s = np.array([1.0, 2.0, 3.0, 10.0])
    assert np.argmax(band(s, "middle")) in (1, 2) and np.argmax(band(s, "low")) == 0
