"""Turn models into the engine's contract: a pure per-sample ``loss_fn(params, batch)``.

``loss_fn`` returns losses of shape ``(B,)`` or ``(B, T)`` for a batch whose leaves share a
leading axis ``B``; ``params`` is the pytree that gets sampled. Everything the model needs
besides ``params`` (frozen weights, BatchNorm statistics, RNG state) is captured as plain
arrays, so ``loss_fn`` is safe under ``jax.value_and_grad``, ``vmap``, ``scan`` and ``jit``.

Batches for supervised losses are ``(x, y)`` tuples or dicts ``{inputs: x, targets: y}``;
for self-supervised losses (``next_token_cross_entropy``, or ``targets=None``) the batch is
the input array itself (or a dict holding it under ``inputs``).

Checkpoints. The frozen part (what ``wrt=`` / ``mask=`` leaves out, other Linen
collections) is held inside ``loss_fn`` at the *adapted* model's values, so ``loss_fn`` is
right for ``Adapted.params`` and wrong for another checkpoint's params. For other
checkpoints of the same model, :meth:`Adapted.at` (one) and :meth:`Adapted.checkpoints`
(several, one compiled program) take each checkpoint's frozen part from that checkpoint;
:func:`check_checkpoints` refuses the wrong combination at the engine's boundary.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import flax.core
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from slt_jax.losses import SELF_SUPERVISED, get_loss

__all__ = [
    "Adapted",
    "CheckpointBatch",
    "FrozenPartWarning",
    "check_checkpoints",
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
FROZEN_SOURCES = ("checkpoint", "shared")


class CheckpointBatch(NamedTuple):
    """Several checkpoints of one model in engine form (see :meth:`Adapted.checkpoints`)::

        b = adapted.checkpoints(ckpts)
        results = slt_jax.estimate_llc_checkpoints(b.loss_fn, b.checkpoints, data, mask=b.mask, ...)

    loss_fn: ``(params, batch) -> losses`` for the params in ``checkpoints``.
    checkpoints: one params pytree per checkpoint (a list, or a dict {label: params} when
      the checkpoints were given with labels). When the model has a frozen
      floating-point part, each is ``{"sampled": s, "frozen": f}``: the checkpoint's
      sampled leaves ``s`` (structured like ``Adapted.params``) and its own frozen leaves
      ``f`` (structured like ``Adapted.frozen``); ``mask`` holds every ``f`` leaf fixed,
      each chain at its own checkpoint's value. Otherwise each is the checkpoint's
      sampled part, structured like ``Adapted.params``.
    mask: what to pass as the engine's ``mask=`` (None when nothing is frozen and no mask
      was given).
    """

    loss_fn: Callable[[PyTree, PyTree], jax.Array]
    checkpoints: list
    mask: PyTree | None


@dataclass(frozen=True)
class Adapted:
    """A model in engine form.

    loss_fn: ``(params, batch) -> losses`` of shape ``(B,)`` or ``(B, T)``; pure.
    params: the pytree to sample (the local minimum ``w*``); only these leaves move.
    apply_fn: ``(params, inputs) -> predictions``; pure, same ``params`` structure.

    ``loss_fn`` and ``apply_fn`` hold the frozen part (:attr:`frozen`) at the adapted
    model's values. Another checkpoint of the same model needs its own frozen part::

        a = from_nnx(model, wrt=nnx.All(nnx.Param, nnx.PathContains("l1")))
        b = a.at(ckpt)                      # one checkpoint
        slt_jax.estimate_llc(b.loss_fn, b.params, data, ...)
        b = a.checkpoints([ckpt_1, ckpt_2])  # several, in one program
        slt_jax.estimate_llc_checkpoints(b.loss_fn, b.checkpoints, data, mask=b.mask, ...)

    A checkpoint is what users hold: for ``from_nnx`` an ``nnx.Module`` of the same class,
    an ``nnx.State`` or a dict of the whole state (``nnx.state(model)``, as
    ``nnx.to_pure_dict`` or an orbax restore gives it); for ``from_linen`` a variables
    dict (``{"params": ..., "batch_stats": ...}``) or a ``TrainState``; for
    ``from_function`` a params pytree like the one adapted, frozen leaves included.
    Non-floating state (RNG keys and counts) always comes from the adapted model: it does
    not enter an eval-mode loss.
    """

    loss_fn: Callable[[PyTree, PyTree], jax.Array]
    params: PyTree
    apply_fn: Callable[[PyTree, PyTree], jax.Array]
    _bound: Any = field(default=None, repr=False, compare=False)

    @property
    def frozen(self) -> PyTree | None:
        """The frozen floating-point leaves held by ``loss_fn`` (at the adapted model's values).

        Structured like the model's whole state (NNX: ``nnx.to_pure_dict(nnx.state(model))``;
        Linen: the variables dict; ``from_function``: the params given) with ``None`` in
        place of sampled and non-floating leaves. None when nothing floating is frozen.
        """
        if self._bound is None or not self._bound.spec.f_index:
            return None
        spec, leaves = self._bound.spec, self._bound.leaves
        return spec.f_treedef.unflatten([leaves[i] for i in spec.f_index])

    def at(self, checkpoint: Any, *, frozen: str = "checkpoint") -> Adapted:
        """The same model at another checkpoint: sampled *and* frozen part from ``checkpoint``.

        Returns an :class:`Adapted` whose ``params`` are the checkpoint's sampled part and
        whose ``loss_fn``/``apply_fn`` hold the checkpoint's frozen part, so
        ``estimate_llc(b.loss_fn, b.params, data)`` reports that checkpoint's own L_n(w*).
        Leaves are cast to the adapted model's dtypes. frozen="shared": ``checkpoint`` may
        be the sampled part alone (structured like ``params``) and the frozen part stays
        the adapted model's (only right when the checkpoints share it).
        For several checkpoints prefer :meth:`checkpoints`: one program for all of them.
        """
        bound = self._require_bound("at")
        frozen = _frozen_source(frozen)
        return _bind(bound.spec, _match(bound, checkpoint, "checkpoint", frozen == "checkpoint"))

    def checkpoints(
        self, checkpoints: Iterable[Any], mask: PyTree | Include | None = None, *, frozen: str = "checkpoint"
    ) -> CheckpointBatch:
        """Several checkpoints in engine form, each with its own frozen part.

        checkpoints: a list of checkpoints (forms as for :meth:`at`), or a dict
          ``{label: checkpoint}`` (e.g. training steps), kept as such in the result.
        mask: optional mask over ``params`` (bool or element-wise boolean leaves, e.g.
          ``head_masks(a.params, ...)["head_0"]``, or a :func:`mask_from_paths` spec); it is
          lifted into the returned form, which also keeps the frozen part fixed.
        frozen: "checkpoint" (default) takes each checkpoint's frozen part from it, so every
          checkpoint must be whole. "shared": the checkpoints may be sampled parts alone
          (structured like ``params``) and all share the adapted model's frozen part; say
          so only when the frozen part really was the same in every checkpoint (e.g. it was
          not trained).

        Returns ``CheckpointBatch(loss_fn, checkpoints, mask)`` for
        ``estimate_llc_checkpoints(b.loss_fn, b.checkpoints, data, mask=b.mask, ...)``; the
        ``loss_fn`` is the same object on every call (one compiled program for repeated sweeps).
        """
        bound = self._require_bound("checkpoints")
        frozen = _frozen_source(frozen)
        labels, items = self._checkpoint_items(checkpoints)
        spec = bound.spec
        names = [f"checkpoints[{k!r}]" for k in (labels if labels is not None else range(len(items)))]
        leaves = [_match(bound, c, name, frozen == "checkpoint") for name, c in zip(names, items)]
        sampled = [spec.s_treedef.unflatten([lv[i] for i in spec.s_index]) for lv in leaves]
        relabel = (lambda xs: xs) if labels is None else (lambda xs: dict(zip(labels, xs)))
        if not spec.f_index or frozen == "shared":
            loss_fn = self.loss_fn if not spec.f_index else bound.shared_loss
            user_mask = None if mask is None else self._sampled_mask(mask)
            return CheckpointBatch(loss_fn, relabel(sampled), user_mask)
        packed = [
            {"sampled": s, "frozen": spec.f_treedef.unflatten([lv[i] for i in spec.f_index])}
            for s, lv in zip(sampled, leaves)
        ]
        packed_mask = {
            "sampled": self._sampled_mask(mask),
            "frozen": jax.tree.map(lambda _: False, self.frozen),
        }
        return CheckpointBatch(bound.packed_loss, relabel(packed), packed_mask)

    def _checkpoint_items(self, checkpoints: Any) -> tuple[list | None, list]:
        """(labels or None, checkpoints) from a list or a {label: checkpoint} dict."""
        single = "For a single checkpoint use adapted.at(checkpoint)."
        if isinstance(checkpoints, (nnx.Module, nnx.State)) or (
            isinstance(checkpoints, Mapping) and _is_one_checkpoint(self._bound.spec, checkpoints)
        ):
            raise TypeError(
                f"checkpoints must be a list of checkpoints (or a dict {{label: checkpoint}}); got one "
                f"checkpoint ({type(checkpoints).__name__}). {single}"
            )
        if isinstance(checkpoints, Mapping):
            labels, items = list(checkpoints), list(checkpoints.values())
        elif isinstance(checkpoints, Iterable) and not isinstance(checkpoints, (str, bytes)):
            labels, items = None, list(checkpoints)
        else:
            raise TypeError(
                f"checkpoints must be a list of checkpoints (or a dict {{label: checkpoint}}); got "
                f"{type(checkpoints).__name__}. {single}"
            )
        if not items:
            raise ValueError("checkpoints is empty; pass at least one checkpoint.")
        return labels, items

    def _sampled_mask(self, mask: PyTree | Include | None) -> PyTree:
        if mask is None:
            return jax.tree.map(lambda _: True, self.params)
        if isinstance(mask, str) or callable(mask) or (
            isinstance(mask, Sequence) and mask and all(isinstance(s, str) for s in mask)
        ):
            return mask_from_paths(self.params, mask)
        _flatten_like(self._bound.spec.s_treedef, mask, "mask", "adapted.params")
        return mask

    def _require_bound(self, method: str):
        if self._bound is None:
            raise TypeError(
                f"Adapted.{method} needs an Adapted made by from_nnx, from_linen or from_function; "
                "this one was built by hand, so it does not know the model's frozen part."
            )
        return self._bound


def _frozen_source(frozen: str) -> str:
    if frozen not in FROZEN_SOURCES:
        raise ValueError(
            f"frozen={frozen!r} must be 'checkpoint' (each checkpoint's own frozen part) or 'shared' "
            "(the adapted model's frozen part for every checkpoint)."
        )
    return frozen


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


class FrozenPartWarning(UserWarning):
    """params given with a loss_fn that holds a frozen part are not that loss_fn's own w*."""


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


