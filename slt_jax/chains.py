"""Compatibility module: the chain runner now lives in `slt_jax.engine` (plan, config, program,
cache, driver, sharding, sinks)."""

from slt_jax.engine.config import ChainConfig, chain_keys  # noqa: F401
from slt_jax.engine.data import (  # noqa: F401
    chunked_per_sample, draw_minibatch, mean_per_sample, minibatch_indices, step_batch_key,
)
from slt_jax.engine.driver import RunOutput, run_chains  # noqa: F401
from slt_jax.engine.plan import BATCH_SAMPLING, RunPlan, first_draw_index, plan_segments  # noqa: F401
from slt_jax.engine.program import Programs, build_programs  # noqa: F401
from slt_jax.engine.records import BlockRecord, DrawRecord  # noqa: F401
from slt_jax.engine.sharding import chain_mesh, put, put_keys, to_host  # noqa: F401
from slt_jax.engine.sinks import MemorySink, MomentsSink, per_sample_bytes  # noqa: F401
from slt_jax.engine.vectorize import batched_shaped, flat, flat_posterior, map_over_chains, shaped  # noqa: F401

__all__ = [
    "ChainConfig", "chain_keys", "RunPlan", "RunOutput", "Programs", "build_programs", "run_chains",
    "DrawRecord", "BlockRecord", "MemorySink", "MomentsSink", "flat", "shaped", "batched_shaped",
    "flat_posterior", "chain_mesh",
]
