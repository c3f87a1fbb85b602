"""Generation on the run's workers: ``models.generate`` split into units of whole batches.

The driver sorts the prompts by token length and cuts them into the same batches ``generate`` makes
in process (``batch_size`` prompts, longest first, left-padded); each worker runs whole batches, so a
greedy or beam-search answer is the same token for token wherever it was computed.  Sampled
answers (``temperature > 0``) are seeded per batch on workers (``seed + batch number``), so they are
reproducible run to run but not equal to the in-process draw, which seeds once for the whole call.
"""
from __future__ import annotations

from ..models.generate import generate
from ..models.loading import LoadedLM
from ..models.progress import progress_bar
from .distributed import Recipe, Runner, run_units


class Generator:
    def __init__(self, lm: LoadedLM, runner: Runner | None = None, max_new_tokens: int = 256, batch_size: int = 16,
                 add_special_tokens: bool = True, num_beams: int = 1, temperature: float = 0.0, seed: int = 0):
        self.lm, self.runner = lm, runner
        self.kw = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, add_special_tokens=add_special_tokens,
                       num_beams=num_beams, temperature=temperature, seed=seed)

    def recipe(self) -> Recipe:
        kw = tuple((k, v) for k, v in self.kw.items())
        return Recipe(Generator, kw, self.runner.lm_source(self.lm),
                      key=f"generate/{self.lm.fingerprint}/{self.lm.dtype}/{kw}")

    def run_unit(self, unit: list[tuple[int, list[str]]]) -> list[list[str]]:
        kw = dict(self.kw)
        return [generate(self.lm, prompts, **dict(kw, batch_size=len(prompts), seed=kw["seed"] + b))
                for b, prompts in unit]

    def __call__(self, prompts: list[str], progress: bool = False) -> list[str]:
        if self.runner is None or not self.runner.remote:
            return generate(self.lm, prompts, progress=progress, **self.kw)
        tok, bs = self.lm.tokenizer, self.kw["batch_size"]
        lens = [len(x) for x in tok(list(prompts), add_special_tokens=self.kw["add_special_tokens"])["input_ids"]]
        order = sorted(range(len(prompts)), key=lambda i: -lens[i])   # generate's own order and batches
        batches = [order[s:s + bs] for s in range(0, len(order), bs)]
        units = [list(range(u, min(u + 4, len(batches)))) for u in range(0, len(batches), 4)]
        out = [""] * len(prompts)
        bar = progress_bar(total=len(prompts), desc="generating", unit="ex", disable=not progress, leave=False)

        def done(u: int, answers: list[list[str]]) -> None:
            for b, got in zip(units[u], answers):
                for i, a in zip(batches[b], got):
                    out[i] = a
                bar.update(len(batches[b]))

        try:
            run_units(self.runner, self.recipe, self,
                      [[(b, [prompts[i] for i in batches[b]]) for b in unit] for unit in units], done)
        finally:
            bar.close()
        return out
