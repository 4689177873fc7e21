"""Sampler benchmark (issue 11 item 1): every registered sampler × a step-size grid on models with
exact λ, with references that split each λ̂'s error into sampler bias and estimator bias.

    .venv/bin/python benchmarks/samplers/run.py            # CPU tier + size tier to 1e4 params (< 15 min on 2 cores)
    .venv/bin/python benchmarks/samplers/run.py --quick    # a smoke run (~2 min)
    .venv/bin/python benchmarks/samplers/run.py --max-params 10000000   # size tier to 1e7 (accelerator only above 1e6)

For each (model, sampler) ONE `estimate_llc_grid` call runs the sampler's ε grid × --chains
chains. Per model, references: the exact posterior expectation E_p[nβ(L_n − L_n(w*))]
(quadrature for normal crossings, closed form for the linear model) or NUTS (RRR, DLN); NUTS
runs on every model so its agreement with the exact values is visible. For SGLD on quadratic
losses, the chain's exact stationary value at that ε and batch size splits the sampler bias into
discretization and non-mixing. Step-size rules and the recommended sampler are chosen on one
grid's runs and confirmed on fresh runs with a new seed (rules.py). Writes results.json, results.md,
results_rel_error.png and results_size.png; report.py re-renders them from results.json.
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
import references  # noqa: E402
import report  # noqa: E402
import rules  # noqa: E402

import slt_jax  # noqa: E402
from slt_jax import atomic  # noqa: E402
from slt_jax import observables as obs  # noqa: E402
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer models, chains and steps (a smoke run)")
    p.add_argument("--out-md", type=Path, default=HERE / "results.md")
    p.add_argument("--samples", type=int, default=1000, help="n of the CPU-tier models")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--localization", type=float, default=1.0, help="γ")
    p.add_argument("--noise-std", type=float, default=1.0,
                   help="label noise of the CPU-tier models (0: noise-free, w* is then also the minimizer of L_n)")
    p.add_argument("--chains", type=int, default=None, help="per configuration of the ε grid")
    p.add_argument("--confirm-chains", type=int, default=None, help="per model in the confirmation runs")
    p.add_argument("--burnin", type=int, default=None)
    p.add_argument("--draws", type=int, default=None)
    p.add_argument("--samplers", default=",".join(SAMPLERS), help="comma-separated names")
    p.add_argument("--models", default=None, help="comma-separated substrings of CPU-tier model names")
    p.add_argument("--max-params", type=float, default=None,
                   help=f"size tier up to this many parameters (default {M.CPU_MAX_PARAMS:,} on CPU, 1e7 on an "
                        f"accelerator; above {M.ACCELERATOR_ONLY_ABOVE:,} needs an accelerator; 0: no size tier)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=20, help="draws between full-loss / MALA evaluations")
    p.add_argument("--verbose", action="store_true", help="show slt_jax's per-call health warnings")
    args = p.parse_args(argv)
    args.chains = args.chains or (8 if args.quick else 32)
    args.confirm_chains = args.confirm_chains or (8 if args.quick else 64)
    if min(args.chains, args.confirm_chains) < 2:
        p.error(f"--chains and --confirm-chains must be ≥ 2 (R̂, standard errors), got {args.chains}, {args.confirm_chains}")
    args.burnin = args.burnin if args.burnin is not None else (500 if args.quick else 4000)
    args.draws = args.draws or (500 if args.quick else 4000)
    args.samplers = [s for s in args.samplers.split(",") if s]
    unknown = sorted(set(args.samplers) - set(SAMPLERS))
    if unknown:
        p.error(f"--samplers: unknown {unknown}; the registry has {sorted(SAMPLERS)}")
    import jax

    args.accelerator = jax.default_backend() != "cpu"
    if args.max_params is None:
        args.max_params = 0 if args.quick else (1e7 if args.accelerator else M.CPU_MAX_PARAMS)
    if args.max_params > M.ACCELERATOR_ONLY_ABOVE and not args.accelerator:
        p.error(f"--max-params {args.max_params:g}: tiers above {M.ACCELERATOR_ONLY_ABOVE:,} parameters run only on an "
                f"accelerator (jax backend here: {jax.default_backend()}); pass ≤ {M.ACCELERATOR_ONLY_ABOVE:g}")
    return args


def run_grid(model, sampler, *, nbeta, args, chains, burnin, draws, eval_every, diagnostics, grid_c=None, seed=None):
    """One estimate_llc_grid call over the sampler's ε grid (or grid_c); one row per ε."""
    grid_c = grid_c or GRIDS.get(sampler, SGLD_GRID)
    seed = args.seed if seed is None else seed
    eps = [c / nbeta for c in grid_c]
    t = time.perf_counter()
    err, res = None, None
    try:
        res = slt_jax.estimate_llc_grid(
            model.problem.loss_fn, [model.problem.params], model.problem.data,
            step_size=eps, localization=args.localization, nbeta=nbeta,
            num_chains=chains, num_draws=draws, num_burnin=burnin, batch_size=args.batch,
            sampler=sampler, seed=seed, progress=False, diagnostics=diagnostics, eval_every=eval_every,
        )
    except Exception as e:  # a sampler that fails is a result, not a crash
        err = f"{type(e).__name__}: {e}"
    wall = time.perf_counter() - t
    steps = burnin + draws
    rows = []
    for c, e in zip(grid_c, eps):
        row = dict(model=model.name, family=model.family, d=model.d, n=int(model.problem.data["x"].shape[0]),
                   exact=model.exact, sampler=sampler, c=c, eps=e, wall_s=wall, chains=chains, steps=steps, error=err,
                   compile_s=res.attrs.get("compile_s") if res is not None else None)
        if res is not None:
            row.update(_row_estimates(res.sel(step_size=e), chains, steps, model.exact))
        rows.append(row)
    return rows


