"""Every bad input gets an error naming file, line and field, or a counted skip."""
import json
import os

import pytest

from tunesift.data import DataError, read_dataset, write_records
from tunesift.data.io import atomic_path

GOOD = {"instruction": "Say hi.", "input": "", "output": "Hi."}


def _jsonl(tmp_path, lines: list[bytes]):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    return p


CASES = [
    # (line bytes, reason, field, line number)
    (b'{"instruction": "x", "output": "y"', "malformed_json", None),
    (b'{"instruction": "x"}', "missing_field", "output"),
    (b'{"instruction": "x", "output": "   "}', "empty_response", "output"),
    (b'{"instruction": "x", "output": "caf\xe9"}', "not_utf8", None),
    (b'{"instruction": "x", "output": 3}', "bad_type", "output"),
    (json.dumps({"instruction": "x", "output": "y" * 1_100_000}).encode(), "too_large", None),
]


@pytest.mark.parametrize("bad,reason,field", CASES)
def test_bad_record_raises_with_location(tmp_path, bad, reason, field):
    good = json.dumps(GOOD).encode()
    p = _jsonl(tmp_path, [good, good, bad, good])
    with pytest.raises(DataError) as e:
        read_dataset(p)
    err = e.value
    assert err.reason == reason and err.line == 3 and err.field == field
    assert str(p) in str(err) and "line 3" in str(err)


@pytest.mark.parametrize("bad,reason,field", CASES)
def test_bad_record_skipped_and_counted(tmp_path, bad, reason, field):
    good = json.dumps(GOOD).encode()
    p = _jsonl(tmp_path, [good, bad, good])
    ds = read_dataset(p, on_error="skip")
    assert len(ds) == 2 and ds.skipped.counts == {reason: 1} and ds.read_total == 3
    assert "line 2" in ds.skipped.examples[0]


def test_conversation_errors_name_the_turn(tmp_path):
    p = tmp_path / "c.jsonl"
    recs = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            {"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]},
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}]},
            {"messages": [{"role": "user", "content": "a"}]}]
    write_records(recs, p)
    ds = read_dataset(p, on_error="skip")
    assert len(ds) == 1
    assert dict(ds.skipped.counts) == {"unknown_role": 1, "empty_response": 1, "missing_response": 1}
    with pytest.raises(DataError) as e:
        read_dataset(p)
    assert e.value.field == "messages[1].role" and e.value.line == 2


def test_truncated_json_array_keeps_complete_records(tmp_path):
    p = tmp_path / "t.json"
    text = json.dumps([GOOD, GOOD, GOOD], indent=2)
    p.write_text(text[: len(text) - 30])   # cut inside the third record
    with pytest.raises(DataError) as e:
        read_dataset(p)
    assert e.value.reason == "malformed_json" and e.value.line is not None
    ds = read_dataset(p, on_error="skip")
    assert len(ds) == 2 and ds.skipped.counts == {"malformed_json": 1}


def test_json_array_error_names_line(tmp_path):
    p = tmp_path / "a.json"
    recs = [GOOD, {"instruction": "x", "input": ""}, GOOD]
    p.write_text(json.dumps(recs, indent=2))
    with pytest.raises(DataError) as e:
        read_dataset(p)
    assert e.value.field == "output" and e.value.line == 7   # the second object starts on line 7


def test_non_utf8_json_array(tmp_path):
    p = tmp_path / "b.json"
    p.write_bytes(b'[\n{"instruction": "x", "output": "y"},\n{"instruction": "caf\xe9", "output": "y"}\n]')
    with pytest.raises(DataError) as e:
        read_dataset(p)
    assert e.value.reason == "not_utf8" and e.value.line == 3


def test_missing_file_and_all_bad(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_dataset(tmp_path / "nope.jsonl")
    p = _jsonl(tmp_path, [b"{bad", b"{worse"])
    with pytest.raises(DataError, match="no readable records"):
        read_dataset(p, on_error="skip")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "out.json"
    write_records([GOOD], p)
    before = p.read_bytes()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise Boom()
    assert p.read_bytes() == before
    assert [f for f in os.listdir(tmp_path) if f != "out.json"] == []   # no temp file left behind
