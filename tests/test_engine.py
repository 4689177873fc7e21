"""The chain runner and estimate_llc: determinism, independence, health, persistence, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import slt_jax
from slt_jax.posterior import resolve_nbeta

N, D_IN, D_OUT = 256, 3, 2


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, D_IN)).astype(np.float32)
    w = (rng.normal(size=(D_IN, D_OUT)) / 2).astype(np.float32)
    y = x @ w + rng.normal(size=(N, D_OUT)).astype(np.float32)
    return {"W": jnp.asarray(w), "b": jnp.zeros(D_OUT)}, (x, y)


def linear_loss(params, batch):
    x, y = batch
    return 0.5 * jnp.sum((y - x @ params["W"] - params["b"]) ** 2, axis=-1)


PARAMS, DATA = _problem()
BASE = dict(step_size=1e-4, localization=10.0, num_draws=60, num_burnin=7, thin=2, batch_size=32, progress=False)


@pytest.fixture(scope="module")
def reference():
    return slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=4, seed=3, **BASE)


def test_same_seed_same_result(reference):
    again = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=4, seed=3, **BASE)
    np.testing.assert_array_equal(again.loss_trace, reference.loss_trace)
    np.testing.assert_array_equal(again.dataset["eval_loss"].values, reference.dataset["eval_loss"].values)


def test_chains_differ_and_a_chain_does_not_depend_on_the_chain_count_or_segmentation(reference):
    trace = reference.loss_trace
    assert all(not np.allclose(trace[i], trace[j]) for i in range(4) for j in range(i + 1, 4))
    # Chain c's randomness is fold_in(key(seed), c): two chains, cut into tiny segments,
    # must reproduce the first two chains of the four-chain run.
    two = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=2, seed=3, segment_steps=5, **BASE)
    np.testing.assert_allclose(two.loss_trace, trace[:2], rtol=1e-6)
    other_seed = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=2, seed=4, **BASE)
    assert not np.allclose(other_seed.loss_trace, trace[:2])


def test_result_shapes_and_metadata(reference):
    r = reference
    assert r.loss_trace.shape == (4, 60)
    assert r.llc_per_chain.shape == (4,)
    # Burn-in is recorded on the draws' thinning grid (steps ≡ num_burnin mod thin): 1, 3, 5.
    assert r.dataset["burnin_loss"].shape == (4, 3)
    # eval_every auto = ceil(n / (B·thin)) = 4 → evaluations at draws 0, 4, ..., 56
    np.testing.assert_array_equal(r.dataset["eval_draw"].values, np.arange(0, 60, 4))
    np.testing.assert_allclose(r.init_loss, np.mean(linear_loss(PARAMS, DATA)), rtol=1e-6)
    np.testing.assert_allclose(r.nbeta, N / np.log(N))
    assert r.llc_mean == pytest.approx(np.mean(r.nbeta * (r.loss_trace.astype(float).mean(1) - r.init_loss)), rel=1e-9)
    assert r.llc_std == pytest.approx(np.std(r.llc_per_chain, ddof=1), rel=1e-6)
    assert np.isfinite(r.llc_se) and r.llc_se > 0 and np.isfinite(r.rhat) and np.isfinite(r.llc_var)
    for key in ("step_size", "localization", "nbeta_rule", "sampler", "seed", "batch_size", "conventions"):
        assert key in r.attrs
    assert r.attrs["num_params"] == D_IN * D_OUT + D_OUT
    assert "λ̂" in r.summary()


def test_eval_loss_is_the_full_data_loss_at_the_draw(reference):
    """The full-data evaluation at draw d sees the same position as draw d's minibatch loss;
    at draw 0 after burn-in both are noisy, but the full-data loss must be the exact L_n there:
    check by re-running with batch_size = n, where the draw loss *is* L_n."""
    full = slt_jax.estimate_llc(
        linear_loss, PARAMS, DATA, num_chains=2, seed=1, **{**BASE, "batch_size": N, "eval_every": 3}
    )
    ev = full.dataset["eval_loss"].values
    np.testing.assert_allclose(ev, full.loss_trace[:, ::3], rtol=1e-5)


def test_netcdf_round_trip(reference, tmp_path):
    path = reference.to_netcdf(tmp_path / "r.nc")
    back = slt_jax.LLCResult.from_netcdf(path)
    np.testing.assert_array_equal(back.loss_trace, reference.loss_trace)
    assert back.llc_mean == reference.llc_mean
    assert back.attrs == reference.attrs
    assert back.health_reasons == reference.health_reasons


def test_mask_freezes_leaves():
    """Sampling only the bias: λ̂ of the 2 bias coordinates, and the weight leaf never moves."""
    mask = {"W": False, "b": True}
    r = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=2, seed=0, mask=mask, **BASE)
    assert r.attrs["num_params"] == D_OUT
    full = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=2, seed=0, **BASE)
    assert not np.allclose(r.loss_trace, full.loss_trace)


def test_nonfinite_chain_is_reported_and_excluded():
    """A loss that turns NaN once |w| > 1.7: chains that wander there are flagged, not averaged.
    (At 1.5 most chains go NaN and λ̂ is NaN: tests/test_health.py covers that minimum.)"""

    def cliff_loss(params, batch):
        w = params["w"][0]
        return jnp.where(jnp.abs(w) > 1.7, jnp.nan, 0.5 * (batch * w) ** 2)

    data = jnp.asarray(np.random.default_rng(0).normal(size=64), jnp.float32)
    with pytest.warns(RuntimeWarning, match="unhealthy"):
        r = slt_jax.estimate_llc(
            cliff_loss, {"w": jnp.zeros(1)}, data, step_size=1e-2, localization=0.0, nbeta=1.0,
            num_chains=16, num_draws=200, batch_size=16, seed=0, progress=False,
        )
    assert 0 < r.num_healthy < 16, "the test needs some chains to diverge and some not to"
    bad = ~r.healthy
    assert all("non-finite loss" in why for why in np.asarray(r.health_reasons)[bad])
    assert np.isfinite(r.llc_mean)
    assert r.llc_mean == pytest.approx(np.mean(r.llc_per_chain[r.healthy]))
    assert "excluded" in r.summary()


def test_nbeta_rules():
    assert resolve_nbeta(None, 1000, 100) == pytest.approx((1000 / np.log(1000), "n_log_n"))
    assert resolve_nbeta("batch_log_batch", 1000, 100) == pytest.approx((100 / np.log(100), "batch_log_batch"))
    assert resolve_nbeta(7.5, 1000, 100) == (7.5, "explicit")


# ---- bad input: a clear error before compilation --------------------------------------------

BAD = [
    (dict(step_size=0.0), ValueError, "step_size"),
    (dict(step_size=-1e-3), ValueError, "step_size"),
    (dict(step_size=float("nan")), ValueError, "step_size"),
    (dict(batch_size=N + 1), ValueError, "batch_size"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(sampler="hmc"), ValueError, "sampler"),
    (dict(num_chains=0), ValueError, "num_chains"),
    (dict(num_draws=2.5), TypeError, "num_draws"),
    (dict(thin=0), ValueError, "thin"),
    (dict(localization=-1.0), ValueError, "localization"),
    (dict(nbeta="temperature"), ValueError, "nbeta"),
    (dict(batch_sampling="epochs"), ValueError, "batch_sampling"),
]


@pytest.mark.parametrize("override,exc,name", BAD)
def test_bad_arguments(override, exc, name, monkeypatch):
    _forbid_compilation(monkeypatch)
    kwargs = {**BASE, "num_chains": 2, **override}
    with pytest.raises(exc, match=name):
        slt_jax.estimate_llc(linear_loss, PARAMS, DATA, **kwargs)


def _forbid_compilation(monkeypatch):
    """Validation must fail before the chain program is built: the grid workflow's program
    builder raises if reached (tests/conftest.py's no_compilation fixture checks the stronger
    "nothing compiled at all" in tests/test_validation.py)."""

    def boom(*a, **k):
        raise AssertionError("validation must fail before the chain program is built")

    monkeypatch.setattr("slt_jax.workflows.grid.build_programs", boom)


def test_data_leaves_with_different_lengths(monkeypatch):
    _forbid_compilation(monkeypatch)
    x, y = DATA
    with pytest.raises(ValueError, match=r"disagree on the number of samples.*\[0\]: 256.*\[1\]: 255"):
        slt_jax.estimate_llc(linear_loss, PARAMS, (x, y[:-1]), num_chains=2, **BASE)


def test_empty_data(monkeypatch):
    _forbid_compilation(monkeypatch)
    with pytest.raises(ValueError, match="empty"):
        slt_jax.estimate_llc(linear_loss, PARAMS, (), num_chains=2, **BASE)
    with pytest.raises(ValueError, match="zero samples"):
        slt_jax.estimate_llc(linear_loss, PARAMS, (np.zeros((0, 3)), np.zeros((0, 2))), num_chains=2, **BASE)


def test_nonfinite_center(monkeypatch):
    _forbid_compilation(monkeypatch)
    bad = {"W": PARAMS["W"].at[0, 0].set(jnp.nan), "b": PARAMS["b"]}
    with pytest.raises(ValueError, match=r"params\['W'\].*non-finite"):
        slt_jax.estimate_llc(linear_loss, bad, DATA, num_chains=2, **BASE)


def test_loss_that_returns_a_mean_is_rejected(monkeypatch):
    _forbid_compilation(monkeypatch)
    with pytest.raises(ValueError, match="per-sample losses"):
        slt_jax.estimate_llc(lambda p, b: jnp.mean(linear_loss(p, b)), PARAMS, DATA, num_chains=2, **BASE)


def test_loss_that_crashes_is_reported(monkeypatch):
    _forbid_compilation(monkeypatch)

    def broken(params, batch):
        return batch[0] @ params["W"].T  # wrong shapes

    with pytest.raises(ValueError, match="loss_fn.*failed when traced"):
        slt_jax.estimate_llc(broken, PARAMS, DATA, num_chains=2, **BASE)


def test_mask_with_wrong_structure(monkeypatch):
    _forbid_compilation(monkeypatch)
    with pytest.raises(ValueError, match="mask"):
        slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=2, mask={"W": True}, **BASE)
    with pytest.raises(ValueError, match="selects no parameters"):
        slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=2, mask={"W": False, "b": False}, **BASE)


def test_diverged_chain_is_flagged_excluded_and_counted():
    """A loss unbounded below once |w| > 2 (-5(|w| - 2)² there): chains that wander out run away,
    finite but far below L_n(w*), and are excluded as diverged, with a warning, and the summary
    says how many chains were used. (Mere outliers are kept: tests/test_health.py.)"""

    def runaway_loss(params, batch):
        w = params["w"][0]
        return 0.5 * (batch * w) ** 2 - 5.0 * jnp.maximum(jnp.abs(w) - 2.0, 0.0) ** 2

    data = jnp.asarray(np.random.default_rng(0).normal(size=64), jnp.float32)
    with pytest.warns(RuntimeWarning, match="diverged"):
        r = slt_jax.estimate_llc(
            runaway_loss, {"w": jnp.zeros(1)}, data, step_size=1e-2, localization=0.0, nbeta=1.0,
            num_chains=16, num_draws=400, batch_size=16, seed=0, progress=False,
        )
    bad = [h for h in r.health if not h.healthy]
    assert bad and len(bad) <= 8, [str(h) for h in bad]
    assert all(h.reason.startswith("diverged") for h in bad)
    assert all(r.llc_per_chain[h.chain] < -50 for h in bad)
    assert f"chains used {r.num_healthy}/16" in r.summary()
    assert r.llc_mean == pytest.approx(np.mean(r.llc_per_chain[r.healthy]))


def test_irrelevant_masked_weights_give_the_same_llc_as_the_smaller_model():
    """Weight-refined LLC equivalence (devinterp's rLLC cases): extra weights that do not enter
    the output, frozen by the mask, leave λ̂ bitwise unchanged, because the sampled leaves and
    their random streams are the same as the smaller model's."""

    def small_loss(params, batch):
        return linear_loss(params, batch)

    def big_loss(params, batch):
        return linear_loss({"W": params["W"], "b": params["b"]}, batch) + 0.0 * jnp.sum(params["zz_extra"])

    big = {**PARAMS, "zz_extra": jnp.ones((5, 5))}
    mask = {"W": True, "b": True, "zz_extra": False}
    small = slt_jax.estimate_llc(small_loss, PARAMS, DATA, num_chains=2, seed=5, **BASE)
    masked = slt_jax.estimate_llc(big_loss, big, DATA, num_chains=2, seed=5, mask=mask, **BASE)
    np.testing.assert_array_equal(masked.llc_per_chain, small.llc_per_chain)
    assert masked.attrs["num_params"] == small.attrs["num_params"]
    # Sampling the irrelevant weights too changes the random streams but not λ̂'s target;
    # sampling *only* the bias is a genuinely different (smaller) quantity.
    bias_only = slt_jax.estimate_llc(small_loss, PARAMS, DATA, num_chains=2, seed=5, mask={"W": False, "b": True}, **BASE)
    assert not np.allclose(bias_only.llc_per_chain, small.llc_per_chain)


def test_element_masks_freeze_coordinates_inside_a_leaf():
    mask = {"W": np.array([[True, False], [True, False], [True, False]]), "b": False}
    r = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=2, seed=0, mask=mask, **BASE)
    assert r.attrs["num_params"] == 3


