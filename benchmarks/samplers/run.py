"""Sampler benchmark, FIRST CUT of issue 11 item 1: every registered sampler × a step-size grid
on models with exact λ (CPU tier).

    .venv/bin/python benchmarks/samplers/run.py [--quick] [--out-md benchmarks/samplers/results.md]

For each (model, sampler) ONE `estimate_llc_grid` call runs the sampler's ε grid (ε as the
grid axis) × --chains chains. ε is given in units of 1/nβ (c = ε·nβ); the adaptive samplers
(RMSProp/Adam) precondition by 1/sqrt(v̂) of the minibatch *loss* gradient, so their grid sits
lower. Reported per configuration: λ̂ (mean over chains ± MCSE), relative error vs exact λ, MALA
acceptance mean, the call's wall time (shared by the ε values of one call), ESS per gradient
evaluation (LLCResult.ess / (chains × steps)). Writes a markdown table, a JSON dump and a
plot (|rel. error| vs ε·nβ per sampler, one panel per model), then prints a recommendation
from the data (median |rel. error| per sampler; best sampler and ε·nβ per model family).
See README.md for what is missing for issue 11.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

T0 = time.perf_counter()
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
from slt_jax.hostdevices import expose_cpu_cores  # noqa: E402  (before jax is imported)

expose_cpu_cores()

import numpy as np  # noqa: E402

sys.path.insert(0, str(HERE))
import models as M  # noqa: E402
import report  # noqa: E402

import slt_jax  # noqa: E402
from slt_jax.samplers import SAMPLERS  # noqa: E402

# ε·nβ grids per sampler (log-spaced). SGLD-unit samplers (sgld, sghmc, sgnht: drift ε/2,
# noise sqrt(ε)) share one; the preconditioned ones are scaled down (ε_t = ε/(sqrt(v̂)+a)).
SGLD_GRID = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
PRECOND_GRID = [1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1]  # gain 1/(sqrt(v̂)+1e-5): can exceed 1 or fall below
DEVINTERP_GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]  # v from 0, a = 0.1: gain up to 10×
GRIDS = {
    "sgld": SGLD_GRID,
    "rmsprop_sgld": PRECOND_GRID,
    "rmsprop_sgld_devinterp": DEVINTERP_GRID,
    "adam_sgld": PRECOND_GRID,
    "sghmc": SGLD_GRID,
    "sgnht": SGLD_GRID,
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer models, chains and steps (< ~3 min)")
    p.add_argument("--out-md", type=Path, default=HERE / "results.md")
    p.add_argument("--samples", type=int, default=1000, help="n")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--localization", type=float, default=1.0, help="γ")
    p.add_argument("--chains", type=int, default=None)
    p.add_argument("--burnin", type=int, default=None)
    p.add_argument("--draws", type=int, default=None)
    p.add_argument("--samplers", default=",".join(SAMPLERS), help="comma-separated names")
    p.add_argument("--models", default=None, help="comma-separated substrings of model names")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=20, help="draws between MALA probes")
    p.add_argument("--verbose", action="store_true", help="show slt_jax's per-call health warnings")
    args = p.parse_args()
    if not args.verbose:  # unhealthy chains are counted in the table ("healthy") instead
        warnings.filterwarnings("ignore", category=RuntimeWarning)
    chains = args.chains or (8 if args.quick else 32)
    burnin = args.burnin if args.burnin is not None else (500 if args.quick else 4000)
    draws = args.draws or (500 if args.quick else 4000)
    samplers = [s for s in args.samplers.split(",") if s]
    unknown = sorted(set(samplers) - set(SAMPLERS))
    if unknown:
        sys.exit(f"unknown samplers {unknown}; registry: {sorted(SAMPLERS)}")
    nbeta = M.default_nbeta(args.samples)
    ms = M.models(args.samples, quick=args.quick, seed=args.seed)
    if args.models:
        wanted = args.models.split(",")
        ms = [m for m in ms if any(w in m.name for w in wanted)]
    steps = burnin + draws
    rows = []
    for m in ms:
        for s in samplers:
            grid_c = GRIDS.get(s, SGLD_GRID)
            eps = [c / nbeta for c in grid_c]
            t = time.perf_counter()
            err = None
            try:
                res = slt_jax.estimate_llc_grid(
                    m.problem.loss_fn, [m.problem.params], m.problem.data,
                    step_size=eps, localization=args.localization, nbeta=nbeta,
                    num_chains=chains, num_draws=draws, num_burnin=burnin, batch_size=args.batch,
                    sampler=s, seed=args.seed, progress=False, diagnostics=("mala",), eval_every=args.eval_every,
                )
            except Exception as e:  # a sampler that fails is a result, not a crash
                err, res = f"{type(e).__name__}: {e}", None
            wall = time.perf_counter() - t
            compile_s = res.attrs.get("compile_s") if res is not None else None
            for c, e in zip(grid_c, eps):
                row = dict(model=m.name, family=m.family, d=m.problem.num_params, exact=m.exact, sampler=s,
                           c=c, eps=e, wall_s=wall, compile_s=compile_s, chains=chains, steps=steps, error=err)
                if res is not None:
                    r = res.sel(step_size=e)
                    lam, se = float(r.llc_mean), float(r.llc_se)
                    mala = r.mala_acceptance
                    ess = float(r.ess)
                    row.update(
                        llc=lam, mcse=se, rel_err=(lam - m.exact) / m.exact,
                        mala=float(np.nanmean(mala)) if np.isfinite(mala).any() else float("nan"),
                        healthy=int(r.num_healthy),
                        ess_per_grad=ess / (chains * steps) if np.isfinite(ess) else float("nan"),
                    )
                rows.append(row)
            done = [r for r in rows if r["model"] == m.name and r["sampler"] == s]
            best = min((abs(r.get("rel_err", np.inf)) if np.isfinite(r.get("rel_err", np.inf)) else np.inf
                        for r in done), default=np.inf)
            print(f"[{time.perf_counter() - T0:6.1f}s] {m.name:28s} {s:24s} {wall:5.1f}s  best|rel err| {best:.3f}"
                  + (f"  ERROR {err}" if err else ""), flush=True)
    total = time.perf_counter() - T0
    meta = dict(n=args.samples, batch=args.batch, localization=args.localization, nbeta=nbeta, chains=chains,
                burnin=burnin, draws=draws, quick=args.quick, total_s=total, jax_devices=_devices(),
                slt_jax=getattr(slt_jax, "__version__", "?"))
    out_md = args.out_md
    out_md.parent.mkdir(parents=True, exist_ok=True)
    json_path = out_md.with_suffix(".json")
    json_path.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1, default=float))
    plot_path = out_md.with_name(out_md.stem + "_rel_error.png")
    report.plot(rows, plot_path)
    recommendation = report.recommendation(rows)
    out_md.write_text(report.markdown(rows, meta, plot_path.name, recommendation))
    print()
    print(recommendation)
    print(f"\nwrote {out_md}, {json_path}, {plot_path}; total {total:.1f}s")


def _devices():
    import jax

    return [str(d) for d in jax.devices()]


if __name__ == "__main__":
    main()