def _leaves(n: int) -> str:
    return f"{n} leaf" if n == 1 else f"{n} leaves"


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


def _bind(spec: _Spec, leaves: Sequence[Any]) -> Adapted:
    """An Adapted holding one checkpoint's leaves (its frozen part and constants)."""
    leaves = tuple(leaves)

    def assemble(sampled, frozen=None):
        out = list(leaves)
        for i, x in zip(spec.s_index, _flatten_like(spec.s_treedef, sampled, "params", "Adapted.params")):
            out[i] = x
        if frozen is not None:
            f = _flatten_like(spec.f_treedef, frozen, "params['frozen']", "Adapted.frozen")
            for i, x in zip(spec.f_index, f):
                out[i] = x
        return spec.treedef.unflatten(out)

    def apply_fn(p, x):
        return spec.raw_apply(assemble(p), x)

    loss_fn = spec.make_loss(apply_fn)

    def shared_loss(p, batch):
        return loss_fn(p, batch)

    packed_loss = None
    if spec.f_index:

        def packed_apply(q, x):
            if not (isinstance(q, Mapping) and set(q) == {"sampled", "frozen"}):
                raise ValueError(
                    "this loss_fn takes the packed checkpoints of adapted.checkpoints(...), "
                    f"{{'sampled': ..., 'frozen': ...}}; got {type(q).__name__}"
                    + (f" with keys {sorted(map(str, q))}" if isinstance(q, Mapping) else "")
                    + ". Pass b.checkpoints (and mask=b.mask) of b = adapted.checkpoints(...)."
                )
            return spec.raw_apply(assemble(q["sampled"], q["frozen"]), x)

        packed_loss = spec.make_loss(packed_apply)
    bound = _Bound(spec, leaves, packed_loss, shared_loss)
    setattr(loss_fn, _TAG, _Tag("closed", bound))
    setattr(shared_loss, _TAG, _Tag("shared", bound))
    if packed_loss is not None:
        setattr(packed_loss, _TAG, _Tag("packed", bound))
    params = spec.s_treedef.unflatten([leaves[i] for i in spec.s_index])
    return Adapted(loss_fn, params, apply_fn, bound)


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


def _loss_maker(loss: Any, inputs: str, targets: str | None) -> Callable[[Callable], Callable]:
    get_loss(loss)  # an unknown loss name fails here, at adaptation
    return lambda apply_fn: _make_loss_fn(apply_fn, loss, inputs, targets)


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
