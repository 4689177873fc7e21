"""In-process cache of compiled programs, keyed by what is static.

jax.jit caches per *function object*; the engine's programs are closures built per run
plan, so without this cache every call would trace and compile again. An entry is keyed by
the loss function (by identity), the partition of the params into sampled and frozen leaves,
the sampler and its structural choices, the RunPlan and the devices; it holds the jitted
programs and, per abstract input signature (shapes, dtypes), the AOT-compiled segment
executable. New values (a checkpoint, ε, γ, nβ, seed) are data and hit the same executable.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Callable

import jax

__all__ = ["ProgramCache", "PROGRAM_CACHE", "abstract_signature"]


def abstract_signature(args) -> tuple:
    """Shapes and dtypes of a pytree of arguments (typed keys included), plus its structure."""
    leaves, treedef = jax.tree.flatten(args)
    return (treedef, tuple((tuple(x.shape), str(x.dtype)) for x in leaves))


class _Entry:
    def __init__(self, programs):
        self.programs = programs
        self.executables: dict = {}

    def draw_executable(self, args: tuple) -> tuple[Any, float, bool]:
        """(compiled segment program, compile seconds, cache hit) for these arguments."""
        sig = abstract_signature(args)
        if sig in self.executables:
            return self.executables[sig], 0.0, True
        t0 = time.perf_counter()
        compiled = self.programs.draws.lower(*args).compile()
        self.executables[sig] = compiled
        return compiled, time.perf_counter() - t0, False


class ProgramCache:
    """A small LRU of program entries (each holds compiled executables and the loss function)."""

    def __init__(self, max_entries: int = 32):
        self.max_entries = max_entries
        self._entries: OrderedDict = OrderedDict()

    def entry(self, key: tuple, build: Callable[[], Any]) -> tuple[_Entry, bool]:
        """The entry for `key`, building its programs on a miss; (entry, hit)."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key], True
        entry = _Entry(build())
        self._entries[key] = entry
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return entry, False

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


PROGRAM_CACHE = ProgramCache()
