"""Compatibility alias: this module now lives at `slt_jax.results.llc_result` (the same module object)."""

import sys

from slt_jax.results import llc_result as _module

sys.modules[__name__] = _module
