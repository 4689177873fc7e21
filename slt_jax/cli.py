"""Command line: `slt-jax demo` (the README's main job) and `slt-jax truth` (exact λ)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    import slt_jax
    from slt_jax import adapters, truth
    from slt_jax.plots import plot_trace

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scale = 0.2 if args.quick else 1.0
    steps = lambda k: max(200, int(k * scale))  # noqa: E731
    print(f"slt_jax {slt_jax.__version__} on {jax.default_backend()} ({len(jax.devices())} device(s)); results in {out}/")

    # 1. A deep linear network whose learning coefficient is known exactly.
    widths, rank = (10, 10, 10), 0
    prob = truth.make_dln(args.seed, widths, rank, num_samples=10_000, noise_std=0.0)
    print(f"\n[1/2] {prob.description}")
    t0 = time.perf_counter()
    dln = slt_jax.estimate_llc(
        prob.loss_fn, prob.params, prob.data, step_size=3e-5, localization=1.0,
        num_chains=args.chains, num_draws=steps(8000), num_burnin=steps(8000), batch_size=500,
        seed=args.seed, progress=not args.no_progress,
    )
    wall = time.perf_counter() - t0
    lam = prob.learning_coefficient
    err = (dln.llc_mean - float(lam)) / float(lam)
    print(f"exact λ = {lam} = {float(lam):.4g}   estimate λ̂ = {dln.llc_mean:.4g} ± {dln.llc_se:.2g} "
          f"(MCSE; std across chains {dln.llc_std:.3g})   error {err:+.1%}")
    print(f"wall {wall:.1f}s = compile {dln.attrs['compile_s']:.1f}s + sampling {dln.attrs['sampling_s']:.1f}s "
          f"({dln.attrs['chain_steps_per_s']:.3g} chain-steps/s)")
    dln.to_netcdf(out / "dln.nc")
    plot_trace(dln, out / "dln_trace.png", title=prob.name, truth=float(lam))

    # 2. A small MLP trained with optax, then sampled around its trained weights.
    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(16, 48, rngs=rngs)
            self.l2 = nnx.Linear(48, 4, rngs=rngs)

        def __call__(self, x):
            return self.l2(jnp.tanh(self.l1(x)))

    key_x, key_t, key_n = jax.random.split(jax.random.key(args.seed), 3)
    teacher = MLP(nnx.Rngs(args.seed + 1))
    x = jax.random.normal(key_x, (1000, 16))
    y = teacher(x) + 0.1 * jax.random.normal(key_n, (1000, 4))
    model = adapters.from_nnx(MLP(nnx.Rngs(args.seed + 2)), "squared_error")
    params = _train(model.loss_fn, model.params, (x, y), num_steps=steps(3000), optimizer=optax.adam(3e-3))
    num_params = sum(int(np.size(p)) for p in jax.tree.leaves(params))
    print(f"\n[2/2] MLP 16→48→4 (d = {num_params}) trained on n = 1000 teacher samples "
          f"(train loss {float(jnp.mean(model.loss_fn(params, (x, y)))):.4g})")
    t0 = time.perf_counter()
    mlp = slt_jax.estimate_llc(
        model.loss_fn, params, (x, y), step_size=1e-4, localization=100.0,
        num_chains=args.chains, num_draws=steps(2000), num_burnin=steps(500), batch_size=100,
        seed=args.seed, progress=not args.no_progress,
    )
    wall = time.perf_counter() - t0
    print(mlp.summary())
    print(f"wall {wall:.1f}s; for scale, a regular model of this size would have λ = d/2 = {num_params / 2:g}")
    mlp.to_netcdf(out / "mlp.nc")
    plot_trace(mlp, out / "mlp_trace.png", title="MLP 16→48→4")
    print(f"\nsaved {out / 'dln.nc'}, {out / 'mlp.nc'} (reload: slt_jax.LLCResult.from_netcdf) "
          f"and trace plots {out / 'dln_trace.png'}, {out / 'mlp_trace.png'}")
    return 0


def _train(loss_fn, params, data, *, num_steps, optimizer):
    """Full-batch training to a (local) minimum: w* for the LLC."""
    import jax
    import jax.numpy as jnp
    import optax

    def mean_loss(p):
        return jnp.mean(loss_fn(p, data))

    @jax.jit
    def run(params):
        def step(carry, _):
            p, s = carry
            g = jax.grad(mean_loss)(p)
            updates, s = optimizer.update(g, s, p)
            return (optax.apply_updates(p, updates), s), None

        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=num_steps)
        return params

    return run(params)


OBSERVABLES = ("llc", "llc_var", "wbic", "free_energy", "reweighting", "mala", "nu", "waic", "bif", "health")


def _load_problem(spec: str) -> dict:
    """`path/to/file.py:function` or `package.module:function`, called with no arguments.

    The function returns {"loss_fn", "params", "data"} and optionally "eval_sets".
    """
    import importlib
    import importlib.util

    target, sep, func = spec.rpartition(":")
    if not sep or not target or not func:
        raise SystemExit(f"--problem must look like FILE.py:FUNCTION or MODULE:FUNCTION; got {spec!r}")
    if target.endswith(".py"):
        path = Path(target)
        if not path.exists():
            raise SystemExit(f"--problem file {path} does not exist")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    problem = getattr(module, func)()
    missing = {"loss_fn", "params", "data"} - set(problem)
    if missing:
        raise SystemExit(f"{spec} returned a dict without {sorted(missing)}; it needs loss_fn, params, data.")
    return problem


def _toy_problem(args: argparse.Namespace) -> dict:
    from slt_jax import truth

    n, noise = args.num_samples, args.noise_std
    if args.toy in ("dln", "rrr"):
        if not args.widths:
            raise SystemExit(f"--toy {args.toy} needs --widths")
        prob = truth.make_dln(args.seed, tuple(args.widths), args.rank, num_samples=n, noise_std=noise)
    elif args.toy == "regular":
        widths = args.widths or [4, 3]
        prob = truth.make_regular(args.seed, widths[0], widths[-1], num_samples=n, noise_std=noise)
    else:
        if not args.powers:
            raise SystemExit("--toy normal-crossing needs --powers")
        prob = truth.make_normal_crossing(args.seed, tuple(args.powers), num_samples=n, noise_std=noise)
    return {"loss_fn": prob.loss_fn, "params": prob.params, "data": prob.data, "truth": prob.learning_coefficient,
            "name": prob.name}


# In-program evaluations each observable needs (the rest are skipped: cheaper runs).
_NEEDS_FULL_LOSS = {"llc_var", "wbic", "reweighting", "health"}


def _diagnostics_for(wanted) -> tuple:
    needs = set(wanted)
    return tuple(d for d, used in (("full_loss", bool(needs & _NEEDS_FULL_LOSS)), ("mala", "mala" in needs)) if used)


def _llc(args: argparse.Namespace) -> int:
    import json

    import jax
    import numpy as np

    import slt_jax
    from slt_jax.plots import save_standard_plots

    wanted = [o.strip() for o in args.observables.split(",") if o.strip()]
    unknown = sorted(set(wanted) - set(OBSERVABLES))
    if unknown:
        raise SystemExit(f"--observables: unknown {unknown}; choose from {', '.join(OBSERVABLES)}")
    problem = _load_problem(args.problem) if args.problem else _toy_problem(args)
    eval_sets = dict(problem.get("eval_sets") or {})
    if {"nu", "waic", "bif"} & set(wanted) and not eval_sets:
        # Per-sample observables need per-sample losses: a subset of the training data.
        n = jax.tree.leaves(problem["data"])[0].shape[0]
        take = min(n, args.eval_samples)
        eval_sets["train"] = jax.tree.map(lambda x: x[:take], problem["data"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = jax.tree.leaves(problem["data"])[0].shape[0]
    result = slt_jax.estimate_llc(
        problem["loss_fn"], problem["params"], problem["data"],
        step_size=args.step_size, localization=args.localization,
        nbeta=args.nbeta if args.nbeta in (None, "n_log_n", "batch_log_batch") else float(args.nbeta),
        num_chains=args.chains, num_draws=args.draws, num_burnin=args.burnin, thin=args.thin,
        batch_size=min(args.batch_size, n), sampler=args.sampler, seed=args.seed,
        eval_sets=eval_sets, eval_every=args.eval_every if args.eval_every else "auto",
        diagnostics=_diagnostics_for(wanted), eval_batching=args.eval_batching,
        progress=not args.no_progress,
    )
    print(result.summary())
    summary = {"name": problem.get("name", args.problem), "num_chains_used": result.num_healthy}
    if "truth" in problem:
        summary["exact_llc"] = float(problem["truth"])
        print(f"exact λ = {problem['truth']} = {float(problem['truth']):.6g}")
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
    }
    for name in wanted:
        if name == "bif":
            for es in eval_sets:
                np.save(out / f"bif_{es}.npy", result.bif(es), allow_pickle=False)
            summary["bif"] = [f"bif_{es}.npy" for es in eval_sets]
        else:
            summary[name] = values[name]()
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    result.to_netcdf(out / "result.nc")
    written = ["result.nc", "summary.json"]
    if not args.no_plots:
        written += [p.name for p in save_standard_plots(result, out)]
    print(f"wrote {', '.join(written)} to {out}/")
    return 0


def _susceptibilities(args: argparse.Namespace) -> int:
    import json

    from slt_jax.plots import plot_susceptibility_pca
    from slt_jax.susceptibility import estimate_susceptibilities

    problem = _load_problem(args.problem)
    if not problem.get("probes"):
        raise SystemExit(f"{args.problem} must also return probes ({{name: data}}) for susceptibilities.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = estimate_susceptibilities(
        problem["loss_fn"], problem["params"], problem["data"], probes=problem["probes"],
        components=problem.get("components"), convention=args.convention, eval_every=args.eval_every,
        step_size=args.step_size, localization=args.localization, num_chains=args.chains,
        num_draws=args.draws, num_burnin=args.burnin, batch_size=args.batch_size, seed=args.seed,
        progress=not args.no_progress,
    )
    result.to_netcdf(out / "susceptibilities.nc")
    aggregate = {f"{c}|{p}": v for (c, p), v in result.aggregate().items()}
    (out / "summary.json").write_text(json.dumps(
        {"aggregate_chi": aggregate, "llc": dict(zip(result.components, map(float, result.dataset["llc"].values)))},
        indent=2,
    ))
    for (component, probe), value in result.aggregate().items():
        print(f"χ[{component}, {probe}] = {value:.4g}")
    if len(result.components) >= 2 and not args.no_plots:
        plot_susceptibility_pca(result.matrix, out / "susceptibility_pca.png", component_names=result.components,
                                probe_names=list(result.probe_sets))
    print(f"wrote susceptibilities.nc, summary.json to {out}/")
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slt-jax",
        description="JAX-accelerated SGMCMC for Singular Learning Theory: local learning coefficients "
        "from many vmapped, jit-compiled chains.",
    )
    parser.add_argument(
        "--compile-cache", default=None, metavar="DIR",
        help="persistent XLA compilation cache: a folder, or 'off' (default ~/.cache/slt_jax/xla or "
        "$SLT_JAX_COMPILATION_CACHE); a repeated job with the same shapes then skips compilation",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="estimate λ̂ for a deep linear network with known λ and for a small trained MLP",
        description="Builds a deep linear network whose learning coefficient is known exactly and a "
        "small MLP trained with optax; estimates λ̂ with many chains; prints estimate vs truth with "
        "error bars and timing; saves the results (netCDF) and trace plots (PNG).",
    )
    demo.add_argument("--chains", type=int, default=16, help="chains per estimate (default 16)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--out", default="slt_jax_results/demo", help="output folder (default slt_jax_results/demo)")
    demo.add_argument("--quick", action="store_true", help="a fifth of the steps (a smoke test)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)

    llc = sub.add_parser(
        "llc",
        help="estimate λ̂ and other observables for a built-in toy model or your own problem",
        description="Estimates the LLC with many chains and any of the observables "
        f"({', '.join(OBSERVABLES)}); writes result.nc, summary.json and plots to --out. Your "
        "own problem: --problem FILE.py:FUNCTION, where FUNCTION() returns a dict with loss_fn, "
        "params, data and optionally eval_sets ({name: data}).",
    )
    src = llc.add_mutually_exclusive_group(required=True)
    src.add_argument("--problem", help="FILE.py:FUNCTION or MODULE:FUNCTION returning {loss_fn, params, data[, eval_sets]}")
    src.add_argument("--toy", choices=["dln", "rrr", "regular", "normal-crossing"], help="a built-in model with exact λ")
    llc.add_argument("--widths", type=int, nargs="+", help="toy widths, input first")
    llc.add_argument("--rank", type=int, default=0, help="toy rank (dln, rrr)")
    llc.add_argument("--powers", type=int, nargs="+", help="toy normal-crossing exponents")
    llc.add_argument("--num-samples", type=int, default=10_000, help="toy data size n (default 10000)")
    llc.add_argument("--noise-std", type=float, default=0.0, help="toy label noise (default 0: noise-free)")
    llc.add_argument("--step-size", type=float, default=3e-5, help="SGLD ε (default 3e-5)")
    llc.add_argument("--localization", type=float, default=1.0, help="γ (default 1)")
    llc.add_argument("--nbeta", default=None, help="nβ: a number, n_log_n (default) or batch_log_batch")
    llc.add_argument("--chains", type=int, default=8)
    llc.add_argument("--draws", type=int, default=2000)
    llc.add_argument("--burnin", type=int, default=1000)
    llc.add_argument("--thin", type=int, default=1)
    llc.add_argument("--batch-size", type=int, default=500)
    llc.add_argument("--sampler", default="sgld", help="sgld, rmsprop_sgld, adam_sgld, sghmc, sgnht, ...")
    llc.add_argument("--eval-every", type=int, default=None, help="draws between evaluations (default auto)")
    llc.add_argument("--eval-samples", type=int, default=1000, help="training samples used for nu/waic/bif when the problem has no eval_sets")
    llc.add_argument("--observables", default="llc,llc_var,wbic,free_energy,mala,health",
                     help=f"comma-separated, from: {', '.join(OBSERVABLES)}")
    llc.add_argument("--eval-batching", choices=["vmap", "map"], default="vmap",
                     help="evaluate chains side by side (vmap) or one after another per device (map)")
    llc.add_argument("--seed", type=int, default=0)
    llc.add_argument("--out", default="slt_jax_results/llc", help="output folder")
    llc.add_argument("--no-plots", action="store_true")
    llc.add_argument("--no-progress", action="store_true")
    llc.set_defaults(func=_llc)

    sus = sub.add_parser(
        "susceptibilities",
        help="per-component, per-probe-sample susceptibilities for your own problem",
        description="--problem FILE.py:FUNCTION returns {loss_fn, params, data, probes: {name: data}, "
        "components: {name: mask} (optional; default all weights)}. Writes susceptibilities.nc "
        "(chi per component × probe sample), summary.json and a PCA plot.",
    )
    sus.add_argument("--problem", required=True)
    sus.add_argument("--convention", choices=["slt_jax", "devinterp"], default="slt_jax")
    sus.add_argument("--step-size", type=float, default=1e-4)
    sus.add_argument("--localization", type=float, default=100.0)
    sus.add_argument("--chains", type=int, default=8)
    sus.add_argument("--draws", type=int, default=1000)
    sus.add_argument("--burnin", type=int, default=200)
    sus.add_argument("--batch-size", type=int, default=100)
    sus.add_argument("--eval-every", type=int, default=1)
    sus.add_argument("--seed", type=int, default=0)
    sus.add_argument("--out", default="slt_jax_results/susceptibilities")
    sus.add_argument("--no-plots", action="store_true")
    sus.add_argument("--no-progress", action="store_true")
    sus.set_defaults(func=_susceptibilities)

    tr = sub.add_parser(
        "truth",
        help="print an exact learning coefficient (regular, normal crossing, RRR, deep linear network)",
        description="Exact learning coefficients as fractions. Examples: `slt-jax truth dln --widths 5 3 5 "
        "--rank 0`, `slt-jax truth normal-crossing --powers 1 2`, `slt-jax truth regular --num-params 12`.",
    )
    tr.add_argument("model", choices=["regular", "normal-crossing", "rrr", "dln"])
    tr.add_argument("--widths", type=int, nargs="+", help="layer widths, input first (rrr: M H N)")
    tr.add_argument("--rank", type=int, default=0, help="rank of the true map (rrr, dln)")
    tr.add_argument("--powers", type=int, nargs="+", help="normal-crossing exponents k_i")
    tr.add_argument("--num-params", type=int, help="d for a regular model")
    tr.set_defaults(func=_truth)
    return parser


def main(argv: list[str] | None = None) -> int:
    from slt_jax.hostdevices import expose_cpu_cores

    expose_cpu_cores()  # chains on every CPU core (before jax is imported; no-op otherwise)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.compile_cache != "off":
        from slt_jax.hostdevices import enable_compilation_cache

        enable_compilation_cache(args.compile_cache or None)
    if args.command == "truth":
        need = {"dln": "widths", "rrr": "widths", "normal-crossing": "powers", "regular": "num_params"}[args.model]
        if getattr(args, need) is None:
            parser.error(f"truth {args.model} needs --{need.replace('_', '-')}")
        if args.model == "rrr" and len(args.widths) != 3:
            parser.error("truth rrr needs exactly three --widths: M H N")
    if getattr(args, "chains", 1) < 1:
        parser.error("--chains must be ≥ 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
