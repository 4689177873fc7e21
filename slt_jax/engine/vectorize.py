"""How chains and parameters are laid out inside a program: flat leaves, chain batches."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from slt_jax.posterior import Posterior

__all__ = ["flat", "shaped", "batched_shaped", "flat_posterior", "map_over_chains", "norm"]


def flat(tree):
    """Every leaf as a vector. Sampler states hold the sampled leaves this way: XLA CPU runs
    the fused noise-and-update of a leaf whose last axis is short (a 48×4 output layer) at
    half the speed per value of the same values in one vector (MLP workload: 5.0 vs 2.5 ns).
    Reshaping a row-major array is free, so the loss still sees the user's shapes."""
    return jax.tree.map(jnp.ravel, tree)


def shaped(flat_tree, like):
    """Undo `flat`: each leaf takes the shape of the matching leaf of `like`."""
    return jax.tree.map(lambda x, ref: x.reshape(jnp.shape(ref)), flat_tree, like)


def batched_shaped(flat_tree, center, per_chain_center: bool):
    """`shaped` for flat leaves with a leading chain axis; `center` carries that axis too
    when each chain has its own w*."""
    if per_chain_center:
        return shaped(flat_tree, center)
    return jax.tree.map(lambda x, ref: x.reshape((x.shape[0],) + jnp.shape(ref)), flat_tree, center)


def flat_posterior(posterior: Posterior) -> Posterior:
    return posterior._replace(center=flat(posterior.center), element_mask=flat(posterior.element_mask))


def norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def map_over_chains(fn: Callable, in_axes: tuple, num_chains: int, devices: int, group: int) -> Callable:
    """Like jax.vmap(fn, in_axes) over the chain axis, in batches of `group` chains run one
    after another (lax.map) on each device; group 1 runs chains singly, group 0 (or ≥ the
    chains per device) is a plain vmap. The chain axis is viewed as (devices, batches, group)
    and only the device axis is split, so no chain crosses a device and no collective appears.
    Smaller batches keep a step's working set in cache and bound an evaluation's memory."""
    per_device = num_chains // devices
    if group <= 0 or group >= per_device:
        return jax.vmap(fn, in_axes=in_axes)
    if per_device % group:
        raise ValueError(f"chain batch {group} does not divide the {per_device} chains per device")
    batches = per_device // group
    run_batch = fn if group == 1 else jax.vmap(fn, in_axes=in_axes)

    def mapped(*args):
        shape = (devices, batches) + ((group,) if group > 1 else ())
        split = lambda x: x.reshape(shape + x.shape[1:])  # noqa: E731
        args = [_on_mapped(a, ax, split) for a, ax in zip(args, in_axes)]

        def on_device(*dev_args):
            def one_batch(i):
                return run_batch(*[_on_mapped(a, ax, lambda x: x[i]) for a, ax in zip(dev_args, in_axes)])

            return jax.lax.map(one_batch, jnp.arange(batches))

        out = jax.vmap(on_device, in_axes=in_axes)(*args)
        return jax.tree.map(lambda x: x.reshape((num_chains,) + x.shape[len(shape):]), out)

    return mapped


def _on_mapped(arg, axes, fn):
    """Apply fn to the leaves of `arg` that vmap's in_axes entry `axes` maps (axis 0)."""
    if axes is None:
        return arg
    return jax.tree.map(
        lambda ax, sub: sub if ax is None else jax.tree.map(fn, sub), axes, arg, is_leaf=lambda x: x is None
    )
