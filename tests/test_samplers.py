"""Every sampler against a Gaussian posterior known exactly, plus BlackJAX, thermostat and masks.

The target. Five parameters in two leaves, per-sample loss l_i(w) = ½ Σ_j (x_ij - w_j)², so
L_n(w) = ½ ||w - x̄||² + const and the localized tempered posterior (estimators.md §1) is
Gaussian, independently per coordinate, with

    precision k = nβ + γ = 120,    mean μ = (nβ x̄ + γ w*) / k,    variance 1/k.

Chains start at w*, 2-4 posterior sd away from μ. Each statistical test runs 1024 chains in
one jitted, vmapped `lax.scan` (full-batch gradients, or full-batch plus Gaussian noise),
keeps per-chain running sums of (w - μ) and (w - μ)² after burn-in, and compares

  * the standardized mean error (w̄_j - μ_j)·sqrt(k) of every coordinate, and
  * the variance ratio k·Var(w) (pooled over coordinates and chains)

with the exact values. Chains are independent, so the standard errors are the spread of
the per-chain statistics over sqrt(chains); the observed ones are quoted per test.

Tolerances = the sampler's predicted discretization bias at its step size (computed below
from the linear recursion each sampler is on a Gaussian: exact for SGLD and SGHMC, a
frozen-preconditioner / frozen-thermostat approximation for the adaptive ones) + about five
standard errors + (adaptive samplers) an allowance for what the approximation leaves out.
Each test asserts both: measured ≈ predicted (tight) and measured ≈ exact (bias + MC).
They fail if the noise is dropped (variance → ~0), if its scale is off by √2 (ratio off by
2), if SGNHT's -ζ v force is dropped (the momentum is never damped and the variance grows
without bound), or if SGHMC's friction is dropped: checked by breaking the code by hand.

Runtime: about 1 s of XLA compilation plus 0.3-2 s of sampling per statistical test on a
2-core CPU.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import solve_discrete_lyapunov
from scipy.optimize import brentq

import slt_jax
from slt_jax.kernels import (
    SAMPLERS,
    SGNHTState,
    adam_sgld,
    make_kernel,
    rmsprop_sgld,
    sghmc,
    sgld,
    sgnht,
    tree_normal,
)
from slt_jax.posterior import Posterior

# --- The Gaussian target ------------------------------------------------------------------

NBETA, GAMMA = 100.0, 20.0
K = NBETA + GAMMA
_rng = np.random.default_rng(0)
DATA = [_rng.normal(0.3, 1.0, (20, 3)), _rng.normal(-0.2, 1.0, (20, 2))]  # 20 samples
XBAR = [x.mean(axis=0) for x in DATA]
CENTER = [jnp.full((3,), 0.5, jnp.float32), jnp.full((2,), -0.6, jnp.float32)]  # w*
MU = np.concatenate([(NBETA * xb + GAMMA * np.asarray(c, np.float64)) / K for xb, c in zip(XBAR, CENTER)])
NUM_CHAINS = 1024


def mean_loss(w):
    """L_n(w) = mean_i ½ Σ_j (x_ij - w_j)², written through x̄ (it differs by a constant)."""
    return sum(0.5 * jnp.sum((wl - jnp.asarray(xb, jnp.float32)) ** 2) for wl, xb in zip(w, XBAR))


class Stats(NamedTuple):
    mean_z: np.ndarray  # per coordinate, (w̄ - μ)·sqrt(k)
    mean_z_se: float  # standard error of one coordinate's mean_z
    var_ratio: float  # k·Var(w), pooled
    var_ratio_se: float
    final_state: object


def run_gaussian(kernel, *, burnin, steps, grad_noise=0.0, seed=0, chains=NUM_CHAINS) -> Stats:
    post = Posterior(jnp.float32(NBETA), jnp.float32(GAMMA), CENTER, [None, None])
    mu = jnp.asarray(MU, jnp.float32)

    def chain(key):
        def one_step(carry, i):
            state, s1, s2 = carry
            step_key, noise_key = jax.random.split(jax.random.fold_in(key, i))
            grad = jax.grad(mean_loss)(state.position)
            if grad_noise:  # an unbiased, noisy gradient, like a minibatch's
                grad = jax.tree.map(lambda g, n: g + grad_noise * n, grad, tree_normal(noise_key, grad))
            state, _ = kernel.step(step_key, state, grad, post)
            x = jnp.concatenate(state.position) - mu
            keep = (i >= burnin).astype(jnp.float32)
            return (state, s1 + keep * x, s2 + keep * x * x), None

        zero = jnp.zeros(MU.shape, jnp.float32)
        carry = (kernel.init(CENTER), zero, zero)
        (state, s1, s2), _ = jax.lax.scan(one_step, carry, jnp.arange(burnin + steps))
        return state, s1 / steps, s2 / steps

    keys = jax.random.split(jax.random.key(seed), chains)
    state, m1, m2 = jax.block_until_ready(jax.jit(jax.vmap(chain))(keys))
    m1, m2 = np.asarray(m1, np.float64), np.asarray(m2, np.float64)  # (chains, 5)
    sd = K**-0.5
    grand = m1.mean(axis=0)
    chain_var = (m2 - 2 * m1 * grand + grand**2).mean(axis=1) * K
    return Stats(
        mean_z=grand / sd,
        mean_z_se=float((m1 / sd).std(axis=0, ddof=1).mean() / np.sqrt(chains)),
        var_ratio=float(chain_var.mean()),
        var_ratio_se=float(chain_var.std(ddof=1) / np.sqrt(chains)),
        final_state=state,
    )


# --- Predicted stationary variances (k·Var(w)) of each sampler's recursion on this target -----
# With x = w - μ every sampler here is (conditionally) linear: z' = A z + noise, so its
# stationary covariance solves the discrete Lyapunov equation S = A S Aᵀ + Q.


def predicted_sgld(eps, grad_noise=0.0):
    """x' = (1 - εk/2) x - (ε/2) nβ σ_g ζ + sqrt(ε) ξ  ⇒  k Var = (1 + ε nβ² σ_g²/4) / (1 - εk/4)."""
    return (1 + eps * NBETA**2 * grad_noise**2 / 4) / (1 - eps * K / 4)


