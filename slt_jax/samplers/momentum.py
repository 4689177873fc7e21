"""Momentum samplers: SGHMC and SGNHT, which share one "SGD with momentum" update."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from slt_jax.posterior import Posterior, apply_element_mask, potential_grad
from slt_jax.samplers.base import Kernel, SamplerSpec, masked_add, noise_norm, register, tree_normal

__all__ = ["SGHMCState", "SGNHTState", "sghmc", "sgnht"]

# --- Momentum samplers: SGHMC and SGNHT -------------------------------------------------------
#
# Both use the "SGD with momentum" form of Chen, Fox & Guestrin (2014, eq. 15): the momentum
# v is the displacement of the next step (w ← w + v), η is the learning rate and α the
# friction per step. The physical variables are v = h p (unit mass M = I, time step h) and
# η = h², α = h·C. With η = ε/2 and α = 1 the update is exactly SGLD with step size ε
# (v ← -(ε/2)∇U + sqrt(ε) ξ, w ← w + v), so ε transfers between SGLD and the momentum
# samplers; at stationarity v ~ N(0, η I), i.e. p = v/sqrt(η) has unit kinetic temperature.



def _momentum_update(key, position, momentum, friction, loss_grad, posterior, eta, noise_scale):
    """v ← (1 - friction) v - η ∇U(w) + noise_scale ξ;  w ← w + v (masked coordinates stay)."""
    grad_u = potential_grad(posterior, position, loss_grad)
    noise = tree_normal(key, position)
    dv = jax.tree.map(lambda v, g, xi: -friction * v - eta * g + noise_scale * xi, momentum, grad_u, noise)
    v = masked_add(posterior.element_mask, momentum, dv)
    w = masked_add(posterior.element_mask, position, v)
    return w, v, noise


class SGHMCState(NamedTuple):
    position: Any
    momentum: Any  # v, the displacement of the next step (units of w)


def _build_sghmc(structural: dict):
    def init(position, hyper) -> SGHMCState:
        return SGHMCState(position, jax.tree.map(jnp.zeros_like, position))

    def step(key, state: SGHMCState, loss_grad, posterior: Posterior, hyper):
        friction, eta = hyper["friction"], 0.5 * hyper["step_size"]
        noise_scale = jnp.sqrt(2.0 * (friction - hyper["noise_estimate"]) * eta)
        w, v, noise = _momentum_update(key, state.position, state.momentum, friction, loss_grad, posterior, eta, noise_scale)
        return SGHMCState(w, v), {"noise_norm": noise_norm(noise_scale, noise, posterior.element_mask)}

    return init, step


SGHMC_SPEC = register(SamplerSpec("sghmc", _build_sghmc, numeric={"friction": 0.01, "noise_estimate": 0.0}))


def sghmc(step_size: float, *, friction: float = 0.01, noise_estimate: float = 0.0) -> Kernel:
    """SGHMC (Chen, Fox & Guestrin, ICML 2014) with persistent momentum, eq. 15 form.

        v ← (1 - α) v - η ∇U(w) + sqrt(2 (α - β̂) η) ξ,   w ← w + v,    η = ε/2

    ε is SGLD's step size (drift ε/2, noise sqrt(ε)): with α = 1 this *is* the SGLD step, so
    a working SGLD ε transfers. Stationary law over w: ∝ exp(-U) (exact as ε → 0; v ~ N(0, ηI)).
    The momentum starts at 0 (`init` has no key) and is never resampled (BlackJAX's SGHMC
    redraws it every step, which makes it an HMC-flavoured SGLD rather than CFG's SGHMC).

    friction α (default 0.01): CFG's "connection to SGD with momentum" suggests β̂ = 0 and a
    small α such as 0.01 or 0.1; 0.01 is also the value of BlackJAX's `alpha` default. α is per
    step and dimensionless (CFG: α = h M⁻¹ C, η = h² M⁻¹ with h their time step). Smaller α =
    longer momentum memory: faster travel along flat directions (diffusion ≈ η/α per step
    there, vs η for SGLD), slower damping of oscillations and of the initial transient (~1/α
    steps). noise_estimate β̂ (default 0, CFG's practical choice): the gradient noise's share
    η V̂/2 of the momentum noise (V̂ = per-coordinate variance of the minibatch ∇U, i.e.
    nβ² Var(∇L_B)), subtracted from the injected noise; 0 ≤ β̂ ≤ α. With β̂ = 0 minibatch noise
    heats the chain: kinetic temperature ≈ 1 + η V̂/(2α) (SGNHT's thermostat corrects this).
    Discretization bias on a Gaussian of curvature k: Var(w) ≈ (1/k)/(1 - εk/8) for α ≪ 1,
    (1/k)/(1 - εk/4) at α = 1 (= SGLD's).
    """
    if not 0.0 < friction <= 1.0:
        raise ValueError(f"friction must be in (0, 1], got {friction}")
    if not 0.0 <= noise_estimate <= friction:
        raise ValueError(f"noise_estimate must be in [0, friction], got {noise_estimate}")
    return SGHMC_SPEC.bind(step_size, friction=friction, noise_estimate=noise_estimate)


class SGNHTState(NamedTuple):
    position: Any
    momentum: Any  # v, the displacement of the next step (units of w), as in SGHMC
    thermostat: jax.Array  # ζ = h·ξ, the current friction per step


def _num_sampled(element_mask, like) -> jax.Array:
    counts = jax.tree.map(
        lambda m, x: jnp.asarray(jnp.size(x), jnp.float32) if m is None else jnp.sum(m).astype(jnp.float32),
        element_mask,
        like,
        is_leaf=lambda x: x is None,
    )
    return sum(jax.tree.leaves(counts))


def _build_sgnht(structural: dict):
    def init(position, hyper) -> SGNHTState:
        dtype = jnp.result_type(*jax.tree.leaves(position))
        zeta0 = jnp.asarray(hyper["initial_thermostat"], dtype)
        return SGNHTState(position, jax.tree.map(jnp.zeros_like, position), zeta0)

    def step(key, state: SGNHTState, loss_grad, posterior: Posterior, hyper):
        zeta, eta = state.thermostat, 0.5 * hyper["step_size"]
        noise_scale = jnp.sqrt(2.0 * hyper["diffusion"] * eta)
        w, v, noise = _momentum_update(key, state.position, state.momentum, zeta, loss_grad, posterior, eta, noise_scale)
        sq = apply_element_mask(posterior.element_mask, jax.tree.map(jnp.square, v))
        mean_sq = sum(jnp.sum(x) for x in jax.tree.leaves(sq)) / _num_sampled(posterior.element_mask, v)
        new_zeta = zeta + (mean_sq - eta).astype(zeta.dtype)
        return SGNHTState(w, v, new_zeta), {"noise_norm": noise_norm(noise_scale, noise, posterior.element_mask)}

    return init, step


def _resolve_sgnht(numeric: dict) -> dict:
    """ζ0 defaults to α, the paper's ξ_0 = A."""
    if numeric["initial_thermostat"] is None:
        numeric = {**numeric, "initial_thermostat": numeric["diffusion"]}
    return numeric


SGNHT_SPEC = register(SamplerSpec(
    "sgnht", _build_sgnht, numeric={"diffusion": 0.01, "initial_thermostat": None}, resolve=_resolve_sgnht,
))


def sgnht(step_size: float, *, diffusion: float = 0.01, initial_thermostat: float | None = None) -> Kernel:
    """SGNHT (Ding, Fang, Babbush, Chen, Skeel & Neven, NeurIPS 2014), with the thermostat force.

    Ding et al.'s Algorithm 1 (momentum p, time step h, diffusion A, thermostat ξ, d sampled
    coordinates):
        p ← p - ξ h p - h ∇U(w) + sqrt(2 A h) N(0, I);  w ← w + h p;  ξ ← ξ + h (p·p/d - 1)
    written in the SGHMC "SGD with momentum" units v = h p, η = h² = ε/2, α = A h, ζ = h ξ:
        v ← (1 - ζ) v - η ∇U(w) + sqrt(2 α η) ξ_noise
        w ← w + v
        ζ ← ζ + (mean(v²) - η)          [= h·h(mean(p²) - 1): kinetic temperature target 1]
    ε is SGLD's step size (η = ε/2): with ζ frozen at 1 this is the SGLD step. With ζ frozen at
    α it is `sghmc`; the thermostat instead adapts the friction until the kinetic temperature
    mean(p²) = mean(v²)/η is 1, which absorbs unknown gradient noise. The −ζ v force is applied
    (estimators.md §2: devinterp's `SGMCMC.sgnht` drops this force). The target 1 is not
    a tunable constant: another value would sample exp(-U/T). With an element mask, mean(v²)
    averages only over sampled coordinates (masked v stays 0), d = number of sampled coordinates.

    diffusion α (default 0.01, the per-step value of devinterp's `diffusion_factor` default and
    the value of BlackJAX's `alpha` default): the injected noise, per step and dimensionless
    (the paper's A = α/h). initial_thermostat ζ_0 (default None = α, the paper's ξ_0 = A).
    The momentum starts at 0 (`init` has no key; the paper draws p_0 ~ N(0, I)), so ζ first
    falls (possibly below 0: negative friction heats) until the kinetic energy has built up.
    devinterp's `SGNHT(lr=...)` class uses this form with lr = our η = ε/2.

    Discretization (tests/test_samplers.py, Gaussian): the read-out mean(v²) of the Euler step
    runs hot by ≈ ζ/2 relative to the continuous kinetic energy, so the thermostat settles
    slightly cold: Var(w) ≈ (1 - ζ*/2)/k, with ζ* the equilibrium friction (≈ α without
    gradient noise: -0.5% at α = 0.01; ≈ α + η nβ² Var(g)/2 with minibatch noise). Like any
    momentum Euler scheme it is unstable once ζ > 2: keep η·nβ·|∇L| small enough that the
    thermostat never has to brake that hard (e.g. a far-from-equilibrium start with a large ε).
    """
    if diffusion < 0.0:
        raise ValueError(f"diffusion must be >= 0, got {diffusion}")
    return SGNHT_SPEC.bind(step_size, diffusion=diffusion, initial_thermostat=initial_thermostat)