def _row_estimates(r, chains, steps, exact):
    """λ̂ from the full-data loss evaluations where recorded (same expectation as the minibatch
    estimator, E[L_B(w_t)] = E[L_n(w_t)], without the minibatch noise that swamps λ ≈ 0.1–0.5 on
    the crossings), else from the minibatch losses; both are kept."""
    healthy = np.asarray(r.healthy, bool)
    minibatch = float(r.llc_mean)
    mala = r.mala_acceptance
    ds = r.dataset
    out = dict(llc_minibatch=minibatch, mcse_minibatch=float(r.llc_se), healthy=int(healthy.sum()),
               mala=float(np.nanmean(mala)) if np.isfinite(mala).any() else float("nan"))
    if "eval_loss" in ds and ds["eval_loss"].shape[1] >= 4 and np.isfinite(ds["eval_loss"].values[healthy]).any():
        trace = r.nbeta * (ds["eval_loss"].values.astype(np.float64) - r.init_loss)
        per_chain = np.where(healthy, trace.mean(axis=1), np.nan)
        ess = obs.ess_bulk(trace[healthy]) if healthy.any() else float("nan")
        lam = float(np.nanmean(per_chain)) if healthy.any() else float("nan")
        mcse = obs.mcse_mean(trace[healthy]) if healthy.any() else float("nan")
        source = "full_loss"
    else:
        per_chain = np.where(healthy, r.llc_per_chain, np.nan)
        ess, lam, mcse, source = float(r.ess), minibatch, float(r.llc_se), "minibatch"
    out.update(llc=lam, mcse=mcse, llc_source=source, rel_err=(lam - exact) / exact, llc_per_chain=per_chain.tolist(),
               ess_per_grad=ess / (chains * steps) if np.isfinite(ess) else float("nan"))
    return out


def cpu_tier(args, nbeta):
    ms = M.models(args.samples, quick=args.quick, seed=args.seed, noise_std=args.noise_std)
    if args.models:
        ms = [m for m in ms if any(w in m.name for w in args.models.split(","))]
    refs, rows = {}, []
    for m in ms:
        nuts = references.NUTS_QUICK if args.quick else references.nuts_settings(m.d)
        refs[m.name] = ref = references.compute(m, nbeta=nbeta, localization=args.localization, nuts=nuts,
                                                seed=args.seed, noise_std=args.noise_std)
        _log(f"{m.name:28s} references: exact posterior {_fmt(ref['exact_posterior'])} ({ref['exact_posterior_kind']}), "
             f"NUTS {ref['nuts']:.4g} ± {ref['nuts_se']:.2g} (R̂ {ref['nuts_rhat']:.3f}, {ref['nuts_divergences']} div, "
             f"{ref['nuts_wall_s']:.0f}s), λ = {m.exact:g}")
        for s in args.samplers:
            rs = run_grid(m, s, nbeta=nbeta, args=args, chains=args.chains, burnin=args.burnin, draws=args.draws,
                          eval_every=args.eval_every, diagnostics=("full_loss", "mala"))
            stationary = (references.stationary_values(m, nbeta=nbeta, localization=args.localization,
                                                       step_sizes=[r["eps"] for r in rs], batch_size=args.batch)
                          if s == "sgld" else None)
            for r in rs:
                _annotate(r, ref)
                if stationary is not None:
                    st = references.finite_or_none(stationary[r["eps"]])
                    r["stationary"] = st
                    r["discretization"] = None if st is None else (st - ref["reference"]) / ref["reference"]
            rules.sensitivity([r for r in rs if "llc" in r])
            rows += rs
            best = min((abs(r.get("sampler_err", np.inf)) for r in rs if np.isfinite(r.get("sampler_err", np.inf))),
                       default=np.inf)
            _log(f"{m.name:28s} {s:24s} {rs[0]['wall_s']:5.1f}s  best |sampler err| {best:.3f}"
                 + (f"  ERROR {rs[0]['error']}" if rs[0]["error"] else ""))
    return ms, refs, rows


