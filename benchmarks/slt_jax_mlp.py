"""slt_jax side of the MLP LLC benchmark (workload in workload_mlp.py).

    .venv/bin/python benchmarks/slt_jax_mlp.py --chains 16 --draws 2000 --json-out r.json

Writes chain-steps/s excluding compilation, compile time, and λ̂ as JSON. Run it through
run_mlp_comparison.py for the fresh-process end-to-end wall time and the devinterp ratio.
"""

import argparse
import sys
import time
from pathlib import Path

T_START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from slt_jax.hostdevices import expose_cpu_cores  # noqa: E402  (must run before jax is imported)

expose_cpu_cores()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload_mlp as W  # noqa: E402
from bench_json import emit  # noqa: E402

import slt_jax  # noqa: E402


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
    args = p.parse_args()

    w = W.make_workload()
    params = {k: jnp.asarray(v) for k, v in w["params"].items()}
    r = slt_jax.estimate_llc(
        make_loss(w["activation"]), params, (w["x"], w["y"]),
        step_size=W.EPS, localization=W.GAMMA, nbeta=W.NBETA,
        num_chains=args.chains, num_draws=args.draws, num_burnin=W.NUM_BURNIN_STEPS,
        thin=W.NUM_STEPS_BW_DRAWS, batch_size=W.BATCH, seed=0, progress=False,
        eval_every=None if args.no_eval else "auto",
    )
    out = {
        "framework": "slt_jax",
        "version": slt_jax.__version__,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        "chains": args.chains,
        "draws": args.draws,
        "compile_s": r.attrs["compile_s"],
        "sampling_s": r.attrs["sampling_s"],
        "chain_steps_per_s": r.attrs["chain_steps_per_s"],
        "llc_mean": r.llc_mean,
        "llc_std": r.llc_std,
        "llc_var": r.llc_var,
        "full_data_evals": not args.no_eval,
        "in_process_s": time.perf_counter() - T_START,
    }
    emit(out, args.json_out)


if __name__ == "__main__":
    main()
