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
import numpy as np
from flax import nnx

from slt_jax.losses import SELF_SUPERVISED, get_loss

__all__ = [
    "Adapted",
    "complement",
    "from_function",
    "from_linen",
    "from_nnx",
    "head_masks",
    "layer_masks",
    "mask_from_paths",
    "path_str",
    "union",
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


def _components(path: Sequence[Any]) -> tuple[str, ...]:
    return tuple(_key_str(k) for k in path)


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