def _momentum_var(eta, friction, noise_var):
    """(k Var(x), Var(v)/η) for v' = (1-f) v - ηk x + N(0, q), x' = x + v'."""
    h = eta * K
    a = np.array([[1 - h, 1 - friction], [-h, 1 - friction]])
    s = solve_discrete_lyapunov(a, noise_var * np.ones((2, 2)))
    return s[0, 0] * K, s[1, 1] / eta


def predicted_sghmc(eps, friction):
    eta = eps / 2
    return _momentum_var(eta, friction, 2 * friction * eta)[0]


def predicted_sgnht(eps, diffusion, grad_noise=0.0):
    """Thermostat frozen at its equilibrium ζ*, the friction that makes E[mean v²] = η.

    E[ζ_{t+1} - ζ_t] = 0 forces E[mean v²] = η exactly at stationarity; the approximation is
    to hold ζ at ζ* (its fluctuations, sd ≈ sqrt(η/d), are ignored).
    """
    eta = eps / 2
    q = 2 * diffusion * eta + (eta * NBETA * grad_noise) ** 2
    zeta = brentq(lambda z: _momentum_var(eta, z, q)[1] - 1.0, 1e-6, 1.0)
    return _momentum_var(eta, zeta, q)[0], zeta


def predicted_adam(eps_t, beta1):
    """(x, m) recursion with the preconditioned step ε_t frozen (one value per coordinate).

    m' = β1 m + (1-β1) x,  x' = x - (ε_t/2)(nβ m' + γ x) + sqrt(ε_t) ξ   (m̂ = m for large t)
    """
    out = []
    for e in np.ravel(eps_t):
        a = np.array(
            [
                [1 - e / 2 * (NBETA * (1 - beta1) + GAMMA), -e / 2 * NBETA * beta1],
                [1 - beta1, beta1],
            ]
        )
        q = np.array([[e, 0.0], [0.0, 0.0]])
        out.append(solve_discrete_lyapunov(a, q)[0, 0] * K)
    return float(np.mean(out))


