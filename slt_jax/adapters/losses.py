"""Loss construction: an apply_fn and a loss (name or callable) into a per-sample loss_fn."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from slt_jax.losses import SELF_SUPERVISED, get_loss

__all__ = []


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


def _loss_maker(loss: Any, inputs: str, targets: str | None) -> Callable[[Callable], Callable]:
    get_loss(loss)  # an unknown loss name fails here, at adaptation
    return lambda apply_fn: _make_loss_fn(apply_fn, loss, inputs, targets)
