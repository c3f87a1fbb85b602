"""Per-example gradient features of a model's trainable (LoRA) weights: LESS and its kin.

The authors' loops run one forward and one backward per example.  Here a batch of examples runs
once: a forward hook keeps each trainable Linear's input and output, one ``autograd.grad`` of the
summed per-example losses gives the gradient at every such output, and each example's weight
gradient is the product of its own two over its tokens (``einsum('bto,bti->boi')``).  Examples do not
interact (causal attention, right padding that never reaches a real token, a loss per example), so
this is each example's own gradient, exactly, for about the cost of one backward pass per batch.

Features are projected by a Rademacher matrix (``RademacherProjector``; LESS/TRAK's default kind),
generated block by block from a seed so that it is never stored whole.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..data.errors import TunesiftError
from ..models.heads import body_and_head, head_logits
from ..models.progress import progress_bar
from ..models.templates import Rendered
from .batching import pad_id_of, right_padded, token_batches
from .distributed import Recipe, Runner, parts_of, units_of
from .likelihood import tokenize_targets

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8   # LESS's constants (equal to AdamW's defaults)


def trainable_linears(model) -> list:
    """(name, module) of every Linear whose weight trains; every trainable parameter must be one."""
    import torch
    mods = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m.weight.requires_grad]
    covered = sum(m.weight.numel() for _, m in mods)
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if not mods or covered != total:
        raise TunesiftError("gradient features cover the weights of trainable Linear layers (LoRA adapters) only; "
                            f"this model trains {total:,} parameters, {covered:,} of them in such weights")
    return mods


class RademacherProjector:
    """``x -> x R / sqrt(dim)``, R an [n, dim] matrix of independent +-1 entries.  Row block j of R is
    drawn from its own generator seeded by (seed, j), so R is the same on every call and machine and
    never needs to exist whole.  A block is drawn as random bytes, eight signs each, and its bytes are
    kept while they fit in ``cache_bytes`` (n x dim / 8 in all: 0.9 GB for 921,600 LoRA weights at
    8,192 dimensions).  Drawing one sign per int8 was the cost before: 93 s for that matrix on the
    2-core CPU, redrawn for every batch projected."""

    def __init__(self, n: int, dim: int, seed: int = 0, block_rows: int = 4096, cache_bytes: int = 2 << 30):
        self.n, self.dim, self.seed, self.block_rows, self.cache_bytes = n, dim, seed, block_rows, cache_bytes
        self._cache: dict = {}
        self._held = 0
        self._signs = None

    def _bytes(self, j: int):
        import torch
        if j in self._cache:
            return self._cache[j]
        rows = min(self.block_rows, self.n - j * self.block_rows)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + j)
        b = torch.randint(0, 256, (rows, -(-self.dim // 8)), generator=g, dtype=torch.uint8)
        if self._held + b.numel() <= self.cache_bytes:
            self._cache[j] = b
            self._held += b.numel()
        return b

    def block(self, j: int, device=None):
        """Row block j of R as float32 (+-1)."""
        import torch
        if self._signs is None:   # byte value -> its eight bits as signs
            bits = (torch.arange(256)[:, None] >> torch.arange(8)[None, :]) & 1
            self._signs = (bits * 2 - 1).float()
        b = self._bytes(j)
        return self._signs[b.long()].reshape(b.shape[0], -1)[:, :self.dim].to(device or "cpu")

    def __call__(self, G):
        import torch
        if G.shape[1] != self.n:
            raise TunesiftError(f"projector built for {self.n:,} features, given {G.shape[1]:,}")
        out = torch.zeros(G.shape[0], self.dim, dtype=torch.float32, device=G.device)
        for j in range(math.ceil(self.n / self.block_rows)):
            a = j * self.block_rows
            R = self.block(j, G.device)
            out.addmm_(G[:, a:a + R.shape[0]].float(), R)
        return out / math.sqrt(self.dim)


def gradient_features(lm, requests: Sequence[Rendered], projector: RademacherProjector | None = None, *,
                      optimizer=None, kind: str = "sgd", max_length: int = 2048, batch_tokens: int = 4096,
                      progress: bool = True, desc: str = "gradients", loss: str = "mean",
                      project_bytes: int = 1 << 30, return_loss: bool = False, runner: Runner | None = None):
    """Projected per-example gradient features of ``lm``'s trainable Linear weights, one row per
    request (zeros where it has no target token), and each request's target-token count.

    The loss is each example's mean cross-entropy over its target tokens (the response), or its sum
    (``loss="sum"``: the negative log-probability of the response, as DPO's terms are); with
    ``return_loss`` each example's loss value comes back too, as a third array.
    ``kind``: ``sgd`` the gradient itself; ``adam`` LESS's Adam feature m' / sqrt(v' + eps) with
    m' = b1 m + (1 - b1) g, v' = b2 v + (1 - b2) g^2 from ``optimizer``'s moments (no bias
    correction, eps inside the root, as LESS's code).  ``projector`` None returns the full gradients.
    With a remote ``runner`` the batches run on its workers, each holding a copy of this model state
    (shipped once per call: the model changes between checkpoints) and the same projection."""
    import torch
    if kind not in ("sgd", "adam"):
        raise TunesiftError("gradient feature kind must be 'sgd' or 'adam'")
    if loss not in ("mean", "sum"):
        raise TunesiftError("gradient loss must be 'mean' or 'sum'")
    mods = trainable_linears(lm.model)
    if kind == "adam":
        if optimizer is None:
            raise TunesiftError("Adam gradient features need the optimizer's moments")
        try:
            m = torch.cat([optimizer.state[mod.weight]["exp_avg"].reshape(-1) for _, mod in mods])
            v = torch.cat([optimizer.state[mod.weight]["exp_avg_sq"].reshape(-1) for _, mod in mods])
        except KeyError:
            raise TunesiftError("the optimizer holds no Adam moments for these weights (not stepped yet?)") from None
    n_feat = sum(mod.weight.numel() for _, mod in mods)
    width = projector.dim if projector is not None else n_feat
    prep = tokenize_targets(lm.tokenizer, requests, max_length)
    n_tok = np.array([len(p.pos) for p in prep], dtype=np.int64)
    out = np.zeros((len(prep), width), dtype=np.float32)
    losses = np.zeros(len(prep), dtype=np.float64)
    todo = [i for i in range(len(prep)) if n_tok[i]]
    if runner is not None and runner.remote and todo:
        moments = (m.cpu().numpy(), v.cpu().numpy()) if kind == "adam" else None
        _remote(lm, prep, todo, out, losses, runner, projector, kind, loss, moments, batch_tokens, progress, desc)
        return (out, n_tok, losses) if return_loss else (out, n_tok)
    moments = (m, v) if kind == "adam" else None
    waiting: list = []
    held = 0

    def flush() -> None:
        nonlocal held
        if waiting:
            with torch.no_grad():
                feats = projector(torch.cat([G for _, G in waiting])).cpu().numpy()
            out[[i for b, _ in waiting for i in b]] = feats
            waiting.clear()
            held = 0

    bar = progress_bar(total=len(todo), desc=desc, unit="ex", disable=not progress, leave=False)
    try:
        for b in token_batches([len(p.ids) for p in prep], todo, batch_tokens):
            G, losses[b] = _features_of(lm, [prep[i] for i in b], kind, loss, moments)
            if projector is None:
                out[b] = G.cpu().numpy()
            else:
                # Projected in groups: each pass over R costs about as much as drawing it, however
                # few rows it multiplies, so rows wait until ~``project_bytes`` of them are held.
                waiting.append((b, G))
                held += G.numel() * 4
                if held >= project_bytes:
                    flush()
            bar.update(len(b))
        flush()
    finally:
        bar.close()
    return (out, n_tok, losses) if return_loss else (out, n_tok)


class GradientWorker:
    """A worker's copy of one ``gradient_features`` call: the model state, the optimizer's moments and
    the projection (rebuilt from its seed: the same R on every machine)."""

    def __init__(self, lm, kind: str, loss: str, moments=None, projector: tuple | None = None):
        import torch
        self.lm, self.kind, self.loss = lm, kind, loss
        mods = trainable_linears(lm.model)
        dev = mods[0][1].weight.device
        self.moments = None if moments is None else tuple(torch.from_numpy(x).to(dev) for x in moments)
        self.projector = None if projector is None else RademacherProjector(*projector)

    def run_unit(self, unit) -> list:
        """Per batch of (ids, target positions): (features [rows, width], per-example losses).  The
        unit's rows are projected together: a pass over R costs about as much however few rows it has."""
        import torch
        got = [_features_of(self.lm, [_Fixed(ids, pos) for ids, pos in b], self.kind, self.loss, self.moments)
               for b in unit]
        with torch.no_grad():
            G = torch.cat([g for g, _ in got])
            feats = (self.projector(G) if self.projector is not None else G).cpu().numpy()
        out, a = [], 0
        for (g, ls) in got:
            out.append((feats[a:a + len(g)], ls))
            a += len(g)
        return out


class _Fixed:
    """A request already tokenised: token ids and the positions of its target tokens."""

    def __init__(self, ids, pos):
        self.ids, self.pos = ids, pos


def _features_of(lm, prepared: list, kind: str, loss: str, moments):
    """Unprojected features (a tensor on the model's device) and losses of one batch of requests
    already tokenised, rows in the given order: ``gradient_features``' batch, here or on a worker."""
    import torch
    import torch.nn.functional as F
    model = lm.model
    mods = trainable_linears(model)
    dev = mods[0][1].weight.device
    n_tok = np.array([len(p.pos) for p in prepared], dtype=np.int64)
    body, head, cap = body_and_head(model)
    seen: dict = {}

    def keep(mod, args, output):
        seen[mod] = (args[0], output)

    handles = [mod.register_forward_hook(keep) for _, mod in mods]
    try:
        order = sorted(range(len(prepared)), key=lambda i: -len(prepared[i].ids))
        ids = torch.from_numpy(right_padded([prepared[i].ids for i in order], pad_id_of(lm.tokenizer))).to(dev)
        rows = torch.from_numpy(np.repeat(np.arange(len(order)), n_tok[order])).to(dev)
        cols = torch.from_numpy(np.concatenate([prepared[i].pos for i in order]).astype(np.int64)).to(dev)
        with torch.enable_grad():
            h = body(input_ids=ids, use_cache=False)[0]
            ce = F.cross_entropy(head_logits(head, h[rows, cols - 1], cap), ids[rows, cols], reduction="none")
            per = torch.zeros(len(order), dtype=ce.dtype, device=dev).index_add_(0, rows, ce)
            if loss == "mean":
                per = per / torch.from_numpy(n_tok[order]).to(dev, ce.dtype)
            gouts = torch.autograd.grad(per.sum(), [seen[mod][1] for _, mod in mods], allow_unused=True)
        with torch.no_grad():
            G = torch.cat([torch.einsum("bto,bti->boi", go.float(), seen[mod][0].float()).reshape(len(order), -1)
                           if go is not None else torch.zeros(len(order), mod.weight.numel(), device=dev)
                           for (_, mod), go in zip(mods, gouts)], dim=1)
            if kind == "adam":
                b1, b2 = ADAM_BETAS
                m, v = moments
                G = (b1 * m + (1 - b1) * G) / torch.sqrt(b2 * v + (1 - b2) * G * G + ADAM_EPS)
    finally:
        for hd in handles:
            hd.remove()
        seen.clear()
    back = torch.from_numpy(np.argsort(np.asarray(order))).to(dev)
    return G[back], per.detach().double().cpu().numpy()[back.cpu().numpy()]


def _remote(lm, prep, todo, out, losses, runner: Runner, projector, kind, loss, moments, batch_tokens,
            progress, desc) -> None:
    import uuid

    lens = [len(p.ids) for p in prep]
    batches = token_batches(lens, todo, batch_tokens)
    units = units_of(batches, lens, 4 * batch_tokens, parts_of(runner))
    proj = None if projector is None else (projector.n, projector.dim, projector.seed, projector.block_rows,
                                           projector.cache_bytes)
    # a fresh copy per call (and a key no worker has built): the model trains between checkpoints
    recipe = Recipe(GradientWorker, (("kind", kind), ("loss", loss), ("moments", moments), ("projector", proj)),
                    runner.lm_source(lm, fresh=True), key=f"gradients/{uuid.uuid4().hex}")
    bar = progress_bar(total=len(todo), desc=desc, unit="ex", disable=not progress, leave=False)

    def done(u: int, res: list) -> None:
        for b, (f, ls) in zip(units[u], res):
            out[b] = f
            losses[b] = ls
            bar.update(len(b))

    try:
        runner.map(recipe, [[[(prep[i].ids, prep[i].pos) for i in b] for b in unit] for unit in units], done)
    finally:
        bar.close()
