"""Compatibility alias: this module now lives at `slt_jax.backends.cpu_dots` (the same module object)."""

import sys

from slt_jax.backends import cpu_dots as _module

sys.modules[__name__] = _module
