"""Checkpoints: matching a user's checkpoint (any of its forms) to the adapted model's leaves,
and the engine's boundary check (check_checkpoints) that refuses the wrong frozen part.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from slt_jax.adapters.paths import PyTree, _leaves, _preview, path_str
from slt_jax.adapters.spec import (
    _FROZEN,
    _SAMPLED,
    _TAG,
    _Bound,
    _flatten_like,
    _is_float,
    _Spec,
    _Tag,
)

__all__ = ["FrozenPartWarning", "check_checkpoints"]


class FrozenPartWarning(UserWarning):
    """params given with a loss_fn that holds a frozen part are not that loss_fn's own w*."""


def _canonical_path(spec: _Spec, p: str) -> str | None:
    if p in spec.index:
        return p
    # orbax restores an nnx.State without a target as nested dicts ending in .../value
    if p.endswith("/value") and p[: -len("/value")] in spec.index:
        return p[: -len("/value")]
    return None


def _is_one_checkpoint(spec: _Spec, tree: Any) -> bool:
    """Whether ``tree`` is itself one checkpoint of the model (not a {label: checkpoint} dict)."""
    try:
        flat = jax.tree_util.tree_flatten_with_path(spec.canonical(tree, "checkpoints"))[0]
    except Exception:  # noqa: BLE001
        return False
    return bool(flat) and all(_canonical_path(spec, path_str(p)) is not None for p, _ in flat)


def _match(bound: _Bound, checkpoint: Any, where: str, frozen_from_checkpoint: bool) -> list:
    """F leaves for ``checkpoint``: its sampled leaves, its frozen ones (or the bound model's
    when ``frozen_from_checkpoint`` is False), the bound model's constants."""
    spec = bound.spec
    if spec.ambiguous:
        raise ValueError(
            f"the adapted model has several leaves at the same '/'-joined path ({_preview(list(spec.ambiguous))}), "
            "so checkpoints cannot be matched to it by path; rename the keys containing '/'."
        )
    tree = spec.canonical(checkpoint, where)
    got: dict[str, Any] = {}
    extra: list[str] = []
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        p = _canonical_path(spec, path_str(path))
        if p is None:
            extra.append(path_str(path))
        else:
            got[p] = x
    if extra:
        raise ValueError(
            f"{where} has leaves the adapted model does not have: {_preview(extra)}; the model's "
            f"are {_preview(list(spec.paths))}. Pass a checkpoint of the same architecture "
            f"({spec.hint})."
        )
    needed = (_SAMPLED, _FROZEN) if frozen_from_checkpoint else (_SAMPLED,)
    missing = [p for p, r in zip(spec.paths, spec.roles) if r in needed and p not in got]
    if missing:
        frozen = spec.frozen_paths()
        if set(missing) == set(frozen):
            raise ValueError(
                f"{where} holds only the sampled part (the leaves of adapted.params); its frozen part "
                f"({_preview(frozen)}) must come from the checkpoint too: pass the whole checkpoint "
                f"({spec.hint}). If every checkpoint really shares the adapted model's frozen part, "
                "pass frozen='shared'."
            )
        raise ValueError(
            f"{where} lacks {len(missing)} of the model's floating-point leaves: {_preview(missing)}. "
            f"Pass the whole checkpoint: {spec.hint}."
        )
    wanted = [i for i, r in enumerate(spec.roles) if r in needed]
    shapes = [
        f"{spec.paths[i]} {np.shape(got[spec.paths[i]])} (the model's {np.shape(bound.leaves[i])})"
        for i in wanted
        if np.shape(got[spec.paths[i]]) != np.shape(bound.leaves[i])
    ]
    if shapes:
        raise ValueError(
            f"{where} has {_leaves(len(shapes))} of other shapes than the adapted model's: "
            f"{_preview(shapes, 6)}; checkpoints must share the model's architecture."
        )
    out = list(bound.leaves)
    for i in wanted:
        p = spec.paths[i]
        x, ref = got[p], bound.leaves[i]
        if not _is_float(x):
            raise TypeError(f"{where}: {p} has dtype {jnp.result_type(x)}; the model's is floating point.")
        out[i] = jnp.asarray(x, dtype=jnp.result_type(ref))
    return out


# ---------------------------------------------------------------------------------------
# The engine's boundary check


def _tag_of(fn: Any) -> _Tag | None:
    for _ in range(8):  # through jax.jit / functools.wraps (__wrapped__) and partial
        tag = getattr(fn, _TAG, None)
        if isinstance(tag, _Tag):
            return tag
        nxt = fn.func if isinstance(fn, functools.partial) else getattr(fn, "__wrapped__", None)
        if nxt is None:
            return None
        fn = nxt
    return None


