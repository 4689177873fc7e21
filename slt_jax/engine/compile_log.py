"""Counting XLA compilations (jax's monitoring events), for results and for tests.

jax records "/jax/core/compile/backend_compile_duration" once per executable it builds or
fetches from the persistent cache, whether through `jit`'s own cache misses or an AOT
`lower().compile()`. Counting those events is the honest answer to "did this call compile?".
"""

from __future__ import annotations

import contextlib
import threading

import jax

__all__ = ["BACKEND_COMPILE_EVENT", "PERSISTENT_HIT_EVENT", "CompileLog", "count_compilations"]

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
PERSISTENT_HIT_EVENT = "/jax/compilation_cache/cache_hits"


class CompileLog:
    """Compilations seen while the log is open: `count`, `seconds`, `names`, and
    `persistent_hits` (how many of them came from jax's persistent cache on disk)."""

    def __init__(self):
        self.count = 0
        self.seconds = 0.0
        self.names: list[str] = []
        self.persistent_hits = 0
        self._lock = threading.Lock()

    def _event(self, event: str, **kwargs) -> None:
        if event == PERSISTENT_HIT_EVENT:
            with self._lock:
                self.persistent_hits += 1

    def _listener(self, event: str, duration: float, **kwargs) -> None:
        if event != BACKEND_COMPILE_EVENT:
            return
        with self._lock:
            self.count += 1
            self.seconds += duration
            self.names.append(str(kwargs.get("fun_name", "?")))


@contextlib.contextmanager
def count_compilations():
    """`with count_compilations() as log: ...` then `log.count` executables were compiled."""
    log = CompileLog()
    jax.monitoring.register_event_duration_secs_listener(log._listener)
    jax.monitoring.register_event_listener(log._event)
    try:
        yield log
    finally:
        jax.monitoring.unregister_event_duration_listener(log._listener)
        jax.monitoring.unregister_event_listener(log._event)
