"""Adapted (a model in engine form), its checkpoints in engine form (CheckpointBatch), and
_bind, which makes an Adapted from a spec and one checkpoint's leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
from flax import nnx

from slt_jax.adapters.checkpoints import _is_one_checkpoint, _match
from slt_jax.adapters.masks import mask_from_paths
from slt_jax.adapters.paths import Include, PyTree
from slt_jax.adapters.spec import _TAG, _Bound, _flatten_like, _Spec, _Tag

__all__ = ["Adapted", "CheckpointBatch"]


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
