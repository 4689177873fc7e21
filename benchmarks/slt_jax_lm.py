"""slt_jax side of the tiny-GPT-2 LLC benchmark (workload in workload_lm.py).

    .venv/bin/python benchmarks/slt_jax_lm.py --chains 4 --draws 500 --json-out r.json

The same GPT-2-style model as devinterp2_lm.py, in pure JAX (`apply(params, tokens) -> logits`
over a dict of the workload's numpy weights), per-token loss
`slt_jax.losses.next_token_cross_entropy`, the observable data set as an eval set whose
per-token losses are computed inside the compiled program at every draw (eval_every=1; each
evaluation also computes the full-data loss L_n(w) for the variance-based λ̂ and a MALA
probe, work devinterp does not do). Writes chain-steps/s excluding compilation, compile time
and λ̂ as JSON; run it through run_lm_comparison.py for the devinterp ratio.
"""

import argparse
import math
import sys
import time
from pathlib import Path

T_START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from slt_jax.hostdevices import expose_cpu_cores  # noqa: E402  (must run before jax starts)

expose_cpu_cores()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload_lm as W  # noqa: E402
from bench_json import emit  # noqa: E402

import slt_jax  # noqa: E402
from slt_jax.losses import next_token_cross_entropy  # noqa: E402


def _layer_norm(x, g, b):
    mu = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean((x - mu) ** 2, -1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + W.LN_EPS) * g + b


def apply(params, tokens):
    """Logits (B, T, VOCAB) of the GPT-2-style model for integer tokens (B, T)."""
    bsz, t = tokens.shape
    h = params["wte"][tokens] + params["wpe"][:t]
    causal = jnp.tril(jnp.ones((t, t), dtype=bool))
    for layer in range(W.N_LAYERS):
        p = lambda k: params[f"h{layer}_{k}"]  # noqa: E731
        qkv = _layer_norm(h, p("ln1_g"), p("ln1_b")) @ p("attn_w") + p("attn_b")
        q, k, v = (z.reshape(bsz, t, W.N_HEADS, W.D_HEAD) for z in jnp.split(qkv, 3, axis=-1))
        att = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(W.D_HEAD)
        att = jax.nn.softmax(jnp.where(causal, att, -jnp.inf), axis=-1)
        y = jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(bsz, t, W.D_MODEL)
        h = h + y @ p("proj_w") + p("proj_b")
        x = _layer_norm(h, p("ln2_g"), p("ln2_b"))
        h = h + jax.nn.gelu(x @ p("fc_w") + p("fc_b"), approximate=True) @ p("fc2_w") + p("fc2_b")
    return _layer_norm(h, params["lnf_g"], params["lnf_b"]) @ params["wte"].T


def loss_fn(params, tokens):
    """Per-token losses (B, T - 1); the engine averages them."""
    return next_token_cross_entropy(apply(params, tokens), tokens)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chains", type=int, default=W.NUM_CHAINS)
    p.add_argument("--draws", type=int, default=W.DRAWS)
    p.add_argument("--eval-every", default="1",
                   help="draws between evaluations (obs per-token losses + full-data loss + MALA "
                        "probe); default 1 = every draw, as devinterp records its observable")
    p.add_argument("--diagnostics", default="full_loss,mala",
                   help="what each evaluation computes besides the observable: comma-separated subset of "
                        "full_loss,mala, or 'none' (observable only, what devinterp computes)")
    p.add_argument("--eval-batching", default="vmap", choices=("vmap", "map"),
                   help="evaluate chains side by side (vmap) or one after another per device (lax.map)")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args()

    t_setup = time.perf_counter()
    wl = W.make_workload()
    workload_s = time.perf_counter() - t_setup
    params = {k: jnp.asarray(v) for k, v in wl["params"].items()}
    tokens = jnp.asarray(wl["tokens"], jnp.int32)
    obs_tokens = jnp.asarray(wl["obs_tokens"], jnp.int32)

    # Same loss at w* as numpy (float64) and torch/devinterp on the same batch: same model.
    check = W.check_batch()
    check_loss = float(jnp.mean(jax.jit(loss_fn)(params, jnp.asarray(check, jnp.int32))))
    ref = float(W.per_token_loss(wl["params"], check).mean())
    assert abs(check_loss - ref) < 1e-5, (check_loss, ref)

    eval_every = args.eval_every if args.eval_every in ("auto", "none") else int(args.eval_every)
    eval_every = None if eval_every == "none" else eval_every
    r = slt_jax.estimate_llc(
        loss_fn, params, tokens,
        step_size=W.EPS, localization=W.GAMMA, nbeta=W.NBETA,
        num_chains=args.chains, num_draws=args.draws, num_burnin=W.NUM_BURNIN_STEPS,
        thin=W.NUM_STEPS_BW_DRAWS, batch_size=W.BATCH, seed=0, progress=False,
        eval_sets={"obs": obs_tokens} if eval_every is not None else None,
        eval_every=eval_every,
        diagnostics=() if args.diagnostics == "none" else tuple(args.diagnostics.split(",")),
        eval_batching=args.eval_batching,
    )
    obs = np.asarray(r.dataset["obs_losses"]) if eval_every is not None else None
    out = {
        "framework": "slt_jax",
        "version": slt_jax.__version__,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        "chains": args.chains,
        "draws": args.draws,
        "eval_every": r.attrs["eval_every"],
        "diagnostics": r.attrs["diagnostics"],
        "eval_batching": r.attrs["eval_batching"],
        "workload_s": workload_s,
        "compile_s": r.attrs["compile_s"],
        "sampling_s": r.attrs["sampling_s"],
        "chain_steps_per_s": r.attrs["chain_steps_per_s"],
        "llc_mean": r.llc_mean,
        "llc_std": r.llc_std,  # ddof=1 over healthy chains
        "llc_per_chain": [float(v) for v in np.asarray(r.llc_per_chain)],
        "llc_var": r.llc_var if eval_every is not None and "full_loss" in r.attrs["diagnostics"] else None,
        "init_loss": r.attrs["init_loss"],
        "check_batch_loss": check_loss,
        "check_batch_loss_numpy64": ref,
        "obs_losses_shape": list(obs.shape) if obs is not None else None,
        "obs_losses_finite": bool(np.isfinite(obs).all()) if obs is not None else None,
        "obs_mean_loss": float(obs.mean()) if obs is not None else None,
        "in_process_s": time.perf_counter() - T_START,
    }
    emit(out, args.json_out)


if __name__ == "__main__":
    main()