def _eps_t(state, eps, beta2, a):
    """Each coordinate's preconditioned step size at the end of the run, averaged over chains."""
    t = int(np.asarray(state.count).ravel()[0])
    v = np.concatenate([np.asarray(x, np.float64) for x in state.square_avg], axis=-1)
    return (eps / (np.sqrt(v / (1 - beta2**t)) + a)).mean(axis=0)


def _report(name, stats, predicted):
    print(
        f"\n{name}: k·Var = {stats.var_ratio:.4f} ± {stats.var_ratio_se:.4f} (predicted {predicted:.4f},"
        f" exact 1); max |mean z| = {np.abs(stats.mean_z).max():.4f} (se {stats.mean_z_se:.4f})"
    )


def _check(stats, predicted, *, var_tol, mean_tol):
    assert abs(stats.var_ratio - predicted) < var_tol, (stats.var_ratio, predicted)
    assert abs(stats.var_ratio - 1.0) < abs(predicted - 1.0) + var_tol
    assert np.all(np.abs(stats.mean_z) < mean_tol), stats.mean_z


# --- Gaussian tests -----------------------------------------------------------------------


def test_sgld_gaussian():
    """ε = 1e-3: εk = 0.12, relaxation 2/(εk) ≈ 17 steps. Bias +3.09% (exact for SGLD here).
    Observed se: variance 0.18%, mean 0.004 sd. Tolerances 1% and 0.02 sd (≈ 5 se)."""
    eps = 1e-3
    stats = run_gaussian(sgld(eps), burnin=500, steps=2000)
    predicted = predicted_sgld(eps)
    _report("sgld", stats, predicted)
    _check(stats, predicted, var_tol=0.01, mean_tol=0.02)


def test_sgld_gaussian_with_gradient_noise():
    """Gradient noise σ_g = 0.2 on ∇L (a minibatch stand-in) inflates SGLD's variance by
    ε nβ² σ_g²/4 = 10%: predicted 1.134 exactly. 512 chains; observed se 0.3%; tolerance 1.5%."""
    eps, sigma = 1e-3, 0.2
    stats = run_gaussian(sgld(eps), burnin=500, steps=2000, grad_noise=sigma, seed=1, chains=512)
    predicted = predicted_sgld(eps, sigma)
    _report("sgld + gradient noise", stats, predicted)
    _check(stats, predicted, var_tol=0.015, mean_tol=0.025)


def test_rmsprop_sgld_gaussian():
    """ε = 1e-4, β2 = 0.999, a = 1e-5. Here E[g²] ≈ 0.008-0.016, so ε_t ≈ 8-11 ε and
    ε_t k ≈ 0.1 (relaxation ≈ 20 steps; the 1/(1-β2) = 1000-step window then barely follows w,
    so the position dependence of ε_t, not corrected by a Γ term, stays small). Predicted from
    the end-of-run ε_t of each coordinate: +2.9% (SGLD's bias at ε_t). Burn-in 8000 steps: v̂
    carries v_{-1} = 1 as β2^t/(1-β2^t), below 0.1·E[g²] only after ≈ 6000 steps.
    512 chains; observed se 0.2%; tolerance 2% (5 se plus ~1% for ε_t following w, measured
    +0.6%). With the default β2 = 0.99 the same run gives k·Var ≈ 1.09 and mean shifts of
    ≈ 0.09 sd (the bias documented on `rmsprop_sgld`)."""
    eps, beta2, a = 1e-4, 0.999, 1e-5
    kernel = rmsprop_sgld(eps, beta2=beta2, eps_stabilizer=a)
    stats = run_gaussian(kernel, burnin=8000, steps=3000, seed=2, chains=512)
    eps_t = _eps_t(stats.final_state, eps, beta2, a)
    predicted = float(np.mean(1 / (1 - eps_t * K / 4)))
    _report(f"rmsprop_sgld (ε_t k = {eps_t.min() * K:.3f}..{eps_t.max() * K:.3f})", stats, predicted)
    _check(stats, predicted, var_tol=0.02, mean_tol=0.03)


