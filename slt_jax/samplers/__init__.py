"""SGMCMC samplers, one file each, registered once (see samplers/base.py for the interface).

`SAMPLERS` maps a name to its public constructor (`sgld(step_size, ...) -> Kernel`);
`REGISTRY` maps it to the spec the engine runs with per-chain hyperparameters.
"""

from typing import Callable

from slt_jax.samplers.adam_sgld import AdamSGLDState, adam_sgld
from slt_jax.samplers.base import (
    REGISTRY, Kernel, SamplerSpec, expected_noise_norm, get_spec, langevin_update, noise_norm, register,
    tree_normal,
)
from slt_jax.samplers.momentum import SGHMCState, SGNHTState, sghmc, sgnht
from slt_jax.samplers.rmsprop_sgld import RMSPropSGLDState, rmsprop_sgld, rmsprop_sgld_devinterp
from slt_jax.samplers.sgld import SGLDState, sgld

__all__ = [
    "SAMPLERS", "REGISTRY", "Kernel", "SamplerSpec", "make_kernel", "get_spec", "register",
    "sgld", "rmsprop_sgld", "rmsprop_sgld_devinterp", "adam_sgld", "sghmc", "sgnht",
    "SGLDState", "RMSPropSGLDState", "AdamSGLDState", "SGHMCState", "SGNHTState",
    "tree_normal", "noise_norm", "expected_noise_norm", "langevin_update",
]

SAMPLERS: dict[str, Callable[..., Kernel]] = {
    "sgld": sgld,
    "rmsprop_sgld": rmsprop_sgld,
    "rmsprop_sgld_devinterp": rmsprop_sgld_devinterp,
    "adam_sgld": adam_sgld,
    "sghmc": sghmc,
    "sgnht": sgnht,
}


def make_kernel(name: str, step_size: float, **kwargs) -> Kernel:
    return SAMPLERS[name](step_size, **kwargs)
