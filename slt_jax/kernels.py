"""Sampling kernels as pure ``init``/``step`` pairs over pytrees (optax/blackjax style).

Every kernel has the same shape so the chain runner can drive any of them:

    init(position) -> state                       # state.position is the current w
    step(key, state, loss_grad, posterior) -> (state, info)

`loss_grad` is ∇L_B(w), the gradient of the step's minibatch *mean loss* at state.position;
the kernel adds nβ and the localization term itself (posterior.potential_grad), so
preconditioners can use the loss gradient alone, as estimators.md §2 prescribes.
Conventions follow estimators.md §2 (SGLD as in Lau et al. and devinterp: drift ε/2,
noise sqrt(ε)), so step sizes transfer from published work. Every kernel takes that same ε:
the preconditioned ones (rmsprop_sgld, adam_sgld) scale it per coordinate, the momentum ones
(sghmc, sgnht) use the learning rate η = ε/2, which makes them SGLD at friction 1.
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


def noise_norm(scale, noise: Params, element_mask: Params) -> jax.Array:
    """||scale·ξ|| over the sampled coordinates: the size of the injected noise (a diagnostic).

    scale: a scalar or a pytree like `noise` (per-leaf scalars or arrays)."""
    scale = scale if isinstance(scale, (list, tuple, dict)) else jax.tree.map(lambda _: scale, noise)
    injected = apply_element_mask(element_mask, jax.tree.map(lambda s, xi: s * xi, scale, noise))
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(injected)))


def expected_noise_norm(eps, element_mask, like: Params) -> jax.Array:
    """sqrt(E||sqrt(ε)·ξ||²) = sqrt(Σ ε) over the sampled coordinates: the scale of the noise a
    Langevin step injects (a diagnostic to set against the drift, (ε/2)||∇U||).

    The expectation, not the realized ||sqrt(ε)ξ|| (which differs from it by O(1/sqrt(d))
    relative, so it carries no extra information): reducing ξ itself makes XLA store the
    noise instead of generating it inside the update's fused loop (MLP workload at 256
    chains: 75–80k → 80–90k chain-steps/s), and recovering it from the update
    (new - w + (ε/2)∇U) keeps the old and new positions alive together."""
    per_coordinate = jax.tree.map(lambda e, x: jnp.broadcast_to(jnp.asarray(e, jnp.float32), jnp.shape(x)), eps, like)
    per_coordinate = apply_element_mask(element_mask, per_coordinate)
    return jnp.sqrt(sum(jnp.sum(x) for x in jax.tree.leaves(per_coordinate)))


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
        return SGLDState(new), {
            "noise_norm": expected_noise_norm(eps, posterior.element_mask, state.position)
        }

    return Kernel(init, step)


# --- RMSProp-preconditioned SGLD ------------------------------------------------------


class RMSPropSGLDState(NamedTuple):
    position: Params
    square_avg: Params  # v_t, per coordinate
    count: jax.Array  # number of completed updates t


def rmsprop_sgld(
    step_size: float,
    *,
    beta2: float = 0.999,
    eps_stabilizer: float = 1e-5,
    initial_square_avg: float = 1.0,
    bias_correction: bool = True,
) -> Kernel:
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
        info = {"noise_norm": expected_noise_norm(eps_t, posterior.element_mask, state.position)}
        return RMSPropSGLDState(new, v, t), info

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


# --- Adam-preconditioned SGLD ------------------------------------------------------------


class AdamSGLDState(NamedTuple):
    position: Params
    first_moment: Params  # m_t, per coordinate
    square_avg: Params  # v_t, per coordinate
    count: jax.Array  # number of completed updates t


def adam_sgld(
    step_size: float,
    *,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps_stabilizer: float = 1e-8,
    initial_square_avg: float = 1.0,
    bias_correction: bool = True,
) -> Kernel:
    """Adam-preconditioned SGLD (estimators.md §2): RMSProp-SGLD with a first moment in the drift.

    Step size ε follows the SGLD convention of Lau et al. / devinterp (drift ε/2, noise
    sqrt(ε)). Per coordinate, with g_t the minibatch *loss* gradient (never the localization
    term) and t counting updates from 1:
        m_t = β1 m_{t-1} + (1-β1) g_t,     m_{-1} = 0,  m̂_t = m_t / (1 - β1^t)
        v_t = β2 v_{t-1} + (1-β2) g_t²,    v_{-1} = initial_square_avg (1), v̂_t = v_t / (1 - β2^t)
        ε_t = ε / (sqrt(v̂_t) + a)
        w ← w - (ε_t/2) (nβ m̂_t + γ (w - w*)) + sqrt(ε_t) ξ
    i.e. exactly `rmsprop_sgld` (same v, v_{-1} = 1 and bias correction, as in Hitchcock &
    Hoogland, arXiv 2507.21449) with nβ g_t replaced by nβ m̂_t. `bias_correction=False`
    drops both corrections.

    Defaults β1 = 0.9, β2 = 0.999, a = 1e-8 are Adam's (Kingma & Ba, ICLR 2015), so that
    "Adam-SGLD" with default constants means Adam's constants. a only matters where
    sqrt(v̂_t) ≲ a, i.e. on coordinates whose loss gradient has stayed ~0 for ≳ log(a²)/log(β2)
    steps (v_{-1} = 1 decays as β2^t); there ε_t ≈ ε/a is huge whatever a is (1e-8 or pSGLD's
    1e-5), and the localization drift alone then diverges once ε_t γ > 4. Raise a (e.g. 0.1,
    devinterp's RMSProp value) if the model has such dead coordinates.

    Bias (tests/test_samplers.py, a Gaussian of curvature k with nβ/k = 0.83): the drift uses a
    gradient averaged over ~β1/(1-β1) = 9 past steps, which inflates the stationary variance
    far more than SGLD's discretization does: +4% at ε_t k = 0.01, +11% at 0.027, +16% at 0.04
    (SGLD: +ε_t k/4, i.e. 0.25%, 0.7%, 1%). On top comes the position-dependent-preconditioner
    bias of `rmsprop_sgld` (there +3% variance and 0.04 sd mean shifts at β2 = 0.999).
    Use a smaller ε than for `rmsprop_sgld`.
    """

    def init(position: Params) -> AdamSGLDState:
        return AdamSGLDState(
            position,
            jax.tree.map(jnp.zeros_like, position),
            jax.tree.map(lambda x: jnp.full_like(x, initial_square_avg), position),
            jnp.zeros((), jnp.int32),
        )

    def step(key, state: AdamSGLDState, loss_grad, posterior: Posterior):
        t = state.count + 1
        tf = t.astype(jnp.float32)
        m = jax.tree.map(lambda m, g: beta1 * m + (1.0 - beta1) * g, state.first_moment, loss_grad)
        v = jax.tree.map(lambda v, g: beta2 * v + (1.0 - beta2) * g * g, state.square_avg, loss_grad)
        m_correction = (1.0 - beta1**tf) if bias_correction else 1.0
        v_correction = (1.0 - beta2**tf) if bias_correction else 1.0
        m_hat = jax.tree.map(lambda m: m / m_correction, m)
        eps_t = jax.tree.map(lambda v: step_size / (jnp.sqrt(v / v_correction) + eps_stabilizer), v)
        # ∇U with the loss gradient replaced by its bias-corrected first moment.
        grad_u = potential_grad(posterior, state.position, m_hat)
        noise = tree_normal(key, state.position)
        new = langevin_update(state.position, grad_u, noise, eps_t, posterior.element_mask)
        info = {"noise_norm": expected_noise_norm(eps_t, posterior.element_mask, state.position)}
        return AdamSGLDState(new, m, v, t), info

    return Kernel(init, step)


# --- Momentum samplers: SGHMC and SGNHT -------------------------------------------------------
#
# Both use the "SGD with momentum" form of Chen, Fox & Guestrin (2014, eq. 15): the momentum
# v is the displacement of the next step (w ← w + v), η is the learning rate and α the
# friction per step. The physical variables are v = h p (unit mass M = I, time step h) and
# η = h², α = h·C. With η = ε/2 and α = 1 the update is exactly SGLD with step size ε
# (v ← -(ε/2)∇U + sqrt(ε) ξ, w ← w + v), so ε transfers between SGLD and the momentum
# samplers; at stationarity v ~ N(0, η I), i.e. p = v/sqrt(η) has unit kinetic temperature.


def _masked_add(element_mask, base, delta):
    return jax.tree.map(jnp.add, base, apply_element_mask(element_mask, delta))


class SGHMCState(NamedTuple):
    position: Params
    momentum: Params  # v, the displacement of the next step (units of w)


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
    eta = 0.5 * step_size
    noise_scale = (2.0 * (friction - noise_estimate) * eta) ** 0.5

    def init(position: Params) -> SGHMCState:
        return SGHMCState(position, jax.tree.map(jnp.zeros_like, position))

    def step(key, state: SGHMCState, loss_grad, posterior: Posterior):
        grad_u = potential_grad(posterior, state.position, loss_grad)
        noise = tree_normal(key, state.position)
        dv = jax.tree.map(
            lambda v, g, xi: -friction * v - eta * g + noise_scale * xi, state.momentum, grad_u, noise
        )
        v = _masked_add(posterior.element_mask, state.momentum, dv)
        w = _masked_add(posterior.element_mask, state.position, v)
        return SGHMCState(w, v), {"noise_norm": noise_norm(noise_scale, noise, posterior.element_mask)}

    return Kernel(init, step)


class SGNHTState(NamedTuple):
    position: Params
    momentum: Params  # v, the displacement of the next step (units of w), as in SGHMC
    thermostat: jax.Array  # ζ = h·ξ, the current friction per step


def _num_sampled(element_mask, like) -> jax.Array:
    counts = jax.tree.map(
        lambda m, x: jnp.asarray(jnp.size(x), jnp.float32) if m is None else jnp.sum(m).astype(jnp.float32),
        element_mask,
        like,
        is_leaf=lambda x: x is None,
    )
    return sum(jax.tree.leaves(counts))


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
    eta = 0.5 * step_size
    noise_scale = (2.0 * diffusion * eta) ** 0.5
    zeta0 = diffusion if initial_thermostat is None else initial_thermostat

    def init(position: Params) -> SGNHTState:
        dtype = jnp.result_type(*jax.tree.leaves(position))
        return SGNHTState(position, jax.tree.map(jnp.zeros_like, position), jnp.asarray(zeta0, dtype))

    def step(key, state: SGNHTState, loss_grad, posterior: Posterior):
        zeta = state.thermostat
        grad_u = potential_grad(posterior, state.position, loss_grad)
        noise = tree_normal(key, state.position)
        dv = jax.tree.map(
            lambda v, g, xi: -zeta * v - eta * g + noise_scale * xi, state.momentum, grad_u, noise
        )
        v = _masked_add(posterior.element_mask, state.momentum, dv)
        w = _masked_add(posterior.element_mask, state.position, v)
        sq = apply_element_mask(posterior.element_mask, jax.tree.map(jnp.square, v))
        sum_sq = sum(jnp.sum(x) for x in jax.tree.leaves(sq))
        mean_sq = sum_sq / _num_sampled(posterior.element_mask, v)
        new_zeta = zeta + (mean_sq - eta).astype(zeta.dtype)
        return SGNHTState(w, v, new_zeta), {"noise_norm": noise_norm(noise_scale, noise, posterior.element_mask)}

    return Kernel(init, step)


SAMPLERS: dict[str, Callable[..., Kernel]] = {
    "sgld": sgld,
    "rmsprop_sgld": rmsprop_sgld,
    "rmsprop_sgld_devinterp": rmsprop_sgld_devinterp,
    "adam_sgld": adam_sgld,
    "sghmc": sghmc,
    "sgnht": sgnht,
}


def make_kernel(name: str, step_size: float, **kwargs) -> Kernel:
    return SAMPLERS[name](step_size, **kwargs)