def test_adam_sgld_gaussian():
    """Default constants (β1 = 0.9, β2 = 0.999, a = 1e-8), ε = 2.5e-5: ε_t k ≈ 0.023-0.031
    (relaxation ≈ 75 steps). The drift uses m̂, a gradient averaged over ~9 past steps, which
    inflates the variance: the (x, m) recursion at each coordinate's end-of-run ε_t predicts
    +11% (SGLD at the same ε_t: +0.7%). On top, ε_t follows w (window 1000 steps, only ≈ 13
    relaxation times): measured +3% more variance and mean shifts up to 0.043 sd towards w*
    (the density ∝ e^{-U}/ε_t(w) favours large |g|); with β2 = 0.9999 both go away (k·Var
    1.107 ± 0.004 vs 1.109 predicted, mean shifts ≤ 0.016 sd), so they are the adaptive
    preconditioner's, not a drift error. 512 chains; observed se 0.4% (variance) and 0.009 sd
    (mean). Tolerances: 5% on the variance (5 se + the 3%), 0.08 sd on the means (0.043 + 4 se).
    Using g instead of m̂ would give ≈ 1.007, 0.13 below the prediction: that fails."""
    eps = 2.5e-5
    stats = run_gaussian(adam_sgld(eps), burnin=8000, steps=4000, seed=3, chains=512)
    eps_t = _eps_t(stats.final_state, eps, 0.999, 1e-8)
    predicted = predicted_adam(eps_t, 0.9)
    _report(f"adam_sgld (ε_t k = {eps_t.min() * K:.3f}..{eps_t.max() * K:.3f})", stats, predicted)
    _check(stats, predicted, var_tol=0.05, mean_tol=0.08)


def test_sghmc_gaussian():
    """ε = 1e-3 (η = 5e-4, ηk = 0.06), friction 0.01 (the default): predicted +1.53% (exact for
    this recursion; ≈ 1/(1 - εk/8), half of SGLD's bias). Energy decorrelates over 1/α = 100
    steps, so burn-in 2000 and 3000 kept steps. Observed se 0.5%; tolerance 2.5%."""
    eps = 1e-3
    stats = run_gaussian(sghmc(eps), burnin=2000, steps=3000, seed=4)
    predicted = predicted_sghmc(eps, 0.01)
    _report("sghmc", stats, predicted)
    _check(stats, predicted, var_tol=0.025, mean_tol=0.02)


def test_sgnht_gaussian():
    """ε = 1e-3, diffusion 0.01 (the default). The thermostat sets E[v²] = η exactly; the
    discrete v read-out runs hot by ≈ α/2, so k·Var ≈ 1 - α/2: predicted -0.51%. 256 chains;
    observed se 0.07% (the thermostat holds every chain's kinetic energy near target).
    Tolerance 1%."""
    eps = 1e-3
    stats = run_gaussian(sgnht(eps), burnin=2000, steps=3000, seed=5, chains=256)
    predicted, _ = predicted_sgnht(eps, 0.01)
    _report("sgnht", stats, predicted)
    _check(stats, predicted, var_tol=0.01, mean_tol=0.02)
    assert np.all(np.isfinite(np.asarray(stats.final_state.thermostat)))


def test_sgnht_thermostat_absorbs_gradient_noise():
    """Gradient noise σ_g = 0.2 injects (η nβ σ_g)² = 1e-4 per step into v, ten times the
    2αη = 1e-5 of the diffusion: SGHMC with the same α and β̂ = 0 would run ≈ 11× hot. The
    thermostat raises ζ to ζ* ≈ 0.12 instead and keeps k·Var near 1: predicted -5.9% (≈ -ζ*/2,
    the discrete read-out bias, now at the larger ζ*). 256 chains; observed se 0.1%; tolerance
    1.5%, and the mean thermostat must sit within 10% of ζ*."""
    eps, sigma = 1e-3, 0.2
    stats = run_gaussian(sgnht(eps), burnin=2000, steps=3000, grad_noise=sigma, seed=6, chains=256)
    predicted, zeta_star = predicted_sgnht(eps, 0.01, sigma)
    _report(f"sgnht + gradient noise (ζ* = {zeta_star:.4f})", stats, predicted)
    _check(stats, predicted, var_tol=0.015, mean_tol=0.02)
    zeta = np.asarray(stats.final_state.thermostat)
    assert abs(zeta.mean() / zeta_star - 1) < 0.1, (zeta.mean(), zeta_star)


