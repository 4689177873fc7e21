"""Chain health and run verdicts (issue #9 §5): exclusion only on evidence of divergence, a minimum
of healthy chains for summary statistics, consistency verdicts, WBIC at an explicit nβ = n/log n.

Mostly numpy: synthetic loss traces with fixed seeds, checked through `health.assess_chains`,
`health.run_verdicts` and an LLCResult built from a synthetic Dataset; a few end-to-end runs of
`estimate_llc` on the small linear model."""

import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import slt_jax
from slt_jax import health
from slt_jax.result import LLCResult, encode_attrs

N = 256  # samples of the synthetic runs
NBETA = N / math.log(N)
INIT_LOSS = 1.0


def gamma_traces(lams, num_draws=400, seed=0, noise=0.0):
    """(chains, draws) minibatch-like losses whose excursion nβ(L - L*) is Gamma(λ_c, 1) per chain,
    plus optional Gaussian 'minibatch' noise (in nats)."""
    rng = np.random.default_rng(seed)
    x = np.stack([rng.gamma(lam, size=num_draws) for lam in lams])
    x = x + noise * rng.normal(size=x.shape)
    return INIT_LOSS + x / NBETA


def assess(draw_loss, **kw):
    c = draw_loss.shape[0]
    empty = np.zeros((c, 0))
    return health.assess_chains(draw_loss, empty, empty, INIT_LOSS, NBETA, [None] * c, 0, 1, **kw)


# --- 1. exclusion needs evidence of divergence ------------------------------------------------------
def test_finite_outlier_chain_is_kept():
    """Issue #9: a finite chain with λ̂ = 0.045 among chains with median 0.0017 was excluded as
    'diverged'. Chains legitimately differ; only divergence excludes."""
    lams = [0.0017] * 31 + [0.045]
    verdicts = assess(gamma_traces(lams, seed=1), num_params=8)
    assert all(v.healthy for v in verdicts), [str(v) for v in verdicts if not v.healthy]
    # The same without d, and with outliers orders of magnitude apart.
    verdicts = assess(gamma_traces([0.01, 0.02, 0.015, 3.0, 0.01], seed=2))
    assert all(v.healthy for v in verdicts)


