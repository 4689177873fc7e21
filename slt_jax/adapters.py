"""Turn models into the engine's contract: a pure per-sample ``loss_fn(params, batch)``.

``loss_fn`` returns losses of shape ``(B,)`` or ``(B, T)`` for a batch whose leaves share a
leading axis ``B``; ``params`` is the pytree that gets sampled. Everything the model needs
besides ``params`` (frozen weights, BatchNorm statistics, RNG state) is captured as plain
arrays, so ``loss_fn`` is safe under ``jax.value_and_grad``, ``vmap``, ``scan`` and ``jit``.

Batches for supervised losses are ``(x, y)`` tuples or dicts ``{inputs: x, targets: y}``;
for self-supervised losses (``next_token_cross_entropy``, or ``targets=None``) the batch is
the input array itself (or a dict holding it under ``inputs``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import flax.core
import jax
import jax.numpy as jnp
from flax import nnx

from slt_jax.losses import SELF_SUPERVISED, get_loss

__all__ = [
    "Adapted",
    "from_function",
    "from_linen",
    "from_nnx",
    "mask_from_paths",
    "path_str",
]

PyTree = Any
Include = str | Sequence[str] | Callable[[str, Any], bool]


@dataclass(frozen=True)
class Adapted:
    """A model in engine form.

    loss_fn: ``(params, batch) -> losses`` of shape ``(B,)`` or ``(B, T)``; pure.
    params: the pytree to sample (the local minimum ``w*``); only these leaves move.
    apply_fn: ``(params, inputs) -> predictions``; pure, same ``params`` structure.
    """

    loss_fn: Callable[[PyTree, PyTree], jax.Array]
    params: PyTree
    apply_fn: Callable[[PyTree, PyTree], jax.Array]


# ---------------------------------------------------------------------------------------
# Paths and masks


def path_str(path: Sequence[Any]) -> str:
    """'/'-joined key path, e.g. ``('params', 'Dense_0', 'kernel') -> 'params/Dense_0/kernel'``."""
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(k.name)
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        elif isinstance(k, jax.tree_util.FlattenedIndexKey):
            parts.append(str(k.key))
        else:
            parts.append(str(k))
    return "/".join(parts)


def _paths(tree: PyTree) -> list[str]:
    return [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _preview(paths: list[str], k: int = 12) -> str:
    return ", ".join(paths[:k]) + (f", ... ({len(paths)} in all)" if len(paths) > k else "")


def mask_from_paths(params: PyTree, include: Include) -> PyTree:
    """Boolean mask pytree (one Python ``bool`` per leaf of ``params``).

    include: a substring, a sequence of substrings (any may match) of the '/'-joined key
    path (see :func:`path_str`), or a callable ``(path_str, leaf) -> bool``.
    The result can be given to the engine (or to ``mask=`` here) to sample only the
    selected leaves; the others stay frozen at ``w*``.
    """
    if callable(include):
        pred = lambda p, x: bool(include(p, x))  # noqa: E731
    else:
        subs = (include,) if isinstance(include, str) else tuple(include)
        if not subs or not all(isinstance(s, str) for s in subs):
            raise TypeError(
                f"include={include!r} must be a str, a non-empty sequence of str, or a callable "
                "(path_str, leaf) -> bool."
            )
        pred = lambda p, x: any(s in p for s in subs)  # noqa: E731
    mask = jax.tree_util.tree_map_with_path(lambda p, x: pred(path_str(p), x), params)
    if not any(jax.tree.leaves(mask)):
        raise ValueError(
            f"include={include!r} selects no parameters; available paths: "
            f"{_preview(_paths(params))}."
        )
    return mask


def _resolve_mask(params: PyTree, mask: PyTree | Include) -> PyTree:
    if isinstance(mask, str) or callable(mask) or (
        isinstance(mask, Sequence) and mask and all(isinstance(s, str) for s in mask)
    ):
        return mask_from_paths(params, mask)
    try:
        jax.tree.map(lambda m, p: None, mask, params)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"mask must have the same tree structure as params (one bool per leaf); {e}. "
            "Build it with mask_from_paths(params, include)."
        ) from None
    leaves = jax.tree.leaves(mask)
    if not all(isinstance(m, bool) for m in leaves):
        raise TypeError(
            "mask= here takes one Python bool per leaf (whole leaves are sampled or frozen); "
            "build it with mask_from_paths, or pass element-wise array masks to estimate_llc(mask=)."
        )
    if not any(leaves):
        raise ValueError("mask selects no parameters (all leaves False).")
    return mask


def _restrict(apply_fn: Callable, params: PyTree, mask: PyTree | Include | None):
    """Sample only ``mask``-selected leaves: the rest is closed over as constants.

    Returns ``(apply_fn', sampled)`` where ``sampled`` has ``params``' structure with
    ``None`` (an empty subtree) in place of frozen leaves.
    """
    if mask is None:
        return apply_fn, params
    mask = _resolve_mask(params, mask)
    sampled = jax.tree.map(lambda m, p: p if m else None, mask, params)
    frozen = jax.tree.map(lambda m, p: None if m else p, mask, params)

    def restricted(s, x):
        return apply_fn(jax.tree.map(lambda m, a, b: a if m else b, mask, s, frozen), x)

    return restricted, sampled


def _check_params(params: PyTree, arg: str) -> None:
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    if not leaves:
        raise ValueError(f"{arg} has no array leaves: there is nothing to sample.")
    bad = [path_str(p) for p, x in leaves if not jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    if bad:
        raise TypeError(
            f"{arg} has non-floating leaves that cannot be sampled: {_preview(bad)}; "
            "exclude them (a narrower filter or mask)."
        )


# ---------------------------------------------------------------------------------------
# Loss construction


def _make_loss_fn(apply_fn: Callable, loss: Any, inputs: str, targets: str | None):
    per_sample = get_loss(loss)
    self_supervised = targets is None or per_sample in SELF_SUPERVISED

    def split_batch(batch):
        if self_supervised:
            x = batch[inputs] if isinstance(batch, Mapping) else batch
            return x, x
        if isinstance(batch, Mapping):
            missing = [k for k in (inputs, targets) if k not in batch]
            if missing:
                raise KeyError(
                    f"batch dict lacks keys {missing} (has {sorted(batch)}); set inputs=/targets= "
                    "to the keys holding the model inputs and the targets."
                )
            return batch[inputs], batch[targets]
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            return batch[0], batch[1]
        raise TypeError(
            f"batch must be an (inputs, targets) tuple or a dict with keys {inputs!r}, "
            f"{targets!r}; got {type(batch).__name__}."
        )

    def loss_fn(params, batch):
        x, y = split_batch(batch)
        losses = per_sample(apply_fn(params, x), y)
        # Shapes are static, so this costs nothing at run time and catches a loss that
        # already averaged over the batch (the engine needs one loss per example).
        b = jax.tree.leaves(x)[0].shape[0]
        if jnp.ndim(losses) == 0 or jnp.shape(losses)[0] != b:
            raise ValueError(
                f"loss returned shape {jnp.shape(losses)}, expected per-sample losses (B,) or "
                f"(B, T) with B={b}; do not reduce over the batch (reduction='none')."
            )
        return losses

    return loss_fn


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
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable (params, x) -> predictions, got {apply_fn!r}.")
    apply_fn, params = _restrict(apply_fn, params, mask)
    _check_params(params, "params")
    return Adapted(_make_loss_fn(apply_fn, loss, inputs, targets), params, apply_fn)


def from_nnx(
    model: nnx.Module,
    loss: Any = "squared_error",
    *,
    wrt: Any = nnx.Param,
    inputs: str = "x",
    targets: str | None = "y",
) -> Adapted:
    """Adapt a Flax NNX module called as ``model(x)``.

    wrt: any NNX filter choosing the sampled variables, e.g.
    ``nnx.All(nnx.Param, nnx.PathContains("l1"))``; everything else is frozen.
    The model is evaluated in eval mode (Dropout deterministic, BatchNorm on running
    averages) on a view; the user's ``model`` is not modified.

    ``Adapted.params`` is a plain nested dict of arrays (``nnx.to_pure_dict``), not an
    ``nnx.State``: same leaves, but no ``Variable`` wrappers, so key paths read
    ``l1/kernel`` (not ``l1/kernel/value``) and the tree serializes like any dict.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(
            f"model must be an nnx.Module, got {type(model).__name__}; for a Linen module use "
            "from_linen(module, variables), for a pure function from_function(apply_fn, params)."
        )
    # view() returns a new module graph with eval flags set (sharing the arrays); unlike
    # model.eval() it leaves the user's module in whatever mode it was.
    evaluated = nnx.view(
        model, deterministic=True, use_running_average=True, raise_if_not_found=False
    )
    graphdef, state, rest = nnx.split(evaluated, wrt, ...)
    if not jax.tree.leaves(state):
        available = _paths(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
        raise ValueError(
            f"wrt={wrt!r} selects no variables of the model; Param paths are: "
            f"{_preview(available)}. Use e.g. nnx.All(nnx.Param, nnx.PathContains('<name>'))."
        )
    # Split states hold the model's live Variable objects: convert to plain arrays so later
    # changes to the user's model cannot leak into the frozen part (or the returned w*).
    params = nnx.to_pure_dict(state)
    frozen = nnx.to_pure_dict(rest)
    _check_params(params, f"parameters selected by wrt={wrt!r}")

    def apply_fn(p, x):
        return nnx.merge(graphdef, p, frozen)(x)

    return Adapted(_make_loss_fn(apply_fn, loss, inputs, targets), params, apply_fn)


def from_linen(
    module: Any,
    variables: Mapping[str, Any],
    loss: Any = "squared_error",
    *,
    mask: PyTree | Include | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    inputs: str = "x",
    targets: str | None = "y",
) -> Adapted:
    """Adapt a Flax Linen module: ``module.apply({**variables, "params": p}, x, **apply_kwargs)``.

    variables: ``module.init(...)`` output; ``variables["params"]`` is sampled, other
    collections (``batch_stats``, ...) are frozen. The module must run in eval mode: pass
    its flags, e.g. ``apply_kwargs={"train": False}`` or ``{"deterministic": True}`` (Linen
    has no global switch; in train mode BatchNorm/Dropout fail for lack of mutable
    collections / rngs, which is the intended loud failure).
    mask: optional bool pytree over ``variables["params"]`` or a :func:`mask_from_paths`
    ``include`` spec; only selected leaves are sampled (``None`` elsewhere in ``params``).
    """
    if not isinstance(variables, Mapping) or "params" not in variables:
        keys = sorted(variables) if isinstance(variables, Mapping) else type(variables).__name__
        raise ValueError(
            f"variables must be the dict returned by module.init(...) with a 'params' "
            f"collection; got {keys}. Pass variables={{'params': params, ...}}."
        )
    if not hasattr(module, "apply"):
        raise TypeError(f"module must be a flax.linen.Module, got {type(module).__name__}.")
    kwargs = dict(apply_kwargs or {})
    # unfreeze: FrozenDict and dict are different pytree nodes, so masks built on one
    # would not match the other.
    variables = flax.core.unfreeze(variables)
    params = variables.pop("params")

    def apply_fn(p, x):
        return module.apply({**variables, "params": p}, x, **kwargs)

    apply_fn, params = _restrict(apply_fn, params, mask)
    _check_params(params, "variables['params']")
    return Adapted(_make_loss_fn(apply_fn, loss, inputs, targets), params, apply_fn)
