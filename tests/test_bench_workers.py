"""tunesift bench with --workers: cells as Ray tasks on a loopback cluster, each cell file written by
the driver as it arrives, the same numbers as the in-process run, and a resume that runs nothing."""
import os

import numpy as np
import pandas as pd
import pytest

from tunesift.bench import BenchConfig, run_bench
from tunesift.data import read_dataset
from tunesift.train import TrainConfig

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster of this test's own on loopback (2 logical CPUs), shut down at the end.  Started
    in process rather than with `ray start`, since `ray stop` would end every Ray on a shared machine."""
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield "local"
    ray.shutdown()


def test_bench_cells_on_two_workers(cluster, tiny_model_dir, alpaca_file, tmp_path, monkeypatch):
    cfg = dict(methods=["perplexity"], evals=[f"heldout_nll:4={alpaca_file}"], budget="50%", seeds=1,
               include_full=False, template="alpaca", device="cpu", base_model=str(tiny_model_dir),
               train=TrainConfig(epochs=1, batch_size=2, micro_batch_tokens=512, max_length=256))
    pool = read_dataset(alpaca_file)
    written = []
    import tunesift.bench.run as run
    real = run.write_cell
    monkeypatch.setattr(run, "write_cell", lambda cell, rec: (written.append((cell.method, os.getpid())),
                                                              real(cell, rec)))
    par = run_bench(pool, BenchConfig(**cfg, workers=2, threads_per_worker=1),
                    tmp_path / "par", progress=False)
    # three cells (perplexity, random, base), each written by the driver as its task ended
    assert sorted(m for m, _ in written) == ["base", "perplexity", "random"]
    assert {pid for _, pid in written} == {os.getpid()}
    assert len(list((tmp_path / "par" / "cells").glob("*.json"))) == 3
    assert par.error.eq("").all()
    seq = run_bench(pool, BenchConfig(**cfg), tmp_path / "seq", progress=False)
    cols = ["selected", "heldout_nll.nll"]
    assert np.allclose(par[cols].to_numpy(float), seq[cols].to_numpy(float), rtol=1e-4)
    # resumable as before: every cell cached, nothing runs (not even a Ray task)
    monkeypatch.setattr(run, "_run_parallel", lambda *a, **k: pytest.fail("a cached cell ran again"))
    again = run_bench(pool, BenchConfig(**cfg, workers=2), tmp_path / "par", progress=False)
    pd.testing.assert_frame_equal(par, again)
