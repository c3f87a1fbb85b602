"""The method contract: declared parameters (one validator), the needs vocabulary, stages."""
from dataclasses import dataclass
from typing import Annotated, Literal

import pytest
from typer.testing import CliRunner

from tunesift.cli import app
from tunesift.data.errors import TunesiftError
from tunesift.methods import Method, available_methods, get_method, register
from tunesift.methods.params import Aliases, Range, specs
from tunesift.methods.registry import NEEDS, REGISTRY


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
