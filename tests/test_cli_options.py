"""The CLI's shared options are declared once (RunOptions + OPTIONS) and each command takes a named
subset; the README's "Common options" table says which command takes which."""
import dataclasses
import json
import re
from pathlib import Path

import typer
from typer.testing import CliRunner

from tunesift import cli

runner = CliRunner()
README = Path(__file__).resolve().parents[1] / "README.md"


def _flags(name):
    cmd = typer.main.get_command(cli.app).commands[name]
    return {o for p in cmd.params for o in p.opts if o.startswith("-")}


def test_every_shared_option_is_declared_once_with_its_dataclass_default():
    assert [f.name for f in dataclasses.fields(cli.RunOptions)] == list(cli.OPTIONS)
    for f in dataclasses.fields(cli.RunOptions):
        assert cli.OPTIONS[f.name].default == f.default


def test_score_and_select_keep_every_run_flag():
    want = {"--method", "-m", "--param", "-p", "--model", "--device", "--dtype", "--batch-tokens", "--max-length",
            "--cache-dir", "--no-cache", "--on-error", "--format", "--turns", "--seed", "--limit", "--quiet", "-q",
            "--trust-remote-code", "--embedder", "--workers", "--ray-address", "--threads-per-worker"}
    assert want <= _flags("score") and want | {"--to", "--llamafactory"} <= _flags("select")
    assert "--shard" in _flags("score")


def test_readme_common_options_table_is_true():
    text = README.read_text()
    table = text[text.index("| option |"):].split("\n\n")[0].splitlines()[2:]
    assert table
    others = [c for c in typer.main.get_command(cli.app).commands if c not in ("score", "select")]
    for row in table:
        cells = [c.strip() for c in row.strip("|").split("|")]
        listed = set(re.findall(r"`(\w+)`", cells[-1]))
        for flag in re.findall(r"--[a-z-]+", cells[0]):
            assert flag in _flags("score") and flag in _flags("select"), flag
            # exactly the commands that take it: none missing, none claimed
            assert {c for c in others if flag in _flags(c)} == listed, (flag, listed)


def test_select_to_and_llamafactory_from_the_cli(tiny_model_dir, alpaca_file, tmp_path):
    out = tmp_path / "sel.jsonl"
    r = runner.invoke(cli.app, ["select", str(alpaca_file), "-m", "random", "-b", "2", "-o", str(out), "--to",
                                "sharegpt", "--llamafactory", "--model", str(tiny_model_dir), "--no-cache", "-q"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [t["from"] for t in rows[0]["conversations"]] == ["human", "gpt"]
    assert json.loads((tmp_path / "dataset_info.json").read_text())["sel"]["formatting"] == "sharegpt"
