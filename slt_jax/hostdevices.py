"""Expose a multi-core CPU as several XLA devices, so chains run on every core.

XLA's CPU client runs a vmapped chain program mostly on one core; as separate devices, the
chain axis is split across cores (measured 2.4× on the 2-core CI machine, MLP workload).
XLA reads XLA_FLAGS when the first backend starts (the first jax.devices() or computation),
not at import, so this works after `import jax` as long as nothing has run yet. A no-op when
XLA_FLAGS already sets the device count.
"""

from __future__ import annotations

import os
import sys


def expose_cpu_cores(count: int | None = None) -> int | None:
    """Set --xla_force_host_platform_device_count (default: the usable cores). Returns the
    count set, or None when it was already set or a jax backend already started (too late)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags or _backend_started():
        return None
    if count is None:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
    return count


def _backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:  # private, but the only way to ask without starting a backend
        from jax._src import xla_bridge

        return bool(getattr(xla_bridge, "_backends", {}))
    except ImportError:  # pragma: no cover - layout changed: assume started, do nothing
        return True
