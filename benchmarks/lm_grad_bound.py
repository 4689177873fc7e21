"""The ceiling for any JAX SGLD engine on the tiny-GPT-2 workload on this machine.

    .venv/bin/python benchmarks/lm_grad_bound.py --chains 4 --steps 300 --json-out b.json

A bare jitted `lax.scan` whose body, vmapped over chains, only draws a minibatch and takes
`value_and_grad` of the workload's loss (slt_jax_lm.loss_fn, same weights and tokens); chains
split over the CPU cores as XLA devices, as slt_jax runs them. No noise, no update, no records,
no evaluations: chain-steps/s of this program bound what slt_jax can reach on this model here,
so run_lm_comparison.py can state how far a ratio target is reachable at all. The gradient
gets the same CPU matmul layout rewrite as estimate_llc (slt_jax.cpu_dots; `--xla-layout`
measures XLA's own).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from slt_jax.hostdevices import expose_cpu_cores  # noqa: E402  (before jax starts)

expose_cpu_cores()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload_lm as W  # noqa: E402
from bench_json import emit  # noqa: E402
from slt_jax_lm import loss_fn  # noqa: E402

from slt_jax import cpu_dots, cpu_rng  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chains", type=int, default=W.NUM_CHAINS)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--json-out", type=Path)
    p.add_argument("--xla-layout", action="store_true", help="without slt_jax.cpu_dots' rewrite")
    args = p.parse_args()
    cpu_rng.install()  # the same random-number lowering estimate_llc uses

    wl = W.make_workload()
    params = {k: jnp.asarray(v) for k, v in wl["params"].items()}
    tokens = jnp.asarray(wl["tokens"], jnp.int32)
    devices = jax.devices()
    chains = -(-args.chains // len(devices)) * len(devices)
    grad = jax.value_and_grad(lambda w, batch: jnp.mean(loss_fn(w, batch)))
    rewrite = not args.xla_layout and cpu_dots.enabled(devices[0].platform)
    if rewrite:
        grad = cpu_dots.canonical_dots(grad)

    def one_chain(w, key, step):
        idx = jax.random.randint(jax.random.fold_in(key, step), (W.BATCH,), 0, tokens.shape[0])
        loss, g = grad(w, tokens[idx])
        return jax.tree.map(lambda a, b: a - 1e-30 * b, w, g), loss  # keep the gradient live

    step = jax.vmap(one_chain, in_axes=(0, 0, None))

    def run(w, keys, first):
        return jax.lax.scan(lambda w, s: step(w, keys, s), w, first + jnp.arange(args.steps))

    mesh = jax.sharding.Mesh(np.array(devices), ("chain",), axis_types=(jax.sharding.AxisType.Auto,))
    on_chains = NamedSharding(mesh, P("chain"))
    w = jax.device_put(jax.tree.map(lambda x: jnp.broadcast_to(x, (chains,) + x.shape) + 0, params), on_chains)
    keys = jax.device_put(jax.random.split(jax.random.key(0), chains), on_chains)
    t0 = time.perf_counter()
    exe = jax.jit(run, donate_argnums=0).lower(w, keys, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - t0
    w, _ = exe(w, keys, jnp.int32(0))  # warm-up
    jax.block_until_ready(w)
    best = 0.0
    for r in range(3):
        t0 = time.perf_counter()
        w, _ = exe(w, keys, jnp.int32((r + 1) * args.steps))
        jax.block_until_ready(w)
        best = max(best, args.chains * args.steps / (time.perf_counter() - t0))
    out = {"framework": "bare JAX (grad only)", "chains": args.chains, "steps": args.steps,
           "devices": len(devices), "compile_s": compile_s, "chain_steps_per_s": best,
           "cpu_dot_rewrite": rewrite}
    emit(out, args.json_out)


if __name__ == "__main__":
    main()
