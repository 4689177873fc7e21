"""from_function: adapt a pure apply_fn(params, x)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from slt_jax.adapters.adapted import Adapted, _bind
from slt_jax.adapters.losses import _loss_maker
from slt_jax.adapters.masks import _check_params, _resolve_mask
from slt_jax.adapters.paths import Include, PyTree
from slt_jax.adapters.spec import _make_spec

__all__ = ["from_function"]


def _pytree_canonical(ckpt: Any, where: str) -> PyTree:
    return ckpt


def from_function(
    apply_fn: Callable[[PyTree, PyTree], jax.Array],
    params: PyTree,
    loss: Any = "squared_error",
    *,
    inputs: str = "x",
    targets: str | None = "y",
    mask: PyTree | Include | None = None,
) -> Adapted:
    """Adapt a pure ``apply_fn(params, x) -> predictions``.

    loss: a name from :data:`slt_jax.losses.LOSSES` or ``(predictions, targets) -> (B,)|(B, T)``.
    inputs, targets: dict keys when batches are dicts. ``targets=None`` (implied by
    ``next_token_cross_entropy``) means the batch is the inputs, and the loss gets
    ``(apply_fn(params, x), x)``.
    mask: optional bool pytree or :func:`mask_from_paths` ``include`` spec; only selected
    leaves are returned in ``Adapted.params`` (``None`` elsewhere), the rest are frozen.
    Checkpoints (:meth:`Adapted.at`, :meth:`Adapted.checkpoints`): params pytrees like
    ``params``, frozen leaves included.
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable (params, x) -> predictions, got {apply_fn!r}.")
    if mask is None:
        sampled = params
    else:
        resolved = _resolve_mask(params, mask)
        sampled = jax.tree.map(lambda m, p: p if m else None, resolved, params)
    _check_params(sampled, "params")
    spec, leaves = _make_spec(
        "function", params, sampled, (), _pytree_canonical, apply_fn, _loss_maker(loss, inputs, targets),
        "a params pytree like the one given to from_function, frozen leaves included",
    )
    return _bind(spec, leaves)
