"""A sweep split over a job array (--shard i/N, SLURM_ARRAY_*) into one results directory, and a
sweep under jax.distributed, give the summary of one job (issue 10, item 4)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slt_jax.workflows.sweep import SweepConfigError, resolve_shard, sweep
from slt_jax.workflows.sweep_outputs import read_summary

from test_sweep import STEPS, assert_same, run  # noqa: F401  (the fixture)

JOB = Path(__file__).parent / "scripts" / "sweep_job.py"


def _start(tmp, cfg, shard="-", env=None, distributed=()):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    args = [sys.executable, str(JOB), str(tmp), json.dumps(cfg), shard, *map(str, distributed)]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_resolve_shard():
    assert resolve_shard(None, {}) == (0, 1)
    assert resolve_shard("1/3", {}) == (1, 3) and resolve_shard((0, 2), {}) == (0, 2)
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "4"}
    assert resolve_shard(None, slurm) == (1, 3)
    assert resolve_shard("0/1", slurm) == (0, 1)  # an explicit shard wins
    for bad in ("3/3", "a/b", "1", (2, 1), (0, 0)):
        with pytest.raises(SweepConfigError, match="shard"):
            resolve_shard(bad, {})
    with pytest.raises(SweepConfigError, match="SLURM"):
        resolve_shard(None, {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"})


def test_two_shards_into_one_directory_equal_one_job(run):  # noqa: F811
    """Two jobs started together (one by --shard, one by SLURM's variables) write disjoint
    checkpoints into one directory; the last to finish writes the summary over all, which is
    bitwise the one-job summary, and `complete`."""
    tmp, config = run
    cfg = config(out="sharded", num_draws=60)
    jobs = [_start(tmp, cfg, "0/2"),
            _start(tmp, cfg, env={"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"})]
    reports = [_finish(p) for p in jobs]
    assert reports[0]["computed"] == list(STEPS[0::2]) and reports[1]["computed"] == list(STEPS[1::2])
    assert [r["shard"] for r in reports] == [[0, 2], [1, 2]]
    assert min(len(r["pending"]) for r in reports) == 0  # the later one saw every checkpoint done
    out = tmp / "sharded"
    assert json.loads((out / "complete").read_text())["steps"] == list(STEPS)
    one_job = sweep(config(out="one", num_draws=60), progress=False)
    assert_same(read_summary(out), one_job)
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_new_with_shards_is_refused(run):  # noqa: F811
    _, config = run
    with pytest.raises(SweepConfigError, match="new=True"):
        sweep(config(), new=True, shard="0/2")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sweep_under_jax_distributed_matches_one_process(run):  # noqa: F811
    """Two processes on localhost (one device each) run one sweep as one program over both
    devices; process 0 writes. Same steps and chain counts; λ̂ to float32 rounding (the chains sit
    on two devices, so XLA may vectorize the step differently than on one)."""
    tmp, config = run
    port = _free_port()
    cfg = config(out="distributed", num_draws=60, num_chains=4)
    procs = [_start(tmp, cfg, distributed=(port, 2, i)) for i in range(2)]
    reports = [_finish(p) for p in procs]
    assert all(r["computed"] == list(STEPS) and r["pending"] == [] for r in reports)
    multi = read_summary(tmp / "distributed")
    single = sweep(config(out="single", num_draws=60, num_chains=4), progress=False)
    assert multi["step"].tolist() == list(STEPS) and (multi["chains_used"] == 4).all()
    cols = ["llc", "llc_std", "init_loss", "mala_mean"]
    np.testing.assert_allclose(multi[cols].to_numpy(), single[cols].to_numpy(), rtol=1e-4, atol=1e-6)
    pd.testing.assert_series_equal(multi["chains_excluded"], single["chains_excluded"])
