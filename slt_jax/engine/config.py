"""Per-chain configuration as data: what differs between the chains of one program.

Every chain carries its own key, step size ε, localization γ, nβ, bounding box and sampler
constants as traced arrays with a leading chain axis, so a grid over checkpoints × ε × γ × nβ
is just a longer chain axis of one compiled program. w* and the frozen leaves are per chain
only when the program holds several checkpoints (RunPlan.per_chain_center).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

__all__ = ["ChainConfig", "chain_keys", "make_config"]


class ChainConfig(NamedTuple):
    key: jax.Array  # (C,) typed PRNG keys: fold_in(key(seed), chain index within its configuration)
    step_size: jax.Array  # (C,) ε
    nbeta: jax.Array  # (C,) nβ
    localization: jax.Array  # (C,) γ
    bounding_box: jax.Array  # (C,) half-width of the clamp around w* (inf: none)
    hyper: dict  # sampler constant name -> (C,)


@jax.jit
def _keys(seeds, chain_index):
    return jax.vmap(lambda s, c: jax.random.fold_in(jax.random.key(s), c))(seeds, chain_index)


def chain_keys(seed: int, num_chains: int, first_chain: int = 0) -> jax.Array:
    """Per-chain keys fold_in(key(seed), c): chain c's stream never depends on the chain count."""
    index = np.arange(first_chain, first_chain + num_chains, dtype=np.uint32)
    return _keys(np.full(num_chains, seed, np.uint32), index)


def make_config(seeds, chain_index, step_size, nbeta, localization, bounding_box, hyper: dict) -> ChainConfig:
    """A ChainConfig from host arrays of length C (numpy; placed on devices by the driver)."""
    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    return ChainConfig(
        key=_keys(np.asarray(seeds, np.uint32), np.asarray(chain_index, np.uint32)),
        step_size=f32(step_size),
        nbeta=f32(nbeta),
        localization=f32(localization),
        bounding_box=f32(bounding_box),
        hyper={k: f32(v) for k, v in hyper.items()},
    )
