"""slt_jax: many SGMCMC chains as one compiled JAX program, for Singular Learning Theory.

Main entry point: `estimate_llc`. Ground truths: `slt_jax.truth`. Flax models:
`slt_jax.adapters`. Observables as pure functions: `slt_jax.observables`.
"""

from slt_jax import adapters, checkpoints, losses, observables, stages, temperature, truth
from slt_jax.backends import cpu_dots, cpu_rng  # noqa: F401  (old attribute paths)
from slt_jax.samplers import (
    SAMPLERS, Kernel, adam_sgld, make_kernel, rmsprop_sgld, rmsprop_sgld_devinterp, sghmc, sgld, sgnht,
)
from slt_jax.results.grid_result import GridResult
from slt_jax.workflows.grid import estimate_llc_grid
from slt_jax.workflows.llc import estimate_llc, estimate_llc_checkpoints
from slt_jax.workflows.sweep import sweep
from slt_jax.workflows.calibrate_config import calibrate
from slt_jax.results.llc_result import LLCResult
from slt_jax.susceptibility import SusceptibilityResult, estimate_susceptibilities

__all__ = [
    "estimate_llc",
    "estimate_llc_checkpoints",
    "estimate_llc_grid",
    "sweep",
    "calibrate",
    "GridResult",
    "estimate_susceptibilities",
    "LLCResult",
    "SusceptibilityResult",
    "Kernel",
    "SAMPLERS",
    "make_kernel",
    "sgld",
    "rmsprop_sgld",
    "rmsprop_sgld_devinterp",
    "adam_sgld",
    "sghmc",
    "sgnht",
    "adapters",
    "checkpoints",
    "stages",
    "temperature",
    "losses",
    "observables",
    "truth",
]
__version__ = "0.1.0"
