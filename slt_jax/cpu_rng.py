"""Compatibility alias: this module now lives at `slt_jax.backends.cpu_rng` (the same module object)."""

import sys

from slt_jax.backends import cpu_rng as _module

sys.modules[__name__] = _module
