"""Susceptibilities from weight-restricted runs against a case computed by hand."""

import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax import observables as obs
from slt_jax.susceptibility import SusceptibilityResult, estimate_susceptibilities

N = 500


def _problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 1)).astype(np.float32)
    y = (0.7 * x + 0.5 * rng.normal(size=(N, 1))).astype(np.float32)
    w_hat = float(np.sum(x.astype(float) * y) / np.sum(x.astype(float) ** 2))

    def loss_fn(params, batch):
        xb, yb = batch
        return 0.5 * jnp.sum((yb - xb * params["w"]) ** 2, axis=-1)

    # Probe samples on the fitted line (residual 0) at |x| = 0, 0.5, 1, 2, 3.
    xz = np.array([[0.0], [0.5], [1.0], [2.0], [3.0]], np.float32)
    probe = (xz, (w_hat * xz).astype(np.float32))
    return loss_fn, {"w": jnp.array([w_hat], jnp.float32)}, (x, y), probe


def test_susceptibility_matches_the_gaussian_closed_form():
    """1-D linear regression at ŵ, full batch: the posterior is N(ŵ, s²), s² = 1/(nβ S + γ),
    S = mean x². With u = w - ŵ: φ = L - L(ŵ) = S u²/2 and, for a probe on the fitted line,
    l_z - L = const + (x_z² - S) u²/2, so Cov = 2 (S/2)((x_z²-S)/2) s⁴ and
    χ_z = -nβ S (x_z² - S) s⁴ / 2: positive for |x_z| < sqrt(S), negative beyond.

    Tolerance: the SE of each χ_z from the spread of 32 independent chains' estimates, 4 SE,
    plus 2% for SGLD's discretization bias on s⁴ (εP/2 with εP = 0.016).
    """
    loss_fn, params, data, probe = _problem()
    gamma = 1.0
    res = estimate_susceptibilities(
        loss_fn, params, data, probes={"line": probe}, step_size=2e-4, localization=gamma,
        num_chains=32, num_draws=4000, num_burnin=500, batch_size=N, seed=0, progress=False,
        eval_every=2,
    )
    s_xx = float(np.mean(data[0].astype(float) ** 2))
    nbeta = N / np.log(N)
    s2 = 1.0 / (nbeta * s_xx + gamma)
    xz = probe[0][:, 0].astype(float)
    expected = -nbeta * s_xx * (xz**2 - s_xx) * s2**2 / 2

    run = res.runs["all"]
    phi = run.dataset["eval_loss"].values - run.init_loss
    losses = run.per_sample_losses("line")
    base = run.dataset["eval_loss"].values
    per_chain = np.stack([obs.susceptibility(phi[c : c + 1], losses[c : c + 1], base[c : c + 1], nbeta) for c in range(32)])
    se = per_chain.std(axis=0, ddof=1) / np.sqrt(32)
    got = res.matrix[0]
    assert np.all(np.abs(got - expected) < 4 * se + 0.02 * np.abs(expected)), (got, expected, se)
    assert got[0] > 0 and got[-1] < 0  # the sign flips where x_z² crosses S
    assert res.aggregate()[("all", "line")] == pytest.approx(got.mean())


def test_components_conventions_pca_and_netcdf(tmp_path):
    """Two components (all weights; only w of a 2-parameter model), devinterp's convention,
    PCA shapes and the netCDF round trip."""
    loss_fn, params, data, probe = _problem()

    def loss2(p, batch):
        xb, yb = batch
        return 0.5 * jnp.sum((yb - xb * p["w"] - p["b"]) ** 2, axis=-1)

    params2 = {"w": params["w"], "b": jnp.zeros(1)}
    kwargs = dict(step_size=2e-4, localization=1.0, num_chains=4, num_draws=300, num_burnin=300, batch_size=100, seed=1, progress=False)
    components = {"all": None, "w_only": {"w": True, "b": False}}
    res = estimate_susceptibilities(loss2, params2, data, probes={"line": probe, "train": data}, components=components, **kwargs)
    assert res.matrix.shape == (2, 5 + N)
    assert list(res.probe_sets[:5]) == ["line"] * 5
    dev = estimate_susceptibilities(loss2, params2, data, probes={"line": probe}, components=components, convention="devinterp", **kwargs)
    # Same draws (same seed, same masks). For the unrestricted component devinterp's centring is
    # the run's own mean, so its χ is slt_jax's × (N-1)/(N nβ) exactly; the restricted one is
    # centred with the unrestricted run's mean instead.
    num = sum(res.runs["all"].healthy) * res.runs["all"].dataset.sizes["eval_draw"]
    np.testing.assert_allclose(dev.matrix[0], res.matrix[0, :5] * (num - 1) / (num * res.runs["all"].nbeta), rtol=1e-6)
    assert not np.allclose(dev.matrix[1], res.matrix[1, :5])
    pca = res.pca(k=2)
    assert np.isclose(np.sum(pca.explained_variance_ratio), 1.0) or np.sum(pca.explained_variance_ratio) <= 1.0
    back = SusceptibilityResult.from_netcdf(res.to_netcdf(tmp_path / "chi.nc"))
    np.testing.assert_array_equal(back.matrix, res.matrix)
    assert back.attrs["convention"] == "slt_jax"


def test_bad_arguments():
    loss_fn, params, data, probe = _problem()
    with pytest.raises(ValueError, match="probes"):
        estimate_susceptibilities(loss_fn, params, data, probes={}, step_size=1e-3, localization=1.0, num_chains=2, num_draws=10, batch_size=10)
    with pytest.raises(ValueError, match="convention"):
        estimate_susceptibilities(loss_fn, params, data, probes={"p": probe}, convention="x", step_size=1e-3, localization=1.0, num_chains=2, num_draws=10, batch_size=10)
    with pytest.raises(ValueError, match="components="):
        estimate_susceptibilities(loss_fn, params, data, probes={"p": probe}, mask=None, step_size=1e-3, localization=1.0, num_chains=2, num_draws=10, batch_size=10)
