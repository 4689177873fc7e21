"""Minibatches inside the program, and per-sample losses over whole data sets."""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from slt_jax.engine.plan import RunPlan

__all__ = ["minibatch_indices", "draw_minibatch", "step_batch_key", "chunked_per_sample", "mean_per_sample", "num_samples"]


def minibatch_indices(key: jax.Array, plan: RunPlan) -> jax.Array:
    """The step's minibatch: batch_size indices into the n samples, drawn from the step's key."""
    if plan.batch_size == plan.num_samples:
        return jnp.arange(plan.num_samples)
    if plan.batch_sampling == "with_replacement":
        return jax.random.randint(key, (plan.batch_size,), 0, plan.num_samples)
    # distinct indices within a batch; costs a permutation of n per step
    return jax.random.choice(key, plan.num_samples, (plan.batch_size,), replace=False)


def draw_minibatch(key: jax.Array, data: Any, plan: RunPlan) -> Any:
    """Minibatch indices are drawn inside the program; data stays where it is.

    batch_size == n uses the whole data set in order (exact gradient, no gather).
    """
    if plan.batch_size == plan.num_samples:
        return data
    idx = minibatch_indices(key, plan)
    return jax.tree.map(lambda x: x[idx], data)


def step_batch_key(chain_key: jax.Array, step) -> jax.Array:
    """The key a step draws its minibatch from (the kernel gets the other half of the split)."""
    return jax.random.split(jax.random.fold_in(chain_key, step))[0]


def chunked_per_sample(raw_loss: Callable, n: int, chunk: int) -> Callable:
    """Per-sample losses over a whole data set, evaluated in chunks of `chunk` samples.

    `raw_loss(sampled, frozen, batch)` returns the loss function's own output, (B,) or
    (B, T, ...); the result has shape (n, ...). Chunks bound activation memory; the last one
    is padded by repeating the final sample and the padding is cut off.
    """
    num_chunks = math.ceil(n / chunk)
    pad = num_chunks * chunk - n

    def losses_at(sampled, frozen, data):
        if num_chunks == 1:
            return raw_loss(sampled, frozen, data)

        def chunked(x):
            x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]) if pad else x
            return x.reshape((num_chunks, chunk) + x.shape[1:])

        out = jax.lax.map(lambda b: raw_loss(sampled, frozen, b), jax.tree.map(chunked, data))
        return out.reshape((num_chunks * chunk,) + out.shape[2:])[:n]

    return losses_at


def mean_per_sample(losses: jax.Array) -> jax.Array:
    """(B, T, ...) per-token losses -> (B,): each sample's mean, so every token weighs the same."""
    return losses.reshape(losses.shape[0], -1).astype(jnp.float32).mean(axis=1)


def num_samples(data) -> int:
    return jax.tree.leaves(data)[0].shape[0]
