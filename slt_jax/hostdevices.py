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

__all__ = ["expose_cpu_cores", "enable_compilation_cache", "initialize_distributed"]


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


def enable_compilation_cache(path: str | None = None) -> str:
    """Turn on jax's persistent compilation cache (default ~/.cache/slt_jax/xla, or
    $SLT_JAX_COMPILATION_CACHE): a second process running the same shapes skips XLA
    compilation (measured 0.85 s → 0.12 s per program on this CPU). Returns the directory.
    Without `path`, a cache the user already configured (JAX_COMPILATION_CACHE_DIR) is kept."""
    import os.path

    import jax

    if path is None and jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    path = path or os.environ.get("SLT_JAX_COMPILATION_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "slt_jax", "xla"
    )
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, **kwargs) -> None:
    """jax.distributed.initialize, with CPU collectives over gloo (needed for CPU-only runs).

    Call before anything touches a device. Under SLURM/Kubernetes/TPU pods the arguments can be
    omitted. Then every process runs the same `estimate_llc` calls: chains are spread over the
    devices of all processes, every process receives the gathered results, and only process 0
    writes files (`LLCResult.to_netcdf`).
    """
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id, **kwargs
    )
