"""MALA acceptance probability of an SGLD move (jax; callable inside jitted, vmapped programs)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from slt_jax.observables._arrays import _positive
from slt_jax.observables.norms import _check_same_structure, _sq_norm

__all__ = ["mala_acceptance"]


def mala_acceptance(w, grad_U_w, U_w, w_new, grad_U_new, U_new, step_size) -> jax.Array:
    """Metropolis-adjusted (MALA) acceptance probability of one SGLD move w → w' (estimators.md §4).

    The SGLD proposal has drift ε/2 and variance ε (w' = w - (ε/2)∇U(w) + sqrt(ε) ξ), so

        log q(w'|w) = -||w' - w + (ε/2) ∇U(w)||² / (2ε)
        α = min(1, exp[U(w) - U(w') + log q(w|w') - log q(w'|w)])

    A diagnostic only (the move is never rejected); α ≈ 0.9 is typical of healthy SGLD for LLC
    estimation, and α → 0 signals a step size that is too large.

    w, grad_U_w, w_new, grad_U_new: pytrees with identical structure and leaf shapes (positions
        and potential gradients ∇U, U = nβ L_B + (γ/2)||w - w*||²; masked coordinates should have
        zero gradient and w' = w there, so they contribute nothing).
    U_w, U_new: scalar potentials, both on the *same* minibatch.
    step_size: ε > 0 (a Python number or a traced scalar).
    Returns a jax scalar in [0, 1] (NaN if any input is non-finite). Pure jax.numpy: callable
    inside jit and vmap (e.g. vmapped over chains); exp is taken of min(log-ratio, 0), so it
    cannot overflow.
    """
    _check_same_structure(("w", "grad_U_w", "w_new", "grad_U_new"), (w, grad_U_w, w_new, grad_U_new))
    for name, u in (("U_w", U_w), ("U_new", U_new)):
        if jnp.ndim(u) != 0:
            raise ValueError(f"{name} must be a scalar potential; got shape {jnp.shape(u)}.")
    if not isinstance(step_size, jax.core.Tracer):
        _positive("step_size", step_size)
    eps = step_size
    forward = jax.tree.map(lambda a, b, g: b - a + 0.5 * eps * g, w, w_new, grad_U_w)  # w' - w + ε/2 ∇U(w)
    backward = jax.tree.map(lambda a, b, g: a - b + 0.5 * eps * g, w, w_new, grad_U_new)  # w - w' + ε/2 ∇U(w')
    log_q_forward = -_sq_norm(forward) / (2 * eps)
    log_q_backward = -_sq_norm(backward) / (2 * eps)
    log_ratio = U_w - U_new + log_q_backward - log_q_forward
    return jnp.exp(jnp.minimum(log_ratio, 0.0))