def wrong_sign_traces(num_chains=4, num_draws=400, seed=0):
    """A loss that decreases without bound (the wrong sign): an unstable direction, |x| ∝ e^{t/τ},
    reaching ≈ -1.5e23 by the last draw, on top of minibatch noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_draws)
    rates = np.log(1.5e23) / num_draws * rng.uniform(0.97, 1.0, size=(num_chains, 1))
    x = -np.exp(rates * t) + rng.normal(size=(num_chains, num_draws))
    return INIT_LOSS + x / NBETA


def test_wrong_sign_loss_is_excluded_as_runaway():
    """Issue #9: λ̂ = -1.5e23 with no chain excluded (the chains were alike, so no outlier test
    fired). The trend test needs no d; with d the magnitude bound also applies."""
    draws = wrong_sign_traces()
    for kw in ({}, {"num_params": 8}):
        verdicts = assess(draws, **kw)
        assert not any(v.healthy for v in verdicts)
        assert all(v.reason.startswith("diverged") for v in verdicts)
    # With d, a chain sitting far below L_n(w*) without a trend (it ran away before the draws).
    flat = INIT_LOSS + (-1.5e23 + np.random.default_rng(3).normal(size=(2, 100))) / NBETA
    assert not any(v.healthy for v in assess(flat, num_params=8))
    assert "100·d/2" in assess(flat, num_params=8)[0].reason
    assert all(v.healthy for v in assess(flat)), "without d a plateau is no evidence"


def test_nonfinite_chain_is_still_excluded():
    draws = gamma_traces([2.0] * 3, seed=4)
    draws[1, 50:] = np.inf
    first_bad = [None, 50, None]
    verdicts = health.assess_chains(draws, np.zeros((3, 0)), np.zeros((3, 0)), INIT_LOSS, NBETA, first_bad, 0, 1)
    assert [v.healthy for v in verdicts] == [True, False, True]
    assert verdicts[1].reason == "non-finite loss at draw 50"
    # A caller that did not track the first bad draw still gets the exclusion.
    assert not assess(draws)[1].healthy


@pytest.mark.parametrize("seed", range(5))
def test_healthy_and_relaxing_chains_are_never_excluded(seed):
    """Slowly mixing chains at equilibrium, chains still relaxing from w* (no burn-in), heavy
    minibatch noise, λ up to d/2: flags at most, never exclusion."""
    rng = np.random.default_rng(seed)
    n, t = 400, np.arange(400)
    rows = []
    for lam in (0.3, 4.0, 500.0):
        for tau in (5.0, 100.0, 2000.0):  # relaxation time (draws)
            z = np.cumsum(rng.normal(size=n)) / math.sqrt(n)  # slow wander, ~1 posterior scale
            x = lam * (1 - np.exp(-t / tau)) + math.sqrt(lam) * z + 3 * math.sqrt(lam) * rng.standard_t(3, size=n)
            rows.append(INIT_LOSS + x / NBETA)
    verdicts = assess(np.stack(rows), num_params=1000)
    assert all(v.healthy for v in verdicts), [str(v) for v in verdicts if not v.healthy]


def test_runaway_growth_separates_relaxation_from_runaway():
    t = np.arange(400.0)
    assert health.runaway_growth(5 * t) == 0.0  # a straight ramp: not accelerating
    assert health.runaway_growth(100 * (1 - np.exp(-t / 50))) == 0.0  # relaxation
    assert health.runaway_growth(-100 * (1 - np.exp(-t / 50))) == 0.0
    assert health.runaway_growth(np.exp(t / 40)) > health.RUNAWAY_SCALES
    assert health.runaway_growth(-np.exp(t / 40)) > health.RUNAWAY_SCALES
    assert health.runaway_growth(np.exp(t[:30] / 3)) == 0.0  # too short to judge


def test_assess_chains_signature():
    draws = gamma_traces([1.0, 1.0], seed=5)
    empty = np.zeros((2, 0))
    positional = health.assess_chains(draws, empty, empty, INIT_LOSS, NBETA, [None, None], 0, 1)
    by_keyword = health.assess_chains(draws, empty, empty, INIT_LOSS, NBETA, [None, None], 0, 1, num_params=None)
    assert positional == by_keyword
    with pytest.raises(TypeError):
        health.assess_chains(draws, empty, empty, INIT_LOSS, NBETA, [None, None], 0, 1, 8)


# --- synthetic LLCResult ---------------------------------------------------------------------------
def synthetic_result(draw_loss, *, eval_loss=None, distance=None, mala=None, healthy=None, **attrs):
    c, d = draw_loss.shape
    eval_loss = draw_loss[:, ::4] if eval_loss is None else eval_loss
    verdicts = assess(draw_loss, num_params=attrs.get("num_params", 8))
    healthy = np.array([v.healthy for v in verdicts]) if healthy is None else np.asarray(healthy)
    e = eval_loss.shape[1]
    base = dict(
        init_loss=INIT_LOSS, nbeta=NBETA, nbeta_rule="n_log_n", num_samples=N, num_chains=c, num_draws=d,
        num_burnin=0, thin=1, sampler="sgld", step_size=1e-4, localization=1.0, batch_size=32, num_params=8,
        compile_s=0.0, sampling_s=1.0, chain_steps_per_s=1.0,
    )
    ds = xr.Dataset(
        {
            "loss": (("chain", "draw"), draw_loss),
            "distance": (("chain", "draw"), np.full((c, d), np.nan) if distance is None else distance),
            "eval_loss": (("chain", "eval_draw"), eval_loss),
            "mala_acceptance": (("chain", "eval_draw"), np.full((c, e), np.nan if mala is None else mala)),
            "healthy": (("chain",), healthy),
            "health_reason": (("chain",), np.array(["" if h else "diverged: test" for h in healthy])),
        },
        attrs=encode_attrs({**base, **attrs}),
    )
    return LLCResult(ds)


# --- minimum number of healthy chains ---------------------------------------------------------------
def test_one_survivor_of_32_gives_nan_and_says_why():
    """Issue #9: 31 of 32 chains diverged and λ̂ was reported from the survivor."""
    draws = gamma_traces([2.0] * 32, seed=6)
    healthy = np.zeros(32, bool)
    healthy[7] = True
    r = synthetic_result(draws, healthy=healthy)
    with pytest.warns(RuntimeWarning, match=r"only 1 of 32 chains are healthy.*smaller step size"):
        assert math.isnan(r.llc_mean)
    for value in (r.llc_std, r.llc_se, r.llc_var, r.ess, r.rhat, r.free_energy):
        assert math.isnan(value)
    assert np.isfinite(r.llc_per_chain[7])  # the survivor's value is still there, explicitly
    assert "λ̂ not reported: only 1 of 32" in r.summary()


