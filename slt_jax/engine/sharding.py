"""The device mesh the chain axis is split over, and placing arrays on it (also across hosts)."""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["chain_mesh", "shardings", "put", "put_keys", "to_host"]


def chain_mesh(devices) -> jax.sharding.Mesh:
    """A 1-D mesh named "chain" over `devices` (Auto axis type, so user loss functions need no
    sharding annotations; see jax-notes.md). One device is a mesh too: every input is then
    placed explicitly, so arrays committed to another device (as orbax restores them) and
    host arrays reach the same compiled program."""
    return jax.sharding.Mesh(np.array(list(devices)), ("chain",), axis_types=(jax.sharding.AxisType.Auto,))


def shardings(mesh):
    """(chain axis first, chain axis second, replicated) shardings over `mesh`."""
    spec = jax.sharding.PartitionSpec
    named = jax.sharding.NamedSharding
    return named(mesh, spec("chain")), named(mesh, spec(None, "chain")), named(mesh, spec())


def put(tree, sharding):
    """Place a pytree of host or device arrays with `sharding`, also across processes.

    Under jax.distributed a mesh spans devices this process cannot address; every process
    holds the full value and hands over the shards that live on its own devices.
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(x):
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(one, tree)


def put_keys(keys: jax.Array, sharding) -> jax.Array:
    """`put` for typed PRNG keys: move the raw key data, re-wrap on the devices."""
    if jax.process_count() == 1:
        return jax.device_put(keys, sharding)
    impl = jax.random.key_impl(keys)
    data = put(jax.random.key_data(keys), sharding)
    return jax.jit(lambda d: jax.random.wrap_key_data(d, impl=impl), out_shardings=sharding)(data)


def to_host(tree):
    """numpy copies of (possibly multi-process, sharded) arrays; every process gets everything."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    return jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree)
