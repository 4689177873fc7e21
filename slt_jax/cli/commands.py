"""The command bodies: `slt-jax demo`, `llc`, `susceptibilities` and `truth` (exact λ)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slt_jax.cli.problems import (
    UsageError,
    _at_most_n,
    _check_sampler,
    _diagnostics_for,
    _library_checks,
    _load_problem,
    _num_samples,
    _observables,
    _toy_problem,
)
from slt_jax.cli.run_folder import RunFolder, _save_npy, _write_summary, run_folder

__all__ = ["_demo", "_llc", "_print_summary", "_susceptibilities", "_truth"]


def _demo(args: argparse.Namespace) -> int:
    """The DLN example end to end: train with optax (orbax checkpoints) → calibrate → sweep →
    stages, against the learned-rank steps and Aoyagi's exact final λ."""
    import jax

    import slt_jax
    from slt_jax.examples import dln

    out = Path(args.out)
    size = "full" if args.full else "small"
    print(f"slt_jax {slt_jax.__version__} on {jax.default_backend()} ({len(jax.devices())} device(s)); "
          f"the {size} deep-linear-network workflow; results in {out}/")
    print("train (optax, orbax checkpoints) -> calibrate -> sweep every checkpoint -> stages\n")
    summary = dln.run(out, small=not args.full, progress=not args.no_progress)
    print(dln.report(summary))
    print(f"\nfiles: {out / 'checkpoints'}/ (orbax), {out / 'calibration.json'}, {out / 'sweep'}/ (summary.csv, "
          f"sweep.nc, ckpt_<step>.nc, llc_vs_step.png), {out / 'summary.json'}")
    return 0


# =========================================================================================
# Commands that sample
# =========================================================================================


def _llc(args: argparse.Namespace) -> int:
    import slt_jax

    wanted = _observables(args.observables)
    _check_sampler(args.sampler)
    problem = _load_problem(args.problem) if args.problem else _toy_problem(args)
    n = _num_samples(problem)
    batch_size = _at_most_n("--batch-size", args.batch_size, n, default=500)
    eval_sets = _eval_sets_for(problem, wanted, _at_most_n("--eval-samples", args.eval_samples, n, default=1000))
    with _library_checks("estimate_llc"):
        result = slt_jax.estimate_llc(
            problem["loss_fn"], problem["params"], problem["data"],
            step_size=args.step_size, localization=args.localization, nbeta=args.nbeta,
            num_chains=args.chains, num_draws=args.draws, num_burnin=args.burnin, thin=args.thin,
            batch_size=batch_size, sampler=args.sampler, seed=args.seed,
            eval_sets=eval_sets, eval_every=args.eval_every or "auto",
            diagnostics=_diagnostics_for(wanted), eval_batching=args.eval_batching,
            progress=not args.no_progress,
        )
    _print_summary(result)
    if "truth" in problem:
        print(f"exact λ = {problem['truth']} = {float(problem['truth']):.6g}")
    out = Path(args.out)
    with run_folder(out, "llc", args.argv) as run:
        # The draws first: every observable can be recomputed from result.nc if a later step fails.
        result.to_netcdf(out / "result.nc")
        summary = {"name": problem.get("name", args.problem), "run_id": run.run_id, "num_chains_used": result.num_healthy}
        if "truth" in problem:
            summary["exact_llc"] = float(problem["truth"])
        summary.update(_llc_observables(result, wanted, eval_sets, out, run))
        _write_summary(out, summary, run)
        if not args.no_plots:
            from slt_jax.plots import save_standard_plots

            run.attempt("plots", lambda: save_standard_plots(result, out))
    print(f"wrote {', '.join(run.files)} to {out}/")
    return 0


def _eval_sets_for(problem: dict, wanted: list[str], eval_samples: int) -> dict:
    import jax

    eval_sets = dict(problem.get("eval_sets") or {})
    if {"nu", "waic", "bif"} & set(wanted) and not eval_sets:
        # Per-sample observables need per-sample losses: a subset of the training data.
        eval_sets["train"] = jax.tree.map(lambda x: x[:eval_samples], problem["data"])
    return eval_sets


