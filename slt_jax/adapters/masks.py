"""Masks over params: by path (mask_from_paths), per layer, per attention head, and set
operations on them; the checks the adapters apply to mask= and to the sampled params.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from slt_jax.adapters.paths import (
    Include,
    PyTree,
    _components,
    _paths,
    _preview,
    path_str,
)

__all__ = ["complement", "head_masks", "layer_masks", "mask_from_paths", "union"]


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


# ---------------------------------------------------------------------------------------
# Ready-made masks: layers, attention heads, and set operations on masks
#
# A mask here is a pytree like ``params`` whose leaves are Python bools (whole leaf
# sampled / frozen) or boolean arrays of the leaf's shape (element-wise), the form
# ``estimate_llc(mask=...)`` takes. ``from_function``/``from_linen(mask=)`` take bool
# leaves only.

LayerInclude = str | Sequence[str] | Callable[[str], bool]

_QKV = ("query", "key", "value")


def _name_filter(include: LayerInclude | None, arg: str) -> Callable[[str], bool]:
    if include is None:
        return lambda name: True
    if callable(include):
        return lambda name: bool(include(name))
    subs = (include,) if isinstance(include, str) else tuple(include)
    if not subs or not all(isinstance(s, str) for s in subs):
        raise TypeError(
            f"{arg}={include!r} must be a str, a non-empty sequence of str (any may occur in the "
            "name), or a callable name -> bool."
        )
    return lambda name: any(s in name for s in subs)


def layer_masks(
    params: PyTree, *, depth: int = 1, include: LayerInclude | None = None
) -> dict[str, PyTree]:
    """One bool-per-leaf mask per layer: the leaves sharing their first ``depth`` path components.

    E.g. NNX params ``{"l1": {"kernel", "bias"}, "l2": {...}}`` give
    ``{"l1": mask, "l2": mask}``; blocks in a list (``blocks/0/attn/...``) need ``depth=2``
    for one mask per block (``"blocks/0"``, ...). Group names are '/'-joined
    (:func:`path_str`), in the order of ``jax.tree.leaves(params)``.
    include: keep only groups whose name contains a substring (str or sequence of str),
    or for which a callable ``name -> bool`` is true.
    Each mask selects its group's leaves (``True``) and freezes the rest (``False``);
    :func:`complement` gives "everything but this layer".
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth={depth!r} must be an integer >= 1 (path components per group name).")
    keep = _name_filter(include, "include")
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    if not flat:
        raise ValueError("params has no array leaves: there are no layers to mask.")
    names = ["/".join(_components(p)[:depth]) for p, _ in flat]
    groups = list(dict.fromkeys(names))
    selected = [g for g in groups if keep(g)]
    if not selected:
        raise ValueError(
            f"include={include!r} matches no layer; layers at depth={depth} are: "
            f"{_preview(groups)}. Pass one of these names (or a substring of one)."
        )
    return {g: treedef.unflatten([n == g for n in names]) for g in selected}


def _attention_modules(comps: list[tuple[str, ...]]) -> list[str]:
    """Module paths under which a ``query/kernel`` leaf sits (candidates for an error message)."""
    found = []
    for c in comps:
        c = c[:-1] if c and c[-1] == "value" and len(c) >= 3 and c[-2] == "kernel" else c
        if c[-2:] == ("query", "kernel"):
            found.append("/".join(c[:-2]))
    return list(dict.fromkeys(found))