# --- SGLD against BlackJAX ----------------------------------------------------------------


def test_sgld_drift_matches_blackjax():
    """blackjax 1.7.1 `sgld`: x + h ∇log p̂ + sqrt(2 T h) ξ, with ∇log p̂ = ∇log prior +
    data_size · mean_batch ∇loglik (sgmcmc/gradients.py). With log prior = -(γ/2)||w - w*||²,
    loglik = -loss, data_size = nβ, h = ε/2 and T = 0 it is our SGLD step minus its noise."""
    import blackjax
    from blackjax.sgmcmc.gradients import grad_estimator

    nbeta, gamma, eps = 37.0, 4.0, 1e-3
    rng = np.random.default_rng(1)
    batch = (jnp.asarray(rng.normal(size=(16, 3)), jnp.float32), jnp.asarray(rng.choice([-1.0, 1.0], 16), jnp.float32))
    center = {"w": jnp.asarray([0.3, -0.2, 0.1]), "b": jnp.asarray(0.05)}
    position = {"w": jnp.asarray([0.5, -1.0, 0.7]), "b": jnp.asarray(-0.3)}

    def per_sample_loss(params, sample):  # logistic regression, one sample
        x, y = sample
        return jax.nn.softplus(-y * (x @ params["w"] + params["b"]))

    def logprior(params):
        return -0.5 * gamma * sum(jnp.sum((p - c) ** 2) for p, c in zip(jax.tree.leaves(params), jax.tree.leaves(center)))

    bj = blackjax.sgld(grad_estimator(logprior, lambda p, s: -per_sample_loss(p, s), nbeta))
    bj_new = bj.step(jax.random.key(0), bj.init(position), batch, eps / 2, 0.0)

    key = jax.random.key(11)
    loss_grad = jax.grad(lambda p: jnp.mean(jax.vmap(per_sample_loss, (None, 0))(p, batch)))(position)
    post = Posterior(jnp.float32(nbeta), jnp.float32(gamma), center, {"w": None, "b": None})
    ours, _ = sgld(eps).step(key, sgld(eps).init(position), loss_grad, post)
    noise = tree_normal(key, position)
    ours_drift_only = jax.tree.map(lambda w, xi: w - np.sqrt(eps) * xi, ours.position, noise)
    for name in ("w", "b"):
        np.testing.assert_allclose(ours_drift_only[name], bj_new[name], rtol=0, atol=1e-6)
        assert not np.allclose(position[name], bj_new[name], atol=1e-4)  # the drift is not trivial


# --- Exact update formulas (hand computation, float64) --------------------------------------

W0 = [jnp.array([0.5, -1.0, 2.0]), jnp.array([[0.1, 0.2], [0.3, -0.4]])]
C0 = [jnp.zeros(3), jnp.ones((2, 2))]
G1 = [jnp.array([1.0, 2.0, -3.0]), jnp.array([[0.5, -0.5], [0.0, 1.0]])]
G2 = [g * 2.0 + 0.1 for g in G1]
NB, GM = 50.0, 3.0


def _post(mask=None):
    return Posterior(jnp.float32(NB), jnp.float32(GM), C0, mask or [None, None])


def _f64(tree):
    return [np.asarray(x, np.float64) for x in tree]


