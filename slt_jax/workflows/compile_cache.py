"""jax's persistent compilation cache, on by default for the Python API too.

A new process then skips XLA compilation of programs it has compiled before (the in-process
program cache, engine/cache.py, only helps within one process). Location: the directory the
user configured for jax (JAX_COMPILATION_CACHE_DIR / jax.config), else
$SLT_JAX_COMPILATION_CACHE, else ~/.cache/slt_jax/xla. Opt out with
SLT_JAX_COMPILATION_CACHE=off (or call `disable()` before the first estimate).
"""

from __future__ import annotations

import os

__all__ = ["enable_default", "disable", "cache_dir"]

_decided = False


def disable() -> None:
    """Never turn the persistent cache on in this process (what the user set for jax stays)."""
    global _decided
    _decided = True


def cache_dir() -> str | None:
    import jax

    return jax.config.jax_compilation_cache_dir


def enable_default() -> str | None:
    """Turn the cache on once per process unless the user opted out; returns its directory."""
    global _decided
    if _decided:
        return cache_dir()
    _decided = True
    if os.environ.get("SLT_JAX_COMPILATION_CACHE", "").lower() in ("off", "0", "none", "false"):
        return cache_dir()
    import jax
    from jax._src import compilation_cache

    from slt_jax.hostdevices import enable_compilation_cache

    already = jax.config.jax_compilation_cache_dir
    path = enable_compilation_cache(None)
    if not already:
        # jax decides once per process whether the cache is in use (at its first compilation,
        # e.g. of the user's training code); re-decide now that a directory is set.
        compilation_cache.reset_cache()
    return path
