"""AlpaGasus: the paper's chat request (typed out here), the code's score parsing, re-asking,
the 4.5 threshold, and the local back end's answer cache."""
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

import tunesift
from tunesift.methods.alpagasus import parse_score

SYSTEM = ("We would like to request your feedback on the performance of AI assistant in response to the instruction "
          "and the given input displayed following.")
ASK = ("Please rate according to the accuracy of the response to the instruction and the input. Each assistant "
       "receives a score on a scale of 0 to 5, where a higher score indicates higher level of the accuracy. Please "
       "first output a single line containing value indicating the scores. In the subsequent line, please provide a "
       "comprehensive explanation of your evaluation, avoiding any potential bias. \n\n")


def _user(rec):
    return (f"###Instruction:\n{rec['instruction']}\n\n### Input:\n{rec['input']}\n\n### Response:\n{rec['output']}"
            "\n\n" + ASK)


# canned reviews by response; None: unparseable at temperature 0, a grade when re-asked with sampling
REVIEWS = {"Eat well, exercise, and sleep enough.": "5\nExcellent.", "Guten Morgen.": "4.5\nGood.",
           "The capital of France is Paris.": "Score: 4.8\nFine.", "Blue.": "The score: 3\nOk.",
           "1, 2, 3, 4, 5": None, "the quick brown fox.": "I cannot rate this."}


@pytest.fixture
def stub(tmp_path):
    bodies = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            bodies.append(body)
            user = body["messages"][1]["content"]
            resp = user.split("### Response:\n")[1].split("\n\n")[0]
            text = REVIEWS.get(resp, "2\nWeak.")
            if text is None:
                text = "hmm" if body["temperature"] == 0 else "4.6\nOn reflection, good."
            out = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    srv = HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1", bodies
    srv.shutdown()


def test_parse_score_follows_the_code():
    assert parse_score("4.5\nbecause") == 4.5
    assert parse_score("The score: 3\nok") == 3.0          # filter.py: the text after 'score:'
    assert parse_score("Score: 4.8\nok") == 4.8            # the code reads one character here (and raises)
    assert parse_score("no grade") is None


def test_alpagasus_api_prompt_threshold_and_retries(stub, alpaca_file, tmp_path):
    base, bodies = stub
    recs = json.loads(alpaca_file.read_text())
    kw = dict(backend="api", api_base=base, api_model="gpt-3.5-turbo-0301", cache_dir=str(tmp_path / "c"),
              progress=False)
    sel = tunesift.select(alpaca_file, "alpagasus", **kw)     # default budget: score >= 4.5
    first = [b for b in bodies if b["temperature"] == 0]
    assert len(first) == len(recs)
    for b in first:
        assert b["messages"][0] == {"role": "system", "content": SYSTEM}
        assert b["messages"][1]["content"] in {_user(r) for r in recs}
        assert b["top_p"] == 1.0
    want = {}
    for i, r in enumerate(recs):
        text = REVIEWS.get(r["output"], "2\nWeak.") or "4.6"
        want[i] = parse_score(text)
    t = sel.table
    for i, w in want.items():
        if w is None:
            assert not t["eligible"][i] and np.isnan(t["score"][i]) and t["asks"][i] == 3
        else:
            assert t["score"][i] == pytest.approx(w)
    assert t["asks"][recs.index(next(r for r in recs if r["output"] == "1, 2, 3, 4, 5"))] == 2   # re-asked once
    assert set(sel.selected_indices) == {i for i, w in want.items() if w is not None and w >= 4.5}
    # a rerun asks nothing again: every answer is cached
    n = len(bodies)
    tunesift.select(alpaca_file, "alpagasus", **kw)
    assert len(bodies) == n


def test_alpagasus_local_backend_caches_answers(tiny_llama, alpaca_file, tmp_path, monkeypatch):
    import tunesift.signals.generation as generation
    calls = []
    real = generation.generate

    def counting(lm, prompts, **kw):
        calls.append(len(prompts))
        return real(lm, prompts, **kw)
    monkeypatch.setattr(generation, "generate", counting)   # what the method's Generator calls
    kw = dict(lm=tiny_llama, cache_dir=str(tmp_path), progress=False, max_tokens=3, parse_retries=1)
    a = tunesift.score(alpaca_file, "alpagasus", **kw)
    assert calls and calls[0] == 8
    before = len(calls)
    b = tunesift.score(alpaca_file, "alpagasus", **kw)
    assert len(calls) == before        # answered from the cache
    assert list(a.table["answer"]) == list(b.table["answer"])
    assert (a.table["eligible"] == np.isfinite(a.table["score"])).all()