def test_eval_sets_memory_and_moments_storage_agree(tmp_path):
    """The same run stored per draw or as running moments gives the same ν̂ / V_n / WAIC, the
    per-sample losses are what loss_fn computes at the draw, and moments mode refuses BIFs."""
    probe = (DATA[0][:10], DATA[1][:10])
    kw = dict(num_chains=3, seed=2, eval_every=2, eval_sets={"probe": probe, "train": DATA}, **BASE)
    mem = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, per_sample_storage="memory", **kw)
    mom = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, per_sample_storage="moments", **kw)
    assert mem.per_sample_losses("probe").shape == (3, 30, 10)
    for name in ("probe", "train"):
        assert mom.singular_fluctuation(name) == pytest.approx(mem.singular_fluctuation(name), rel=1e-5)
        assert mom.waic(name) == pytest.approx(mem.waic(name), rel=1e-6)
        assert mom.functional_variance(name) == pytest.approx(mem.functional_variance(name), rel=1e-5)
    # The train set's per-sample losses average to the full-data loss recorded at the same draws.
    np.testing.assert_allclose(mem.per_sample_losses("train").mean(-1), mem.dataset["eval_loss"].values, rtol=1e-5)
    with pytest.raises(KeyError, match="per_sample_storage='memory'"):
        mom.bif("probe")
    bif = mem.bif("probe")
    np.testing.assert_allclose(bif, bif.T)
    np.testing.assert_allclose(np.diag(bif), 1.0)
    back = slt_jax.LLCResult.from_netcdf(mom.to_netcdf(tmp_path / "m.nc"))
    assert back.singular_fluctuation("probe") == pytest.approx(mom.singular_fluctuation("probe"))


