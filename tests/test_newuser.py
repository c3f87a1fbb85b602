"""Defects a new user meets first: output file modes, the bad-record hint, inspect's count up front,
and a server on a public address without a key."""
import json
import os
import stat
import urllib.error
import urllib.request

import pytest
from typer.testing import CliRunner

from tunesift.cli import app
from tunesift.data import DataError, read_dataset, write_json, write_records
from tunesift.serve import api_key_for, is_loopback, make_server

runner = CliRunner()


def test_outputs_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_records([{"a": 1}], tmp_path / "x.jsonl")
        write_json({"a": 1}, tmp_path / "m.json")
        os.umask(0o027)
        write_records([{"a": 1}], tmp_path / "y.parquet")
    finally:
        os.umask(old)
    # what open() gives a new file: 0666 under the umask (mkstemp's 0600 survived the rename before)
    assert stat.S_IMODE((tmp_path / "x.jsonl").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "y.parquet").stat().st_mode) == 0o640


def _bad_file(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"instruction": "a", "output": "b"}\n{not json\n{"instruction": "c", "output": "d"}\n'
                 '{"instruction": "e"}\n')
    return p


def test_the_first_bad_record_error_says_how_to_skip_and_count(tmp_path):
    p = _bad_file(tmp_path)
    with pytest.raises(DataError) as e:
        read_dataset(p)
    assert e.value.line == 2 and e.value.reason == "malformed_json"
    assert "--on-error skip" in str(e.value) and "count" in str(e.value)
    assert read_dataset(p, on_error="skip").skipped.total == 2


def test_inspect_prints_the_bad_record_count_first(tmp_path):
    r = runner.invoke(app, ["inspect", str(_bad_file(tmp_path))])
    assert r.exit_code == 0, r.output
    first = r.output.strip().splitlines()[0]
    assert "2 bad record" in first and "--on-error skip" in first


def test_loopback_needs_no_key_and_a_public_address_does(monkeypatch):
    monkeypatch.delenv("TUNESIFT_API_KEY", raising=False)
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.4", "::", "example.org"))
    assert api_key_for("127.0.0.1") is None
    with pytest.raises(Exception, match="TUNESIFT_API_KEY"):
        api_key_for("0.0.0.0")
    monkeypatch.setenv("TUNESIFT_API_KEY", "s3cret")
    assert api_key_for("0.0.0.0") == "s3cret"


def test_cli_serve_refuses_a_public_host_without_a_key_before_loading(monkeypatch):
    monkeypatch.delenv("TUNESIFT_API_KEY", raising=False)
    r = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--model", "/nonexistent/model"])
    assert r.exit_code == 2 and "TUNESIFT_API_KEY" in r.output


def test_a_keyed_server_answers_only_with_the_key(tiny_llama, monkeypatch):
    import threading
    monkeypatch.setenv("TUNESIFT_API_KEY", "s3cret")
    srv = make_server(tiny_llama, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/v1/models"
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, timeout=10)
        assert e.value.code == 401
        req = urllib.request.Request(url, headers={"Authorization": "Bearer s3cret"})
        assert json.loads(urllib.request.urlopen(req, timeout=10).read())["object"] == "list"
    finally:
        srv.shutdown()