def _split_checkpoints(spec: _Spec, bound: _Bound, checkpoints: Any) -> list:
    """A list as is, a {training step: params} dict by its values; one pytree either as one
    params (leaf shapes of w*) or stacked (leading checkpoint axis)."""
    if isinstance(checkpoints, (list, tuple)):
        return list(checkpoints)
    if _labeled(checkpoints):
        return list(checkpoints.values())
    try:
        leaves = spec.s_treedef.flatten_up_to(checkpoints)
    except (ValueError, TypeError):
        return [checkpoints]
    ref = [np.shape(bound.leaves[i]) for i in spec.s_index]
    shapes = [np.shape(x) for x in leaves]
    if shapes and all(len(s) == len(r) + 1 and s[1:] == r for s, r in zip(shapes, ref)) and len(
        {s[0] for s in shapes}
    ) == 1:
        return [spec.s_treedef.unflatten([x[k] for x in leaves]) for k in range(shapes[0][0])]
    return [checkpoints]


def _labeled(checkpoints: Any) -> bool:
    return (
        isinstance(checkpoints, dict)
        and bool(checkpoints)
        and all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in checkpoints)
    )


def _same_as_bound(spec: _Spec, bound: _Bound, params: PyTree) -> bool:
    """Whether ``params`` equals the bound w*. Identical objects cost nothing; otherwise the
    smallest leaves are compared first on the host (a differing checkpoint usually shows in
    its first bias), so refusing K checkpoints does not copy K models to the host."""
    pairs = list(zip((bound.leaves[i] for i in spec.s_index), spec.s_treedef.flatten_up_to(params)))
    return all(_equal_or_unknown(x, ref) for ref, x in sorted(pairs, key=lambda rx: np.size(rx[0])))


def _equal_or_unknown(x: Any, ref: Any) -> bool:
    if x is ref or np.shape(x) != np.shape(ref):  # other shapes: the engine's structure check says so
        return True
    try:
        return bool(np.array_equal(np.asarray(x), np.asarray(ref)))
    except Exception:  # noqa: BLE001  tracers, arrays spread over processes: not comparable here
        return True


