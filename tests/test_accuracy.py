"""Statistical accuracy: λ̂ against exact learning coefficients (estimators.md §5).

Slow tier (`pytest -m slow`; CI runs it). Fixed seeds; every tolerance is argued next to its
test. Two sources of error are kept apart:

* the *sampler*: does SGLD sample the localized tempered posterior? Checked against exact
  finite-n expectations where they can be computed (Gaussian posterior of a linear model;
  importance sampling from the Gaussian prior for 2-parameter normal crossings), within
  3.5 standard errors, the SE taken across independent chains;
* the *estimator*: how far is E_p[nβ(L_n - L_n(w*))] from λ at finite n? Noisy data add a
  random O(1/sqrt(log n)) term and pull λ̂ down by ≈ λ/log n when w* is the teacher rather
  than an empirical minimum (for a regular model exactly nβ(L_n(w0) - L_n(ŵ)) ≈ β χ²_d/2).
  The DLN/RRR cases therefore use noise-free realizable data (y = f_w0(x)), where
  L_n(w0) = min L_n and the target is λ of K_n itself; the regular case uses noisy data
  centred at the least-squares fit ŵ, which is what a researcher does with a trained model.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import slt_jax
from slt_jax import truth

pytestmark = pytest.mark.slow


# ---- regular model ------------------------------------------------------------------------


def _ols_problem(n=4000, d_in=4, d_out=3, seed=0):
    prob = truth.make_regular(seed, d_in, d_out, num_samples=n, bias=True)
    x = np.asarray(prob.data["x"], np.float64)
    y = np.asarray(prob.data["y"], np.float64)
    design = np.hstack([x, np.ones((n, 1))])
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    center = {"W": jnp.asarray(coef[:-1], jnp.float32), "b": jnp.asarray(coef[-1], jnp.float32)}
    return prob, design, y, coef, center


def _gaussian_expectation(design, y, coef, nbeta, gamma):
    """Exact E_p[nβ(L_n(w) - L_n(ŵ))] for the linear model: the posterior is Gaussian.

    Per output column the posterior precision is nβ H + γ I with H = XᵀX/n, and since the
    centre is the minimizer ŵ, the mean is ŵ: E = nβ · ½ · d_out · tr(H (nβH + γI)⁻¹).
    """
    n, p = design.shape
    h = design.T @ design / n
    return nbeta * 0.5 * y.shape[1] * np.trace(h @ np.linalg.inv(nbeta * h + gamma * np.eye(p)))


def test_regular_full_batch_matches_the_exact_gaussian_posterior():
    """Full-batch SGLD on a linear model (d = 15) against its exact Gaussian posterior.

    SE from 32 independent chains. SGLD's O(ε) bias inflates variances by ≈ εP/4 with
    P = nβ·λ_max(H) ≈ 482·1.1: at ε = 1e-5 that is 0.13% (0.01 on 7.5), far below 3.5 SE ≈ 0.05.
    """
    prob, design, y, coef, center = _ols_problem()
    n = design.shape[0]
    nbeta, gamma = n / np.log(n), 1.0
    exact = _gaussian_expectation(design, y, coef, nbeta, gamma)
    r = slt_jax.estimate_llc(
        prob.loss_fn, center, prob.data, step_size=1e-5, localization=gamma, num_chains=32,
        num_draws=3000, num_burnin=3000, thin=2, batch_size=n, seed=0, progress=False,
    )
    se = r.llc_std / np.sqrt(r.num_healthy)
    assert abs(r.llc_mean - exact) < 3.5 * se, (r.llc_mean, exact, se)
    assert abs(exact - prob.num_params / 2) / (prob.num_params / 2) < 0.01  # γ barely matters


def test_regular_minibatch_within_10_percent_of_d_over_2():
    """Minibatch SGLD (B = n/20) at the trained ŵ: λ̂ and the variance-based λ within 10% of d/2.

    Expected deviation: minibatch gradient noise inflates the stationary spread by a factor
    1 + δ with δ ≈ ε nβ² σ_g²/(4B) (measured: δ ≈ 6% at ε = 1e-4), which moves λ̂ by δ and the
    variance-based estimate by ≈ 2δ. At ε = 3e-5, δ ≈ 2%; MCSE ≈ 1.5%; localization 0.3%.
    """
    prob, *_, center = _ols_problem()
    r = slt_jax.estimate_llc(
        prob.loss_fn, center, prob.data, step_size=3e-5, localization=1.0, num_chains=16,
        num_draws=6000, num_burnin=1000, batch_size=200, seed=1, progress=False,
    )
    half_d = prob.num_params / 2
    assert abs(r.llc_mean - half_d) / half_d < 0.10, r.summary()
    assert abs(r.llc_var - half_d) / half_d < 0.10, r.summary()
    assert r.rhat < 1.05


# ---- normal crossings ------------------------------------------------------------------------


def _normal_crossing(powers, n=10_000, seed=0):
    """Noise-free data: K_n(w) = ½ mean(x²) Π w_i^{2k_i} exactly, with L_n(w*) = 0 at w* = 0."""
    return truth.make_normal_crossing(seed, powers, num_samples=n, noise_std=0.0)


def _prior_importance_expectation(powers, t, gamma, num=4_000_000, seed=1):
    """E_p[tK] for p ∝ exp(-tK) N(0, I/γ), K = Π w_i^{2k_i}, by sampling the Gaussian prior.

    Weights e^{-tK} are bounded by 1 and stay well spread (Z ~ t^{-λ}), so 4M draws give a
    relative error below 0.5%.
    """
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(num, len(powers))) / np.sqrt(gamma)
    k = np.prod(w ** (2 * np.asarray(powers)), axis=1)
    e = np.exp(-t * k)
    return float(np.sum(t * k * e) / np.sum(e))


@pytest.mark.parametrize(
    "powers,gamma,step_size",
    [
        # (0,1): a regular direction (λ = 1/2) plus a free one; curvature ≈ 2t ≈ 1090 sets ε.
        ((0, 1), 1.0, 1e-5),
        # Multiplicity-1 singular cases; weak localization (γ = 0.1) so that the prior does not
        # cut the singularity off: the exact finite-t value is within 3% of λ.
        ((1, 2), 0.1, 1e-4),
        ((1, 3), 0.1, 1e-4),
    ],
)
def test_normal_crossing_within_3_5_standard_errors(powers, gamma, step_size):
    prob = _normal_crossing(powers)
    n = prob.data["x"].shape[0]
    nbeta = n / np.log(n)
    t = nbeta * 0.5 * float(np.mean(np.asarray(prob.data["x"], np.float64) ** 2))
    reference = _prior_importance_expectation(powers, t, gamma)
    lam = float(prob.learning_coefficient)
    r = slt_jax.estimate_llc(
        prob.loss_fn, prob.params, prob.data, step_size=step_size, localization=gamma,
        num_chains=64, num_draws=10_000, num_burnin=10_000, batch_size=1000, seed=0, progress=False,
    )
    se = r.llc_std / np.sqrt(r.num_healthy)
    assert abs(r.llc_mean - lam) < 3.5 * se, (powers, r.llc_mean, lam, se)
    assert abs(r.llc_mean - reference) < 3.5 * se, (powers, r.llc_mean, reference, se)
    # The reference is within 3% of λ (its own Monte Carlo error is ≈ 0.5%): the test
    # measures the sampler and the estimator, not the prior's cut-off of the singularity.
    assert abs(reference - lam) / lam < 0.03


def test_normal_crossing_multiplicity_two_matches_its_finite_t_value():
    """(1,1): λ = 1/2 with multiplicity 2, where E_p[tK] = λ - 1/log t + ...: at this n it sits
    ~15% below λ, so it is compared with the exact finite-t value, not with λ."""
    prob = _normal_crossing((1, 1))
    n = prob.data["x"].shape[0]
    t = n / np.log(n) * 0.5 * float(np.mean(np.asarray(prob.data["x"], np.float64) ** 2))
    reference = _prior_importance_expectation((1, 1), t, 0.1)
    r = slt_jax.estimate_llc(
        prob.loss_fn, prob.params, prob.data, step_size=1e-4, localization=0.1,
        num_chains=64, num_draws=10_000, num_burnin=10_000, batch_size=1000, seed=0, progress=False,
    )
    se = r.llc_std / np.sqrt(r.num_healthy)
    assert abs(r.llc_mean - reference) < 3.5 * se, (r.llc_mean, reference, se)
    assert reference < 0.9 * float(prob.learning_coefficient)


# ---- reduced-rank regression and deep linear networks -------------------------------------------

DLN_CASES = [
    # widths, rank, step size. RRR step sizes: ε = 3e-5 keeps ε·nβ·curvature small (n = 1e4).
    ((5, 3, 5), 3, 3e-5),  # RRR, λ = 21/2
    ((10, 10, 10), 0, 3e-5),  # RRR, λ = 75/2, d = 200
    ((30, 20, 30), 5, 3e-5),  # RRR, λ = 297, d = 1,200
    # Three layers: curvature grows with the product of the other layers' norms; smaller ε.
    ((4, 6, 2, 8), 1, 1e-5),  # DLN, λ = 7
]


@pytest.mark.parametrize("widths,rank,step_size", DLN_CASES)
def test_dln_within_15_percent(widths, rank, step_size):
    """λ̂ within 15% of Aoyagi's λ on noise-free data (n = 10⁴, nβ = n/log n, B = 500).

    Measured deviations at these settings are 2–10%; the allowance covers the O(1/log n)
    finite-n bias (≈ 11% at most for multiplicity-1 terms at n = 10⁴) and a remaining
    discretization bias of SGLD, which overestimates.
    """
    prob = truth.make_dln(0, widths, rank, num_samples=10_000, noise_std=0.0)
    lam = float(prob.learning_coefficient)
    r = slt_jax.estimate_llc(
        prob.loss_fn, prob.params, prob.data, step_size=step_size, localization=1.0,
        num_chains=8, num_draws=15_000, num_burnin=15_000, batch_size=500, seed=0, progress=False,
    )
    assert r.num_healthy == 8
    assert abs(r.llc_mean - lam) / lam < 0.15, (widths, rank, r.summary())


def test_rmsprop_sgld_regular_within_10_percent():
    """RMSProp-SGLD (v₀ = 1, bias-corrected) on the regular model at ŵ, within 10% of d/2.

    β2 = 0.999 (the default), not pSGLD's 0.99: the preconditioner depends on the position through
    g_t, and RMSProp-SGLD omits the Γ correction term, so its stationary law is
    ∝ e^{-U}/ε(w). With a 100-step EMA (β2 = 0.99) ε(w) tracks the chain's ~140-step
    relaxation and λ̂ comes out ≈ 15% high here (measured); a 1000-step window averages the
    position out (measured +4%). The effective step is ε/sqrt(v̂) ≈ 10ε, hence ε = 3e-6.
    """
    prob, *_, center = _ols_problem()
    r = slt_jax.estimate_llc(
        prob.loss_fn, center, prob.data, step_size=3e-6, localization=1.0, num_chains=16,
        num_draws=6000, num_burnin=2000, batch_size=200, seed=1, sampler="rmsprop_sgld",
        sampler_kwargs=dict(beta2=0.999), progress=False,
    )
    half_d = prob.num_params / 2
    assert abs(r.llc_mean - half_d) / half_d < 0.10, r.summary()
    assert r.attrs["sampler_kwargs"] == {"beta2": 0.999}


def test_regular_model_thermodynamic_observables_within_10_percent():
    """Regular model: λ̂, the variance-based λ̂ and the singular fluctuation ν̂ all ≈ d/2.

    ν̂ = (β/2) Σ_i Var_w[l_i(w)] from the per-sample losses of the training set evaluated inside
    the program every 10 draws (600 evaluations × 16 chains). For a Gaussian posterior with
    covariance (nβH)⁻¹ and per-sample gradient covariance J = H (well specified),
    Σ_i Var_w[l_i] = n tr((nβH)⁻¹ J) = d/β, so ν̂ = d/2. Same δ ≈ 2% minibatch inflation as
    above (ν̂ moves by ≈ δ); 10% leaves room for it and for Monte Carlo error.
    """
    prob, *_, center = _ols_problem()
    r = slt_jax.estimate_llc(
        prob.loss_fn, center, prob.data, step_size=3e-5, localization=1.0, num_chains=16,
        num_draws=6000, num_burnin=1000, batch_size=200, seed=2, eval_every=10,
        eval_sets={"train": prob.data}, progress=False,
    )
    half_d = prob.num_params / 2
    nu = r.singular_fluctuation("train")
    for name, value in [("llc", r.llc_mean), ("llc_var", r.llc_var), ("nu", nu)]:
        assert abs(value - half_d) / half_d < 0.10, (name, value, r.summary())
    # WAIC = T_n + (β/n) V_n sits above the training loss at w* by about (λ+ν)/n-ish terms.
    assert r.waic("train") > r.init_loss - 0.05
    assert np.isfinite(r.wbic) and np.isfinite(r.free_energy)
    assert 0.5 < np.mean(r.mala_acceptance) <= 1.0


def test_data_refined_llc_counts_only_the_directions_the_data_constrain():
    """Data-refined LLC: q' has inputs on the first 2 of 4 coordinates only, so rows 3–4 of W
    (6 of 15 parameters) are flat under L_q' and λ_q' = (2·3 + 3)/2 = 9/2, against d/2 = 15/2
    for the full data. Noise-free q' from the teacher makes w* its exact minimizer. 10%: the
    same minibatch-inflation and Monte Carlo allowance as the regular case."""
    prob = truth.make_regular(0, 4, 3, num_samples=4000, bias=True)
    x = np.asarray(prob.data["x"]).copy()
    x[:, 2:] = 0.0
    y = x @ np.asarray(prob.params["W"]) + np.asarray(prob.params["b"])
    q_data = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    r = slt_jax.estimate_llc(
        prob.loss_fn, prob.params, q_data, step_size=3e-5, localization=1.0, num_chains=16,
        num_draws=4000, num_burnin=1000, batch_size=200, seed=3, progress=False,
    )
    assert abs(r.llc_mean - 4.5) / 4.5 < 0.10, r.summary()


RMSPROP_NC = [((1, 2), 0.1), ((1, 3), 0.1)]


@pytest.mark.parametrize("powers,gamma", RMSPROP_NC)
def test_rmsprop_sgld_normal_crossing_within_3_5_standard_errors(powers, gamma):
    """RMSProp-SGLD (defaults) on the singular normal crossings, as SGLD above. ε = 1e-5: the
    effective step ε/sqrt(v̂) is ~10–100× larger. (0,1) is left out on purpose: its regular
    direction shows the preconditioner's stationary bias (λ̂ ≈ 0.52–0.55, see rmsprop_sgld)."""
    prob = _normal_crossing(powers)
    lam = float(prob.learning_coefficient)
    r = slt_jax.estimate_llc(
        prob.loss_fn, prob.params, prob.data, step_size=1e-5, localization=gamma,
        num_chains=64, num_draws=10_000, num_burnin=10_000, batch_size=1000, seed=0,
        sampler="rmsprop_sgld", progress=False,
    )
    se = r.llc_std / np.sqrt(r.num_healthy)
    assert abs(r.llc_mean - lam) < 3.5 * se, (powers, r.llc_mean, lam, se)


@pytest.mark.parametrize("widths,rank", [((5, 3, 5), 3), ((4, 6, 2, 8), 1)])
def test_rmsprop_sgld_dln_within_15_percent(widths, rank):
    """RMSProp-SGLD (defaults, ε = 1e-6) on the RRR (5,3,5; r=3) and the 3-layer DLN
    (4,6,2,8; r=1): measured +2.7% and +5% (λ = 21/2 and 7)."""
    prob = truth.make_dln(0, widths, rank, num_samples=10_000, noise_std=0.0)
    r = slt_jax.estimate_llc(
        prob.loss_fn, prob.params, prob.data, step_size=1e-6, localization=1.0, num_chains=8,
        num_draws=10_000, num_burnin=10_000, batch_size=500, sampler="rmsprop_sgld", seed=0,
        progress=False,
    )
    lam = float(prob.learning_coefficient)
    assert abs(r.llc_mean - lam) / lam < 0.15, r.summary()
