"""Per-example gradient features against the authors' loop: one HF forward with -100 labels and one
backward per example, gradients read from the LoRA weights' .grad."""
import numpy as np
import pytest
import torch

from tunesift.data import read_dataset
from tunesift.models.templates import render_conversation
from tunesift.signals.gradients import RademacherProjector, gradient_features, trainable_linears
from tunesift.train import TrainConfig, finetune


@pytest.fixture(scope="module")
def measured(tiny_llama, tmp_path_factory):
    """Everything measured on a LoRA model two epochs into training, inside the training hook (after
    it, the adapters are merged): engine features, the loop's gradients, the Adam moments."""
    import json
    from .conftest import ALPACA
    p = tmp_path_factory.mktemp("d") / "a.json"
    p.write_text(json.dumps(ALPACA))
    ds = read_dataset(p)
    reqs = [render_conversation(e, "alpaca") for e in ds.examples]
    got = {}

    def hook(snap):
        if snap.epoch != 2:
            return
        lm, mods = snap.lm, trainable_linears(snap.lm.model)
        n = sum(m.weight.numel() for _, m in mods)
        got["sgd"], got["n_tok"] = gradient_features(lm, reqs, None, kind="sgd", batch_tokens=256, progress=False)
        got["adam"], _ = gradient_features(lm, reqs, None, kind="adam", optimizer=snap.optimizer, progress=False)
        got["proj"] = RademacherProjector(n, 64, seed=3, block_rows=1000, cache_bytes=0)   # blocks, none kept
        got["projected"], _ = gradient_features(lm, reqs, got["proj"], kind="sgd", progress=False)
        got["projected_each_batch"], _ = gradient_features(lm, reqs, got["proj"], kind="sgd", batch_tokens=64,
                                                           project_bytes=1, progress=False)
        got["loop"] = loop_gradients(lm, ds).numpy()
        got["m"] = torch.cat([snap.optimizer.state[x.weight]["exp_avg"].reshape(-1) for _, x in mods]).numpy()
        got["v"] = torch.cat([snap.optimizer.state[x.weight]["exp_avg_sq"].reshape(-1) for _, x in mods]).numpy()

    finetune(tiny_llama, ds, TrainConfig(method="lora", template="alpaca", epochs=2, batch_size=4, learning_rate=1e-2,
                                         lora_r=4, lora_alpha=8, lora_targets="q_proj,v_proj,o_proj"),
             progress=False, on_epoch=hook)
    return got


def loop_gradients(lm, ds, eos: bool = False):
    """One example at a time: labels -100 outside the response (and the EOS after it if ``eos``), HF
    mean loss, backward."""
    model, tok = lm.model, lm.tokenizer
    mods = trainable_linears(model)
    rows = []
    for e in ds.examples:
        r = render_conversation(e, "alpaca")
        enc = tok(r.text + (tok.eos_token if eos else ""), return_offsets_mapping=True)
        ids = torch.tensor([enc["input_ids"]])
        labels = ids.clone()
        for j, (s, t) in enumerate(enc["offset_mapping"]):
            if not (t > s and s >= r.spans[0][0]):
                labels[0, j] = -100
        model.zero_grad()
        with torch.enable_grad():
            model(input_ids=ids, labels=labels).loss.backward()
        rows.append(torch.cat([m.weight.grad.reshape(-1) for _, m in mods]).clone())
    model.zero_grad()
    return torch.stack(rows)


def test_batched_per_example_gradients_equal_the_loop(measured):
    G, want = measured["sgd"], measured["loop"]
    assert (measured["n_tok"] > 0).all() and G.shape == want.shape
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(G, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    # LESS's Adam feature from the optimizer's moments, written out here
    m, v, g = measured["m"], measured["v"], want.astype(np.float64)
    adam = (0.9 * m + 0.1 * g) / np.sqrt(0.999 * v + 0.001 * g * g + 1e-8)
    np.testing.assert_allclose(measured["adam"], adam, rtol=2e-3, atol=2e-3 * np.abs(adam).max())


def test_projection_is_a_fixed_rademacher_matrix(measured):
    proj, G, Pg = measured["proj"], measured["sgd"], measured["projected"]
    n = G.shape[1]
    R = torch.cat([proj.block(j) for j in range(-(-n // 1000))]).numpy().astype(np.float64)
    assert set(np.unique(R)) == {-1.0, 1.0} and R.shape == (n, 64)
    np.testing.assert_allclose(Pg, G @ R / 8, rtol=1e-4, atol=1e-5 * np.abs(Pg).max())
    np.testing.assert_allclose(measured["projected_each_batch"], Pg, rtol=1e-4, atol=1e-5 * np.abs(Pg).max())
    again = RademacherProjector(n, 64, seed=3, block_rows=1000)
    assert torch.equal(again.block(1), proj.block(1))
    assert not torch.equal(RademacherProjector(n, 64, 4).block(0)[:5], RademacherProjector(n, 64, 3).block(0)[:5])


def test_only_lora_weights(tiny_llama):
    assert all(p.requires_grad for p in tiny_llama.model.parameters())   # a plain model trains everything
    with pytest.raises(Exception, match="trainable Linear"):
        trainable_linears(tiny_llama.model)


def loop_less_features(snap, ds, dim):
    """The LESS pieces written out, for tests: the checkpoint's projection matrix R (as
    ``RademacherProjector(n, dim, seed=0)`` draws it) and the pool's unit-norm Adam features from the
    one-backward-per-example loop (response + EOS), with LESS's constants."""
    mods = trainable_linears(snap.lm.model)
    n = sum(m.weight.numel() for _, m in mods)
    P = RademacherProjector(n, dim, seed=0)
    R = torch.cat([P.block(j) for j in range(-(-n // P.block_rows))]).double().numpy()
    g = loop_gradients(snap.lm, ds, eos=True).double().numpy()
    m = torch.cat([snap.optimizer.state[x.weight]["exp_avg"].reshape(-1) for _, x in mods]).double().numpy()
    v = torch.cat([snap.optimizer.state[x.weight]["exp_avg_sq"].reshape(-1) for _, x in mods]).double().numpy()
    A = (0.9 * m + 0.1 * g) / np.sqrt(0.999 * v + 0.001 * g * g + 1e-8) @ R
    return R, A / np.linalg.norm(A, axis=1, keepdims=True)
