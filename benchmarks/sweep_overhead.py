"""A 30-checkpoint sweep: compilations, and sweep wall time against the sum of its sampling times.

    .venv/bin/python benchmarks/sweep_overhead.py [--checkpoints 30] [--chains 8] [--draws 1000]

Workload: the MLP of workload_mlp.py (1,012 parameters, n = 1,000, batch 100, SGLD ε 1e-4,
γ 100, nβ n/log n), checkpoints = the teacher plus small seeded perturbations, saved as .npz
at log-spaced steps. Each sweep runs in a fresh process (`slt-jax sweep CONFIG`, as a user
would), twice into new directories: the first with an empty persistent compilation cache, the
second reading it. Reported per run: the process's wall time (import to exit), the sweep's own
wall_s, its compile_s and compilations, and sampling_s (the programs' run time): the ratio
wall_s / sampling_s is the sweep's overhead (checkpoint reads, result writes, summary,
combined dataset, stage detection and plot).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

RUN = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {here!r})
from slt_jax.hostdevices import expose_cpu_cores
expose_cpu_cores()
import slt_jax
table = slt_jax.sweep({config!r}, progress=False)
a = table.attrs
print(json.dumps({{"process_s": time.perf_counter() - t0, "wall_s": a["wall_s"], "sampling_s": a["sampling_s"],
                  "compile_s": a["compile_s"], "compilations": a["compilations"], "rows": len(table),
                  "per_group": a["compilations_per_group"],
                  "stages": a["stages"] if isinstance(a["stages"], list) else str(a["stages"])}}))
"""


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoints", type=int, default=30)
    p.add_argument("--chains", type=int, default=8)
    p.add_argument("--draws", type=int, default=1000)
    args = p.parse_args()
    import workload_mlp as W

    import slt_jax

    work = Path(tempfile.mkdtemp(prefix="slt_jax_sweep_bench_"))
    rng = np.random.default_rng(0)
    base = W.make_params()
    steps = sorted({int(s) for s in np.geomspace(1, 10_000, args.checkpoints).round()} | {0})[: args.checkpoints]
    for s in steps:
        params = {k: (v + 0.01 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in base.items()}
        slt_jax.checkpoints.save(work / "ckpts" / f"ckpt_{s:06d}.npz", s, params)
    env = dict(os.environ, SLT_JAX_COMPILATION_CACHE=str(work / "xla_cache"))
    runs = []
    for label in ("first (empty compilation cache)", "second (cache from the first)"):
        cfg = {"factory": "sweep_factory_mlp:make", "checkpoints": str(work / "ckpts"),
               "out": str(work / f"out{len(runs)}"),
               "sampler": {"step_size": W.EPS, "localization": W.GAMMA, "nbeta": W.NBETA, "num_chains": args.chains,
                           "num_draws": args.draws, "batch_size": W.BATCH, "seed": 0}}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", RUN.format(here=str(HERE), config=cfg)], env=env,
                              capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["outer_s"] = time.perf_counter() - t0
        runs.append((label, r))
    print(f"{len(steps)} checkpoints × {args.chains} chains × {args.draws} draws, MLP {W.NUM_PARAMS} params\n")
    print("| run | compilations (per program call) | process wall s | sweep wall_s | compile_s | sampling_s | wall_s / sampling_s |")
    print("|---|---|---|---|---|---|---|")
    for label, r in runs:
        print(f"| {label} | {r['compilations']} ({', '.join(map(str, r['per_group']))}) | {r['process_s']:.2f} | {r['wall_s']:.2f} | {r['compile_s']:.2f} | "
              f"{r['sampling_s']:.2f} | {r['wall_s'] / r['sampling_s']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
