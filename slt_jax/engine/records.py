"""What a compiled segment returns per chain: per-draw records and per-block evaluations."""

from __future__ import annotations

from typing import NamedTuple

import jax

__all__ = ["DrawRecord", "BlockRecord"]


class DrawRecord(NamedTuple):
    """Recorded at every draw, per chain (cheap reductions of what the step computes anyway)."""

    loss: jax.Array  # minibatch mean loss before the draw's update
    grad_norm: jax.Array  # ||∇L_B(w)|| over the sampled coordinates
    distance: jax.Array  # ||w - w*||
    weight_norm: jax.Array  # ||w|| over the sampled leaves
    noise_norm: jax.Array  # scale of the injected noise as the kernel reports it (NaN if it does not)


class BlockRecord(NamedTuple):
    """Recorded at the first draw of every block of `eval_every` draws, per chain."""

    full_loss: jax.Array  # L_n(w) on the full data
    mala: jax.Array  # MALA acceptance of an SGLD probe move from w (diagnostic only)
    per_sample: dict  # name -> per-sample losses on that evaluation set, (m, ...) per chain