def test_diagnostics_and_eval_batching_change_what_is_computed_not_the_chains():
    """diagnostics=() skips the full-data loss and the MALA probe (NaN, by name) but leaves the
    chains and the eval sets' losses exactly as they were; eval_batching="map" evaluates the
    chains one after another and gets the same per-sample losses (to float rounding: a
    batched and an unbatched matmul may sum in a different order)."""
    probe = (DATA[0][:10], DATA[1][:10])
    kw = dict(num_chains=3, seed=2, eval_every=3, eval_sets={"probe": probe}, **BASE)
    full = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, **kw)
    lean = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, diagnostics=(), **kw)
    mapped = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, eval_batching="map", **kw)
    only_mala = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, diagnostics="mala", **kw)
    np.testing.assert_array_equal(lean.loss_trace, full.loss_trace)
    np.testing.assert_array_equal(lean.per_sample_losses("probe"), full.per_sample_losses("probe"))
    assert np.isnan(lean.dataset["eval_loss"].values).all() and np.isnan(lean.dataset["mala_acceptance"].values).all()
    assert np.isfinite(full.dataset["eval_loss"].values).all() and np.isfinite(full.mala_acceptance).all()
    assert lean.attrs["diagnostics"] == [] and full.attrs["diagnostics"] == ["full_loss", "mala"]
    assert np.isnan(only_mala.dataset["eval_loss"].values).all()
    np.testing.assert_array_equal(only_mala.dataset["mala_acceptance"].values, full.dataset["mala_acceptance"].values)
    np.testing.assert_array_equal(mapped.loss_trace, full.loss_trace)
    for name in ("eval_loss", "mala_acceptance", "probe_losses"):
        np.testing.assert_allclose(mapped.dataset[name].values, full.dataset[name].values, rtol=1e-5, atol=1e-6)
    assert "MALA" in full.summary() and "MALA" not in lean.summary()  # nothing shown for skipped diagnostics


