"""Compatibility alias: this module now lives at `slt_jax.results.grid_result` (the same module object)."""

import sys

from slt_jax.results import grid_result as _module

sys.modules[__name__] = _module