def head_masks(
    params: PyTree,
    attention_path: str,
    num_heads: int | None = None,
    *,
    include_output: bool = True,
) -> dict[str, PyTree]:
    """Element-wise masks, one per attention head: ``{"head_0": mask, "head_1": mask, ...}``.

    params: the params pytree (e.g. ``from_nnx(model).params`` or
    ``from_linen(...).params``).
    attention_path: '/'-joined path of the attention module inside ``params`` (see
    :func:`path_str`), e.g. ``"attn"``, ``"blocks/0/attn"``,
    ``"MultiHeadDotProductAttention_0"``, or ``""`` when ``params`` are the attention
    module's own; its ``query``, ``key``, ``value`` (and ``out``) submodules are masked.
    Layouts (``flax.nnx.MultiHeadAttention`` and ``flax.linen.MultiHeadDotProductAttention``):
    ``query|key|value/kernel`` ``(in_features, num_heads, head_dim)``, ``.../bias``
    ``(num_heads, head_dim)``, ``out/kernel`` ``(num_heads, head_dim, out_features)``,
    ``out/bias`` ``(out_features,)``. Head ``h`` gets ``kernel[:, h]``, ``bias[h]`` of
    q/k/v and, with ``include_output``, ``out/kernel[h]``. Fused 2-D layouts
    (``kernel (in, num_heads*head_dim)``, ``bias (num_heads*head_dim,)``,
    ``out/kernel (num_heads*head_dim, out)``; heads contiguous, as after
    ``reshape(..., num_heads, head_dim)``) are supported when ``num_heads`` is given.
    num_heads: inferred from the 3-D kernels when None; checked against them otherwise.
    Leaves shared by all heads (``out/bias``, ``query_ln``/``key_ln`` scales) and every
    leaf outside the module are ``False`` (frozen) in all masks. The heads are disjoint and
    their :func:`union` is the whole per-head parameter set of the module.
    """
    if not isinstance(attention_path, str):
        raise TypeError(
            f"attention_path={attention_path!r} must be a '/'-joined path string naming the "
            "attention module in params, e.g. 'blocks/0/attn' ('' when params is the module's own)."
        )
    if num_heads is not None and (
        isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1
    ):
        raise ValueError(f"num_heads={num_heads!r} must be a positive integer or None (inferred).")
    stripped = attention_path.strip("/")
    prefix = tuple(stripped.split("/")) if stripped else ()
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    comps = [_components(p) for p, _ in flat]
    shapes = [tuple(getattr(x, "shape", np.shape(x))) for _, x in flat]
    inside = [i for i, c in enumerate(comps) if c[: len(prefix)] == prefix and len(c) > len(prefix)]
    if not inside:
        candidates = _attention_modules(comps)
        hint = (
            f"attention modules found (parents of query/kernel): {_preview(candidates)}"
            if candidates
            else f"no query/kernel leaf found anywhere; param paths are {_preview(_paths(params))}"
        )
        raise ValueError(
            f"attention_path={attention_path!r} matches no module in params; {hint}. Pass the "
            "'/'-joined path of the attention module (the parent of its query/key/value/out)."
        )

    # role (proj, 'kernel'|'bias') -> leaf index
    roles: dict[tuple[str, str], int] = {}
    for i in inside:
        rel = comps[i][len(prefix) :]
        if len(rel) == 3 and rel[-1] == "value":  # nnx.State leaves: .../kernel/value
            rel = rel[:2]
        if len(rel) == 2 and rel[0] in (*_QKV, "out") and rel[1] in ("kernel", "bias"):
            roles[rel] = i
    needed = [*_QKV, "out"] if include_output else list(_QKV)
    missing = [f"{n}/kernel" for n in needed if (n, "kernel") not in roles]
    if missing:
        found = ["/".join(comps[i]) for i in inside]
        raise ValueError(
            f"attention_path={attention_path!r} does not look like a Flax attention module: "
            f"{', '.join(missing)} missing under it (found {_preview(found)}). Point it at a "
            "flax.nnx.MultiHeadAttention or flax.linen.MultiHeadDotProductAttention (parent of "
            "query/key/value/out)"
            + ("; for attention without an output projection pass include_output=False." if
               missing == ["out/kernel"] else ".")
        )

    def where(role):
        return "/".join(comps[roles[role]]) + f" {shapes[roles[role]]}"

    # ---- number of heads: from the 3-D q/k/v kernels, else num_heads= ----
    ndims = {n: len(shapes[roles[(n, "kernel")]]) for n in _QKV}
    bad = [n for n in _QKV if ndims[n] not in (2, 3)]
    if bad:
        raise ValueError(
            f"attention_path={attention_path!r}: kernel {where((bad[0], 'kernel'))} is neither "
            "(in_features, num_heads, head_dim) nor fused (in_features, num_heads*head_dim); "
            "this does not look like a Flax attention layout."
        )
    inferred = sorted({shapes[roles[(n, "kernel")]][1] for n in _QKV if ndims[n] == 3})
    if len(inferred) > 1:
        raise ValueError(
            f"attention_path={attention_path!r}: the query/key/value kernels disagree on the number "
            f"of heads (axis 1: {inferred}); found {', '.join(where((n, 'kernel')) for n in _QKV)}."
        )
    if inferred:
        if num_heads is not None and num_heads != inferred[0]:
            raise ValueError(
                f"num_heads={num_heads} but the kernels under {attention_path!r} have "
                f"{inferred[0]} heads on axis 1 ({where(('query', 'kernel'))}); omit num_heads "
                "to infer it."
            )
        heads = inferred[0]
    elif num_heads is None:
        raise ValueError(
            f"attention_path={attention_path!r} has fused 2-D kernels ({where(('query', 'kernel'))}); "
            "the number of heads cannot be inferred: pass num_heads=."
        )
    else:
        heads = num_heads

    # ---- per role: a function h -> index selecting head h ----
    slicers: dict[int, Callable[[int], tuple]] = {}
    value_dim = None  # per-head width of the value projection (the out projection's input)
    for n in _QKV:
        k = shapes[roles[(n, "kernel")]]
        if len(k) == 3:
            dh = k[2]
            slicers[roles[(n, "kernel")]] = lambda h: (slice(None), h)
            bias_shape, bias_slicer = k[1:], (lambda h: (h,))
        else:
            if k[1] % heads:
                raise ValueError(
                    f"num_heads={heads} does not divide the output width of {where((n, 'kernel'))}; "
                    "pass the model's number of heads."
                )
            dh = k[1] // heads
            slicers[roles[(n, "kernel")]] = lambda h, dh=dh: (slice(None), slice(h * dh, (h + 1) * dh))
            bias_shape, bias_slicer = (k[1],), (lambda h, dh=dh: (slice(h * dh, (h + 1) * dh),))
        if (n, "bias") in roles:
            if shapes[roles[(n, "bias")]] != bias_shape:
                raise ValueError(
                    f"attention_path={attention_path!r}: bias {where((n, 'bias'))} does not match "
                    f"its kernel {where((n, 'kernel'))}; expected shape {bias_shape}."
                )
            slicers[roles[(n, "bias")]] = bias_slicer
        if n == "value":
            value_dim = dh
    if include_output:
        o = shapes[roles[("out", "kernel")]]
        if len(o) == 3 and o[0] == heads and o[1] == value_dim:
            slicers[roles[("out", "kernel")]] = lambda h: (h,)
        elif len(o) == 2 and o[0] == heads * value_dim:
            slicers[roles[("out", "kernel")]] = lambda h: (slice(h * value_dim, (h + 1) * value_dim),)
        else:
            raise ValueError(
                f"attention_path={attention_path!r}: output kernel {where(('out', 'kernel'))} does "
                f"not take {heads} heads of width {value_dim} (expected ({heads}, {value_dim}, "
                f"out_features) or ({heads * value_dim}, out_features)); pass include_output=False "
                "to mask only query/key/value."
            )

    masks = {}
    for h in range(heads):
        leaves: list[Any] = [False] * len(flat)
        for i, sl in slicers.items():
            m = np.zeros(shapes[i], dtype=bool)
            m[sl(h)] = True
            leaves[i] = m
        masks[f"head_{h}"] = treedef.unflatten(leaves)
    return masks


