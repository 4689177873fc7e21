"""One process of a jax.distributed run (or a single process when run with 1 process).

usage: multihost_run.py PORT NUM_PROCESSES PROCESS_ID OUT.json
Every process runs the same estimate_llc; process 0 writes the gathered λ̂ per chain (and
per-sample losses of an eval set) to OUT.json, and a netCDF next to it.
"""

import json
import sys

port, num_processes, process_id, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

from slt_jax.hostdevices import initialize_distributed  # noqa: E402

if num_processes > 1:
    initialize_distributed(f"127.0.0.1:{port}", num_processes, process_id)

import jax  # noqa: E402

import slt_jax  # noqa: E402
from linear_problem import least_squares, linear_data, linear_loss  # noqa: E402

x, y = linear_data(256)
loss_fn = linear_loss
params = least_squares(x, y)
r = slt_jax.estimate_llc(
    loss_fn, params, (x, y), step_size=1e-4, localization=1.0, num_chains=6, num_draws=60,
    num_burnin=10, batch_size=32, seed=0, progress=False, eval_sets={"probe": (x[:5], y[:5])}, eval_every=5,
)
ckpts = slt_jax.estimate_llc_checkpoints(
    loss_fn, [params, {"W": params["W"] * 0.9}], (x, y), step_size=1e-4, localization=1.0, num_chains=3,
    num_draws=40, batch_size=32, seed=1, progress=False, checkpoints_per_call=2,
)
r.to_netcdf(out + ".nc")
if jax.process_index() == 0:
    with open(out, "w") as f:
        json.dump({
            "processes": jax.process_count(),
            "devices": len(jax.devices()),
            "llc_per_chain": r.llc_per_chain.tolist(),
            "probe": r.per_sample_losses("probe").tolist(),
            "checkpoints": [c.llc_per_chain.tolist() for c in ckpts],
        }, f)
