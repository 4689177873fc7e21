"""Reference values that split an SGMCMC λ̂'s error into its parts (sampler benchmark).

λ̂ from an SGMCMC chain differs from the exact λ for two separate reasons:

- *estimator bias*: even a perfect sample of the localized tempered posterior
  p(w) ∝ exp(-nβ L_n(w) - (γ/2)||w - w*||²) gives E_p[nβ(L_n(w) - L_n(w*))] ≠ λ at finite n,
  β and γ (estimators.md §3: O(1/log n) bias). `exact_sampler_llc` measures that expectation
  with an exact sampler (blackjax NUTS, full batch, Metropolis-corrected);
- *sampler bias*: the SGMCMC chain does not sample p: finite step size (discretization),
  minibatch noise, not mixing within the run. The gap between λ̂ and the NUTS value.

For models whose per-sample losses are quadratic in w (linear regression; the (0, k) normal
crossing), SGLD with minibatches is a linear recursion with random coefficients, and its
stationary mean and second moment solve a linear system exactly: `sgld_stationary_llc` gives
the value a perfectly mixed SGLD chain at that ε and batch size converges to, so the
discretization part of the sampler bias is known in closed form (the rest is non-mixing).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from slt_jax import _validate as check

__all__ = ["ExactSamplerLLC", "exact_sampler_llc", "QuadraticLoss", "quadratic_loss",
           "sgld_stationary_llc", "gaussian_posterior_llc"]


def _posterior_args(nbeta, localization) -> tuple[float, float]:
    return check.positive_number("nbeta", nbeta), check.positive_number("localization", localization, allow_zero=True)


@dataclasses.dataclass(frozen=True)
class ExactSamplerLLC:
    """E_p[nβ(L_n(w) - L_n(w*))] from NUTS chains: the posterior's own λ̂, without SGMCMC error.

    llc: mean over chains; se: its standard error from the effective sample size of all draws;
    llc_per_chain: (chains,); rhat: split-R̂ over chains; ess: bulk ESS; acceptance: mean
    Metropolis acceptance; divergences: divergent transitions counted after warm-up;
    num_grad_evals: leapfrog steps (gradient evaluations of the full-data loss) after warm-up.
    """

    llc: float
    se: float
    llc_per_chain: np.ndarray
    rhat: float
    ess: float
    acceptance: float
    divergences: int
    num_grad_evals: int
    wall_s: float


def _flat_potential(loss_fn: Callable, params: Any, data: Any, nbeta: float, localization: float):
    flat_center, unravel = ravel_pytree(params)
    flat_center = flat_center.astype(jnp.float32)

    def mean_loss(u):
        return jnp.mean(loss_fn(unravel(u), data))

    loss_center = mean_loss(flat_center)

    def logdensity(u):
        return -nbeta * mean_loss(u) - 0.5 * localization * jnp.sum((u - flat_center) ** 2)

    def llc_draw(u, logdensity_value):
        # nβ(L_n(u) - L_n(w*)) from the log density NUTS already computed: no extra loss pass.
        return -logdensity_value - 0.5 * localization * jnp.sum((u - flat_center) ** 2) - nbeta * loss_center

    return flat_center, logdensity, llc_draw


def exact_sampler_llc(
    loss_fn: Callable,
    params: Any,
    data: Any,
    *,
    nbeta: float,
    localization: float,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 2000,
    max_num_doublings: int = 10,
    seed: int = 0,
) -> ExactSamplerLLC:
    """λ̂ of the exact localized tempered posterior by NUTS (blackjax), full batch.

    Each chain starts at w*, adapts its own step size and diagonal mass matrix with blackjax's
    window adaptation (num_warmup steps, target acceptance 0.8), then draws num_samples. The
    chains run vmapped in one jitted program. `loss_fn(params, data) -> (n,)` per-sample losses,
    as for `slt_jax.estimate_llc`.
    """
    import time

    import arviz as az
    import blackjax

    # Checked before anything compiles: a bad value would otherwise surface deep inside blackjax.
    check.loss_function(loss_fn)
    nbeta, localization = _posterior_args(nbeta, localization)
    check.integer("num_chains", num_chains, minimum=2, hint="(R̂ and the standard error need several chains)")
    for name, value in (("num_warmup", num_warmup), ("num_samples", num_samples)):
        check.integer(name, value, minimum=1)
    check.integer("max_num_doublings", max_num_doublings, minimum=1, maximum=16)
    seed = check.seed(seed)
    start = time.perf_counter()
    center, logdensity, llc_draw = _flat_potential(loss_fn, params, data, nbeta, localization)
    warmup = blackjax.window_adaptation(blackjax.nuts, logdensity, max_num_doublings=max_num_doublings)
    kernel = blackjax.nuts.build_kernel()

    def one_chain(key):
        key_warm, key_draw = jax.random.split(key)
        (state, tuned), _ = warmup.run(key_warm, center, num_steps=num_warmup)

        def step(state, key):
            state, info = kernel(key, state, logdensity, **tuned)  # tuned carries max_num_doublings
            out = (llc_draw(state.position, state.logdensity), info.acceptance_rate,
                   info.is_divergent, info.num_integration_steps)
            return state, out

        _, (draws, acc, div, nsteps) = jax.lax.scan(step, state, jax.random.split(key_draw, num_samples))
        return draws, acc.mean(), div.sum(), nsteps.sum()

    keys = jax.random.split(jax.random.key(seed), num_chains)
    draws, acc, div, nsteps = jax.block_until_ready(jax.jit(jax.vmap(one_chain))(keys))
    draws = np.asarray(draws, np.float64)
    ess = float(az.ess(draws, method="bulk"))
    return ExactSamplerLLC(
        llc=float(draws.mean()),
        se=float(draws.std(ddof=1) / math.sqrt(max(ess, 1.0))),
        llc_per_chain=draws.mean(axis=1),
        rhat=float(az.rhat(draws)),
        ess=ess,
        acceptance=float(np.mean(acc)),
        divergences=int(np.sum(div)),
        num_grad_evals=int(np.sum(nsteps)),
        wall_s=time.perf_counter() - start,
    )


@dataclasses.dataclass(frozen=True)
class QuadraticLoss:
    """Per-sample losses l_i(w* + u) = l_i(w*) + g_i·u + ½ uᵀ H_i u exactly (flattened w).

    grads: (n, d); hessians: (n, d, d); d: number of parameters.
    """

    grads: np.ndarray
    hessians: np.ndarray

    @property
    def d(self) -> int:
        return self.grads.shape[1]


def quadratic_loss(loss_fn: Callable, params: Any, data: Any, *, check_scale: float = 1.0,
                   max_params: int = 200) -> QuadraticLoss:
    """The per-sample gradients and Hessians at w*, after checking the losses are quadratic.

    Raises ValueError when a per-sample loss differs from its second-order expansion at random
    points at distance ~check_scale from w* (the model is not linear in its parameters, so the
    SGLD recursion is not linear and has no closed-form stationary moments).
    """
    center, unravel = ravel_pytree(params)
    center = np.asarray(center, np.float64)
    if center.size > max_params:
        raise ValueError(f"quadratic_loss: {center.size} parameters > max_params = {max_params} (the per-sample "
                         "Hessians and the d²×d² moment system would not fit); raise max_params to force it.")

    def per_sample(u):
        return loss_fn(unravel(jnp.asarray(u, jnp.float32)), data)

    # Cheap test first: along a random line a quadratic has zero third differences. It keeps a
    # non-quadratic model from paying for n per-sample Hessians.
    line = check_scale * np.random.default_rng(1).standard_normal(center.shape)
    values = np.stack([np.asarray(per_sample(center + t * line), np.float64) for t in (-1.0, 0.0, 1.0, 2.0)])
    third = values[3] - 3 * values[2] + 3 * values[1] - values[0]
    scale = 1e-3 * (1 + np.abs(values).max())
    if np.max(np.abs(third)) > scale:
        raise ValueError(
            f"loss_fn is not quadratic in the parameters (third differences along a line up to "
            f"{np.max(np.abs(third)):.3g}): the SGLD stationary moments have a closed form only for models "
            "linear in their parameters."
        )
    # float64 arithmetic on the host would need jax x64; float32 Jacobians are exact for
    # quadratics up to rounding, which the check below tolerates.
    grads = np.asarray(jax.jacfwd(per_sample)(center), np.float64)
    hessians = np.asarray(jax.jacfwd(jax.jacrev(per_sample))(center), np.float64)
    base = np.asarray(per_sample(center), np.float64)
    rng = np.random.default_rng(0)
    for _ in range(3):
        u = check_scale * rng.standard_normal(center.shape)
        expansion = base + grads @ u + 0.5 * np.einsum("nij,i,j->n", hessians, u, u)
        actual = np.asarray(per_sample(center + u), np.float64)
        if not np.allclose(actual, expansion, rtol=1e-3, atol=1e-3 * (1 + np.abs(base).max())):
            worst = float(np.max(np.abs(actual - expansion)))
            raise ValueError(
                f"loss_fn is not quadratic in the parameters (a per-sample loss differs from its "
                f"second-order expansion by {worst:.3g} at distance {check_scale} from w*): the SGLD "
                "stationary moments have a closed form only for models linear in their parameters."
            )
    return QuadraticLoss(grads=grads, hessians=hessians)


def _llc_of_moments(q: QuadraticLoss, nbeta: float, mean: np.ndarray, second: np.ndarray) -> float:
    g, H = q.grads.mean(axis=0), q.hessians.mean(axis=0)
    return float(nbeta * (g @ mean + 0.5 * np.trace(H @ second)))


def gaussian_posterior_llc(q: QuadraticLoss, *, nbeta: float, localization: float) -> float:
    """E_p[nβ(L_n - L_n(w*))] for the exact (Gaussian) posterior of a quadratic loss."""
    nbeta, localization = _posterior_args(nbeta, localization)
    g, H = q.grads.mean(axis=0), q.hessians.mean(axis=0)
    precision = nbeta * H + localization * np.eye(q.d)
    mean = -np.linalg.solve(precision, nbeta * g)
    return _llc_of_moments(q, nbeta, mean, np.linalg.inv(precision) + np.outer(mean, mean))


def sgld_stationary_llc(
    q: QuadraticLoss,
    *,
    nbeta: float,
    localization: float,
    step_size: float,
    batch_size: int,
    batch_sampling: str = "with_replacement",
) -> float:
    """E[nβ(L_n(w) - L_n(w*))] under the stationary law of minibatch SGLD on a quadratic loss.

    SGLD (estimators.md §2) with u = w - w*: u' = A_B u + c_B + sqrt(ε) ξ, where
    A_B = I - (ε/2)(nβ H_B + γ I), c_B = -(ε/2) nβ g_B, and (H_B, g_B) are the minibatch means,
    independent of u at each step. The stationary mean m solves m = E[A] m + E[c] (it equals the
    exact posterior mean); the second moment S solves
        S = E[A S Aᵀ] + E[A m cᵀ] + E[c mᵀ Aᵀ] + E[c cᵀ] + ε I,
    whose expectations over the minibatch need only the population covariance of (H_i, g_i):
    Cov(mean over B) = f/B · Cov_pop with f = (n - B)/(n - 1) without replacement, 1 with.
    batch_sampling as in `slt_jax.estimate_llc` (the same default). Returns
    nβ(g·m + ½ tr(H S)); `inf` when the recursion is unstable (no stationary law).
    """
    n, d = q.grads.shape
    nbeta, localization = _posterior_args(nbeta, localization)
    step_size = check.positive_number("step_size", step_size)
    batch_size = check.integer("batch_size", batch_size, minimum=1, maximum=n)
    if batch_size == n:
        f = 0.0
    elif batch_sampling == "without_replacement":
        f = (n - batch_size) / (n - 1)
    elif batch_sampling == "with_replacement":
        f = 1.0
    else:
        raise ValueError(f"batch_sampling must be 'without_replacement' or 'with_replacement', got {batch_sampling!r}.")
    eps, k = float(step_size), float(step_size) * float(nbeta) / 2
    g, H = q.grads.mean(axis=0), q.hessians.mean(axis=0)
    A = np.eye(d) - 0.5 * eps * (nbeta * H + localization * np.eye(d))
    if np.max(np.abs(np.linalg.eigvals(A))) >= 1:
        return math.inf
    mean = -np.linalg.solve(nbeta * H + localization * np.eye(d), nbeta * g)
    c = -k * g
    dH, dg = q.hessians - H, q.grads - g
    w = k * k * f / (batch_size * n)  # weight of Σ_i over the per-sample deviations
    # vec(X S Yᵀ) = (X ⊗ Y) vec(S) for row-major vec; every matrix here is symmetric.
    operator = np.kron(A, A) + w * np.einsum("nij,nkl->ikjl", dH, dH).reshape(d * d, d * d)
    dHm = dH @ mean  # (n, d): D_i m
    const = (np.outer(A @ mean, c) + np.outer(c, A @ mean) + np.outer(c, c) + eps * np.eye(d)
             + w * (dHm.T @ dg + dg.T @ dHm + dg.T @ dg))
    if np.max(np.abs(np.linalg.eigvals(operator))) >= 1:
        return math.inf  # the second moment grows without bound (minibatch noise too large)
    second = np.linalg.solve(np.eye(d * d) - operator, const.reshape(-1)).reshape(d, d)
    return _llc_of_moments(q, nbeta, mean, second)


def _sinh_grid(half_width: float, num: int, finest: float) -> tuple[np.ndarray, np.ndarray]:
    # Nodes dense near 0 (spacing ≈ finest·dt) and coarse far out: the posterior of a normal
    # crossing is a thin ridge along each axis, whose width shrinks away from the origin only
    # in the *other* coordinate, which is near 0 there.
    t_max = math.asinh(half_width / finest)
    t = np.linspace(-t_max, t_max, num)
    w = finest * np.sinh(t)
    weights = finest * np.cosh(t) * (t[1] - t[0])  # dw = finest·cosh(t) dt
    weights[[0, -1]] *= 0.5
    return w, weights


def normal_crossing_posterior_llc(
    powers, data: dict, *, nbeta: float, localization: float, noise_std: float = 1.0,
    half_width: float | None = None, num: int = 4001,
) -> float:
    """E_p[nβ(L_n(w) - L_n(0))] for `truth.make_normal_crossing` with two parameters, by quadrature.

    L_n depends on w only through P = w_1^k_1 w_2^k_2: L_n = (Σy² - 2P Σxy + P² Σx²)/(2nσ²), so
    the exact posterior expectation is a 2-D integral, computed on a sinh-spaced tensor grid
    (no sampler, no Monte Carlo error; the quadrature error is checked in the tests against the
    closed form of the (0, 1) crossing and by refining the grid). half_width defaults to
    10/sqrt(γ) (the localization's Gaussian tail beyond it is < e^-50).
    """
    if len(tuple(powers)) != 2:
        raise ValueError(f"powers must have two entries (a 2-parameter crossing), got {powers!r}.")
    k1, k2 = (check.integer("powers", p, minimum=0) for p in powers)
    nbeta, localization = _posterior_args(nbeta, localization)
    if localization == 0 and half_width is None:
        raise ValueError("localization = 0 needs an explicit half_width: the quadrature box is 10/sqrt(γ) by default.")
    missing = {"x", "y"} - set(data)
    if missing:
        raise ValueError(f"data must be make_normal_crossing's {{'x': (n, 1), 'y': (n, 1)}}; missing {sorted(missing)}.")
    x = np.asarray(data["x"], np.float64).reshape(-1)
    y = np.asarray(data["y"], np.float64).reshape(-1)
    n, var = x.size, (noise_std**2 if noise_std > 0 else 1.0)
    sxx, sxy = float(x @ x) / (n * var), float(x @ y) / (n * var)
    half = half_width if half_width is not None else 10.0 / math.sqrt(localization)
    w, weights = _sinh_grid(half, num, finest=1e-3)
    P = np.outer(w**k1, w**k2)
    excess = nbeta * (-P * sxy + 0.5 * P * P * sxx)  # nβ(L_n(w) - L_n(0))
    log_p = -excess - 0.5 * localization * (w[:, None] ** 2 + w[None, :] ** 2)
    p = np.exp(log_p - log_p.max()) * np.outer(weights, weights)
    return float(np.sum(p * excess) / np.sum(p))
