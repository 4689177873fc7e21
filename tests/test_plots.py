"""Plots of an LLCResult: every function returns a Figure, writes a PNG, and copes with
unhealthy chains and runs without evaluations."""

import matplotlib

matplotlib.use("Agg")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import slt_jax  # noqa: E402
from slt_jax import plots  # noqa: E402
from slt_jax.result import LLCResult  # noqa: E402

N, D_IN, D_OUT = 128, 3, 2


def _problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D_IN)).astype(np.float32)
    w = (rng.normal(size=(D_IN, D_OUT)) / 2).astype(np.float32)
    y = x @ w + rng.normal(size=(N, D_OUT)).astype(np.float32)
    sol = np.linalg.lstsq(np.c_[x, np.ones(N)], y, rcond=None)[0]  # w* = the least-squares fit
    return {"W": jnp.asarray(sol[:D_IN], jnp.float32), "b": jnp.asarray(sol[D_IN], jnp.float32)}, (x, y)


def linear_loss(params, batch):
    x, y = batch
    return 0.5 * jnp.sum((y - x @ params["W"] - params["b"]) ** 2, axis=-1)


PARAMS, DATA = _problem()
BASE = dict(step_size=1e-3, localization=10.0, num_chains=4, num_draws=100, num_burnin=20, batch_size=32, progress=False)


@pytest.fixture(scope="module")
def result():
    return slt_jax.estimate_llc(linear_loss, PARAMS, DATA, eval_every=5, eval_sets={"train": DATA}, **BASE)


@pytest.fixture(scope="module")
def unhealthy(result):
    """Chain 0 marked unhealthy and diverged: non-finite loss, gradient and evaluations, huge distance."""
    ds = result.dataset.copy(deep=True)
    ds["healthy"].values[0] = False
    ds["health_reason"].values[0] = "test: diverged"
    ds["loss"].values[0, 60:] = np.inf
    ds["grad_norm"].values[0, 60:] = np.nan
    ds["distance"].values[0, 40:60] = np.logspace(1, 20, 20)
    ds["distance"].values[0, 60:] = np.nan
    for name in ("eval_loss", "mala_acceptance", "train_losses"):
        ds[name].values[0, 12:] = np.nan
    return LLCResult(ds)


@pytest.fixture(scope="module")
def no_evals():
    return slt_jax.estimate_llc(linear_loss, PARAMS, DATA, eval_every=None, **BASE)


def _check(fig, path):
    assert isinstance(fig, Figure)
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("fn", [plots.plot_trace, plots.plot_mala, plots.plot_loss_histograms, plots.plot_diagnostics])
@pytest.mark.parametrize("which", ["result", "unhealthy", "no_evals"])
def test_result_plots(fn, which, request, tmp_path):
    r = request.getfixturevalue(which)
    path = tmp_path / "sub" / f"{fn.__name__}.png"
    _check(fn(r, path), path)
    fig = fn(r)  # no path: returned open, for notebooks
    assert isinstance(fig, Figure)
    matplotlib.pyplot.close(fig)


def test_loss_histograms_panels(result, no_evals):
    # full-data panel (with the Gamma(λ̂, 1) density) only when the run has evaluations
    fig = plots.plot_loss_histograms(result)
    assert len(fig.axes) == 2
    assert any("Gamma" in line.get_label() for line in fig.axes[1].lines)
    assert len(plots.plot_loss_histograms(no_evals).axes) == 1
    matplotlib.pyplot.close("all")


def test_unhealthy_chain_is_grey_dashed_and_does_not_set_the_scale(unhealthy):
    fig = plots.plot_diagnostics(unhealthy)
    first = fig.axes[0].lines[0]  # chain 0's gradient-norm trace
    assert first.get_linestyle() == "--" and matplotlib.colors.same_color(first.get_color(), "grey")
    healthy_max = np.nanmax(unhealthy.dataset["distance"].values[1:])
    assert fig.axes[1].get_ylim()[1] < 2 * healthy_max  # the diverged chain's 1e20 is clipped
    matplotlib.pyplot.close(fig)