def test_adam_sgld_matches_hand_computation():
    eps, b1, b2, a = 1e-3, 0.8, 0.9, 1e-2
    kernel = adam_sgld(eps, beta1=b1, beta2=b2, eps_stabilizer=a)
    keys = [jax.random.key(3), jax.random.key(4)]
    state = kernel.init(W0)
    for key, g in zip(keys, (G1, G2)):
        state, _ = kernel.step(key, state, g, _post())

    w, m, v = _f64(W0), [np.zeros_like(x) for x in _f64(W0)], [np.ones_like(x) for x in _f64(W0)]
    for t, (key, grads) in enumerate(zip(keys, (G1, G2)), start=1):
        noise = _f64(tree_normal(key, W0))
        for i, gi in enumerate(_f64(grads)):
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi**2
            eps_t = eps / (np.sqrt(v[i] / (1 - b2**t)) + a)
            drift = NB * m[i] / (1 - b1**t) + GM * (w[i] - np.asarray(C0[i]))
            w[i] = w[i] - eps_t / 2 * drift + np.sqrt(eps_t) * noise[i]
    for got, want in zip(state.position, w):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(state.first_moment, m):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert int(state.count) == 2


def test_adam_sgld_with_beta1_zero_is_rmsprop_sgld():
    eps = 1e-3
    adam, rms = adam_sgld(eps, beta1=0.0, beta2=0.99, eps_stabilizer=1e-5), rmsprop_sgld(eps, beta2=0.99, eps_stabilizer=1e-5)
    sa, sr = adam.init(W0), rms.init(W0)
    for i, g in enumerate((G1, G2, G1)):
        key = jax.random.key(i)
        sa, _ = adam.step(key, sa, g, _post())
        sr, _ = rms.step(key, sr, g, _post())
    for x, y in zip(sa.position, sr.position):
        np.testing.assert_allclose(x, y, rtol=1e-6)


@pytest.mark.parametrize("make", [sghmc, sgnht])
def test_momentum_samplers_match_hand_computation(make):
    """v' = (1 - ζ) v - η ∇U + sqrt(2αη) ξ, w' = w + v', η = ε/2; SGNHT: ζ' = ζ + mean(v'²) - η."""
    eps, alpha = 1e-2, 0.3
    kernel = make(eps, friction=alpha) if make is sghmc else make(eps, diffusion=alpha)
    eta = eps / 2
    keys = [jax.random.key(5), jax.random.key(6)]
    state = kernel.init(W0)
    for key, g in zip(keys, (G1, G2)):
        state, _ = kernel.step(key, state, g, _post())

    w, v, zeta = _f64(W0), [np.zeros_like(x) for x in _f64(W0)], alpha
    for key, grads in zip(keys, (G1, G2)):
        noise = _f64(tree_normal(key, W0))
        for i, gi in enumerate(_f64(grads)):
            grad_u = NB * gi + GM * (w[i] - np.asarray(C0[i]))
            v[i] = (1 - zeta) * v[i] - eta * grad_u + np.sqrt(2 * alpha * eta) * noise[i]
            w[i] = w[i] + v[i]
        if make is sgnht:
            zeta = zeta + np.mean(np.concatenate([x.ravel() for x in v]) ** 2) - eta
    for got, want in zip(state.position, w):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(state.momentum, v):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    if make is sgnht:
        np.testing.assert_allclose(state.thermostat, zeta, rtol=1e-5)


def test_step_size_mapping_friction_one_is_sgld():
    """η = ε/2: with friction 1 (momentum forgotten every step) SGHMC *is* SGLD with step ε,
    and SGNHT with its thermostat at 1 takes the same first step."""
    eps = 2e-3
    s_sgld, s_hmc = sgld(eps).init(W0), sghmc(eps, friction=1.0).init(W0)
    for i in range(10):
        key, g = jax.random.key(100 + i), (G1 if i % 2 else G2)
        s_sgld, _ = sgld(eps).step(key, s_sgld, g, _post())
        s_hmc, _ = sghmc(eps, friction=1.0).step(key, s_hmc, g, _post())
        for x, y in zip(s_sgld.position, s_hmc.position):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    nht = sgnht(eps, diffusion=1.0)
    s_nht, _ = nht.step(jax.random.key(7), nht.init(W0), G1, _post())
    s_one, _ = sgld(eps).step(jax.random.key(7), sgld(eps).init(W0), G1, _post())
    for x, y in zip(s_one.position, s_nht.position):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


# --- The thermostat -----------------------------------------------------------------------

D_THERMO = 2000  # coordinates: mean(v²) over them is precise to sqrt(2/2000) ≈ 3%


