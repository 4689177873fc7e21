"""RMSProp-preconditioned SGLD (Hitchcock & Hoogland, arXiv 2507.21449; estimators.md §2).

Per coordinate, with g_t the minibatch *loss* gradient (never the localization term):
    v_t = β2 v_{t-1} + (1-β2) g_t²,   v_{-1} = initial_square_avg (1)
    v̂_t = v_t / (1 - β2^t)            (t counts updates from 1: t = 0 would divide by 0)
    ε_t = ε / (sqrt(v̂_t) + a)
then the SGLD step with ε_t in drift and noise. Defaults: a = 1e-5 from Li et al.'s pSGLD
(AAAI 2016) and β2 = 0.999 from Adam (Kingma & Ba) rather than pSGLD's 0.99, because of the
bias below; H&H's v_{-1} = 1 and bias correction. The effective step is ε/sqrt(v̂), so ε is
typically 10–100× smaller than an SGLD step size for the same model.
devinterp 1.3's variant (v starts at 0, no bias correction, a = 0.1) is registered
separately as "rmsprop_sgld_devinterp".

Caveat (measured, tests/test_accuracy.py): ε_t depends on the position through g_t and the
kernel omits the Γ correction term of position-dependent preconditioners, so its stationary
law is ∝ e^{-U}/ε(w). When the EMA window 1/(1-β2) is comparable to the chain's relaxation
time, λ̂ is biased high (+15% on a linear model at β2 = 0.99, +4% at β2 = 0.999). Noise-free
problems with a regular direction show it most: normal crossing (0,1) gives λ̂ ≈ 0.52–0.55
for λ = 1/2 at ε = 1e-6…1e-5, where SGLD is unbiased.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from slt_jax.posterior import Posterior, potential_grad
from slt_jax.samplers.base import Kernel, SamplerSpec, expected_noise_norm, langevin_update, register, tree_normal

__all__ = ["RMSPropSGLDState", "rmsprop_sgld", "rmsprop_sgld_devinterp"]


class RMSPropSGLDState(NamedTuple):
    position: Any
    square_avg: Any  # v_t, per coordinate
    count: jax.Array  # number of completed updates t


def _build(structural: dict):
    bias_correction = bool(structural["bias_correction"])

    def init(position, hyper) -> RMSPropSGLDState:
        v0 = hyper["initial_square_avg"]
        return RMSPropSGLDState(
            position, jax.tree.map(lambda x: jnp.full_like(x, v0), position), jnp.zeros((), jnp.int32)
        )

    def step(key, state: RMSPropSGLDState, loss_grad, posterior: Posterior, hyper):
        beta2, a, eps = hyper["beta2"], hyper["eps_stabilizer"], hyper["step_size"]
        t = state.count + 1
        v = jax.tree.map(lambda v, g: beta2 * v + (1.0 - beta2) * g * g, state.square_avg, loss_grad)
        correction = (1.0 - beta2 ** t.astype(jnp.float32)) if bias_correction else 1.0
        eps_t = jax.tree.map(lambda v: eps / (jnp.sqrt(v / correction) + a), v)
        grad_u = potential_grad(posterior, state.position, loss_grad)
        noise = tree_normal(key, state.position)
        new = langevin_update(state.position, grad_u, noise, eps_t, posterior.element_mask)
        info = {"noise_norm": expected_noise_norm(eps_t, posterior.element_mask, state.position)}
        return RMSPropSGLDState(new, v, t), info

    return init, step


SPEC = register(SamplerSpec(
    "rmsprop_sgld", _build,
    numeric={"beta2": 0.999, "eps_stabilizer": 1e-5, "initial_square_avg": 1.0},
    structural={"bias_correction": True}, doc=__doc__,
))
DEVINTERP_SPEC = register(SamplerSpec(
    "rmsprop_sgld_devinterp", _build,
    numeric={"beta2": 0.99, "eps_stabilizer": 0.1, "initial_square_avg": 0.0},
    structural={"bias_correction": False},
    doc="devinterp 1.3's RMSProp-SGLD: v starts at 0, no bias correction, a = 0.1.",
))


def rmsprop_sgld(
    step_size: float,
    *,
    beta2: float = 0.999,
    eps_stabilizer: float = 1e-5,
    initial_square_avg: float = 1.0,
    bias_correction: bool = True,
) -> Kernel:
    """RMSProp-preconditioned SGLD; see the module docstring for the update and its bias."""
    return SPEC.bind(
        step_size, beta2=beta2, eps_stabilizer=eps_stabilizer, initial_square_avg=initial_square_avg,
        bias_correction=bias_correction,
    )


def rmsprop_sgld_devinterp(step_size: float, *, beta2: float = 0.99, eps_stabilizer: float = 0.1) -> Kernel:
    """devinterp 1.3's RMSProp-SGLD: v starts at 0, no bias correction, a = 0.1."""
    return DEVINTERP_SPEC.bind(step_size, beta2=beta2, eps_stabilizer=eps_stabilizer)
