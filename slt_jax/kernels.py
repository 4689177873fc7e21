"""Compatibility module: the samplers now live in `slt_jax.samplers` (one file each)."""

from slt_jax.samplers import *  # noqa: F401,F403
from slt_jax.samplers import __all__  # noqa: F401
from slt_jax.samplers.momentum import _num_sampled  # noqa: F401