def test_draw_diagnostics_off_keeps_the_chains_and_drops_only_the_norms(tmp_path, reference):
    lean = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=4, seed=3, draw_diagnostics=False, **BASE)
    np.testing.assert_array_equal(lean.loss_trace, reference.loss_trace)
    np.testing.assert_array_equal(lean.dataset["eval_loss"].values, reference.dataset["eval_loss"].values)
    assert lean.llc_mean == reference.llc_mean and lean.healthy.all()
    for name in ("grad_norm", "distance", "weight_norm", "noise_norm", "burnin_distance"):
        assert np.isnan(lean.dataset[name].values).all(), name
        assert np.isfinite(reference.dataset[name].values).all(), name
    assert lean.attrs["draw_diagnostics"] is False or lean.attrs["draw_diagnostics"] == 0
    back = slt_jax.LLCResult.from_netcdf(lean.to_netcdf(tmp_path / "lean.nc"))
    assert back.llc_mean == lean.llc_mean


def test_chain_batches_give_the_same_chains(reference):
    """chain_batch=2: the 4 chains step as 2 vmapped batches one after another (lax.map);
    same keys, same chains (to float rounding: batched and unbatched math may round apart)."""
    batched = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=4, seed=3, chain_batch=2, **BASE)
    np.testing.assert_allclose(batched.loss_trace, reference.loss_trace, rtol=1e-5)
    single = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=4, seed=3, chain_batch=1, **BASE)
    np.testing.assert_allclose(single.loss_trace, reference.loss_trace, rtol=1e-5)
    assert batched.attrs["chain_batch"] == 2


