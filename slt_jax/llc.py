"""Compatibility module: `estimate_llc` and `estimate_llc_checkpoints` now live in
`slt_jax.workflows` as fronts of `estimate_llc_grid`."""

from slt_jax.engine.program import build_programs  # noqa: F401
from slt_jax.backends.chain_batch import resolve_chain_batch  # noqa: F401
from slt_jax.workflows.grid import device_memory_budget, estimate_llc_grid  # noqa: F401
from slt_jax.workflows.llc import _as_checkpoint_list, estimate_llc, estimate_llc_checkpoints  # noqa: F401
from slt_jax.workflows.options import DIAGNOSTICS, EVAL_BATCHING  # noqa: F401

__all__ = ["estimate_llc", "estimate_llc_checkpoints", "estimate_llc_grid"]
