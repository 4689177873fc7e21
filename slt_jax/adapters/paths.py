"""Key paths as '/'-joined strings, and the short previews of them that messages show."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax

__all__ = ["path_str"]


PyTree = Any
Include = str | Sequence[str] | Callable[[str, Any], bool]


def _key_str(k: Any) -> str:
    if isinstance(k, jax.tree_util.DictKey):
        return str(k.key)
    if isinstance(k, jax.tree_util.GetAttrKey):
        return k.name
    if isinstance(k, jax.tree_util.SequenceKey):
        return str(k.idx)
    if isinstance(k, jax.tree_util.FlattenedIndexKey):
        return str(k.key)
    return str(k)


def path_str(path: Sequence[Any]) -> str:
    """'/'-joined key path, e.g. ``('params', 'Dense_0', 'kernel') -> 'params/Dense_0/kernel'``."""
    return "/".join(_key_str(k) for k in path)


def _paths(tree: PyTree) -> list[str]:
    return [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _preview(paths: list[str], k: int = 12) -> str:
    return ", ".join(paths[:k]) + (f", ... ({len(paths)} in all)" if len(paths) > k else "")


def _components(path: Sequence[Any]) -> tuple[str, ...]:
    return tuple(_key_str(k) for k in path)


def _leaves(n: int) -> str:
    return f"{n} leaf" if n == 1 else f"{n} leaves"
