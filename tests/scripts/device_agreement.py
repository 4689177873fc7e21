"""Run in a fresh process with 8 host devices: λ̂ per chain on 1, 2 and 8 devices.

Prints one JSON line: {"1": [...], "2": [...], "8": [...], "8map": [...], "num_devices": 8};
"8map" evaluates the chains with eval_batching="map" (lax.map within each device); "2seq"
steps the chains one after another on each of 2 devices (chain_batch=1).
"""

import json
import sys

import jax

import slt_jax
from linear_problem import least_squares, linear_data, linear_loss

x, y = linear_data(256)
loss_fn = linear_loss
params = least_squares(x, y)
out = {"num_devices": len(jax.devices())}
for k, batching, chain_batch in ((1, "vmap", "auto"), (2, "vmap", "auto"), (8, "vmap", "auto"), (8, "map", "auto"),
                                 (2, "vmap", 1)):
    r = slt_jax.estimate_llc(
        loss_fn, params, (x, y), step_size=1e-4, localization=1.0, num_chains=6, num_draws=100,
        num_burnin=10, batch_size=32, seed=0, devices=jax.devices()[:k], progress=False,
        eval_sets={"probe": (x[:5], y[:5])}, eval_every=5, eval_batching=batching, chain_batch=chain_batch,
    )
    out[str(k) + ("" if batching == "vmap" else batching) + ("" if chain_batch == "auto" else "seq")] = [r.llc_per_chain.tolist(), r.dataset["eval_loss"].values.tolist(),
                   r.per_sample_losses("probe").tolist(), int(r.attrs["padded_chains"])]
# A grid (2 checkpoints × 2 ε × 3 chains) on 1, 2 and 8 devices.
ckpts = [params, {"W": params["W"] + 0.02}]
for k in (1, 2, 8):
    g = slt_jax.estimate_llc_grid(
        loss_fn, ckpts, (x, y), step_size=[1e-4, 3e-4], localization=1.0, num_chains=3, num_draws=60,
        batch_size=32, seed=0, devices=jax.devices()[:k], progress=False, eval_every=5,
    )
    out[f"grid{k}"] = g.llc_per_chain().values.tolist()
# Checkpoints as orbax restores them (committed to one device), "auto" planner, 2 devices.
committed = [jax.device_put(c, jax.devices()[1]) for c in ckpts]
rs = slt_jax.estimate_llc_checkpoints(
    loss_fn, committed, (x, y), step_size=1e-4, localization=1.0, num_chains=3, num_draws=60, batch_size=32,
    seed=0, devices=jax.devices()[:2], progress=False, eval_every=5, checkpoints_per_call="auto",
)
out["auto_committed"] = [r.llc_per_chain.tolist() for r in rs]
print(json.dumps(out))
sys.stdout.flush()
