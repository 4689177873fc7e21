"""Platform tactics, chosen once at the boundary from the devices the chains run on and
recorded in the result: on CPU, jax's threefry hash lowered unrolled (same bits, ~10× cheaper;
active only while slt_jax lowers its own programs), small gradient matmuls laid out for XLA
CPU's fast dot path, and cache-sized chain batches."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from slt_jax.backends import cpu_dots, cpu_rng
from slt_jax.backends.chain_batch import resolve_chain_batch, resolve_eval_batch

__all__ = ["BackendChoice", "choose", "active", "resolve_chain_batch", "resolve_eval_batch", "cpu_dots", "cpu_rng"]


@dataclass(frozen=True)
class BackendChoice:
    platform: str
    cpu_threefry: bool  # unrolled threefry lowering while slt_jax lowers its programs
    cpu_dot_layout: bool  # gradient matmuls re-laid out (cpu_dots.canonical_dots)

    def grad_transform(self):
        """What the engine wraps value_and_grad with (None: leave XLA's layout)."""
        return cpu_dots.canonical_dots if self.cpu_dot_layout else None

    def attrs(self) -> dict:
        return {"backend": self.platform, "cpu_threefry": "unrolled" if self.cpu_threefry else "jax",
                "cpu_dot_layout": self.cpu_dot_layout}


def choose(devices) -> BackendChoice:
    platform = devices[0].platform
    on_cpu = platform == "cpu"
    return BackendChoice(platform, on_cpu and cpu_rng.enabled_by_environment(), cpu_dots.enabled(platform))


@contextlib.contextmanager
def active(choice: BackendChoice):
    """Apply the process-global part of the choice (the CPU threefry lowering) for a block."""
    if choice.cpu_threefry:
        with cpu_rng.lowering():
            yield
    else:
        yield