def test_eval_batching_map_with_per_chain_centers():
    """Checkpoint batching gives every chain its own w*: the lax.map evaluation must hand each
    chain its own center (Posterior with mixed mapped/broadcast fields)."""
    ckpts = [PARAMS, jax.tree.map(lambda x: x + 0.05, PARAMS)]
    kw = dict(num_chains=2, seed=1, eval_every=4, eval_sets={"probe": DATA}, checkpoints_per_call=2, **BASE)
    a = slt_jax.estimate_llc_checkpoints(linear_loss, ckpts, DATA, **kw)
    b = slt_jax.estimate_llc_checkpoints(linear_loss, ckpts, DATA, eval_batching="map", **kw)
    for ra, rb in zip(a, b):
        for name in ("eval_loss", "mala_acceptance", "probe_losses"):
            np.testing.assert_allclose(rb.dataset[name].values, ra.dataset[name].values, rtol=1e-5, atol=1e-6)


def test_bad_diagnostics_and_eval_batching(monkeypatch):
    _forbid_compilation(monkeypatch)
    with pytest.raises(ValueError, match="diagnostics='wbic'.*full_loss"):
        slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=2, diagnostics=("wbic",), **BASE)
    with pytest.raises(TypeError, match=r"diagnostics must be a tuple .*\(\) for none"):
        slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=2, diagnostics=None, **BASE)
    with pytest.raises(ValueError, match="eval_batching='pmap'.*map"):
        slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=2, eval_batching="pmap", **BASE)
    with pytest.raises(ValueError, match="chain_batch=3 must divide the 4 chains per device"):
        slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=4, chain_batch=3, **BASE)
    with pytest.raises(ValueError, match="chain_batch"):
        slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=4, chain_batch=0, **BASE)
    with pytest.raises(TypeError, match="draw_diagnostics must be True or False"):
        slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=2, draw_diagnostics="no", **BASE)