def _caller_stacklevel() -> int:
    """warnings.warn stacklevel of the first frame outside slt_jax (the user's call)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "slt_jax":
        frame, level = frame.f_back, level + 1
    return level


def _evidence(spec: _Spec, c: Any) -> str:
    """Why ``c`` is not a sampled part like adapted.params (for the refusal message)."""
    if isinstance(c, nnx.Module):
        return f"is an nnx.Module ({type(c).__name__}): a whole model, frozen part included"
    n_s = len(spec.s_index)
    try:
        flat = jax.tree_util.tree_flatten_with_path(c)[0]
    except Exception:  # noqa: BLE001
        flat = []
    frozen = set(spec.frozen_paths())
    hits = [q for q in (_canonical_path(spec, path_str(p)) for p, _ in flat) if q in frozen]
    what = "is an nnx.State" if isinstance(c, nnx.State) else "is a pytree"
    if hits:
        return f"{what} holding {_leaves(len(hits))} of the frozen part ({_preview(hits, 6)})"
    if len(flat) > n_s:
        return f"{what} of {_leaves(len(flat))}, more than the {n_s} of adapted.params (a whole checkpoint)"
    try:
        spec.s_treedef.flatten_up_to(c)
    except (ValueError, TypeError) as e:
        return f"{what} without the structure of adapted.params ({e})"
    return f"{what} unlike adapted.params"


_NOT_GIVEN = object()


def check_checkpoints(
    loss_fn: Callable, checkpoints: Any, mask: PyTree | None = _NOT_GIVEN, *, stacklevel: int | None = None
) -> None:
    """Refuse params that a loss_fn from this module would combine with the wrong frozen part.

    Call at the engine's public boundary, before anything is traced:
    ``check_checkpoints(loss_fn, [params], mask)`` from ``estimate_llc`` and
    ``check_checkpoints(loss_fn, checkpoints, mask)`` from ``estimate_llc_checkpoints``
    (a list, the values of a {label: params} dict, or one stacked pytree). Pass ``mask``
    (None included) whenever the caller has one: the packed form of
    ``adapted.checkpoints`` is refused without its mask only when ``mask`` is given. Does nothing for a
    loss_fn not made here (plain functions), or one without a frozen floating-point part;
    cheap otherwise (structure checks; the values of the sampled leaves are compared with
    the adapted w* only when the structures agree).

    An ``Adapted.loss_fn`` holds the adapted model's frozen part; with it:
      - checkpoints that carry their own frozen part (``nnx.Module``, ``nnx.State``, whole
        state or variables dicts, more leaves than ``adapted.params``) raise ValueError;
      - several checkpoints structured like ``adapted.params`` that differ from its w*
        raise ValueError (each would be evaluated with the adapted model's frozen weights);
      - one such params differing from w* warns (:class:`FrozenPartWarning`).
    The messages name the fix: ``adapted.checkpoints(...)`` / ``adapted.at(...)``, or
    ``frozen='shared'`` when the frozen part really is common. The warning points at the
    first caller outside slt_jax unless ``stacklevel`` is given. The loss_fn of
    ``adapted.checkpoints(...)`` needs its packed checkpoints and ``mask=b.mask``.
    """
    tag = _tag_of(loss_fn)
    if tag is None:
        return
    bound = tag.bound
    spec = bound.spec
    if tag.kind == "packed":
        _check_packed(spec, checkpoints, mask)
        return
    if not spec.f_index:
        return
    items = _split_checkpoints(spec, bound, checkpoints)
    single = len(items) == 1
    frozen = _preview(spec.frozen_paths(), 6)
    n_f = len(spec.f_index)
    fix = (
        "Pass whole checkpoints through the Adapted this loss_fn came from: b = adapted.checkpoints("
        f"checkpoints) (each {spec.hint}), then estimate_llc_checkpoints(b.loss_fn, b.checkpoints, "
        "data, mask=b.mask, ...); for one checkpoint b = adapted.at(checkpoint), then "
        "estimate_llc(b.loss_fn, b.params, data, ...)."
    )
    shared_fix = "Pass b.checkpoints of b = adapted.checkpoints(checkpoints, frozen='shared')."
    for k, c in enumerate(items):
        name = "params" if single else f"checkpoints[{k}]"
        ok = not isinstance(c, (nnx.Module, nnx.State))
        if ok:
            try:
                spec.s_treedef.flatten_up_to(c)
            except (ValueError, TypeError):
                ok = False
        if not ok:
            raise ValueError(
                f"{name} {_evidence(spec, c)}, but loss_fn takes only the sampled part (structured "
                f"like adapted.params) and holds the frozen part of the model it was adapted from "
                f"({_leaves(n_f)}: {frozen}): the checkpoint's own frozen weights would be lost. "
                + (fix if tag.kind == "closed" else shared_fix)
            )
    if tag.kind == "shared":
        return
    differ = [k for k, c in enumerate(items) if not _same_as_bound(spec, bound, c)]
    if not differ:
        return
    if not single:
        raise ValueError(
            f"loss_fn holds the frozen part of the model it was adapted from ({_leaves(n_f)}: {frozen}) "
            f"at that model's values, and checkpoints {differ} differ from its w*: each would be "
            "evaluated with the adapted model's frozen weights instead of its own. " + fix
            + " If every checkpoint really shares that frozen part, say so: b = adapted.checkpoints("
            "checkpoints, frozen='shared')."
        )
    warnings.warn(
        f"params differ from the w* that loss_fn was adapted at, but loss_fn holds that model's frozen "
        f"part ({_leaves(n_f)}: {frozen}): if params come from another checkpoint, its own frozen part is "
        "ignored. For another checkpoint use b = adapted.at(checkpoint), then estimate_llc(b.loss_fn, "
        "b.params, data, ...). If the adapted model's frozen part is meant, pass the params as "
        "adapted.at(params, frozen='shared').params with its loss_fn, or ignore this FrozenPartWarning.",
        FrozenPartWarning,
        stacklevel=_caller_stacklevel() if stacklevel is None else stacklevel,
    )


def _check_packed(spec: _Spec, checkpoints: Any, mask: Any) -> None:
    if isinstance(checkpoints, (list, tuple)):
        items = list(checkpoints)
    elif isinstance(checkpoints, Mapping) and set(checkpoints) != {"sampled", "frozen"}:
        items = list(checkpoints.values())  # {label: packed checkpoint}
    else:
        items = [checkpoints]
    for k, c in enumerate(items):
        if not (isinstance(c, Mapping) and set(c) == {"sampled", "frozen"}):
            raise ValueError(
                f"{'params' if len(items) == 1 else f'checkpoints[{k}]'} is not a packed checkpoint "
                "{'sampled': ..., 'frozen': ...}: this loss_fn (from adapted.checkpoints(...)) takes "
                "b.checkpoints of b = adapted.checkpoints(checkpoints), with mask=b.mask."
            )
        _flatten_like(spec.s_treedef, c["sampled"], "checkpoint['sampled']", "adapted.params")
        _flatten_like(spec.f_treedef, c["frozen"], "checkpoint['frozen']", "adapted.frozen")
    if mask is _NOT_GIVEN:
        return
    if mask is None:
        raise ValueError(
            "this loss_fn (from adapted.checkpoints(...)) carries each checkpoint's frozen part in its "
            "params; without mask= those leaves would be sampled too. Pass mask=b.mask (for a mask of "
            "your own: b = adapted.checkpoints(checkpoints, mask=your_mask))."
        )
    if not (isinstance(mask, Mapping) and set(mask) == {"sampled", "frozen"}):
        raise ValueError(
            "mask must be b.mask of b = adapted.checkpoints(...), {'sampled': ..., 'frozen': ...}; a mask "
            "over adapted.params goes in as adapted.checkpoints(checkpoints, mask=your_mask)."
        )