def _llc_observables(result, wanted: list[str], eval_sets: dict, out: Path, run: "RunFolder") -> dict:
    """Each requested observable, or None when it fails (the failure goes to run.errors): a run
    whose chains all diverged still gets its result and summary written."""
    values = {
        "llc": lambda: {"mean": result.llc_mean, "std": result.llc_std, "se": result.llc_se, "rhat": result.rhat},
        "llc_var": lambda: result.llc_var,
        "wbic": lambda: result.wbic,
        "free_energy": lambda: result.free_energy,
        "reweighting": lambda: dict(zip(("llc", "intercept", "llc_se"), map(float, result.reweighting_llc()[:3]))),
        "mala": lambda: [float(a) for a in result.mala_acceptance],
        "nu": lambda: {name: result.singular_fluctuation(name) for name in eval_sets},
        "waic": lambda: {name: result.waic(name) for name in eval_sets},
        "health": lambda: [str(h) for h in result.health],
        "bif": lambda: [_save_npy(out / f"bif_{es}.npy", result.bif(es)).name for es in eval_sets],
    }
    return {name: run.attempt(name, values[name]) for name in wanted}


def _susceptibilities(args: argparse.Namespace) -> int:
    from slt_jax.susceptibility import estimate_susceptibilities

    problem = _load_problem(args.problem)
    if not problem.get("probes"):
        raise UsageError(f"--problem {args.problem} must also return probes ({{name: data}}) for susceptibilities")
    n = _num_samples(problem)
    batch_size = _at_most_n("--batch-size", args.batch_size, n, default=100)
    with _library_checks("estimate_susceptibilities"):
        result = estimate_susceptibilities(
            problem["loss_fn"], problem["params"], problem["data"], probes=problem["probes"],
            components=problem.get("components"), convention=args.convention, eval_every=args.eval_every,
            step_size=args.step_size, localization=args.localization, num_chains=args.chains,
            num_draws=args.draws, num_burnin=args.burnin, batch_size=batch_size, seed=args.seed,
            progress=not args.no_progress,
        )
    out = Path(args.out)
    with run_folder(out, "susceptibilities", args.argv) as run:
        result.to_netcdf(out / "susceptibilities.nc")
        aggregate = run.attempt("aggregate_chi", result.aggregate) or {}
        summary = {
            "run_id": run.run_id,
            "aggregate_chi": {f"{c}|{p}": v for (c, p), v in aggregate.items()},
            "llc": dict(zip(result.components, map(float, result.dataset["llc"].values))),
        }
        _write_summary(out, summary, run)
        for (component, probe), value in aggregate.items():
            print(f"χ[{component}, {probe}] = {value:.4g}")
        if len(result.components) >= 2 and not args.no_plots:
            run.attempt("plots", lambda: _susceptibility_plot(result, out))
    print(f"wrote {', '.join(run.files)} to {out}/")
    return 0


def _susceptibility_plot(result, out: Path) -> Path:
    from slt_jax.plots import plot_susceptibility_pca

    return plot_susceptibility_pca(result.matrix, out / "susceptibility_pca.png", component_names=result.components,
                                   probe_names=list(result.probe_sets))


def _print_summary(result) -> None:
    try:
        print(result.summary())
    except Exception as e:  # a failed statistic must not lose the run: it is written next
        print(f"(no summary: {type(e).__name__}: {e})", file=sys.stderr)


# =========================================================================================
# Exact learning coefficients
# =========================================================================================


def _truth(args: argparse.Namespace) -> int:
    from slt_jax import truth

    if args.model == "dln":
        value = truth.dln_learning_coefficient(args.widths, args.rank)
    elif args.model == "rrr":
        m, h, n = args.widths
        value = truth.rrr_learning_coefficient(m, h, n, args.rank)
    elif args.model == "normal-crossing":
        value = truth.normal_crossing_learning_coefficient(args.powers)
    else:
        value = truth.regular_learning_coefficient(args.num_params)
    print(f"{value} = {float(value):.6g}")
    return 0
