"""Flax adapters: from_nnx (NNX modules) and from_linen (Linen modules and their variables)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.core
import jax
from flax import nnx

from slt_jax.adapters.adapted import Adapted, _bind
from slt_jax.adapters.losses import _loss_maker
from slt_jax.adapters.masks import _check_params, _resolve_mask
from slt_jax.adapters.paths import Include, PyTree, _paths, _preview
from slt_jax.adapters.spec import _make_spec

__all__ = ["from_linen", "from_nnx"]


_NNX_HINT = (
    "an nnx.Module of the same class, its nnx.state(model), or that state as a dict "
    "(nnx.to_pure_dict, or an orbax restore of nnx.state(model)); a filtered state such as "
    "nnx.state(model, nnx.Param) lacks the non-Param floating-point state (e.g. BatchNorm statistics)"
)


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
    Checkpoints (:meth:`Adapted.at`, :meth:`Adapted.checkpoints`): an ``nnx.Module`` of
    the same class, an ``nnx.State`` of the whole model, or a dict of it (pure, or as
    orbax restores ``nnx.state(model)`` without a target).
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
    graphdef, state = nnx.split(evaluated)
    selected = nnx.state(evaluated, wrt)
    if not jax.tree.leaves(selected):
        available = _paths(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
        raise ValueError(
            f"wrt={wrt!r} selects no variables of the model; Param paths are: "
            f"{_preview(available)}. Use e.g. nnx.All(nnx.Param, nnx.PathContains('<name>'))."
        )
    # States hold the model's live Variable objects: convert to plain arrays so later
    # changes to the user's model cannot leak into the frozen part (or the returned w*).
    params = nnx.to_pure_dict(selected)
    _check_params(params, f"parameters selected by wrt={wrt!r}")
    model_type = type(model)

    def canonical(ckpt: Any, where: str) -> PyTree:
        if isinstance(ckpt, nnx.Module):
            if type(ckpt) is not model_type:
                raise TypeError(
                    f"{where} is a {type(ckpt).__name__} but the adapted model is a "
                    f"{model_type.__name__}; pass a checkpoint of the same architecture."
                )
            return nnx.to_pure_dict(nnx.state(ckpt))
        if isinstance(ckpt, nnx.State):
            return nnx.to_pure_dict(ckpt)
        if isinstance(ckpt, Mapping):
            return ckpt
        raise TypeError(f"{where} is a {type(ckpt).__name__}; pass {_NNX_HINT}.")

    def raw_apply(full, x):
        return nnx.merge(graphdef, full)(x)

    spec, leaves = _make_spec(
        "nnx", nnx.to_pure_dict(state), params, (), canonical, raw_apply,
        _loss_maker(loss, inputs, targets), _NNX_HINT,
    )
    return _bind(spec, leaves)


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
    Checkpoints (:meth:`Adapted.at`, :meth:`Adapted.checkpoints`): variables dicts like
    ``variables`` (a bare params dict when there are no other collections), or a
    ``TrainState`` (its ``params`` and, where it has them, other collections as attributes
    such as ``batch_stats``).
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
    params = variables["params"]
    if mask is None:
        sampled = params
    else:
        resolved = _resolve_mask(params, mask)
        sampled = jax.tree.map(lambda m, p: p if m else None, resolved, params)
    _check_params(sampled, "variables['params']")
    collections = sorted(variables)
    hint = (
        f"a variables dict with the collections {collections} (module.init's output, or its orbax "
        "restore), or a TrainState"
    )

    def canonical(ckpt: Any, where: str) -> PyTree:
        if isinstance(ckpt, Mapping):
            return dict(ckpt) if "params" in ckpt else {"params": ckpt}
        if hasattr(ckpt, "params"):  # flax.training TrainState and subclasses with batch_stats etc.
            return {c: getattr(ckpt, c) for c in collections if hasattr(ckpt, c)}
        raise TypeError(f"{where} is a {type(ckpt).__name__}; pass {hint}.")

    def raw_apply(full, x):
        return module.apply(full, x, **kwargs)

    spec, leaves = _make_spec(
        "linen", variables, sampled, ("params",), canonical, raw_apply, _loss_maker(loss, inputs, targets),
        hint,
    )
    return _bind(spec, leaves)