def _thermostat_run(kernel, state, steps, eta):
    """Free particles pulled to w* = 0 (γ = 1, zero loss gradient); returns (kT trace, ζ trace)."""
    post = Posterior(jnp.float32(1.0), jnp.float32(1.0), [jnp.zeros(D_THERMO)], [None])
    zero = [jnp.zeros(D_THERMO)]

    def body(state, key):
        state, _ = kernel.step(key, state, zero, post)
        return state, (jnp.mean(state.momentum[0] ** 2) / eta, state.thermostat)

    _, (kt, zeta) = jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(jax.random.key(0), steps)))(state)
    return np.asarray(kt), np.asarray(zeta)


def test_thermostat_cools_a_hot_start_to_kinetic_temperature_one():
    """Start with mean(p²) = mean(v²)/η = 100. The thermostat must grow, the force -ζv must bleed
    the energy off, and the kinetic temperature must settle at 1 (the target); ζ then returns
    towards the diffusion α. Without the force ζ would grow but the temperature stay ≈ 100."""
    eps, alpha = 1e-2, 0.01
    eta = eps / 2
    kernel = sgnht(eps, diffusion=alpha)
    hot = SGNHTState([jnp.zeros(D_THERMO)], [10 * np.sqrt(eta) * jnp.ones(D_THERMO)], jnp.float32(alpha))
    kt, zeta = _thermostat_run(kernel, hot, 10_000, eta)
    late_kt, late_zeta = kt[-3000:].mean(), zeta[-3000:].mean()
    print(f"\nhot start: kT {kt[0]:.1f} → {late_kt:.3f}; ζ max {zeta.max():.3f}, final {late_zeta:.4f}")
    assert zeta[0] > alpha and zeta.max() > 10 * alpha  # the thermostat reacts to kT ≫ 1
    assert kt[100] < 0.5 * kt[0]  # and the force takes the energy out
    assert abs(late_kt - 1) < 0.05  # equilibrium: kinetic temperature 1
    assert abs(late_zeta - alpha) < 0.02


def test_thermostat_heats_a_cold_start():
    """From v = 0 the kinetic temperature is below 1, so ζ falls below α (even negative) and
    the injected noise plus the negative friction heat the momentum up to temperature 1."""
    eps, alpha = 1e-2, 0.01
    eta = eps / 2
    kernel = sgnht(eps, diffusion=alpha)
    kt, zeta = _thermostat_run(kernel, kernel.init([jnp.zeros(D_THERMO)]), 10_000, eta)
    print(f"\ncold start: kT {kt[0]:.3f} → {kt[-3000:].mean():.3f}; ζ min {zeta.min():.3f}")
    assert kt[0] < 0.1 and zeta[0] < alpha and zeta.min() < 0
    assert abs(kt[-3000:].mean() - 1) < 0.05


def test_thermostat_force_is_applied():
    """One step from a hot state with ∇U = 0: v' = (1 - ζ) v + noise. Two thermostat values
    give momenta that differ by exactly Δζ·v, and ζ' - ζ = mean(v'²) - η."""
    eps = 1e-2
    eta = eps / 2
    post = Posterior(jnp.float32(1.0), jnp.float32(0.0), [jnp.zeros(4)], [None])
    v = jnp.asarray([1.0, -2.0, 0.5, 3.0]) * np.sqrt(eta) * 10
    out = {}
    for zeta in (0.0, 0.4):
        state = SGNHTState([jnp.zeros(4)], [v], jnp.float32(zeta))
        out[zeta], _ = sgnht(eps).step(jax.random.key(9), state, [jnp.zeros(4)], post)
    np.testing.assert_allclose(out[0.0].momentum[0] - out[0.4].momentum[0], 0.4 * v, rtol=1e-5)
    new_v = np.asarray(out[0.4].momentum[0], np.float64)
    np.testing.assert_allclose(out[0.4].thermostat, 0.4 + np.mean(new_v**2) - eta, rtol=1e-5)
    assert float(out[0.4].thermostat) > 0.4 + 50 * eta  # hot: ζ grows


# --- Masks --------------------------------------------------------------------------------

