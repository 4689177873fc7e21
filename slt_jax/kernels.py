"""Sampling kernels as pure ``init``/``step`` pairs over pytrees (optax/blackjax style).

Every kernel has the same shape so the chain runner can drive any of them:

    init(position) -> state                       # state.position is the current w
    step(key, state, loss_grad, posterior) -> (state, info)

`loss_grad` is ∇L_B(w), the gradient of the step's minibatch *mean loss* at state.position;
the kernel adds nβ and the localization term itself (posterior.potential_grad), so
preconditioners can use the loss gradient alone, as estimators.md §2 prescribes.
Conventions follow estimators.md §2 (SGLD as in Lau et al. and devinterp: drift ε/2,
noise sqrt(ε)), so step sizes transfer from published work.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from slt_jax.posterior import Posterior, apply_element_mask, potential_grad

Params = Any


class Kernel(NamedTuple):
    init: Callable[[Params], Any]
    step: Callable[[jax.Array, Any, Params, Posterior], tuple[Any, dict]]


def tree_normal(key: jax.Array, like: Params) -> Params:
    """Standard normal noise shaped like `like`, one independent key per leaf."""
    leaves, treedef = jax.tree.flatten(like)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten(
        [jax.random.normal(k, jnp.shape(x), jnp.result_type(x)) for k, x in zip(keys, leaves)]
    )


def langevin_update(position, grad_u, noise, eps, element_mask) -> Params:
    """w - (ε/2) ∇U + sqrt(ε) ξ, with ε a pytree like `position` (per-leaf scalars or arrays)."""
    delta = jax.tree.map(lambda e, g, xi: -0.5 * e * g + jnp.sqrt(e) * xi, eps, grad_u, noise)
    delta = apply_element_mask(element_mask, delta)
    return jax.tree.map(jnp.add, position, delta)


# --- SGLD ---------------------------------------------------------------------------


class SGLDState(NamedTuple):
    position: Params


def sgld(step_size: float) -> Kernel:
    """SGLD: w ← w - (ε/2) ∇U(w) + sqrt(ε) ξ  (BlackJAX's h equals ε/2)."""

    def init(position: Params) -> SGLDState:
        return SGLDState(position)

    def step(key, state: SGLDState, loss_grad, posterior: Posterior):
        grad_u = potential_grad(posterior, state.position, loss_grad)
        noise = tree_normal(key, state.position)
        eps = jax.tree.map(lambda _: step_size, state.position)
        new = langevin_update(state.position, grad_u, noise, eps, posterior.element_mask)
        return SGLDState(new), {}

    return Kernel(init, step)


# --- RMSProp-preconditioned SGLD ------------------------------------------------------


class RMSPropSGLDState(NamedTuple):
    position: Params
    square_avg: Params  # v_t, per coordinate
    count: jax.Array  # number of completed updates t


def rmsprop_sgld(
    step_size: float,
    *,
    beta2: float = 0.99,
    eps_stabilizer: float = 1e-5,
    initial_square_avg: float = 1.0,
    bias_correction: bool = True,
) -> Kernel:
    """RMSProp-preconditioned SGLD (Hitchcock & Hoogland, arXiv 2507.21449; estimators.md §2).

    Per coordinate, with g_t the minibatch *loss* gradient (never the localization term):
        v_t = β2 v_{t-1} + (1-β2) g_t²,   v_{-1} = initial_square_avg (1)
        v̂_t = v_t / (1 - β2^t)            (t counts updates from 1: t = 0 would divide by 0)
        ε_t = ε / (sqrt(v̂_t) + a)
    then the SGLD step with ε_t in drift and noise. Defaults: β2 = 0.99 and a = 1e-5, the
    constants of Li et al.'s pSGLD (AAAI 2016), with H&H's v_{-1} = 1 and bias correction.
    devinterp 1.3's variant (v starts at 0, no bias correction, a = 0.1) is registered
    separately as "rmsprop_sgld_devinterp".

    Caveat (measured, tests/test_accuracy.py): ε_t depends on the position through g_t and the
    kernel omits the Γ correction term of position-dependent preconditioners, so its stationary
    law is ∝ e^{-U}/ε(w). When the EMA window 1/(1-β2) is comparable to the chain's relaxation
    time, λ̂ is biased high (+15% on a linear model at β2 = 0.99, +4% at β2 = 0.999).
    """

    def init(position: Params) -> RMSPropSGLDState:
        return RMSPropSGLDState(
            position,
            jax.tree.map(lambda x: jnp.full_like(x, initial_square_avg), position),
            jnp.zeros((), jnp.int32),
        )

    def step(key, state: RMSPropSGLDState, loss_grad, posterior: Posterior):
        t = state.count + 1
        v = jax.tree.map(lambda v, g: beta2 * v + (1.0 - beta2) * g * g, state.square_avg, loss_grad)
        correction = (1.0 - beta2 ** t.astype(jnp.float32)) if bias_correction else 1.0
        eps_t = jax.tree.map(lambda v: step_size / (jnp.sqrt(v / correction) + eps_stabilizer), v)
        grad_u = potential_grad(posterior, state.position, loss_grad)
        noise = tree_normal(key, state.position)
        new = langevin_update(state.position, grad_u, noise, eps_t, posterior.element_mask)
        return RMSPropSGLDState(new, v, t), {}

    return Kernel(init, step)


def rmsprop_sgld_devinterp(step_size: float, *, beta2: float = 0.99, eps_stabilizer: float = 0.1) -> Kernel:
    """devinterp 1.3's RMSProp-SGLD: v starts at 0, no bias correction, a = 0.1."""
    return rmsprop_sgld(
        step_size,
        beta2=beta2,
        eps_stabilizer=eps_stabilizer,
        initial_square_avg=0.0,
        bias_correction=False,
    )


SAMPLERS: dict[str, Callable[..., Kernel]] = {
    "sgld": sgld,
    "rmsprop_sgld": rmsprop_sgld,
    "rmsprop_sgld_devinterp": rmsprop_sgld_devinterp,
}


def make_kernel(name: str, step_size: float, **kwargs) -> Kernel:
    return SAMPLERS[name](step_size, **kwargs)
