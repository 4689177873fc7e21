"""The localized tempered posterior (estimators.md §1).

    p(w) ∝ exp( -nβ L_n(w) - (γ/2) ||w - w*||² )

The sampled parameters are a subset of the model's params pytree chosen by a mask; the
rest stays frozen at w*. Kernels see only the sampled leaves, so a frozen leaf costs no
gradient memory and no noise draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["NBETA_RULES", "Posterior", "resolve_nbeta", "potential_grad", "apply_element_mask",
    "Partition", "make_partition", "sampled_loss"]

Params = Any

NBETA_RULES = ("n_log_n", "batch_log_batch")


class Posterior(NamedTuple):
    """What a kernel needs to form ∇U. A pytree, so hyperparameters can later be vmapped.

    nbeta: scalar nβ. localization: scalar γ. center: w* restricted to the sampled leaves.
    element_mask: per sampled leaf, a 0/1 array of the leaf's shape, or None where the whole
    leaf is sampled.
    """

    nbeta: jax.Array
    localization: jax.Array
    center: Params
    element_mask: Params


def resolve_nbeta(nbeta: float | str | None, num_samples: int, batch_size: int) -> tuple[float, str]:
    """nβ and the rule that produced it, for the result's metadata.

    None or "n_log_n": n / log n (β* = 1/log n, Lau et al.); "batch_log_batch": B / log B,
    devinterp v1's default, available by name only because it silently changes with B.
    """
    if nbeta is None or nbeta == "n_log_n":
        return num_samples / math.log(num_samples), "n_log_n"
    if nbeta == "batch_log_batch":
        return batch_size / math.log(batch_size), "batch_log_batch"
    return float(nbeta), "explicit"


def potential_grad(posterior: Posterior, position: Params, loss_grad: Params) -> Params:
    """∇U(w) = nβ ∇L_B(w) + γ (w - w*), leafwise."""
    return jax.tree.map(
        lambda g, w, c: posterior.nbeta * g + posterior.localization * (w - c),
        loss_grad,
        position,
        posterior.center,
    )


def apply_element_mask(element_mask: Params, delta: Params) -> Params:
    """Zero the update of masked-out coordinates (they get neither drift nor noise)."""
    return jax.tree.map(
        lambda m, d: d if m is None else d * m, element_mask, delta, is_leaf=lambda x: x is None
    )


@dataclass(frozen=True)
class Partition:
    """Splits a params pytree into sampled leaves (a list) and frozen leaves (a list).

    `mask` entries per leaf: True (sampled), False (frozen at w*), or a boolean array of the
    leaf's shape (sampled, with the False coordinates held at w*).
    """

    treedef: Any
    sampled_index: tuple[int, ...]
    frozen_index: tuple[int, ...]
    element_mask: tuple[Any, ...]  # per sampled leaf: None or a 0/1 array

    def split(self, params: Params) -> tuple[list, list]:
        leaves = self.treedef.flatten_up_to(params)
        return [leaves[i] for i in self.sampled_index], [leaves[i] for i in self.frozen_index]

    def merge(self, sampled: list, frozen: list) -> Params:
        leaves: list = [None] * (len(self.sampled_index) + len(self.frozen_index))
        for i, leaf in zip(self.sampled_index, sampled):
            leaves[i] = leaf
        for i, leaf in zip(self.frozen_index, frozen):
            leaves[i] = leaf
        return self.treedef.unflatten(leaves)

    def num_sampled(self, params: Params) -> int:
        sampled, _ = self.split(params)
        return int(
            sum(
                int(np.size(x)) if m is None else int(np.sum(m))
                for x, m in zip(sampled, self.element_mask)
            )
        )


def make_partition(params: Params, mask: Params | None) -> Partition:
    """Build the sampled/frozen split. Assumes `mask` was validated against `params`."""
    leaves, treedef = jax.tree.flatten(params)
    if mask is None:
        return Partition(treedef, tuple(range(len(leaves))), (), (None,) * len(leaves))
    mask_leaves = treedef.flatten_up_to(mask)
    sampled, frozen, elem = [], [], []
    for i, (leaf, m) in enumerate(zip(leaves, mask_leaves)):
        if isinstance(m, (bool, np.bool_)) or np.ndim(m) == 0:
            (sampled if bool(m) else frozen).append(i)
            if bool(m):
                elem.append(None)
        else:
            sampled.append(i)
            elem.append(jnp.asarray(m, dtype=jnp.asarray(leaf).dtype))
    return Partition(treedef, tuple(sampled), tuple(frozen), tuple(elem))


def sampled_loss(loss_fn: Callable, partition: Partition) -> Callable:
    """Lift `loss_fn(params, batch)` to a function of the sampled leaves (and the frozen ones)."""

    def loss_of_sampled(sampled: list, frozen: list, batch: Any) -> jax.Array:
        return loss_fn(partition.merge(sampled, frozen), batch)

    return loss_of_sampled
