"""Reflection-Tuning's recycling: tag extraction, rewrites in the input's format with provenance,
failed extractions counted, and Selective Reflection's decision rule on real student scores."""
import json

import numpy as np
import pytest

import tunesift
from tunesift.data import from_records, read_dataset
from tunesift.recycle import Oracle, _rewrite, _student_scores, extract, recycle, selective_choice


@pytest.mark.parametrize("text,tag,want", [
    ("Critique...\n[Better Answer] Paris is the capital. [End]", "[Better Answer]", "Paris is the capital."),
    ("format: [Better Answer] ... [End]\nanswer: [Better Answer] Real one.\n[End]", "[Better Answer]", "Real one."),
    ("[New Instruction] Do X well. [New Answer] Done.", "[New Instruction]", "Do X well."),
    ("[New Instruction] Do X. [New Answer] Done, fully", "[New Answer]", "Done, fully"),
    ("no tags at all", "[Better Answer]", None),
    ("[Better Answer] [End]", "[Better Answer]", None),
])
def test_extract(text, tag, want):
    assert extract(text, tag) == want


def test_rewrite_keeps_format_and_fields(alpaca_file):
    ds = from_records([{"instruction": "Sum", "input": "2 and 3", "output": "5", "id": "a1", "meta": {"x": 1}}])
    rec = _rewrite("alpaca", ds.examples[0], "Add 2 and 3, explaining each step.", "2 + 3 = 5, because ...")
    assert rec == {"instruction": "Add 2 and 3, explaining each step.", "input": "", "output": "2 + 3 = 5, because ...",
                   "id": "a1", "meta": {"x": 1}}
    sg = from_records([{"id": "c", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}])
    rec = _rewrite("sharegpt", sg.examples[0], None, "Hello! How can I help?")
    assert rec["id"] == "c" and rec["conversations"][1]["value"] == "Hello! How can I help?"
    assert rec["conversations"][0]["value"] == "Hi"


def test_failed_reflections_are_retried_counted_and_kept_original(tiny_llama, alpaca_file):
    ds = read_dataset(alpaca_file)
    res = recycle(ds, Oracle(lm=tiny_llama, max_new_tokens=6), mode="response", retries=1)
    # a random tiny model never writes the tags: every example asked twice, then counted and kept as it was
    assert res.counts["response_failed"] == len(ds) and res.counts["kept_ori"] == len(ds)
    assert all(r["_provenance"]["version"] == "ori" for r in res.records)
    assert [{k: v for k, v in r.items() if k != "_provenance"} for r in res.records] == [e.raw for e in ds.examples]


def test_selective_rule_on_student_scores(tiny_llama, alpaca_file):
    ds = read_dataset(alpaca_file)
    ex = ds.examples
    n = len(ex)
    ori = [(e.instruction + ("\n" + e.input if e.input else ""), e.response) for e in ex]
    versions = {"ori": ori,
                "A": [(q, ex[(i + 1) % n].response) for i, (q, _) in enumerate(ori)],
                "Q": [(ex[(i + 2) % n].instruction, ex[(i + 2) % n].response) if i % 3 else None for i in range(n)],
                }
    versions["QA"] = [(v[0], ex[(i + 3) % n].response) if v else None for i, v in enumerate(versions["Q"])]
    scores = _student_scores(versions, tiny_llama, {"use_cache": False})
    # the scores are the spine's rifd method on each version
    t = tunesift.score(from_records([{"instruction": q, "input": "", "output": a} for q, a in versions["A"]]), "rifd",
                       lm=tiny_llama, use_cache=False, progress=False).table
    np.testing.assert_allclose(scores["rifd_A"], t["rifd"])
    kept = selective_choice(versions, scores)
    for i in range(n):
        s = {k: v[i] for k, v in scores.items()}
        if versions["Q"][i] and s["ifd_Q"] > s["ifd_ori"]:
            want = "QA" if s["rifd_QA"] < s["rifd_Q"] and s["rifd_QA"] < 1 and s["ifd_QA"] < 1 else "none"
        else:
            want = "A" if s["rifd_A"] < s["rifd_ori"] and s["rifd_A"] < 1 and s["ifd_A"] < 1 else "none"
        assert kept[i] == want


def test_recycle_cli(tiny_model_dir, alpaca_file, tmp_path):
    from typer.testing import CliRunner

    from tunesift.cli import app
    out = tmp_path / "recycled.json"
    r = CliRunner().invoke(app, ["recycle", str(alpaca_file), "-o", str(out), "--oracle-model", str(tiny_model_dir),
                                 "--mode", "response", "--max-new-tokens", "4", "--retries", "0", "-q",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    recs = json.loads(out.read_text())
    assert len(recs) == 8 and all("_provenance" in x for x in recs)
    man = json.loads((tmp_path / "recycled.manifest.json").read_text())
    assert man["counts"]["response_failed"] == 8


class CannedOracle:
    """An OpenAI-style client whose reflections always carry the tags."""

    def chat(self, conversations, progress=False, **kw):
        return [c for c in conversations]

    def text(self, conv):
        from tunesift.recycle import SYSTEM_RESPONSE
        if conv[0]["content"] == SYSTEM_RESPONSE:
            return "Too short.\n[Better Answer] A longer and better answer. [End]"
        return "Vague.\n[New Instruction] Explain in detail why the sky is blue. [End]\n[New Answer] Scattering. [End]"


def test_selective_student_scores_use_the_input_slot(tiny_llama, alpaca_file, monkeypatch):
    """ori and A are scored as the released data keep them (instruction and input apart: the template's
    input slot, and x = instruction + input for r-IFD), Q and QA with an empty input."""
    from tunesift import recycle as rec_mod
    from .conftest import ALPACA
    from .test_ifd_family import reflection_ifd_rifd
    seen = {}
    real = rec_mod._student_scores

    def spy(*a, **k):
        seen.update(real(*a, **k))
        return seen
    monkeypatch.setattr(rec_mod, "_student_scores", spy)
    ds = read_dataset(alpaca_file)
    recycle(ds, Oracle(client=CannedOracle()), mode="both", selective=True, student=tiny_llama,
            student_options={"use_cache": False})
    better = "A longer and better answer."
    for i in (1, 6):     # the records with an input
        assert ALPACA[i]["input"]
        ifd, rifd = reflection_ifd_rifd(tiny_llama, ALPACA[i], 2048)
        assert seen["ifd_ori"][i] == pytest.approx(ifd, rel=1e-4)
        assert seen["rifd_ori"][i] == pytest.approx(rifd, rel=1e-4)
        ifd, rifd = reflection_ifd_rifd(tiny_llama, dict(ALPACA[i], output=better), 2048)
        assert seen["ifd_A"][i] == pytest.approx(ifd, rel=1e-4)
        assert seen["rifd_A"][i] == pytest.approx(rifd, rel=1e-4)
    q = {"instruction": "Explain in detail why the sky is blue.", "input": "", "output": "Scattering."}
    ifd, rifd = reflection_ifd_rifd(tiny_llama, q, 2048)
    assert seen["ifd_Q"][6] == pytest.approx(ifd, rel=1e-4) and seen["rifd_Q"][6] == pytest.approx(rifd, rel=1e-4)
