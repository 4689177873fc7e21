"""Public entry points as validate → plan → run → label over the engine."""

from slt_jax.workflows.grid import estimate_llc_grid
from slt_jax.workflows.llc import estimate_llc, estimate_llc_checkpoints

__all__ = ["estimate_llc", "estimate_llc_checkpoints", "estimate_llc_grid"]
