"""One job of a sweep, as a job array or a jax.distributed run would start it.

usage: sweep_job.py FACTORY_DIR CONFIG_JSON [SHARD] [PORT NUM_PROCESSES PROCESS_ID]
SHARD is "i/N" or "-" (none: read SLURM_ARRAY_* if set). With PORT..., the process joins a
jax.distributed run on localhost first. Writes the returned table's attrs to stdout as JSON.
"""

import json
import sys

sys.path.insert(0, sys.argv[1])
config = json.loads(sys.argv[2])
shard = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else None
if len(sys.argv) > 4:
    from slt_jax.hostdevices import initialize_distributed

    initialize_distributed(f"127.0.0.1:{sys.argv[4]}", int(sys.argv[5]), int(sys.argv[6]))

from slt_jax.workflows.sweep import sweep  # noqa: E402

table = sweep(config, shard=shard, progress=False, plots=False)
print(json.dumps({k: table.attrs[k] for k in ("computed", "skipped", "pending", "shard")}))
