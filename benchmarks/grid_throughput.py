"""Grid throughput: a 3×3×3 ε×γ×nβ grid × 8 chains in one program vs one 216-chain run.

    .venv/bin/python benchmarks/grid_throughput.py [--draws 1000] [--repeats 3] [--json-out F]
    .venv/bin/python benchmarks/grid_throughput.py --quick      # seconds: checks the plumbing

Workload: benchmarks/workload_mlp.py (MLP 16->48->4, n=1000, batch 100, SGLD). Both runs do the
peers' work only (loss per draw: diagnostics=(), draw_diagnostics=False, eval_every=None), so
the same number of chain-steps of the same model, once with 27 configurations laid along the
chain axis (`slt_jax.estimate_llc_grid`, each chain reading its own ε, γ, nβ as data) and once
with one configuration for all 216 chains (`slt_jax.estimate_llc`). If the grid costs nothing
extra, the two chain-steps/s agree.

In one process: a first call of each (compilation: attrs compile_s; with hyperparameters as
data the two may share one compiled program, so the first of them pays it: --grid-first picks
which), then --repeats calls of each, alternating (single, grid, single, ...; seeds 1, 2, ...),
whose sampling times (attrs sampling_s; where a result lacks it, the call's wall time less
compile_s, said so on stderr) give the chain-steps/s (median). chain_steps_per_s_wall is the
same from wall time less compile_s for both. Needs `slt_jax.estimate_llc_grid`; says so and
exits 2 without it.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

T_START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from slt_jax.hostdevices import expose_cpu_cores  # noqa: E402  (must run before jax is imported)

expose_cpu_cores()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload_mlp as W  # noqa: E402
from bench_json import emit  # noqa: E402
from slt_jax_mlp import make_loss  # noqa: E402

import slt_jax  # noqa: E402

PEER_WORK = dict(diagnostics=(), draw_diagnostics=False, eval_every=None, progress=False)


def floats(s):
    return [float(v) for v in s.split(",")]


def chain_steps(chains, draws):
    return chains * (W.NUM_BURNIN_STEPS + draws * W.NUM_STEPS_BW_DRAWS)


def timed(fn, **kw):
    t = time.perf_counter()
    r = fn(**kw)
    return r, time.perf_counter() - t


def sampling_time(result, wall):
    """(seconds, source): attrs sampling_s; else, for a result without it, the call's wall time
    less its compile_s (an upper bound on sampling: it includes the call's host overhead)."""
    if "sampling_s" in result.attrs:
        return result.attrs["sampling_s"], "attrs.sampling_s"
    return wall - (result.attrs.get("compile_s") or 0.0), "wall - attrs.compile_s"


def summarize(kind, first, first_wall, reps, chains, draws):
    """first: the first call's result; reps: [(result, wall)] of the timed repeats."""
    timed_ = [sampling_time(r, wall) for r, wall in reps]
    sampling = [t for t, _ in timed_]
    sources = sorted({src for _, src in timed_})
    if sources != ["attrs.sampling_s"]:
        print(f"NOTE: {kind}: result.attrs has no sampling_s; chain-steps/s from {', '.join(sources)}",
              file=sys.stderr)
    rates = [chain_steps(chains, draws) / s for s in sampling]
    out = {
        "kind": kind,
        "chains_total": chains,
        "draws": draws,
        "first_call_s": first_wall,
        "first_compile_s": first.attrs.get("compile_s"),
        "first_sampling_s": first.attrs.get("sampling_s"),
        "sampling_source": sources,
        "program_cache_hit": [r.attrs.get("program_cache_hit") for r, _ in reps],
        "repeat_call_s": [w for _, w in reps],
        "repeat_compile_s": [r.attrs.get("compile_s") for r, _ in reps],
        "repeat_sampling_s": sampling,
        "chain_steps_per_s": statistics.median(rates) if rates else None,
        "chain_steps_per_s_range": [min(rates), max(rates)] if rates else None,
        "attrs_chain_steps_per_s": [r.attrs.get("chain_steps_per_s") for r, _ in reps],
        # the same for both kinds whatever attrs hold: call wall time less compile_s
        "chain_steps_per_s_wall": statistics.median(
            chain_steps(chains, draws) / (w - (r.attrs.get("compile_s") or 0.0)) for r, w in reps) if reps else None,
        "first_program_cache_hit": first.attrs.get("program_cache_hit"),
    }
    return out


def grid_llc_table(result):
    """λ̂ mean per configuration, if the GridResult exposes it as an xarray object."""
    for name in ("llc_mean", "llc"):
        v = getattr(result, name, None)
        if v is None:
            continue
        try:
            v = v() if callable(v) else v
            arr = np.asarray(getattr(v, "values", v), dtype=np.float64)
            return {"name": name, "dims": list(getattr(v, "dims", [])), "values": arr.tolist()}
        except Exception as e:  # pragma: no cover - the API is new: report, don't fail
            return {"name": name, "error": repr(e)}
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--step-sizes", type=floats, default=[5e-5, W.EPS, 2e-4], help="comma-separated ε values")
    p.add_argument("--localizations", type=floats, default=[30.0, W.GAMMA, 300.0], help="comma-separated γ")
    p.add_argument("--nbetas", type=floats, default=[W.NBETA / 2, W.NBETA, 2 * W.NBETA], help="comma-separated nβ")
    p.add_argument("--chains-per-config", type=int, default=8)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3, help="timed calls of each after the first")
    p.add_argument("--grid-first", action="store_true", help="first call of the grid before the single run's "
                   "(the first pays the compilation when both share one program)")
    p.add_argument("--quick", action="store_true", help="20 draws, 1 repeat: checks the plumbing")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args()
    if args.quick:
        args.draws, args.repeats = 20, 1

    grid_fn = getattr(slt_jax, "estimate_llc_grid", None)
    if grid_fn is None:
        msg = (f"slt_jax {slt_jax.__version__} ({Path(slt_jax.__file__).parent}) has no estimate_llc_grid: "
               "this benchmark needs the grid API (issue #9). Nothing was measured.")
        print(msg, file=sys.stderr)
        emit({"benchmark": "grid_throughput", "error": msg}, args.json_out)
        sys.exit(2)

    w = W.make_workload()
    params = {k: jnp.asarray(v) for k, v in w["params"].items()}
    loss_fn = make_loss(w["activation"])
    data = (w["x"], w["y"])
    num_configs = len(args.step_sizes) * len(args.localizations) * len(args.nbetas)
    total = num_configs * args.chains_per_config
    common = dict(num_draws=args.draws, num_burnin=W.NUM_BURNIN_STEPS, thin=W.NUM_STEPS_BW_DRAWS,
                  batch_size=W.BATCH, **PEER_WORK)

    def single(seed):
        return slt_jax.estimate_llc(loss_fn, params, data, step_size=W.EPS, localization=W.GAMMA,
                                    nbeta=W.NBETA, num_chains=total, seed=seed, **common)

    def grid(seed):
        return grid_fn(loss_fn, [params], data, step_size=args.step_sizes, localization=args.localizations,
                       nbeta=args.nbetas, num_chains=args.chains_per_config, seed=seed, **common)

    load0 = os.getloadavg()[0]
    # Hyperparameters are data in the grid engine: the single run and the grid may share one
    # compiled program (same chain count), so whichever runs first pays the compilation.
    if args.grid_first:
        first_grid, fg_wall = timed(grid, seed=0)
        first_single, fs_wall = timed(single, seed=0)
    else:
        first_single, fs_wall = timed(single, seed=0)
        first_grid, fg_wall = timed(grid, seed=0)
    reps_single, reps_grid = [], []
    for i in range(args.repeats):
        reps_single.append(timed(single, seed=1 + i))
        reps_grid.append(timed(grid, seed=1 + i))
    load1 = os.getloadavg()[0]

    s = summarize("single", first_single, fs_wall, reps_single, total, args.draws)
    g = summarize("grid", first_grid, fg_wall, reps_grid, total, args.draws)
    g["configs"] = num_configs
    g["chains_per_config"] = args.chains_per_config
    g["llc_per_config"] = grid_llc_table(first_grid)
    s["llc_mean"] = float(first_single.llc_mean)
    out = {
        "benchmark": "grid_throughput",
        "slt_jax": slt_jax.__version__,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        "workload": W.describe() | {"activation": w["activation"]},
        "grid": {"step_size": args.step_sizes, "localization": args.localizations, "nbeta": args.nbetas},
        "single_config": {"step_size": W.EPS, "localization": W.GAMMA, "nbeta": W.NBETA},
        "work": "loss only (diagnostics=(), draw_diagnostics=False, eval_every=None)",
        "repeats": args.repeats,
        "first_calls_order": "grid, single" if args.grid_first else "single, grid",
        "single": s,
        "grid_run": g,
        "grid_over_single_throughput": (g["chain_steps_per_s"] / s["chain_steps_per_s"]
                                        if g["chain_steps_per_s"] and s["chain_steps_per_s"] else None),
        "loadavg_1min_before_after": [load0, load1],
        "in_process_s": time.perf_counter() - T_START,
    }
    emit(out, args.json_out)
    print(f"\n{total} chains × {args.draws} draws: single configuration {s['chain_steps_per_s']:,.0f} "
          f"chain-steps/s (first call {s['first_call_s']:.2f} s, compile {s['first_compile_s']:.2f} s); "
          f"{num_configs}-configuration grid × {args.chains_per_config} chains {g['chain_steps_per_s']:,.0f} "
          f"chain-steps/s (first call {g['first_call_s']:.2f} s, compile {g['first_compile_s']:.2f} s); "
          f"grid/single = {out['grid_over_single_throughput']:.2f} "
          f"(by call wall time less compile: {g['chain_steps_per_s_wall'] / s['chain_steps_per_s_wall']:.2f})",
          file=sys.stderr)


if __name__ == "__main__":
    main()
