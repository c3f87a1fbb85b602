"""The batched engine against a plain per-example transformers forward written here."""
import numpy as np
import pytest
import torch

from tunesift.models.templates import Rendered, render_conversation, render_direct
from tunesift.signals import LikelihoodEngine

TEXTS = [
    ("Question: what is the capital of France?\nAnswer:", " The capital of France is Paris."),
    ("Translate: good morning\n", "Guten Morgen."),
    ("", "def add(a, b):\n    return a + b\n"),
    ("Below is an instruction that describes a task.\n\n### Instruction:\nCount.\n\n### Response:", "1, 2, 3, 4, 5"),
    ("x" * 10, "The quick brown fox jumps over the lazy dog. " * 3),
]


def reference_nll(lm, text, start_char, end_char, add_special_tokens=True, max_length=None):
    """Per-example reference: one forward, labels -100 outside the target, HF's own loss."""
    tok = lm.tokenizer
    enc = tok(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    ids = torch.tensor([enc["input_ids"]])
    labels = torch.full_like(ids, -100)
    for j, (s, e) in enumerate(enc["offset_mapping"]):
        if e > s and start_char <= s < end_char:
            labels[0, j] = ids[0, j]
    if max_length:
        ids, labels = ids[:, :max_length], labels[:, :max_length]
    n = int((labels[0, 1:] != -100).sum())
    with torch.no_grad():
        loss = lm.model(input_ids=ids, labels=labels).loss.item()
    return loss, n


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_gpt2"])
def test_engine_matches_per_example_forward(which, request, tmp_path):
    lm = request.getfixturevalue(which)
    reqs = [Rendered(c + t, ((len(c), len(c + t)),)) for c, t in TEXTS]
    eng = LikelihoodEngine(lm, max_length=256, batch_tokens=64, cache_dir=tmp_path, progress=False)
    res = eng.nll(reqs)
    assert eng.stats.batches > 1          # really batched with padding, several batches
    for i, (c, t) in enumerate(TEXTS):
        ref, n = reference_nll(lm, c + t, len(c), len(c + t))
        assert res.n_tokens[i] == n
        assert res.mean_nll[i] == pytest.approx(ref, rel=1e-5)
    assert not res.truncated.any()


def test_truncation_flags_and_caps(tiny_llama, tmp_path):
    c, t = TEXTS[4]
    r = Rendered(c + t, ((len(c), len(c + t)),))
    eng = LikelihoodEngine(tiny_llama, max_length=16, cache_dir=tmp_path, progress=False)
    res = eng.nll([r])
    ref, n = reference_nll(tiny_llama, c + t, len(c), len(c + t), max_length=16)
    assert res.truncated[0] and res.n_tokens[0] == n < res.n_target[0]
    assert res.mean_nll[0] == pytest.approx(ref, rel=1e-5)
    capped = LikelihoodEngine(tiny_llama, max_length=256, cache_dir=tmp_path, progress=False).nll([r], max_target_tokens=[5])
    assert capped.n_tokens[0] == 5 and not capped.truncated[0]


def test_multiple_spans_sum(tiny_llama, tmp_path):
    text = "Q: hi\nA: hello\nQ: capital of France?\nA: Paris."
    s1 = (text.index("hello"), text.index("hello") + 5)
    s2 = (text.index("Paris."), len(text))
    eng = LikelihoodEngine(tiny_llama, max_length=256, cache_dir=tmp_path, progress=False)
    both = eng.nll([Rendered(text, (s1, s2))])
    one = eng.nll([Rendered(text, (s1,)), Rendered(text, (s2,))])
    assert both.n_tokens[0] == one.n_tokens.sum()
    assert both.sum_nll[0] == pytest.approx(one.sum_nll.sum(), rel=1e-6)


def test_straddling_token_is_context_as_in_authors_scripts(tiny_llama, tmp_path):
    """'### Response:' + '"Hi"': if ':"' is one token it is context, as when the authors count the
    tokens of the prefix alone."""
    tok = tiny_llama.tokenizer
    for prefix, resp in [("### Response:", '"Quoted" answer'), ("### Response:", "- item one"), ("Q:", " plain")]:
        text = prefix + resp
        eng = LikelihoodEngine(tiny_llama, max_length=256, use_cache=False, progress=False)
        res = eng.nll([Rendered(text, ((len(prefix), len(text)),))])
        ids = torch.tensor([tok(text)["input_ids"]])
        labels = ids.clone()
        labels[0, : len(tok(prefix)["input_ids"])] = -100
        with torch.no_grad():
            ref = tiny_llama.model(input_ids=ids, labels=labels).loss.item()
        assert res.mean_nll[0] == pytest.approx(ref, rel=1e-5)


def test_span_located_by_offsets_not_text_search(tiny_llama, tmp_path):
    # The response text also occurs inside the prompt: rfind-style location would still work here,
    # but find-style would not; offsets pick exactly the span we name.
    prompt = "Repeat: Paris.\n"
    text = prompt + "Paris."
    eng = LikelihoodEngine(tiny_llama, max_length=256, cache_dir=tmp_path, progress=False)
    res = eng.nll([Rendered(text, ((len(prompt), len(text)),))])
    ref, n = reference_nll(tiny_llama, text, len(prompt), len(text))
    assert res.mean_nll[0] == pytest.approx(ref, rel=1e-5) and res.n_tokens[0] == n


def test_cache_resume_after_crash_recomputes_nothing_finished(tiny_llama, tmp_path):
    reqs = [Rendered(f"Item {i}: " + "word " * (i % 7), ((0, 6 + (i % 7) * 5),)) for i in range(40)]
    clean = LikelihoodEngine(tiny_llama, max_length=128, use_cache=False, progress=False).nll(reqs)

    eng = LikelihoodEngine(tiny_llama, max_length=128, batch_tokens=128, cache_dir=tmp_path, progress=False, flush_every=1)
    real_forward, calls = eng._forward, {"n": 0}

    def dying_forward(items):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt("killed")
        return real_forward(items)

    eng._forward = dying_forward
    with pytest.raises(KeyboardInterrupt):
        eng.nll(reqs)
    done = eng.stats.computed
    assert 0 < done < len(reqs)

    again = LikelihoodEngine(tiny_llama, max_length=128, batch_tokens=128, cache_dir=tmp_path, progress=False)
    res = again.nll(reqs)
    assert again.stats.cached == done and again.stats.computed == len(reqs) - done
    np.testing.assert_allclose(res.sum_nll, clean.sum_nll, rtol=1e-6)

    third = LikelihoodEngine(tiny_llama, max_length=128, cache_dir=tmp_path, progress=False)
    third.nll(reqs)
    assert third.stats.computed == 0


def test_cache_recomputes_only_what_changed(tiny_llama, alpaca_file, tmp_path):
    from tunesift.data import read_dataset
    ds = read_dataset(alpaca_file)
    eng = LikelihoodEngine(tiny_llama, max_length=256, cache_dir=tmp_path, progress=False)
    direct = [render_direct(e.response, "### Response:") for e in ds.examples]
    eng.nll([render_conversation(e, "alpaca") for e in ds.examples] + direct)
    eng2 = LikelihoodEngine(tiny_llama, max_length=256, cache_dir=tmp_path, progress=False)
    eng2.nll([render_conversation(e, "vicuna") for e in ds.examples] + direct)   # a new template
    assert eng2.stats.cached == len(ds) and eng2.stats.computed == len(ds)


def test_chat_template_spans(tmp_path):
    from tunesift.data.io import Example
    from transformers import PreTrainedTokenizerFast
    from .conftest import _tokenizer
    tok: PreTrainedTokenizerFast = _tokenizer()
    tok.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
                         "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"},
            {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye"}]
    ex = Example("a", 0, 1, msgs, {})
    last = render_conversation(ex, "chat", tok, "last")
    assert [last.text[a:b] for a, b in last.spans] == ["Goodbye"] and not last.add_special_tokens
    both = render_conversation(ex, "chat", tok, "all")
    assert [both.text[a:b] for a, b in both.spans] == ["Hello there", "Goodbye"]


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_gpt2"])
def test_shared_prefix_reuse_gives_the_same_scores(which, request, alpaca_file):
    from tunesift.data import read_dataset
    lm = request.getfixturevalue(which)
    ds = read_dataset(alpaca_file)
    reqs = [render_conversation(e, "alpaca") for e in ds.examples] * 3
    shared = LikelihoodEngine(lm, max_length=256, use_cache=False, progress=False)
    res = shared.nll(reqs)
    assert shared._prefix_ok is True          # the preamble's KV really was reused
    plain = LikelihoodEngine(lm, max_length=256, use_cache=False, progress=False, share_prefix=False).nll(reqs)
    np.testing.assert_allclose(res.sum_nll, plain.sum_nll, rtol=1e-5)


def test_a_prefix_path_that_disagrees_is_switched_off(tiny_llama, alpaca_file, monkeypatch):
    from tunesift.data import read_dataset
    reqs = [render_conversation(e, "alpaca") for e in read_dataset(alpaca_file).examples] * 3
    plain = LikelihoodEngine(tiny_llama, max_length=256, use_cache=False, progress=False, share_prefix=False).nll(reqs)
    eng = LikelihoodEngine(tiny_llama, max_length=256, use_cache=False, progress=False)
    real = eng._fast_nll
    monkeypatch.setattr(eng, "_fast_nll", lambda *a: real(*a) + (0.5 if a[-1] else 0.0))   # a broken cached-KV path
    res = eng.nll(reqs)
    assert eng._prefix_ok is False
    np.testing.assert_allclose(res.sum_nll, plain.sum_nll, rtol=1e-5)


@pytest.mark.parametrize("fast", [True, False])
def test_soft_capped_logits_are_capped_once(tiny_tokenizer, tmp_path, fast):
    """Gemma-2-style final-logit soft-capping: the separate-head path must cap as the model does, and
    the full-logits path must not cap the model's already capped logits a second time."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from tunesift.models import wrap_model
    torch.manual_seed(0)
    tok = tiny_tokenizer
    cfg = Gemma2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                       final_logit_softcapping=2.0, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                       pad_token_id=tok.pad_token_id)
    model = Gemma2ForCausalLM(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(50)      # logits well beyond the cap, so a second cap would show
    lm = wrap_model(model, tok, "tiny-gemma2")
    eng = LikelihoodEngine(lm, max_length=256, cache_dir=tmp_path, progress=False)
    eng._fast_path = fast
    reqs = [Rendered(c + t, ((len(c), len(c + t)),)) for c, t in TEXTS]
    res = eng.nll(reqs)
    for i, (c, t) in enumerate(TEXTS):
        ref, _ = reference_nll(lm, c + t, len(c), len(c + t))
        assert res.mean_nll[i] == pytest.approx(ref, rel=1e-4)


def test_head_nll_matches_cross_entropy_across_chunks_and_paths():
    import torch.nn.functional as F
    from tunesift.models.heads import HeadNLL, head_logits
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    h, t = torch.randn(23, 16, generator=g), torch.randint(0, 50, (23,), generator=g)
    ref = F.cross_entropy(head(h).double(), t, reduction="none")
    nll = HeadNLL(chunk=5)                              # chunks of 5 and a last of 3: one buffer, reused
    with torch.inference_mode():
        a = nll(head, h, t, None)
        assert nll._buf is not None and nll._buf.shape == (5, 50)   # the tiled CPU path was taken
        b = nll(head, h[:4], t[:4], None)
        # vocabulary tiles of 16, 16, 16 and a ragged 2: the running max and sum carry across tiles,
        # also when logits are large enough that an unshifted exp would overflow float32
        tiled = HeadNLL(chunk=5, vocab_tile=16)
        c = tiled(head, h, t, None)
        d = tiled(head, h * 400, t, None)
    assert torch.allclose(a.double(), ref, rtol=1e-5, atol=1e-5)
    assert torch.allclose(b.double(), ref[:4], rtol=1e-5, atol=1e-5)
    assert torch.allclose(c.double(), ref, rtol=1e-5, atol=1e-5)
    big = F.cross_entropy(head(h * 400).double(), t, reduction="none")
    assert torch.isfinite(d).all() and torch.allclose(d.double(), big, rtol=1e-5, atol=1e-3)
    with torch.inference_mode():                         # soft-capped: the plain path, capped once
        c = HeadNLL(chunk=5)(head, h, t, 3.0)
    assert torch.allclose(c, F.cross_entropy(head_logits(head, h, 3.0), t, reduction="none"))


def test_inplace_mlps_are_exact_restored_and_verified(tiny_llama):
    from tunesift.models.inplace import inplace_mlps
    model = tiny_llama.model
    ids = torch.randint(0, 100, (3, 12), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(input_ids=ids).logits
        with inplace_mlps(model) as n:
            assert n == model.config.num_hidden_layers
            out = model(input_ids=ids).logits
    assert torch.equal(ref, out)
    assert not any("forward" in m.__dict__ for m in model.modules())

    class Scaled(torch.nn.Module):   # looks like a gated MLP, computes something else: left alone
        def __init__(self):
            super().__init__()
            self.gate_proj, self.up_proj, self.down_proj = (torch.nn.Linear(4, 6), torch.nn.Linear(4, 6),
                                                            torch.nn.Linear(6, 4))
            self.act_fn = torch.nn.SiLU()

        def forward(self, x):
            return 2 * self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))
    with inplace_mlps(Scaled()) as n:
        assert n == 0


def _targets_one_text_at_a_time(tok, r, max_length, cap=None):
    enc = tok(r.text, add_special_tokens=r.add_special_tokens, return_offsets_mapping=True)
    ids, offs = np.asarray(enc["input_ids"]), np.asarray(enc["offset_mapping"]).reshape(-1, 2)
    keep = [j for j in range(1, len(ids))
            if offs[j, 1] > offs[j, 0] and any(a <= offs[j, 0] < b for a, b in r.spans)]
    n = len(keep) if cap is None else min(len(keep), cap)
    keep = [j for j in keep[:n] if j < max_length]
    return ids[:keep[-1] + 1 if keep else 0], keep, n, len(keep) < n


def test_tokenize_targets_matches_per_text_tokenisation(tiny_tokenizer):
    """The batched, vectorised target location (Rust backend directly) against the tokenizer's own
    per-text call, with a BOS-adding post-processor so add_special_tokens matters."""
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast
    from tunesift.signals.likelihood import _encode, tokenize_targets
    backend = Tokenizer.from_str(tiny_tokenizer.backend_tokenizer.to_str())
    bos = tiny_tokenizer.bos_token_id
    backend.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    reqs = [Rendered(c + t, ((len(c), len(c + t)),), flag) for c, t in TEXTS for flag in (True, False)]
    reqs += [Rendered("Q: a\nA: b\nQ: c\nA: dd", ((6, 8), (16, 19))), Rendered("", ()), Rendered("abc", ()),
             Rendered("no target here", ((3, 3),))]
    caps = [None] * (len(reqs) - 1) + [2]
    for max_length in (256, 12):
        got = tokenize_targets(tok, reqs, max_length, caps)
        for r, p, cap in zip(reqs, got, caps):
            ids, pos, n, trunc = _targets_one_text_at_a_time(tok, r, max_length, cap)
            assert p.ids.tolist() == ids.tolist() and p.pos.tolist() == pos
            assert (p.n_target, p.truncated) == (n, trunc)
    assert tokenize_targets(tok, [reqs[0]], 256)[0].ids[0] == bos

    def wrapper_used(*a, **k):
        raise AssertionError("the wrapper's path was taken")
    tok._encode_plus = wrapper_used          # the backend path never calls it
    tokenize_targets(tok, reqs, 256)
    del tok._encode_plus
    # truncation left set on the backend by an earlier call: the wrapper's path, the same answer
    tok(["x" * 40], truncation=True, max_length=3)
    assert tok.backend_tokenizer.truncation is not None
    assert _encode(tok, [reqs[0].text], True)[0][0] == tok(reqs[0].text)["input_ids"]


def test_inplace_mlps_leave_autograd_intact(tiny_llama):
    from tunesift.models.inplace import inplace_mlps
    model = tiny_llama.model
    ids = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(2))

    def grads(patched):
        model.zero_grad(set_to_none=True)
        with inplace_mlps(model) if patched else torch.enable_grad():
            model(input_ids=ids, labels=ids).loss.backward()     # grad enabled: training
        g = [p.grad.clone() for p in model.parameters()]
        model.zero_grad(set_to_none=True)
        return g
    assert all(torch.equal(a, b) for a, b in zip(grads(False), grads(True)))


def test_compiled_body_gives_the_same_scores(tiny_llama, alpaca_file):
    """The opt-in torch.compile path (dynamic shapes: batches of several lengths, one compile)."""
    from tunesift.data import read_dataset
    from tunesift.models.heads import body_and_head, compiled
    reqs = [render_conversation(e, "alpaca") for e in read_dataset(alpaca_file).examples] * 2
    kw = dict(max_length=256, use_cache=False, progress=False, share_prefix=False, batch_tokens=256)
    plain = LikelihoodEngine(tiny_llama, **kw)
    comp = LikelihoodEngine(tiny_llama, compile_body=True, **kw)
    a, b = plain.nll(reqs), comp.nll(reqs)
    assert comp.stats.batches > 1
    np.testing.assert_allclose(b.sum_nll, a.sum_nll, rtol=1e-5)
    body = body_and_head(tiny_llama.model)[0]
    assert compiled(body, True) is compiled(body, True) is not body   # compiled once, shared
    texts = [r.text for r in reqs[:3]]
    np.testing.assert_allclose(comp.next_token_logprobs(texts, [1, 2, 3])[0],
                               plain.next_token_logprobs(texts, [1, 2, 3])[0], rtol=1e-5, atol=1e-6)


def test_slices_tokenised_ahead_give_the_same_scores_cache_and_flags(tiny_llama, tmp_path, monkeypatch):
    import threading
    reqs = [Rendered(f"Item {i}: " + "word " * (i % 9), ((0, 6 + (i % 9) * 5),)) for i in range(50)]
    reqs.append(Rendered("no target here", ()))                  # nothing to score, in a later slice
    caps = [3 if i % 5 == 0 else None for i in range(len(reqs))]
    one = LikelihoodEngine(tiny_llama, max_length=24, use_cache=False, progress=False)
    whole = one.nll(reqs, caps)

    eng = LikelihoodEngine(tiny_llama, max_length=24, cache_dir=tmp_path, progress=False, prepare_chunk=4)
    threads, real = [], eng.prepare
    monkeypatch.setattr(eng, "prepare", lambda r, c=None: threads.append(threading.current_thread().name) or real(r, c))
    res = eng.nll(reqs, caps)
    assert threads[0] == threading.current_thread().name   # the first slice: nothing to overlap with yet
    assert len(threads) == 4 and all(t.startswith("tunesift-tokenize") for t in threads[1:])   # 4, 8, 16, 23
    np.testing.assert_allclose(res.sum_nll, whole.sum_nll, rtol=1e-6)
    for f in ("n_tokens", "n_target", "truncated"):
        np.testing.assert_array_equal(getattr(res, f), getattr(whole, f))
    assert res.truncated.any() and res.n_tokens[-1] == 0 and np.isnan(res.mean_nll[-1])
    # identical token sequences (after caps and truncation) in a later slice come from the cache
    assert eng.stats.requests == len(reqs) and eng.stats.computed + eng.stats.cached == len(reqs) - 1
    assert 0 < eng.stats.prepare_wait_seconds and 0 < eng.stats.prepare_seconds
    # underfull batches that later slices could fill wait for them: no more batches than in one pass
    assert eng.stats.batches <= one.stats.batches, (eng.stats.batches, one.stats.batches)
    again = LikelihoodEngine(tiny_llama, max_length=24, cache_dir=tmp_path, progress=False, prepare_chunk=4)
    again.nll(reqs, caps)
    assert again.stats.computed == 0 and again.stats.cached == len(reqs) - 1


def test_a_failure_while_tokenising_ahead_reaches_the_caller(tiny_llama, monkeypatch):
    reqs = [Rendered(f"Item {i}: words", ((0, 6),)) for i in range(10)]
    eng = LikelihoodEngine(tiny_llama, max_length=24, use_cache=False, progress=False, prepare_chunk=4)
    real = eng.prepare

    def failing(r, c=None):
        if any(x.text.startswith("Item 9") for x in r):
            raise ValueError("bad rendering")
        return real(r, c)
    monkeypatch.setattr(eng, "prepare", failing)
    with pytest.raises(ValueError, match="bad rendering"):
        eng.nll(reqs)
    import threading
    assert not [t for t in threading.enumerate() if t.name.startswith("tunesift-tokenize")]   # none left behind
