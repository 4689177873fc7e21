"""Norms over pytrees (jax; callable inside jitted, vmapped programs)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["distance_from_center", "tree_norm"]


def _check_same_structure(names: tuple[str, ...], trees: tuple[Any, ...]) -> None:
    ref_def = jax.tree.structure(trees[0])
    ref_shapes = [jnp.shape(x) for x in jax.tree.leaves(trees[0])]
    for name, tree in zip(names[1:], trees[1:]):
        if jax.tree.structure(tree) != ref_def:
            raise ValueError(
                f"{name} must have the same pytree structure as {names[0]}; got {jax.tree.structure(tree)} "
                f"vs {ref_def}."
            )
        shapes = [jnp.shape(x) for x in jax.tree.leaves(tree)]
        if shapes != ref_shapes:
            raise ValueError(f"{name} leaf shapes {shapes} differ from {names[0]}'s {ref_shapes}.")


def _sq_norm(tree: Any) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros(())
    return sum(jnp.sum(jnp.square(x)) for x in leaves)


def tree_norm(tree: Any) -> jax.Array:
    """Euclidean norm sqrt(Σ_leaves Σ_entries x²) of a pytree, a jax scalar (0 for an empty tree).

    Pure jax.numpy: usable inside jit/vmap (per chain under vmap).
    """
    return jnp.sqrt(_sq_norm(tree))


def distance_from_center(w: Any, center: Any) -> jax.Array:
    """||w - center|| over the whole pytree (e.g. the distance of a draw from w*), a jax scalar.

    `w` and `center` must share structure and leaf shapes (checked at trace time).
    """
    _check_same_structure(("center", "w"), (center, w))
    return tree_norm(jax.tree.map(jnp.subtract, w, center))
