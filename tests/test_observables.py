"""Observables (estimators.md §3–4) against hand computations, exact ground truths and each other.

Hand computations are written out with explicit sums on tiny arrays, never by calling the code
under test (or the numpy routine it wraps) a second time.
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax import observables as obs

# --- MALA acceptance -------------------------------------------------------------------------


# estimators.md §4: devinterp's test values (x, ∇U(x), U(x)) → (x', ∇U(x'), U(x')), ε → α.
MALA_TABLE = [
    (((0.0, 0.0), (0.0, 0.0), 0.0), ((1.5, 5.5), (1.5, 5.5), 16.25), 0.1, 0.6661436),
    (((1.0, 1.0), (1.0, 1.0), 1.0), ((1.5, 0.5), (1.5, 0.5), 1.25), 0.5, 0.9692332),
]


@pytest.mark.parametrize("old,new,eps,alpha", MALA_TABLE)
def test_mala_acceptance_devinterp_table(old, new, eps, alpha):
    (x, gx, ux), (y, gy, uy) = old, new
    got = obs.mala_acceptance(jnp.array(x), jnp.array(gx), ux, jnp.array(y), jnp.array(gy), uy, eps)
    assert abs(float(got) - alpha) < 1e-6
    # Same numbers by hand: log α = U - U' + log q(x|x') - log q(x'|x).
    fwd = sum((b - a + eps / 2 * g) ** 2 for a, b, g in zip(x, y, gx))
    bwd = sum((a - b + eps / 2 * g) ** 2 for a, b, g in zip(x, y, gy))
    assert abs(math.exp(min(0.0, ux - uy - bwd / (2 * eps) + fwd / (2 * eps))) - alpha) < 1e-6


def test_mala_acceptance_pytrees_jit_vmap():
    # The first table row split over a two-leaf pytree, batched with the second row (as 2-vectors
    # in leaf "a", zero in leaf "b"), under jit(vmap).
    (x1, g1, u1), (y1, h1, v1), e1, a1 = MALA_TABLE[0]
    (x2, g2, u2), (y2, h2, v2), _, a2 = MALA_TABLE[1]

    def tree(p, q):
        return {"a": jnp.array([[p[0]], [q[0]]]), "b": jnp.array([[p[1]], [q[1]]])}

    # Row 2 has ε = 0.5 in the table, row 1 ε = 0.1: vmap over ε as well (a traced step size).
    fn = jax.jit(jax.vmap(obs.mala_acceptance))
    got = fn(
        tree(x1, x2), tree(g1, g2), jnp.array([u1, u2]),
        tree(y1, y2), tree(h1, h2), jnp.array([v1, v2]), jnp.array([e1, 0.5]),
    )
    np.testing.assert_allclose(np.asarray(got), [a1, a2], atol=1e-6)


def test_mala_acceptance_is_one_for_an_exact_reverse_and_capped():
    # A move to lower potential with a symmetric proposal: ratio > 1, capped at 1.
    w, w_new = jnp.zeros(3), jnp.ones(3)
    g = jnp.zeros(3)
    assert float(obs.mala_acceptance(w, g, 5.0, w_new, g, 0.0, 0.1)) == 1.0


def test_mala_acceptance_validates():
    w = {"a": jnp.zeros(2)}
    with pytest.raises(ValueError, match="grad_U_w"):
        obs.mala_acceptance(w, {"b": jnp.zeros(2)}, 0.0, w, w, 0.0, 0.1)
    with pytest.raises(ValueError, match="w_new"):
        obs.mala_acceptance(w, w, 0.0, {"a": jnp.zeros(3)}, w, 0.0, 0.1)
    with pytest.raises(ValueError, match="U_new"):
        obs.mala_acceptance(w, w, 0.0, w, w, jnp.zeros(2), 0.1)
    with pytest.raises(ValueError, match="step_size"):
        obs.mala_acceptance(w, w, 0.0, w, w, 0.0, -1.0)


# --- norms -------------------------------------------------------------------------------------


def test_tree_norm_and_distance_from_center():
    tree = {"w": jnp.array([[3.0, 0.0]]), "b": (jnp.array(4.0), jnp.zeros(0))}
    assert float(obs.tree_norm(tree)) == pytest.approx(5.0)
    assert float(obs.tree_norm({})) == 0.0
    center = {"w": jnp.array([[1.0, 1.0]]), "b": (jnp.array(1.0), jnp.zeros(0))}
    # (3-1)² + (0-1)² + (4-1)² = 14
    assert float(obs.distance_from_center(tree, center)) == pytest.approx(math.sqrt(14.0))
    batched = jax.jit(jax.vmap(obs.distance_from_center, in_axes=(0, None)))(
        jax.tree.map(lambda x: jnp.stack([x, 2 * x]), tree), center
    )
    # second: (6-1)² + (0-1)² + (8-1)² = 75
    np.testing.assert_allclose(np.asarray(batched), [math.sqrt(14.0), math.sqrt(75.0)], rtol=1e-6)
    with pytest.raises(ValueError, match="w must have the same pytree structure"):
        obs.distance_from_center({"w": jnp.zeros(2)}, {"v": jnp.zeros(2)})


# --- WBIC, free energy -------------------------------------------------------------------------


def test_wbic_and_local_free_energy():
    losses = np.array([[1.0, 2.0], [3.0, 6.0]])  # mean 3
    assert obs.wbic(losses, 100) == pytest.approx(300.0)
    assert obs.wbic(jnp.asarray(losses), 100) == pytest.approx(300.0)
    assert obs.local_free_energy(0.5, 2.0, 1000) == pytest.approx(500.0 + 2.0 * 6.907755278982137)
    with pytest.raises(ValueError, match="nll_at_draws"):
        obs.wbic(np.zeros(3), 10)
    with pytest.raises(ValueError, match="n must be an integer"):
        obs.wbic(losses, 1.5)


# --- reweighting and the multi-temperature estimator ----------------------------------------


def test_reweight_same_beta_is_the_plain_mean_with_full_ess():
    rng = np.random.default_rng(0)
    nl = rng.normal(1000.0, 5.0, size=(3, 50))
    o = rng.normal(size=(3, 50))
    value, ess = obs.reweight(o, nl, 0.2, 0.2)
    assert value == pytest.approx(np.sum(o) / 150)
    assert ess == pytest.approx(150.0)


def test_reweight_by_hand_and_trailing_axes():
    # Two draws, nL = (0, 1), Δβ = log 2 → weights ∝ (1, 1/2) → (2/3, 1/3); ESS = 1/(4/9+1/9) = 9/5.
    nl = np.array([[0.0, 1.0]])
    o = np.array([[3.0, 6.0]])
    value, ess = obs.reweight(o, nl, 1.0, 1.0 + math.log(2.0))
    assert value == pytest.approx(2 / 3 * 3 + 1 / 3 * 6)
    assert ess == pytest.approx(9 / 5)
    vec, _ = obs.reweight(np.array([[[3.0, 1.0], [6.0, 4.0]]]), nl, 1.0, 1.0 + math.log(2.0))
    np.testing.assert_allclose(vec, [4.0, 2.0])
    # Huge energies (n·L ~ 1e7) stay finite: only differences matter.
    value, _ = obs.reweight(o, nl + 1e7, 1.0, 1.0 + math.log(2.0))
    assert value == pytest.approx(4.0)
    with pytest.raises(ValueError, match="observable and nl must come from the same draws"):
        obs.reweight(np.zeros((1, 3)), nl, 1.0, 1.1)
    with pytest.raises(ValueError, match="beta_new"):
        obs.reweight(o, nl, 1.0, 0.0)


def test_multi_temperature_recovers_lambda_exactly():
    nl0, lam = 1234.5, 3.25
    betas = np.array([0.1, 0.12, 0.15, 0.2])
    fit = obs.multi_temperature_llc(betas, nl0 + lam / betas)
    assert fit.llc == pytest.approx(lam, rel=1e-12)
    assert fit.intercept == pytest.approx(nl0, rel=1e-12)
    assert fit.llc_se == pytest.approx(0.0, abs=1e-9)
    two = obs.multi_temperature_llc(betas[:2], nl0 + lam / betas[:2])
    assert two.llc == pytest.approx(lam) and math.isnan(two.llc_se)
    # Noisy line: slope SE by hand for x = (1, 2, 3), y = (1, 3, 2): slope 1/2, residuals
    # (-0.5, 1, -0.5), RSS 1.5, Sxx 2 → se = sqrt(1.5/1/2).
    noisy = obs.multi_temperature_llc(np.array([1.0, 1 / 2, 1 / 3]), np.array([1.0, 3.0, 2.0]))
    assert noisy.llc == pytest.approx(0.5) and noisy.intercept == pytest.approx(1.0)
    assert noisy.llc_se == pytest.approx(math.sqrt(0.75))
    with pytest.raises(ValueError, match="distinct"):
        obs.multi_temperature_llc(np.array([0.1, 0.1]), np.array([1.0, 2.0]))


def test_reweighting_llc_on_an_exact_gamma_posterior():
    # Locally n(L - L0) ~ Gamma(λ, rate β) at inverse temperature β; reweighting to β' gives
    # Gamma(λ, β') exactly, so E_β'[nL] = nL0 + λ/β' and the fitted slope is λ.
    # Monte Carlo error: the slope is ≈ Var_β[nβL], whose relative SE with N iid draws is
    # sqrt((κ - 1)/N) = sqrt((2 + 6/λ)/N) ≈ 1% at N = 40000, λ = 3; we allow 5%.
    rng = np.random.default_rng(1)
    lam, n = 3.0, 1000
    beta = 1 / math.log(n)
    nl = 50.0 * n + rng.gamma(lam, 1 / beta, size=(4, 10000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = obs.reweighting_llc(nl, beta, beta * np.array([0.9, 0.95, 1.05, 1.1]))
    assert fit.llc == pytest.approx(lam, rel=0.05)
    assert fit.betas.size == 5 and np.all(fit.ess_fraction > 0.5)
    assert fit.ess_fraction[2] == pytest.approx(1.0)
    with pytest.warns(UserWarning, match="Kish ESS below 10%"):
        far = obs.reweighting_llc(nl, beta, beta * np.array([0.2, 5.0]))
    assert far.ess_fraction.min() < 0.1


# --- per-sample quantities ---------------------------------------------------------------------

# One chain, three draws, two samples. l_1 = (1, 2, 3), l_2 = (0, 0, 3).
TINY = np.array([[[1.0, 0.0], [2.0, 0.0], [3.0, 3.0]]])
# Var (ddof=1): l_1 → ((-1)² + 0 + 1²)/2 = 1;  l_2 (mean 1) → (1 + 1 + 4)/2 = 3.
TINY_V = 4.0
TINY_T = -0.5 * (
    math.log((math.exp(-1) + math.exp(-2) + math.exp(-3)) / 3) + math.log((1 + 1 + math.exp(-3)) / 3)
)
TINY_G = (1 + 2 + 3 + 0 + 0 + 3) / 6


def test_per_sample_quantities_by_hand():
    assert obs.functional_variance(TINY) == pytest.approx(TINY_V)
    assert obs.singular_fluctuation(TINY, 0.3) == pytest.approx(0.15 * TINY_V)
    assert obs.bayes_training_loss(TINY) == pytest.approx(TINY_T)
    assert obs.gibbs_training_loss(TINY) == pytest.approx(TINY_G)
    assert obs.waic(TINY, 0.3) == pytest.approx(TINY_T + 0.3 / 2 * TINY_V)
    # Chains are pooled: splitting the draws over chains changes nothing.
    split = np.concatenate([TINY[:, :2], np.tile(TINY[:, 2:], (1, 2, 1))], axis=0)  # 2 chains x 2 draws
    pooled_by_hand = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 3.0], [3.0, 3.0]])[None]
    assert obs.functional_variance(split) == pytest.approx(obs.functional_variance(pooled_by_hand))
    # Large losses do not underflow T_n.
    assert obs.bayes_training_loss(TINY + 1e4) == pytest.approx(TINY_T + 1e4)


def test_per_sample_validation():
    with pytest.raises(ValueError, match=r"losses must be shaped \(chains, draws, samples\)"):
        obs.functional_variance(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        obs.functional_variance(np.zeros((1, 1, 4)))
    with pytest.raises(ValueError, match="beta"):
        obs.waic(TINY, -1.0)


def test_online_moments_equal_in_memory():
    rng = np.random.default_rng(2)
    losses = rng.gamma(2.0, 1.0, size=(3, 70, 11)) + 40.0
    pooled = losses.reshape(-1, 11)
    acc = obs.PerSampleMoments.init(11)
    for start in range(0, pooled.shape[0], 37):  # uneven chunks, including a chunk of 25
        acc = acc.update(pooled[start : start + 37])
    acc = acc.update(np.zeros((0, 11)))  # an empty chunk is a no-op
    assert acc.count == 210
    assert obs.functional_variance_from_moments(acc) == pytest.approx(obs.functional_variance(losses), rel=1e-12)
    nu = obs.singular_fluctuation(losses, 0.2)
    assert obs.singular_fluctuation_from_moments(acc, 0.2) == pytest.approx(nu, rel=1e-12)
    assert obs.bayes_training_loss_from_moments(acc) == pytest.approx(obs.bayes_training_loss(losses), rel=1e-12)
    assert obs.gibbs_training_loss_from_moments(acc) == pytest.approx(obs.gibbs_training_loss(losses), rel=1e-12)
    assert obs.waic_from_moments(acc, 0.2) == pytest.approx(obs.waic(losses, 0.2), rel=1e-12)
    # And on the hand example, one draw at a time.
    acc = obs.PerSampleMoments.init(2)
    for row in TINY[0]:
        acc = obs.PerSampleMoments.update(acc, row[None])
    assert obs.functional_variance_from_moments(acc) == pytest.approx(TINY_V)
    assert obs.bayes_training_loss_from_moments(acc) == pytest.approx(TINY_T)
    with pytest.raises(ValueError, match="losses_batch"):
        acc.update(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        obs.functional_variance_from_moments(obs.PerSampleMoments.init(2).update(np.zeros((1, 2))))


def test_singular_fluctuation_of_a_regular_gaussian_posterior_is_d_over_2():
    """Exact tempered posterior draws of a linear regression give ν̂ ≈ d/2 (estimators.md §4).

    Model y = x·w + N(0, 1), l_i(w) = ½(y_i - x_i·w)² + ½ log 2π, flat prior, β = 1/log n: the
    posterior is exactly N(ŵ, (β XᵀX)⁻¹). With δ = w - ŵ, u_i = x_i·δ ~ N(0, s_i²), s_i² = h_ii/β
    (h the hat matrix) and residual r_i, Var_w[l_i] = r_i² s_i² + s_i⁴/2, so given the data
        E_w[ν̂] = ½ Σ r_i² h_ii + Σ h_ii² / (4β),
    and over the noise (r ~ N(0, I - H)) E[ν̂] = ½ Σ h_ii(1 - h_ii) + Σ h_ii²/(4β) = d/2 + O(d² log n/n).
    Two tolerances:
    - Monte Carlo, per dataset: ν̂ is (to leading order) a Gaussian quadratic form averaged over
      N draws, relative SD ≈ sqrt(2/d)/sqrt(N) ≈ 1.1% for d = 4, N = 4000; we allow 5%.
    - Data: ν̂ itself fluctuates with the noise, Var = ½ tr(A M A M) with A = diag(h), M = I - H
      (about 0.12 here), so we average K = 16 datasets and allow |E[ν̂] - d/2| (the finite-n
      bias, ≈ 0.035) plus 4 standard deviations of that average.
    """
    n, d, K = 800, 4, 16
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, d))
    beta = 1 / math.log(n)
    hat = x @ np.linalg.solve(x.T @ x, x.T)
    h = np.diag(hat)
    expected = 0.5 * np.sum(h * (1 - h)) + np.sum(h**2) / (4 * beta)
    m = np.eye(n) - hat
    am = h[:, None] * m
    sd_data = math.sqrt(0.5 * np.trace(am @ am))
    chol = np.linalg.cholesky(np.linalg.inv(beta * x.T @ x))
    nus = []
    for _ in range(K):
        y = x @ rng.normal(size=d) + rng.normal(size=n)
        w_hat = np.linalg.lstsq(x, y, rcond=None)[0]
        r = y - x @ w_hat
        draws = w_hat + rng.normal(size=(2, 2000, d)) @ chol.T  # (chains, draws, d)
        losses = 0.5 * (y - draws @ x.T) ** 2 + 0.5 * math.log(2 * math.pi)  # (chains, draws, n)
        nu = obs.singular_fluctuation(losses, beta)
        given_data = 0.5 * np.sum(r**2 * h) + np.sum(h**2) / (4 * beta)
        assert nu == pytest.approx(given_data, rel=0.05)
        nus.append(nu)
    tol = abs(expected - d / 2) + 4 * sd_data / math.sqrt(K)
    assert abs(np.mean(nus) - d / 2) < tol
    assert tol < 0.1 * d / 2  # the check is sharp enough to mean something


# --- susceptibilities ----------------------------------------------------------------------------


def test_susceptibility_on_a_linear_construction():
    # φ = (-1, 1, -1, 1): mean 0, Var (ddof=1) = 4/3. l_z - L = c_z φ + k_z, so
    # Cov[φ, l_z - L] = c_z · 4/3 and χ_z = -nβ c_z 4/3 exactly.
    phi = np.array([[-1.0, 1.0], [-1.0, 1.0]])
    base = np.array([[2.0, 2.5], [3.0, 1.0]])
    c = np.array([2.0, -0.5, 0.0])
    k = np.array([0.3, 1.0, 7.0])
    probe = base[..., None] + c * phi[..., None] + k
    nbeta = 10.0
    chi = obs.susceptibility(phi, probe, base, nbeta)
    np.testing.assert_allclose(chi, -nbeta * c * 4 / 3, atol=1e-12)
    assert chi[0] < 0 < chi[1]  # probe loss rising with φ → negative susceptibility
    assert obs.aggregate_susceptibility(chi) == pytest.approx(np.mean(-nbeta * c * 4 / 3))
    # devinterp: -(E[φ(l_z - L)] - E[φ] c_z) with plain means: E[φ] = 0, E[φ²] = 1 → -c_z.
    dev = obs.susceptibility(phi, probe, base, nbeta, convention="devinterp")
    np.testing.assert_allclose(dev, -c, atol=1e-12)


def test_susceptibility_devinterp_centering_by_hand():
    # Two draws, one probe sample: φ = (1, 3), L = (0, 0), l_z = (2, 5); centre c = 1.
    phi = np.array([[1.0, 3.0]])
    base = np.zeros((1, 2))
    probe = np.array([[[2.0], [5.0]]])
    # E[φ X] = (2 + 15)/2 = 8.5, E[φ] = 2 → -(8.5 - 2·1) = -6.5
    chi = obs.susceptibility(phi, probe, base, 99.0, "devinterp", delta_center=np.array([1.0]))
    assert chi[0] == pytest.approx(-6.5)
    # Own-run centring: E[X] = 3.5 → -(8.5 - 7) = -1.5; slt_jax: -nβ Σ(φ-2)(X-3.5)/(2-1) = -99·3.
    assert obs.susceptibility(phi, probe, base, 99.0, "devinterp")[0] == pytest.approx(-1.5)
    assert obs.susceptibility(phi, probe, base, 99.0)[0] == pytest.approx(-99.0 * 3.0)
    center = obs.susceptibility_center(probe, base)
    np.testing.assert_allclose(center, [3.5])


def test_susceptibility_statistical_case_and_validation():
    # φ ~ N(0, 4), l_z - L = c_z φ + independent N(0, 1) noise: χ_z → -nβ c_z · 4. The sample
    # covariance of N draws has SD sqrt((Var φ Var X + Cov²)/N) = sqrt((4(4c² + 1) + 16c²)/N);
    # we allow 5 SD (nβ = 1).
    rng = np.random.default_rng(4)
    phi = rng.normal(0, 2, size=(4, 5000))
    base = rng.normal(size=(4, 5000))
    c = np.array([1.0, -2.0, 0.5])
    probe = base[..., None] + c * phi[..., None] + rng.normal(size=(4, 5000, 3))
    chi = obs.susceptibility(phi, probe, base, 1.0)
    sd = np.sqrt((4 * (4 * c**2 + 1) + 16 * c**2) / 20000)
    assert np.all(np.abs(chi + 4 * c) < 5 * sd)
    with pytest.raises(ValueError, match="phi and probe_losses must come from the same draws"):
        obs.susceptibility(phi[:, :10], probe, base, 1.0)
    with pytest.raises(ValueError, match="convention"):
        obs.susceptibility(phi, probe, base, 1.0, convention="other")
    with pytest.raises(ValueError, match="delta_center"):
        obs.susceptibility(phi, probe, base, 1.0, delta_center=np.zeros(2))


def test_response_matrix_and_pca():
    chis = {"l0": np.array([1.0, 2.0, 3.0]), "l1": np.array([0.0, 0.0, 1.0])}
    mat = obs.response_matrix(chis)
    np.testing.assert_array_equal(mat, [[1, 2, 3], [0, 0, 1]])
    with pytest.raises(ValueError, match="same number of probe samples"):
        obs.response_matrix({"a": np.zeros(2), "b": np.zeros(3)})
    # Rank one after centring: probes are the points (1,0), (2,0), (3,0) in component space →
    # one direction (1, 0), all variance, scores -1, 0, 1.
    m = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    pca = obs.response_pca(m, 2)
    np.testing.assert_allclose(pca.explained_variance_ratio, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(pca.components[0], [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(pca.scores[:, 0], [-1.0, 0.0, 1.0], atol=1e-12)
    # Components as observations: two points in probe space, (1,2,3) and (5,5,5); centred
    # ±(-2, -1.5, -1) → one direction ∝ (2, 1.5, 1), scores ±||(2, 1.5, 1)||.
    pc = obs.response_pca(m, 1, observations="components")
    direction = np.array([2.0, 1.5, 1.0]) / math.sqrt(4 + 2.25 + 1)
    np.testing.assert_allclose(pc.components[0], direction, atol=1e-12)
    np.testing.assert_allclose(np.abs(pc.scores[:, 0]), math.sqrt(7.25), atol=1e-12)
    assert pc.explained_variance_ratio[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k must be"):
        obs.response_pca(m, 3)


# --- Bayesian influence functions ---------------------------------------------------------------


def test_bif_by_hand():
    # One chain, three draws; train losses l_1 = (1, 2, 3), l_2 = (0, 0, 3); query q = (3, 2, 1).
    train = np.array([[[1.0, 0.0], [2.0, 0.0], [3.0, 3.0]]])
    query = np.array([[[3.0], [2.0], [1.0]]])
    # Cov(l_1, q) = ((-1)(1) + 0 + (1)(-1))/2 = -1; Cov(l_2, q) = ((-1)(1) + (-1)(0) + (2)(-1))/2 = -1.5
    got = obs.bif(train, query)
    np.testing.assert_allclose(got, [[1.0], [1.5]])
    # Correlation: Var q = 1, Var l_1 = 1, Var l_2 = 3 → (-1, -1.5/sqrt 3).
    corr = obs.bif(train, query, kind="correlation")
    np.testing.assert_allclose(corr, [[-1.0], [-1.5 / math.sqrt(3)]])
    # Train with itself: -Cov(l_1, l_2) = -((-1)(-1) + 0·(-1) + 1·2)/2 = -1.5.
    self_cov = obs.bif(train)
    np.testing.assert_allclose(self_cov, [[-1.0, -1.5], [-1.5, -3.0]])


def test_bif_symmetry_unit_diagonal_and_centering():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(3, 400, 2))
    losses = np.concatenate([z, z @ rng.normal(size=(2, 5)) + rng.normal(size=(3, 400, 5))], axis=-1)
    cov = obs.bif(losses)
    assert cov.shape == (7, 7)
    np.testing.assert_array_equal(cov, cov.T)
    corr = obs.bif(losses, losses.copy(), kind="correlation")  # equal values count as the same set
    np.testing.assert_array_equal(corr, corr.T)
    np.testing.assert_array_equal(np.diag(corr), np.ones(7))
    assert np.all(np.abs(corr) <= 1.0)
    # Per-chain centring removes chain offsets exactly; pooled centring sees them.
    offsets = np.array([0.0, 10.0, -10.0])[:, None, None]
    shifted = obs.bif(losses + offsets, center="per_chain")
    np.testing.assert_allclose(shifted, obs.bif(losses, center="per_chain"), atol=1e-10)
    assert -obs.bif(losses + offsets)[0, 0] > 10 * -obs.bif(losses)[0, 0]  # variance inflated by offsets
    # Per chain by hand: chain A draws (0, 2), chain B (5, 9) → deviations (-1, 1, -2, 2);
    # divisor chains·(draws-1) = 2 → Var = (1 + 1 + 4 + 4)/2 = 5.
    two = np.array([[[0.0], [2.0]], [[5.0], [9.0]]])
    assert obs.bif(two, center="per_chain")[0, 0] == pytest.approx(-5.0)
    with pytest.raises(ValueError, match="train_losses and query_losses must come from the same draws"):
        obs.bif(losses, losses[:, :10])
    with pytest.raises(ValueError, match="kind"):
        obs.bif(losses, kind="pearson")
