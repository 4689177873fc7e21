"""The params-dependent half of validation: checkpoints, mask, data and loss, checked together."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from slt_jax import _validate as check
from slt_jax.engine.sinks import per_sample_bytes
from slt_jax.posterior import Partition, make_partition
from slt_jax.streaming import StreamingData

__all__ = ["Problem", "checkpoint_list", "validate_problem"]


@dataclass(frozen=True)
class Problem:
    """What the loss is evaluated on: each checkpoint split into sampled and frozen leaves."""

    partition: Partition
    centers: list  # per checkpoint: sampled leaves in the params' own dtype (host or device)
    frozens: list  # per checkpoint: frozen leaves
    data: Any  # device-ready pytree, or StreamingData
    eval_sets: dict
    losses_per_eval: dict  # eval set -> loss values per evaluation
    num_params: int  # sampled coordinates d
    num_params_total: int
    loss_dtypes: tuple  # dtype names of the sampled leaves as the loss sees them
    streaming: bool
    # components (several masks in one program): per component, per sampled leaf of the union
    # partition, a 0/1 float32 array of the leaf's shape; and each component's d.
    component_masks: tuple = ()
    component_num_params: tuple = ()


def checkpoint_list(checkpoints: Any) -> tuple[list, list]:
    """(labels, params list) from a list/tuple of params or a {label: params} dict."""
    if isinstance(checkpoints, dict):
        if not checkpoints:
            raise ValueError("checkpoints is an empty dict; pass {label: params} with at least one entry.")
        labels = list(checkpoints)
        kinds = {type(label) for label in labels}
        if not all(isinstance(label, (int, np.integer, str)) for label in labels) or len(kinds) > 1:
            raise TypeError(
                f"checkpoint labels must be all ints (e.g. training steps) or all strings; got {labels[:5]}."
            )
        return [label if isinstance(label, str) else int(label) for label in labels], list(checkpoints.values())
    if isinstance(checkpoints, (list, tuple)):
        if not checkpoints:
            raise ValueError("checkpoints is empty; pass at least one params pytree.")
        return list(range(len(checkpoints))), list(checkpoints)
    raise TypeError(
        f"checkpoints must be a list of params pytrees or a dict {{label: params}}; got {type(checkpoints).__name__}."
    )


def validate_problem(loss_fn: Callable, checkpoints: list, data: Any, eval_sets: dict, mask: Any,
                     batch_size: int, components: dict | None = None) -> Problem:
    """Check every checkpoint against the first and the mask, and the loss on data and eval sets
    (by tracing only: nothing compiles)."""
    params = checkpoints[0]
    for k, ckpt in enumerate(checkpoints):
        name = "params" if len(checkpoints) == 1 else f"checkpoints[{k}]"
        check.mask(mask, ckpt)
        check.finite_params(ckpt, name=name)
        check.same_structure(params, ckpt, name)
    streaming = isinstance(data, StreamingData)
    check.finite_data(data, "data")  # StreamingData: the in-memory leaves (memmaps are skipped)
    for name, es in eval_sets.items():
        check.finite_data(es, f"eval_sets[{name!r}]")
    if streaming:  # trace the loss on the first rows; the data stays on the host
        check.loss_output(loss_fn, params, jax.tree.map(np.asarray, data.head(batch_size)), batch_size)
    else:
        check.loss_output(loss_fn, params, data, batch_size)
    losses_per_eval = {}
    for name, es in eval_sets.items():
        m = check.data_size(es)
        check.loss_output(loss_fn, params, es, min(batch_size, m), name=f"eval_sets[{name!r}]")
        losses_per_eval[name] = int(np.prod(jax.eval_shape(loss_fn, params, es).shape))
    component_masks, component_d = (), ()
    if components:
        for label, m in components.items():
            check.mask(m, params, name=f"components[{label!r}]")
        mask = union_mask(params, list(components.values()))
    partition = make_partition(params, mask)
    if components:
        component_masks = tuple(element_masks(partition, params, m) for m in components.values())
        component_d = tuple(int(sum(np.sum(x) for x in cm)) for cm in component_masks)
    splits = [partition.split(c) for c in checkpoints]
    centers = [s for s, _ in splits]
    loss_dtypes = tuple(np.dtype(jnp.result_type(x)).name for x in centers[0])
    return Problem(
        partition=partition,
        centers=centers,
        frozens=[f for _, f in splits],
        data=data,
        eval_sets=eval_sets,
        losses_per_eval=losses_per_eval,
        num_params=partition.num_sampled(params),
        num_params_total=int(sum(np.size(x) for x in jax.tree.leaves(params))),
        loss_dtypes=loss_dtypes,
        streaming=streaming,
        component_masks=component_masks,
        component_num_params=component_d,
    )


def _mask_leaves(params, mask) -> list:
    """Per params leaf: True, False or a boolean array (None mask: everything sampled)."""
    treedef = jax.tree.structure(params)
    if mask is None:
        return [True] * treedef.num_leaves
    return [m if np.ndim(m) else bool(m) for m in treedef.flatten_up_to(mask)]


def union_mask(params, masks: list):
    """The leaves any component samples: the program's partition (each chain then masks its own)."""
    leaves, treedef = jax.tree.flatten(params)
    per_component = [_mask_leaves(params, m) for m in masks]
    union = []
    for i, leaf in enumerate(leaves):
        values = [c[i] for c in per_component]
        if all(v is True for v in values):
            union.append(True)
        elif all(v is False for v in values):
            union.append(False)
        else:
            union.append(np.logical_or.reduce([np.broadcast_to(np.asarray(v, bool), np.shape(leaf)) for v in values]))
    return treedef.unflatten(union)


def element_masks(partition: Partition, params, mask) -> list:
    """One component's 0/1 float32 mask for every sampled leaf of the union partition."""
    leaves = jax.tree.leaves(params)
    values = _mask_leaves(params, mask)
    return [np.broadcast_to(np.asarray(values[i], np.float32), np.shape(leaves[i])).copy()
            for i in partition.sampled_index]


def storage_mode(requested: str, num_chains: int, num_evals: int, losses_per_eval: dict, limit: int) -> tuple[str, int]:
    """("memory" | "moments", planned bytes): memory unless it would exceed `limit`."""
    planned = per_sample_bytes(num_chains, num_evals, losses_per_eval)
    if requested == "auto":
        requested = "memory" if planned <= limit else "moments"
    return requested, planned


def num_evaluations(num_draws: int, eval_every: int | None) -> int:
    return math.ceil(num_draws / eval_every) if eval_every else 0