def test_half_the_chains_are_enough():
    draws = gamma_traces([2.0] * 32, seed=7)
    healthy = np.arange(32) < 16
    r = synthetic_result(draws, healthy=healthy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert r.llc_mean == pytest.approx(np.mean(r.llc_per_chain[healthy]))
    assert not r.too_few_healthy
    assert health.too_few_healthy(15, 32) and not health.too_few_healthy(1, 1)
    assert health.too_few_healthy(0, 1)


# --- 2. consistency verdicts ------------------------------------------------------------------------
GOOD = dict(
    llc_mean=4.0, llc_se=0.1, llc_var=4.3, llc_var_se=0.3, mean_distance=0.1, num_params=8,
    localization=1.0, step_size=1e-4, nbeta=NBETA, mala_mean=0.9,
)


def test_consistent_run_has_no_verdicts():
    assert health.run_verdicts(**GOOD) == ()
    assert health.run_verdicts(**GOOD, curvature=10.0) == ()


def test_every_verdict_fires_with_its_fix():
    v = health.run_verdicts(**{**GOOD, "llc_mean": 8.0, "llc_var": 1.0})
    assert len(v) == 1 and "disagree" in v[0] and "decrease γ" in v[0]
    v = health.run_verdicts(**{**GOOD, "llc_mean": 1.0, "llc_var": 8.0, "llc_var_se": 0.5})
    assert len(v) == 1 and "smaller step size" in v[0]
    v = health.run_verdicts(**{**GOOD, "mean_distance": 0.95 * health.localization_distance(8, 1.0)})
    assert len(v) == 1 and "localization Gaussian" in v[0] and "increase nβ" in v[0]
    v = health.run_verdicts(**{**GOOD, "localization": 100.0, "step_size": 5e-3})
    assert len(v) == 1 and "ε·γ = 0.5" in v[0] and "use a step size below 0.004" in v[0]
    v = health.run_verdicts(**GOOD, curvature=0.5 / (1e-4 * NBETA))  # ε·nβ·h = 0.5
    assert len(v) == 1 and "ε·(nβ·h_max + γ)" in v[0]
    v = health.run_verdicts(**{**GOOD, "mala_mean": 0.4})
    assert len(v) == 1 and "smaller step size" in v[0]
    v = health.run_verdicts(**{**GOOD, "mala_mean": 1.0})
    assert len(v) == 1 and "larger step size" in v[0]


def test_small_disagreements_and_unmeasured_inputs_are_not_verdicts():
    # 30% apart: within the finite-n corrections; 3x apart but within the errors.
    assert health.run_verdicts(**{**GOOD, "llc_mean": 4.0, "llc_var": 5.2}) == ()
    assert health.run_verdicts(**{**GOOD, "llc_mean": 3.0, "llc_var": 1.0, "llc_se": 1.0}) == ()
    nan = float("nan")
    unmeasured = dict(llc_var=nan, mean_distance=nan, mala_mean=nan, step_size=nan, llc_mean=8.0)
    assert health.run_verdicts(**{**GOOD, **unmeasured}, curvature=1e9) == ()
    assert health.run_verdicts(**{**GOOD, "localization": 0.0, "mean_distance": 1e3}) == ()


def localization_only_result(seed=0, gamma=100.0, h=0.05, num_chains=8, num_draws=400):
    """Exact draws of the localized posterior of a quadratic loss L = L* + h/2 ||δ||² in d = 8
    dimensions where γ ≫ nβh: the chains sample (mostly) the localization Gaussian."""
    rng = np.random.default_rng(seed)
    d = 8
    delta = rng.normal(size=(num_chains, num_draws, d)) / math.sqrt(NBETA * h + gamma)
    loss = INIT_LOSS + 0.5 * h * (delta**2).sum(-1)
    distance = np.linalg.norm(delta, axis=-1)
    return synthetic_result(loss, eval_loss=loss, distance=distance, mala=0.9, localization=gamma)


def test_localization_dominated_run_is_flagged_through_llcresult():
    """a = nβh/(nβh + γ) ≈ 0.11: mean-based λ̂ ≈ 1/a ≈ 9× the variance-based one, and the chains
    spread as far as the localization Gaussian lets them."""
    r = localization_only_result()
    assert r.llc_mean / r.llc_var == pytest.approx(1 / (NBETA * 0.05 / (NBETA * 0.05 + 100)), rel=0.2)
    verdicts = r.verdicts
    assert any("disagree" in v for v in verdicts) and any("localization Gaussian" in v for v in verdicts)
    assert all(f"check: {v}" in r.summary() for v in verdicts)
    # A loss that does constrain the chains (nβh = 10 γ): no such verdicts.
    constrained = localization_only_result(gamma=1.0, h=10 / NBETA)
    assert constrained.verdicts == ()


def test_verdicts_skip_the_step_check_for_adaptive_samplers():
    r = localization_only_result()
    r2 = synthetic_result(r.loss_trace, eval_loss=r.loss_trace, mala=0.9, localization=100.0, step_size=0.01)
    assert any("ε·γ = 1" in v for v in r2.verdicts)
    r3 = synthetic_result(
        r.loss_trace, eval_loss=r.loss_trace, mala=0.9, localization=100.0, step_size=0.01, sampler="rmsprop_sgld"
    )
    assert not any("ε·γ" in v for v in r3.verdicts)
    assert any("ε·(nβ·h_max + γ)" in v for v in r2.consistency(curvature=1.0))


# --- 3. WBIC ---------------------------------------------------------------------------------------
def test_wbic_accepts_an_explicit_nbeta_equal_to_n_over_log_n():
    draws = gamma_traces([2.0] * 4, seed=8)
    by_rule = synthetic_result(draws)
    explicit = synthetic_result(draws, nbeta_rule="explicit", nbeta=float(np.float32(NBETA)))
    assert np.isfinite(by_rule.wbic)
    assert explicit.wbic == pytest.approx(by_rule.wbic)
    assert math.isnan(synthetic_result(draws, nbeta_rule="explicit", nbeta=2 * NBETA).wbic)


def test_wbic_with_no_healthy_chains_is_nan_with_a_warning():
    r = synthetic_result(gamma_traces([2.0] * 4, seed=9), healthy=[False] * 4)
    with pytest.warns(RuntimeWarning, match="no healthy chains"):
        assert math.isnan(r.wbic)


# --- end to end --------------------------------------------------------------------------------------
def _linear(n=N, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ rng.normal(size=(3, 2)) + rng.normal(size=(n, 2))).astype(np.float32)
    w = np.linalg.lstsq(x, y, rcond=None)[0].astype(np.float32)
    return {"W": jnp.asarray(w)}, (x, y)


def linear_loss(params, batch):
    x, y = batch
    return 0.5 * jnp.sum((y - x @ params["W"]) ** 2, axis=-1)


PARAMS, DATA = _linear()
BASE = dict(num_chains=4, num_draws=200, num_burnin=50, batch_size=32, seed=0, progress=False)


def test_end_to_end_wrong_sign_loss_excludes_every_chain_and_reports_nan():
    """-(squared error): nβ·curvature (≈ 46) beats γ = 1 and every chain runs away, still finite
    (λ̂ ≈ -1e18, the issue's -1.5e23 in small). Before the fix no chain was excluded and λ̂ was
    reported; now each is excluded (the trend test alone suffices, without d) and λ̂ is NaN."""
    with pytest.warns(RuntimeWarning):
        r = slt_jax.estimate_llc(
            lambda p, b: -linear_loss(p, b), PARAMS, DATA, step_size=4e-3, localization=1.0, **BASE
        )
    assert np.all(np.isfinite(r.llc_per_chain)) and np.all(r.llc_per_chain < -1e6)
    assert r.num_healthy == 0 and all(why.startswith("diverged") for why in r.health_reasons)
    excursion = r.nbeta * (r.loss_trace.astype(np.float64) - r.init_loss)
    assert all(health.runaway_growth(row) > health.RUNAWAY_SCALES for row in excursion)
    with pytest.warns(RuntimeWarning, match="only 0 of 4"):
        assert math.isnan(r.llc_mean)
    with pytest.warns(RuntimeWarning, match="no healthy chains"):
        assert math.isnan(r.wbic)
    assert "λ̂ not reported" in r.summary()


def test_end_to_end_verdicts_and_explicit_nbeta_wbic():
    """γ = 1000 ≫ nβh ≈ 46 at the least-squares minimum: flagged by the mean/variance and the
    spread verdicts. γ = 1: neither. An explicit nβ = n/log n gives the same WBIC as the rule."""
    kw = dict(BASE, num_chains=8, num_draws=400, batch_size=N, eval_every=1)
    loose = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, step_size=1e-4, localization=1000.0, **kw)
    assert any("disagree" in v for v in loose.verdicts), loose.summary()
    assert any("localization Gaussian" in v for v in loose.verdicts), loose.summary()
    tight = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, step_size=5e-3, localization=1.0, **kw)
    assert not any("disagree" in v or "localization Gaussian" in v for v in tight.verdicts), tight.summary()
    explicit = slt_jax.estimate_llc(
        linear_loss, PARAMS, DATA, step_size=5e-3, localization=1.0, nbeta=N / math.log(N), **kw
    )
    assert explicit.attrs["nbeta_rule"] == "explicit"
    assert np.isfinite(explicit.wbic) and explicit.wbic == pytest.approx(tight.wbic, rel=1e-6)


def test_end_to_end_finite_plateau_chains_are_kept():
    """The old 'diverged' test: +100 once |w| > 1.5, which the gradient never sees, so every chain
    samples the same N(0, 1) and some spend more draws on the plateau. Their λ̂ differ by 100×, but
    nothing diverged: before the fix three of them were excluded as outliers."""

    def cliff_loss(params, batch):
        w = params["w"][0]
        return 0.5 * (batch * w) ** 2 + jnp.where(jnp.abs(w) > 1.5, 100.0, 0.0)

    data = jnp.asarray(np.random.default_rng(0).normal(size=64), jnp.float32)
    r = slt_jax.estimate_llc(
        cliff_loss, {"w": jnp.zeros(1)}, data, step_size=1e-2, localization=0.0, nbeta=1.0,
        num_chains=16, num_draws=200, batch_size=16, seed=0, progress=False,
    )
    assert r.llc_per_chain.max() > 10 * np.median(r.llc_per_chain)
    assert r.num_healthy == 16, r.health_reasons