def test_plot_bif(result, tmp_path):
    m = result.bif("train")
    path = tmp_path / "bif.png"
    _check(plots.plot_bif(m, path, title="BIF"), path)
    labels = [f"s{i}" for i in range(m.shape[0])]
    path = tmp_path / "bif_labels.png"
    _check(plots.plot_bif(m[:20, :10], path, train_labels=labels[:20], query_labels=labels[:10]), path)
    m2 = m.copy()
    m2[3, :] = np.nan  # zero-variance sample
    fig = plots.plot_bif(m2)
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError, match="labels"):
        plots.plot_bif(m, train_labels=["a"])
    matplotlib.pyplot.close("all")


def test_plot_susceptibility_pca(tmp_path):
    rng = np.random.default_rng(1)
    chis = rng.normal(size=(5, 60)) + np.outer(rng.normal(size=5), np.repeat([1.0, -1.0, 0.0], 20))
    groups = ["code"] * 20 + ["prose"] * 20 + ["math"] * 20
    path = tmp_path / "pca.png"
    fig = plots.plot_susceptibility_pca(chis, path, component_names=[f"layer{i}" for i in range(5)],
                                        probe_names=groups, k=3)
    _check(fig, path)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("PC1 (") and "% of variance" in ax.get_ylabel()
    fig = plots.plot_susceptibility_pca(chis)  # no names
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError, match="k must"):
        plots.plot_susceptibility_pca(chis, k=1)
    with pytest.raises(ValueError, match="probe_names"):
        plots.plot_susceptibility_pca(chis, probe_names=["a"])
    matplotlib.pyplot.close("all")


def test_save_standard_plots(result, unhealthy, no_evals, tmp_path):
    names = ["trace.png", "mala.png", "loss_histograms.png", "diagnostics.png"]
    paths = plots.save_standard_plots(result, tmp_path / "a")
    assert [p.name for p in paths] == names + ["bif_train.png"]
    for p in paths:
        assert p.stat().st_size > 1000
    assert [p.name for p in plots.save_standard_plots(no_evals, tmp_path / "c")] == names
    moments_only = LLCResult(result.dataset.drop_vars("train_losses"))  # per_sample_storage="moments"
    assert [p.name for p in plots.save_standard_plots(moments_only, tmp_path / "e")] == names
    # BIF of the first max_bif_samples samples when the eval set is larger
    np.testing.assert_allclose(plots._bif_subset(result, "train", 16), result.bif("train")[:16, :16], atol=1e-12)
    np.testing.assert_array_equal(plots._bif_subset(unhealthy, "train", 256), unhealthy.bif("train"))
    matplotlib.pyplot.close("all")


def test_saving_a_plot_keeps_the_backend_someone_chose(result, tmp_path):
    # A notebook's inline backend must survive a library call that writes a PNG.
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        plots.plot_trace(result, path=tmp_path / "trace.png")
        assert matplotlib.get_backend() == "svg"
        assert (tmp_path / "trace.png").stat().st_size > 0
    finally:
        plt.close("all")
        matplotlib.use(before)


def test_the_sweep_plot_closes_its_figure(tmp_path):
    import matplotlib.pyplot as plt
    import pandas as pd

    from slt_jax.workflows.sweep_outputs import plot_sweep

    table = pd.DataFrame({"step": [0, 10, 100], "llc": [1.0, 2.0, 3.0], "llc_mcse": [0.1, 0.1, 0.1],
                          "llc_var": [1.1, 2.1, 2.9], "init_loss": [1.0, 0.5, 0.2]})
    open_before = len(plt.get_fignums())
    plot_sweep(table, None, tmp_path / "llc_vs_step.png")
    assert (tmp_path / "llc_vs_step.png").is_file()
    assert len(plt.get_fignums()) == open_before
