"""Where per-example batches run: in this process, on Ray workers, or only one slice of them.

Every batched signal (the likelihood engine's passes and rating tokens, sentence and LM embeddings,
reward-model scores) does the same three things: key each request and answer what the cache holds,
pack the rest longest-first into token-budget batches, compute each batch.  Only the last step moves.
A signal groups its batches into *units* (a few batches each: small enough that a dynamic queue
balances slow and fast devices, large enough to amortise a task's overhead) and hands them to a
``Runner`` with a ``Recipe`` saying how to build the same signal on a worker; each result comes back to
the driver, which writes it into its own content-addressed cache as it arrives.  So the driver's cache
stays the one record of finished work (a cluster needs no shared file system), and a rerun after any
failure recomputes nothing that came back.

Workers are Ray actors that build each recipe's model once and pull units from Ray's ``ActorPool``
(whichever actor is free takes the next unit).  Actors restart when killed and Ray retries their
unfinished task on the restarted actor, so a lost worker costs its unit's recomputation, not the run.
Workers receive token ids, not texts, wherever the driver needs the ids for cache keys anyway (the
likelihood engine, LM embeddings, reward models): the driver tokenises once and nothing is encoded
twice; the sentence encoder, keyed by text, gets its texts.

``Slice(i, n)`` restricts a run to the requests whose cache key falls in slice i of n (a Slurm array
job on a shared file system, no Ray): the other requests come back as NaN and are not computed.
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Callable

from ..data.errors import TunesiftError
from ..models.loading import LoadedLM, load_causal_lm

log = logging.getLogger("tunesift")
RAY_EXTRA = 'pip install "tunesift[ray]"'


@dataclass(frozen=True)
class Slice:
    """Slice ``index`` (0-based) of ``count``, chosen by the cache key so every process agrees."""

    index: int
    count: int

    @classmethod
    def parse(cls, spec: str | tuple | "Slice" | None) -> "Slice | None":
        """'3/16' is the third of sixteen slices (1-based, as Slurm array ids usually are)."""
        if spec is None or isinstance(spec, Slice):
            return spec
        try:
            i, n = (spec.split("/") if isinstance(spec, str) else spec)
            i, n = int(i), int(n)
        except (ValueError, TypeError):
            raise TunesiftError(f"--shard takes i/N with 1 <= i <= N (e.g. 3/16); got {spec!r}") from None
        if not 1 <= i <= n:
            raise TunesiftError(f"--shard {i}/{n}: i must be between 1 and N")
        return cls(i - 1, n)

    def owns(self, key: bytes) -> bool:
        return int.from_bytes(key[:8], "little") % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}"


@dataclass(frozen=True)
class LMSource:
    """How a worker gets the driver's causal LM: by path (loaded on the worker's own device) or, for
    an in-memory model (a test's, or one fine-tuned earlier in the run), as a Ray object."""

    path: str | None = None
    dtype: str | None = None
    trust_remote_code: bool = False
    ref: Any = None      # ray.ObjectRef of a packed model (``pack_lm``)

    def load(self, device: str) -> LoadedLM:
        if self.path is not None:
            return load_causal_lm(self.path, device, self.dtype, self.trust_remote_code)
        import ray   # a worker: Ray is there
        return unpack_lm(ray.get(self.ref), device)


def pack_lm(lm: LoadedLM) -> dict:
    """An in-memory model as plain data: its config, weights (on the CPU), PEFT adapters' configs and
    which parameters train.  Pickling the module itself breaks on whatever a run attached to it (a
    compiled forward's state, PEFT's context variables); a state dict does not."""
    model = lm.model
    peft = getattr(model, "peft_config", None)
    base = model.get_base_model() if peft else model
    return {"config": base.config, "class": type(base), "peft": dict(peft) if peft else None,
            "state": {k: v.detach().to("cpu") for k, v in model.state_dict().items()},
            "trainable": [n for n, p in model.named_parameters() if p.requires_grad],
            "training": model.training, "tokenizer": lm.tokenizer, "name": lm.name,
            "fingerprint": lm.fingerprint, "dtype": lm.dtype}


def unpack_lm(d: dict, device: str) -> LoadedLM:
    import torch
    torch.manual_seed(0)   # the weights are overwritten; this only keeps construction quiet and fixed
    model = d["class"](d["config"])
    if d["peft"]:
        from peft import get_peft_model   # optional: only a run that made adapters ships them
        (name, cfg), *more = d["peft"].items()
        model = get_peft_model(model, cfg, adapter_name=name)
        for n, c in more:
            model.add_adapter(n, c)
    model.load_state_dict(d["state"])
    model.to(device=device, dtype=getattr(torch, d["dtype"]) if d["dtype"] else None)
    keep = set(d["trainable"])
    for n, p in model.named_parameters():
        p.requires_grad_(n in keep)
    model.train(d["training"])
    return LoadedLM(model, d["tokenizer"], d["name"], d["fingerprint"], device, d["dtype"])


@dataclass(frozen=True)
class Recipe:
    """A signal's constructor and arguments, to build the same signal on a worker (no cache, no bar).
    ``lm`` becomes the ``lm`` argument; a ``device`` argument becomes the worker's device."""

    cls: type
    kwargs: tuple = ()
    lm: LMSource | None = None
    key: str = ""        # identity of the built object: a worker builds each key once

    def build(self, device: str):
        kw = dict(self.kwargs)
        if self.lm is not None:
            kw["lm"] = self.lm.load(device)
        if "device" in kw:
            kw["device"] = device
        return self.cls(**kw)


class Runner:
    """In process: ``run_units`` runs the units here; this runner only carries a ``--shard`` slice."""

    remote = False

    def __init__(self, part: Slice | None = None):
        self.part = part

    def owns(self, key: bytes | None) -> bool:
        return self.part is None or key is None or self.part.owns(key)

    def lm_source(self, lm: LoadedLM, fresh: bool = False) -> LMSource | None:
        return None

    @property
    def parts(self) -> int:
        """How many units a pass should at least be cut into (in process: no cutting)."""
        return 1

    def close(self) -> None:
        pass


def run_units(runner: Runner | None, recipe: Callable[[], Recipe], local: Any, units: list,
              on_result: Callable[[int, Any], None]) -> None:
    """Run ``local.run_unit`` over ``units`` where ``runner`` says; ``on_result(u, result)`` as each ends."""
    if runner is None or not runner.remote:
        for u, unit in enumerate(units):
            on_result(u, local.run_unit(unit))
    elif units:
        runner.map(recipe(), units, on_result)


def parts_of(runner: "Runner | None") -> int:
    return runner.parts if runner is not None else 1


def units_of(batches: list[list[int]], lengths, unit_tokens: int, parts: int = 1) -> list[list[list[int]]]:
    """Consecutive batches grouped until a unit holds ``unit_tokens`` padded tokens.  With ``parts``
    (4 x the workers), a pass too small to give every worker several units has its batches cut
    smaller first: a dynamic queue balances only what it can split, and one worker finishing a
    last long batch while the others wait cost more than the smaller batches do."""
    total = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    if parts > 1 and len(batches) < parts:
        target = max(1, total // parts)
        small = []
        for b in batches:
            rows = max(1, target // max(lengths[i] for i in b))   # a batch is longest first
            small += [b[a:a + rows] for a in range(0, len(b), rows)]
        return [[b] for b in small]   # one batch a unit: as many units as can be had
    unit_tokens = min(unit_tokens, max(1, -(-total // parts)))
    units, cur, tok = [], [], 0
    for b in batches:
        cur.append(b)
        tok += len(b) * max(lengths[i] for i in b)
        if tok >= unit_tokens:
            units.append(cur)
            cur, tok = [], 0
    if cur:
        units.append(cur)
    return units


def _ray():
    try:
        import ray   # optional extra: only a distributed run imports it
    except ImportError:
        raise TunesiftError(f"--workers / --ray-address need Ray: {RAY_EXTRA}") from None
    return ray


def _check_address(address: str) -> None:
    """Fail in seconds, not after Ray's long connection retries, when a head is unreachable."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as e:
        raise TunesiftError(f"--ray-address {address}: no Ray head answers there ({e})") from None


class _Worker:
    """One actor: builds each recipe once, then computes units."""

    def __init__(self, device: str, threads: int | None):
        import torch
        if threads:
            torch.set_num_threads(threads)
        if device == "cuda":
            device = "cuda:0"   # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU
        self.device = device
        self.built: dict[str, Any] = {}

    def run(self, recipe: Recipe, u: int, unit) -> tuple[int, Any]:
        obj = self.built.get(recipe.key)
        if obj is None:
            obj = self.built[recipe.key] = recipe.build(self.device)
        return u, obj.run_unit(unit)

    def pid(self) -> int:
        return os.getpid()


@dataclass
class RayRunner(Runner):
    """``workers`` actors on a Ray cluster (``address``; None starts one on this machine, on loopback),
    one GPU each when ``device`` is cuda, ``threads`` CPU threads each otherwise."""

    workers: int | None = 2   # None: one per GPU of the cluster (cuda), else 1
    address: str | None = None
    device: str = "cpu"
    threads: int | None = None
    part: Slice | None = None
    retries: int = -1          # task retries after a worker dies (-1: until it succeeds)
    remote = True
    _actors: list = field(default_factory=list)
    _started: bool = False
    _refs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.workers is not None and self.workers < 1:
            raise TunesiftError("--workers must be at least 1")
        ray = _ray()
        if self.address:
            _check_address(self.address)
        if not ray.is_initialized():
            try:
                if self.address:
                    ray.init(address=self.address, log_to_driver=False, include_dashboard=False)
                else:
                    import torch
                    cpus = os.cpu_count() or 1
                    gpus = torch.cuda.device_count() if self.device.startswith("cuda") else 0
                    ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, log_to_driver=False,
                             _node_ip_address="127.0.0.1")
                self._started = True
            except ConnectionError as e:
                raise TunesiftError(f"--ray-address {self.address}: {e}") from None
        res = ray.cluster_resources()
        if self.workers is None:
            self.workers = max(1, int(res.get("GPU", 0))) if self.device.startswith("cuda") else 1
        if self.device.startswith("cuda"):
            free = ray.available_resources().get("GPU", 0)
            if free < self.workers:
                raise TunesiftError(f"--workers {self.workers} --device cuda: the cluster has "
                                    f"{int(res.get('GPU', 0))} GPU(s), {free:g} free")
        else:
            self.threads = self.threads or max(1, int(res.get("CPU", 1)) // self.workers)
            free = ray.available_resources().get("CPU", 0)   # actors that cannot be placed would wait forever
            if free < self.workers * self.threads:
                raise TunesiftError(f"--workers {self.workers} x {self.threads} thread(s): the cluster has "
                                    f"{int(res.get('CPU', 0))} CPU(s), {free:g} free")
        log.info("scale-out: %d Ray worker(s) on %s (%s)", self.workers, self.address or "this machine",
                 self.device)

    def _pool(self) -> list:
        """The actors, started on first use (``tasks`` needs the devices free, not held by actors)."""
        if not self._actors:
            ray = _ray()
            actor = ray.remote(_Worker).options(
                num_gpus=1 if self.device.startswith("cuda") else 0,
                num_cpus=0 if self.device.startswith("cuda") else self.threads,
                max_restarts=-1, max_task_retries=self.retries)
            dev = "cuda" if self.device.startswith("cuda") else "cpu"
            self._actors = [actor.remote(dev, self.threads if dev == "cpu" else None) for _ in range(self.workers)]
        return self._actors

    def lm_source(self, lm: LoadedLM, fresh: bool = False) -> LMSource:
        """``fresh``: ship the model's current state (it changed since the last call: a checkpoint)."""
        path = getattr(lm, "source", None)
        if path is not None and not fresh:
            return LMSource(path, lm.dtype, getattr(lm, "trust_remote_code", False))
        if fresh:
            return LMSource(ref=_ray().put(pack_lm(lm)), dtype=lm.dtype)
        # one copy in the object store per model (its fingerprint: weights, or a fine-tune's inputs)
        key = (lm.fingerprint, lm.dtype)
        if key not in self._refs:
            self._refs[key] = _ray().put(pack_lm(lm))
        return LMSource(ref=self._refs[key], dtype=lm.dtype)

    @property
    def parts(self) -> int:
        return 4 * (self.workers or 1)

    def pids(self) -> list[int]:
        ray = _ray()
        return ray.get([a.pid.remote() for a in self._pool()])

    def map(self, recipe: Recipe, units: list, on_result: Callable[[int, Any], None]) -> None:
        ray = _ray()
        from ray.util import ActorPool
        pool = ActorPool(self._pool())
        rec = ray.put(recipe)
        for u, unit in enumerate(units):
            pool.submit(lambda a, v: a.run.remote(rec, *v), (u, unit))
        while pool.has_next():
            u, res = pool.get_next_unordered()
            on_result(u, res)

    def tasks(self, fn: Callable, items: list, on_result: Callable[[int, Any], None], retries: int = 1) -> None:
        """Run ``fn(item)`` for each item as a Ray task on one device of its own (a GPU with cuda, else
        ``threads`` CPUs), at most ``workers`` at a time; ``on_result(i, value)`` as each ends.  For
        whole jobs (a bench cell: select, fine-tune, evaluate), not batches."""
        ray = _ray()
        gpu = self.device.startswith("cuda")
        task = ray.remote(fn).options(num_gpus=1 if gpu else 0, num_cpus=0 if gpu else self.threads,
                                      max_retries=retries)
        waiting = {task.remote(item): i for i, item in enumerate(items)}   # Ray runs what the devices allow
        while waiting:
            done, _ = ray.wait(list(waiting), num_returns=1)
            for ref in done:
                on_result(waiting.pop(ref), ray.get(ref))

    def close(self) -> None:
        ray = _ray()
        for a in self._actors:
            ray.kill(a)
        self._actors = []
        if self._started:
            ray.shutdown()
            self._started = False
