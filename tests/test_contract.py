"""The method contract: declared parameters (one validator), the needs vocabulary, stages."""
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tunesift.cli import RunOptions, app
from tunesift.data import read_dataset
from tunesift.data.errors import TunesiftError
from tunesift.data.fingerprint import digest, fingerprint
from tunesift.methods import Context, Method, available_methods, get_method, register
from tunesift.methods.params import Aliases, Range, specs
from tunesift.methods.registry import NEEDS, REGISTRY
from tunesift.selectors import Budget
from tunesift.selectors.cluster import kmeans
from tunesift.selectors.neighbors import knn_graph
from tunesift.signals.cache import ShardCache


@dataclass
class _Config:
    band: Literal["low", "high"] = "low"
    alpha: Annotated[float, Range(0, 1, lo_open=True)] = 0.5
    k: Annotated[int, Range(1)] | None = None
    flag: bool = False
    name: str | None = None
    norm: Annotated[Literal["new", "paper"], Aliases(old="new")] = "new"


class _Toy(Method):
    name = "toy-contract"
    Config = _Config


def test_declared_choices_and_ranges_are_checked_in_one_place():
    for bad, says in [(dict(band="mid"), "one of low, high"), (dict(alpha=0), r"\(0, 1\]"),
                      (dict(alpha=1.5), r"\(0, 1\]"), (dict(k=0), ">= 1"), (dict(k="x"), "int >= 1 or None"),
                      (dict(flag="maybe"), "bool"), (dict(alpha="nan"), r"\(0, 1\]"), (dict(band=3), "one of")]:
        with pytest.raises(TunesiftError, match=f"toy-contract: parameter '{next(iter(bad))}' must be .*{says}"):
            _Toy(**bad)


def test_strings_convert_by_declared_type():
    c = _Toy(alpha="0.25", k="3", flag="true", name="7b", norm="old").config
    assert (c.alpha, c.k, c.flag, c.name, c.norm) == (0.25, 3, True, "7b", "new")
    c = _Toy(k="none", name="None").config
    assert c.k is None and c.name is None
    assert _Toy(_Config(alpha=1)).config.alpha == 1   # a config object is checked too


def test_every_method_declares_its_parameters_and_defaults_pass():
    for name, cls in available_methods().items():
        cls()    # the defaults satisfy the declarations
        d = cls.describe()
        assert set(d["parameter_specs"]) == set(d["parameters"]), name
        for spec in specs(cls.Config).values():
            assert spec.kind is not object, (name, spec)


def test_converted_validate_checks_keep_their_meaning():
    for method, kw in [("ifd", dict(variant="x")), ("qdit", dict(alpha=2)), ("mods", dict(seed_fraction=0)),
                       ("ifd-pre", dict(low_pct=80, high_pct=20)), ("delift", dict(neighbors=-1)),
                       ("rose", dict(beta=0)), ("selectit", dict(k=0)), ("recost", dict(window=0)),
                       ("iterselecttune", dict(judge="reward"))]:
        with pytest.raises(TunesiftError, match=method):
            get_method(method)(**kw)
    assert get_method("selectit")(normalization="token_level_code").config.normalization == "official"


def test_needs_are_a_fixed_vocabulary_checked_at_register():
    for cls in available_methods().values():
        assert set(cls.needs) <= set(NEEDS) and cls.stages >= 1, cls.name
    assert get_method("mods").stages == 3 and get_method("qdit").stages == 2 and get_method("ifd").stages == 1

    class Bad(Method):
        name = "bad-needs"
        needs = ("gpu",)
    with pytest.raises(TypeError, match="needs must be"):
        register(Bad)
    assert "bad-needs" not in REGISTRY


def test_cli_methods_name_prints_each_parameter_declaration():
    out = CliRunner().invoke(app, ["methods", "perplexity"])
    assert out.exit_code == 0, out.output
    assert "band = 'low'" in out.output and "one of low, high, middle" in out.output
    bad = CliRunner().invoke(app, ["methods", "nosuch"])
    assert bad.exit_code == 2


def test_test_params_name_declared_parameters():
    for name, cls in available_methods().items():
        assert set(cls.test_params) <= set(specs(cls.Config)), name


class _Rows(Method):
    name = "toy-rows"

    def __init__(self, rows=None):
        super().__init__()
        self.rows = rows

    def score(self, data, ctx):
        n = len(data) if self.rows is None else self.rows
        return pd.DataFrame({"score": np.arange(n, dtype=float), "eligible": np.ones(n, dtype=int), "reason": ""})


def test_run_is_the_template_score_check_select(alpaca_file):
    data = read_dataset(alpaca_file)
    m = _Rows()
    table, idx = m.run(data, Context(), Budget.parse(2))
    assert m.data_ is data and table["eligible"].dtype == bool and list(idx) == [len(data) - 1, len(data) - 2]
    assert m.run(data, Context())[1] is None and set(m.timings_) == {"score_s"}
    with pytest.raises(RuntimeError, match="returned 3 rows"):
        _Rows(rows=3).run(data, Context(), Budget.parse(2))


class _CountingEncoder:
    def __init__(self):
        self.calls = 0

    def encode(self, texts, desc=""):
        self.calls += 1
        return np.random.default_rng(len(texts)).normal(size=(len(texts), 8)).astype(np.float32)


def test_context_shares_embeddings_graphs_and_kmeans_within_a_run(alpaca_file):
    data = read_dataset(alpaca_file)
    enc = _CountingEncoder()
    ctx = Context(embedder_obj=enc)
    X = ctx.embed(data, "whole")
    assert ctx.embed(data, "whole") is X and enc.calls == 1
    ctx.embed(data, "instruction")
    assert enc.calls == 2
    g = ctx.knn_graph(X, 3)
    assert ctx.knn_graph(X.copy(), 3) is g      # keyed by content
    want = knn_graph(X, k=3)
    assert np.array_equal(g[0], want[0]) and np.allclose(g[1], want[1])
    assert ctx.knn_graph(X, 4) is not g
    labels, _ = ctx.kmeans(X, 2)
    assert ctx.kmeans(X, 2, seed=ctx.seed)[0] is labels
    assert np.array_equal(labels, kmeans(X, 2, seed=0)[0])


def test_one_fingerprint_scheme():
    assert ShardCache.key(b"ab", b"c") == digest(b"ab", b"c") != digest(b"a", b"bc")
    assert fingerprint("x", 1, {"b": 2, "a": 1}) == fingerprint("x", 1, {"a": 1, "b": 2})
    assert len(fingerprint("x")) == 16 and len(fingerprint("x", length=40)) == 40
    a = np.zeros((2, 3), dtype=np.float32)
    assert digest(a) != digest(a.reshape(3, 2)) and digest(a) == digest(a.copy())


def test_cli_p_values_reach_the_method_as_text_and_convert_by_declared_type():
    kw = RunOptions(method="ifd", param=["max_length=512", "variant=ppl_ratio", "strict=true", "direct_prefix=7"]
                    ).run_kwargs()
    assert kw["max_length"] == 512 and kw["strict"] == "true" and kw["direct_prefix"] == "7"   # a run option is parsed
    c = get_method("ifd")(**{k: kw[k] for k in ("variant", "strict", "direct_prefix")}).config
    assert (c.variant, c.strict, c.direct_prefix) == ("ppl_ratio", True, "7")
