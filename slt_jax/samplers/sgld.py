"""SGLD: w ← w - (ε/2) ∇U(w) + sqrt(ε) ξ  (Lau et al., devinterp; BlackJAX's h equals ε/2)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from slt_jax.posterior import Posterior, potential_grad
from slt_jax.samplers.base import Kernel, SamplerSpec, expected_noise_norm, langevin_update, register, tree_normal

__all__ = ["SGLDState", "sgld"]


class SGLDState(NamedTuple):
    position: Any


def _build(structural: dict):
    def init(position, hyper) -> SGLDState:
        return SGLDState(position)

    def step(key, state: SGLDState, loss_grad, posterior: Posterior, hyper):
        grad_u = potential_grad(posterior, state.position, loss_grad)
        noise = tree_normal(key, state.position)
        eps = jax.tree.map(lambda _: hyper["step_size"], state.position)
        new = langevin_update(state.position, grad_u, noise, eps, posterior.element_mask)
        return SGLDState(new), {"noise_norm": expected_noise_norm(eps, posterior.element_mask, state.position)}

    return init, step


SPEC = register(SamplerSpec("sgld", _build, doc=__doc__))


def sgld(step_size: float) -> Kernel:
    """SGLD: w ← w - (ε/2) ∇U(w) + sqrt(ε) ξ  (BlackJAX's h equals ε/2)."""
    return SPEC.bind(step_size)
