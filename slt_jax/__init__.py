"""slt_jax: many SGMCMC chains as one compiled JAX program, for Singular Learning Theory.

Main entry point: `estimate_llc`. Ground truths: `slt_jax.truth`. Flax models:
`slt_jax.adapters`. Observables as pure functions: `slt_jax.observables`.
"""

from slt_jax.kernels import Kernel, make_kernel, rmsprop_sgld, rmsprop_sgld_devinterp, sgld
from slt_jax.llc import estimate_llc
from slt_jax.result import LLCResult

__all__ = [
    "estimate_llc",
    "LLCResult",
    "Kernel",
    "make_kernel",
    "sgld",
    "rmsprop_sgld",
    "rmsprop_sgld_devinterp",
]
__version__ = "0.1.0"
