"""How an adapter describes its model: the spec (a role per leaf of the full tree F) and a
bound model (the spec plus one checkpoint's F leaves), tagged onto the loss_fns it makes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from slt_jax.adapters.paths import PyTree, _components, path_str

__all__ = []


# ---------------------------------------------------------------------------------------
# Checkpoints: each checkpoint's frozen part comes from that checkpoint
#
# Every adapter describes its model by a canonical *full* tree F (NNX: the pure dict of
# the whole state; Linen: the variables dict; from_function: the params given) and a role
# per leaf of F: sampled (a leaf of Adapted.params), frozen (floating point, held fixed;
# its value is a checkpoint's) or constant (non-floating state such as RNG keys and
# counts: always the adapted model's, it does not enter an eval-mode loss). A bound model
# is the spec plus one checkpoint's F leaves; loss_fn and apply_fn of an Adapted hold them.

_SAMPLED, _FROZEN, _CONST = "sampled", "frozen", "constant"


@dataclass(frozen=True, eq=False)
class _Spec:
    kind: str  # "nnx" | "linen" | "function"
    treedef: Any  # of F
    paths: tuple[str, ...]  # path_str of each F leaf
    index: Mapping[str, int]  # path -> F leaf index
    roles: tuple[str, ...]  # per F leaf
    s_treedef: Any  # of Adapted.params
    s_index: tuple[int, ...]  # F index of each leaf of Adapted.params (its flatten order)
    f_treedef: Any  # of Adapted.frozen
    f_index: tuple[int, ...]
    canonical: Callable[[Any, str], PyTree]  # (user checkpoint, its name) -> tree with F's paths
    raw_apply: Callable[[PyTree, Any], Any]  # (F tree, inputs) -> predictions
    make_loss: Callable[[Callable], Callable]  # apply_fn -> per-sample loss_fn
    hint: str  # what a whole checkpoint is for this adapter (messages)
    ambiguous: tuple[str, ...] = ()  # '/'-joined paths shared by several leaves: no matching by path

    def frozen_paths(self) -> list[str]:
        return [self.paths[i] for i in self.f_index]


@dataclass(frozen=True, eq=False)
class _Bound:
    spec: _Spec
    leaves: tuple  # this checkpoint's F leaves
    packed_loss: Callable | None  # loss of {"sampled", "frozen"} (None: nothing frozen)
    shared_loss: Callable  # loss_fn, tagged as knowingly sharing the frozen part


@dataclass(frozen=True, eq=False)
class _Tag:
    kind: str  # "closed": holds the bound frozen part; "shared": same, declared; "packed"
    bound: _Bound


_TAG = "_slt_adapter"


def _is_float(x: Any) -> bool:
    try:
        return bool(jnp.issubdtype(jnp.result_type(x), jnp.inexact))
    except TypeError:
        return False


def _make_spec(kind, full, sampled, prefix, canonical, raw_apply, make_loss, hint) -> tuple[_Spec, list]:
    """Spec and F leaves of an adapted model; ``sampled`` is Adapted.params, whose key paths
    are F's without the leading components ``prefix``."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(full)
    paths = tuple(path_str(p) for p, _ in flat)
    leaves = [x for _, x in flat]
    index = {p: i for i, p in enumerate(paths)}
    ambiguous = tuple(sorted({p for p in paths if paths.count(p) > 1})) if len(index) != len(paths) else ()
    by_keys = {_components(p): i for i, (p, _) in enumerate(flat)}
    s_flat, s_treedef = jax.tree_util.tree_flatten_with_path(sampled)
    s_index = tuple(by_keys[prefix + _components(p)] for p, _ in s_flat)
    chosen = set(s_index)
    roles = tuple(
        _SAMPLED if i in chosen else _FROZEN if _is_float(x) else _CONST for i, x in enumerate(leaves)
    )
    f_index = tuple(i for i, r in enumerate(roles) if r == _FROZEN)
    f_leaves = [x if r == _FROZEN else None for x, r in zip(leaves, roles)]
    f_treedef = jax.tree.structure(treedef.unflatten(f_leaves))
    spec = _Spec(
        kind, treedef, paths, index, roles, s_treedef, s_index, f_treedef, f_index, canonical, raw_apply,
        make_loss, hint, ambiguous,
    )
    return spec, leaves


def _flatten_like(treedef: Any, tree: PyTree, arg: str, like: str) -> list:
    try:
        return treedef.flatten_up_to(tree)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{arg} does not have the structure of {like} ({e}). For another checkpoint of the model "
            "use adapted.at(checkpoint) (one) or adapted.checkpoints([...]) (several): they take the "
            "checkpoint's frozen part from it."
        ) from None