MASK = [jnp.array([1.0, 0.0, 1.0]), jnp.array([[0.0, 1.0], [1.0, 0.0]])]


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_masked_coordinates_never_move(name):
    """30 steps with nonzero gradients everywhere: masked coordinates keep w* exactly (and a
    zero momentum), the others move. ε = 1e-5: these constant gradients make U unbounded below,
    and at larger ε SGNHT's thermostat would need ζ > 2 (unstable) to hold the temperature."""
    kernel = make_kernel(name, 1e-5)
    post = _post(MASK)
    state = kernel.init(W0)
    step = jax.jit(kernel.step)
    for i in range(30):
        state, _ = step(jax.random.key(i), state, G1 if i % 2 else G2, post)
    for w0, w, m in zip(W0, state.position, MASK):
        frozen, free = np.asarray(m) == 0, np.asarray(m) == 1
        np.testing.assert_array_equal(np.asarray(w)[frozen], np.asarray(w0)[frozen])
        assert np.all(np.asarray(w)[free] != np.asarray(w0)[free])
    if hasattr(state, "momentum"):
        for v, m in zip(state.momentum, MASK):
            assert np.all(np.asarray(v)[np.asarray(m) == 0] == 0)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state))


def test_thermostat_averages_over_sampled_coordinates_only():
    eps = 1e-2
    kernel = sgnht(eps)
    state, _ = kernel.step(jax.random.key(1), kernel.init(W0), G1, _post(MASK))
    v = np.concatenate([np.asarray(x).ravel() for x in state.momentum])
    sampled = np.concatenate([np.asarray(m).ravel() for m in MASK]) == 1
    np.testing.assert_allclose(state.thermostat, 0.01 + np.mean(v[sampled] ** 2) - eps / 2, rtol=1e-5)


# --- Plumbing -----------------------------------------------------------------------------


def test_registry_and_constants():
    for name in ("sgld", "rmsprop_sgld", "rmsprop_sgld_devinterp", "adam_sgld", "sghmc", "sgnht"):
        assert name in SAMPLERS
    make_kernel("adam_sgld", 1e-3, beta1=0.5, eps_stabilizer=1e-5)
    make_kernel("sghmc", 1e-3, friction=0.1, noise_estimate=0.05)
    make_kernel("sgnht", 1e-3, diffusion=0.1, initial_thermostat=0.2)
    with pytest.raises(ValueError):
        sghmc(1e-3, friction=0.0)
    with pytest.raises(ValueError):
        sghmc(1e-3, friction=0.1, noise_estimate=0.2)


@pytest.mark.parametrize("name", ["adam_sgld", "sghmc", "sgnht"])
def test_new_samplers_vmap_and_jit(name):
    kernel = make_kernel(name, 1e-3)
    states = jax.vmap(kernel.init)([jnp.stack([x] * 4) for x in W0])
    keys = jax.random.split(jax.random.key(0), 4)
    grads = [jnp.stack([g] * 4) for g in G1]
    new, _ = jax.jit(jax.vmap(kernel.step, in_axes=(0, 0, 0, None)))(keys, states, grads, _post())
    assert new.position[0].shape == (4, 3)
    assert not np.allclose(new.position[0][0], new.position[0][1])  # independent noise per chain


def test_sgnht_runs_in_estimate_llc():
    """The chain runner drives a momentum + per-chain scalar thermostat state (vmapped init,
    scan carry, donation). The other new states are arrays like these or like RMSProp's."""
    name = "sgnht"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 3)).astype(np.float32)
    params = {"w": jnp.asarray([0.5, -0.3, 0.2], jnp.float32)}
    y = x @ np.asarray(params["w"]) + rng.normal(size=128).astype(np.float32)

    def loss(p, batch):
        xb, yb = batch
        return 0.5 * (yb - xb @ p["w"]) ** 2

    r = slt_jax.estimate_llc(
        loss, params, (x, y), step_size=1e-4, localization=10.0, num_chains=3, num_draws=50,
        num_burnin=20, batch_size=32, sampler=name, progress=False,
    )
    assert r.loss_trace.shape == (3, 50) and np.all(np.isfinite(r.loss_trace))
    assert r.attrs["sampler"] == name