def _annotate(row, ref):
    row.update(reference=ref["reference"], reference_kind=ref["reference_kind"])
    if "llc" in row:
        row["sampler_err"] = (row["llc"] - ref["reference"]) / ref["reference"]


def confirm(args, ms, refs, recs, nbeta):
    """Fresh runs (new seed, --confirm-chains chains) of each model's recommended (sampler, ε): the
    held-out check of the recommendation, per family and for the one-rule-for-all default."""
    rows = []
    for m in ms:
        for scope in dict.fromkeys([m.family, "all"]):
            rec = recs.get(scope)
            if rec is None or rec["picks"].get(m.name) is None:
                continue
            c = rec["picks"][m.name]
            # d ≤ 10 models are cheap and their λ ≈ 0.1–5 needs many chains for a 5% error bar.
            chains = args.confirm_chains * (4 if m.d <= 10 else 1)
            (r,) = run_grid(m, rec["sampler"], nbeta=nbeta, args=args, chains=chains, burnin=args.burnin,
                            draws=args.draws, eval_every=args.eval_every, diagnostics=("full_loss", "mala"),
                            grid_c=[c], seed=args.seed + 1)
            _annotate(r, refs[m.name])
            r.update(scope=scope, rule=rules.describe(rec))
            rows.append(r)
            _log(f"confirm {m.name:28s} [{scope}] {rec['sampler']} ε·nβ={c:g}: λ̂ {r.get('llc', float('nan')):.4g} "
                 f"sampler err {r.get('sampler_err', float('nan')):+.3f}, vs λ {r.get('rel_err', float('nan')):+.3f}")
    return rows


def size_tier(args, recommended: dict | None):
    """The recommended sampler (and SGLD) on DLNs of growing size, error vs λ (no reference)."""
    ms = M.size_tier(int(args.max_params), seed=args.seed)
    samplers = list(dict.fromkeys(["sgld"] + ([recommended["sampler"]] if recommended else [])))
    chains, burnin, draws = 8, args.burnin, args.draws
    rows = []
    for m in ms:
        nbeta = M.default_nbeta(m.problem.data["x"].shape[0])
        for s in samplers:
            # Full-data losses at n = 10 d would cost more than the sampling; MALA probes are cheap.
            rs = run_grid(m, s, nbeta=nbeta, args=args, chains=chains, burnin=burnin, draws=draws,
                          eval_every=max(args.eval_every, draws // 20), diagnostics=("mala",))
            rows += rs
            _log(f"size tier {m.name:28s} d={m.d:>9,} n={rs[0]['n']:>9,} {s:22s} {rs[0]['wall_s']:6.1f}s")
    return rows


def main(argv=None):
    args = parse_args(argv)
    if not args.verbose:  # unhealthy chains are counted in the table ("healthy") instead
        warnings.filterwarnings("ignore", category=RuntimeWarning)
    nbeta = M.default_nbeta(args.samples)
    ms, refs, rows = cpu_tier(args, nbeta)
    recs = rules.recommendations(rows)
    confirm_rows = confirm(args, ms, refs, recs, nbeta)
    size_rows = size_tier(args, recs.get("dln") or recs["all"]) if args.max_params > 0 else []
    meta = dict(n=args.samples, batch=args.batch, localization=args.localization, noise_std=args.noise_std, nbeta=nbeta, chains=args.chains,
                confirm_chains=args.confirm_chains, burnin=args.burnin, draws=args.draws, quick=args.quick, max_params=args.max_params,
                total_s=time.perf_counter() - T0, jax_devices=_devices(), command=" ".join(sys.argv),
                slt_jax=getattr(slt_jax, "__version__", "?"))
    blob = dict(meta=meta, references=refs, rows=rows, confirm_rows=confirm_rows, size_rows=size_rows)
    out_md = args.out_md
    out_md.parent.mkdir(parents=True, exist_ok=True)
    json_path = out_md.with_suffix(".json")
    atomic.write_text(json_path, json.dumps(blob, indent=1, default=_jsonable))  # never half-written
    text = report.render(blob, out_md)
    print()
    print(text.split("## Per model")[0])
    print(f"wrote {out_md}, {json_path}; total {meta['total_s']:.0f}s")


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(type(x))


def _fmt(x):
    return "—" if x is None else f"{x:.4g}"


def _log(msg):
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


def _devices():
    import jax

    return [str(d) for d in jax.devices()]


if __name__ == "__main__":
    main()