def _as_mask_leaf(m: Any, arg: str) -> bool | np.ndarray:
    if isinstance(m, (bool, np.bool_)):
        return bool(m)
    a = np.asarray(m)
    if a.dtype != np.bool_:
        raise TypeError(
            f"{arg} leaves must be bools or boolean arrays; got dtype {a.dtype}. Build masks with "
            "mask_from_paths, layer_masks or head_masks."
        )
    return bool(a) if a.ndim == 0 else a


def complement(mask: PyTree) -> PyTree:
    """Flip a mask: sampled leaves/coordinates become frozen and vice versa.

    Bool leaves stay bools, boolean-array leaves stay arrays (element-wise ``~``).
    E.g. ``complement(layer_masks(params)["l2"])``: everything except layer ``l2``.
    """

    def flip(m):
        m = _as_mask_leaf(m, "mask")
        return (not m) if isinstance(m, bool) else ~m

    return jax.tree.map(flip, mask)


def union(*masks: PyTree) -> PyTree:
    """Leaf-wise OR of masks with the same tree structure (bool and array leaves mixed).

    A leaf is ``True`` if any mask has ``True`` there, ``False`` if all have ``False``,
    otherwise the element-wise OR of the array masks (which must share the leaf's shape).
    """
    if not masks:
        raise TypeError("union() needs at least one mask.")

    def either(*ms):
        ms = [_as_mask_leaf(m, "union") for m in ms]
        if any(m is True for m in ms):
            return True
        arrays = [m for m in ms if not isinstance(m, bool)]
        if not arrays:
            return False
        if len({a.shape for a in arrays}) > 1:
            raise ValueError(
                f"union: array masks for the same leaf have different shapes "
                f"{sorted({a.shape for a in arrays})}; masks must be built on the same params."
            )
        return np.logical_or.reduce(arrays)

    try:
        jax.tree.map(lambda *_: None, masks[0], *masks[1:])
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"union: masks must have the same tree structure (build them on the same params); {e}"
        ) from None
    return jax.tree.map(either, masks[0], *masks[1:])


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
