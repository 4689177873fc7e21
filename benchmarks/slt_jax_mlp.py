"""slt_jax side of the MLP LLC benchmark (workload in workload_mlp.py).

    .venv/bin/python benchmarks/slt_jax_mlp.py --chains 16 --draws 2000 --json-out r.json

Writes chain-steps/s excluding compilation, compile time, and λ̂ as JSON. Run it through
run_mlp_comparison.py for the fresh-process end-to-end wall time and the devinterp ratio, or
run_peer_comparison.py for first/second-call times against canonical-interp and devinterp.

Work per step: by default estimate_llc's defaults (full-data evaluations every "auto" draws,
MALA probe, per-draw diagnostics). --no-eval drops the evaluations only; --peer-work does what
devinterp and canonical-interp do and no more: the minibatch loss alone (diagnostics=(),
draw_diagnostics=False, eval_every=None).
--calls 2 runs two identical estimates in this process (seeds 0 and 1): first_call_s and
second_call_s are their wall times around estimate_llc; the top-level compile_s, sampling_s and
chain_steps_per_s are the first call's attrs, second_* the second's.
"""

import argparse
import sys
import time
from pathlib import Path

T_START = time.perf_counter()
T_START_EPOCH = time.time()
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from slt_jax.hostdevices import expose_cpu_cores  # noqa: E402  (must run before jax is imported)

expose_cpu_cores()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload_mlp as W  # noqa: E402
from bench_json import emit  # noqa: E402

import slt_jax  # noqa: E402

IMPORT_S = time.perf_counter() - T_START


def make_loss(activation):
    act = jnp.tanh if activation == "tanh" else jax.nn.relu

    def loss_fn(params, batch):
        x, y = batch
        pred = act(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
        return jnp.mean((pred - y) ** 2, axis=-1)  # torch MSELoss convention, per sample

    return loss_fn


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--draws", type=int, default=W.DRAWS)
    p.add_argument("--json-out", type=Path)
    p.add_argument("--no-eval", action="store_true", help="skip the full-data evaluations (variance-based λ̂)")
    p.add_argument("--peer-work", action="store_true",
                   help="the peers' work only: minibatch loss per draw (diagnostics=(), "
                        "draw_diagnostics=False, eval_every=None)")
    p.add_argument("--calls", type=int, default=1, help="identical estimates in this process (seeds seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile-cache", default=None,
                   help="turn on jax's persistent compilation cache in this folder (default: whatever "
                        "slt_jax does; the rewritten engine turns one on, see SLT_JAX_COMPILATION_CACHE)")
    args = p.parse_args()

    if args.compile_cache:
        from slt_jax.hostdevices import enable_compilation_cache

        enable_compilation_cache(args.compile_cache)
    if args.peer_work:
        work = dict(eval_every=None, diagnostics=(), draw_diagnostics=False)
    else:
        work = dict(eval_every=None if args.no_eval else "auto")

    w = W.make_workload()
    params = {k: jnp.asarray(v) for k, v in w["params"].items()}
    loss_fn = make_loss(w["activation"])

    def one_call(seed):
        t = time.perf_counter()
        r = slt_jax.estimate_llc(
            loss_fn, params, (w["x"], w["y"]),
            step_size=W.EPS, localization=W.GAMMA, nbeta=W.NBETA,
            num_chains=args.chains, num_draws=args.draws, num_burnin=W.NUM_BURNIN_STEPS,
            thin=W.NUM_STEPS_BW_DRAWS, batch_size=W.BATCH, seed=seed, progress=False, **work,
        )
        llc_mean = float(r.llc_mean)  # the result is on the host: the call is over
        return r, time.perf_counter() - t, time.time(), llc_mean

    calls = [one_call(args.seed + i) for i in range(args.calls)]
    r, first_call_s, first_done, _ = calls[0]
    second = calls[1] if len(calls) > 1 else None
    out = {
        "framework": "slt_jax",
        "version": slt_jax.__version__,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        "chains": args.chains,
        "draws": args.draws,
        "work": "peer" if args.peer_work else ("no-eval" if args.no_eval else "default"),
        "import_s": IMPORT_S,
        "start_epoch": T_START_EPOCH,
        "first_result_epoch": first_done,
        "first_call_s": first_call_s,
        "second_call_s": second[1] if second else None,
        "compile_s": r.attrs["compile_s"],
        "sampling_s": r.attrs["sampling_s"],
        "chain_steps_per_s": r.attrs["chain_steps_per_s"],
        "second_compile_s": second[0].attrs["compile_s"] if second else None,
        "second_sampling_s": second[0].attrs["sampling_s"] if second else None,
        "second_chain_steps_per_s": second[0].attrs["chain_steps_per_s"] if second else None,
        "second_llc_mean": second[3] if second else None,
        "llc_mean": r.llc_mean,
        "llc_std": r.llc_std,
        "llc_var": r.llc_var,
        "full_data_evals": work["eval_every"] is not None,
        "compile_cache": args.compile_cache,
        "jax_compilation_cache_dir": jax.config.jax_compilation_cache_dir,  # after the calls
        "in_process_s": time.perf_counter() - T_START,
    }
    emit(out, args.json_out)


if __name__ == "__main__":
    main()
