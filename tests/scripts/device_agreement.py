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
print(json.dumps(out))
sys.stdout.flush()