def test_auto_storage_switches_to_moments_when_too_big():
    r = slt_jax.estimate_llc(
        linear_loss, PARAMS, DATA, num_chains=2, seed=0, eval_every=2, eval_sets={"train": DATA},
        max_per_sample_bytes=1000, **BASE,
    )
    assert r.attrs["per_sample_storage"] == "moments"
    assert r.attrs["per_sample_bytes"] == 4 * 2 * 30 * N
    assert np.isfinite(r.singular_fluctuation("train"))


def test_bad_eval_sets(monkeypatch):
    _forbid_compilation(monkeypatch)
    with pytest.raises(ValueError, match="identifiers"):
        slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=2, eval_sets={"a b": DATA}, **BASE)
    with pytest.raises(ValueError, match=r"eval_sets\['p'\].*disagree"):
        slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=2, eval_sets={"p": (DATA[0], DATA[1][:5])}, **BASE)
    with pytest.raises(ValueError, match="eval_every"):
        slt_jax.estimate_llc(linear_loss, PARAMS, DATA, num_chains=2, eval_sets={"p": DATA}, **{**BASE, "eval_every": None})


def test_inference_data_export(reference):
    idata = reference.to_inference_data()
    np.testing.assert_allclose(float(idata.posterior["llc_draw"].mean()), reference.llc_mean, rtol=1e-6)
    assert set(idata.sample_stats.data_vars) >= {"loss", "grad_norm", "distance"}
    assert idata.posterior.attrs["sampler"] == "sgld"


def test_norm_diagnostics(reference):
    """SGLD injects sqrt(ε)·ξ: its norm is ≈ sqrt(ε d); distance and weight norm are consistent."""
    ds = reference.dataset
    d = reference.attrs["num_params"]
    np.testing.assert_allclose(np.mean(ds["noise_norm"].values), np.sqrt(1e-4 * d), rtol=0.1)
    assert np.all(ds["distance"].values >= 0) and np.all(ds["grad_norm"].values > 0)
    w_star = np.sqrt(sum(float(jnp.sum(x**2)) for x in jax.tree.leaves(PARAMS)))
    assert np.all(np.abs(ds["weight_norm"].values - w_star) <= ds["distance"].values + 1e-5)


def test_reweighting_llc_on_the_result(reference):
    fit = reference.reweighting_llc()
    assert np.isfinite(fit.llc) and len(fit.betas) == 5
    assert np.all(fit.ess_fraction > 0)


def test_auto_chain_batch_rule():
    """CPU: batches of 16 chains (else 8, 32, ...) once a device holds more than 64, else one
    vmap (0); the sizes come from the measurements in backends/chain_batch.py."""
    from slt_jax.llc import resolve_chain_batch

    assert jax.default_backend() == "cpu"
    assert resolve_chain_batch("auto", 64) == 0
    assert resolve_chain_batch("auto", 128) == 16
    assert resolve_chain_batch("auto", 512) == 16
    assert resolve_chain_batch("auto", 72) == 8
    assert resolve_chain_batch("auto", 129) == 0  # no batch size divides 129: stay one vmap
    assert resolve_chain_batch(8, 8) == 0 and resolve_chain_batch(4, 8) == 4
    assert resolve_chain_batch("auto", 512, "gpu") == 0  # accelerators: one vmap per device
