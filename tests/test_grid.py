"""One compiled program for any batch of configurations, and a cache that makes a second call
compile nothing (issue #9: per-chain hyperparameters as data, program cache, estimate_llc_grid)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import slt_jax
from scripts.linear_problem import least_squares, linear_data, linear_loss
from slt_jax.engine.compile_log import count_compilations
from slt_jax.grid_result import GridResult

X, Y = linear_data(256)
DATA = (X, Y)
PARAMS = least_squares(X, Y)
KW = dict(num_chains=4, num_draws=60, num_burnin=5, batch_size=32, seed=3, progress=False, eval_every=5,
          eval_sets={"probe": (X[:5], Y[:5])})
EPS, GAMMA, NBETA = [1e-3, 2e-3, 5e-4], [10.0, 100.0], [None, 30.0]
CKPTS = {100: PARAMS, 200: {"W": PARAMS["W"] + 0.02}, 300: {"W": PARAMS["W"] - 0.03}}


@pytest.fixture(scope="module")
def grid():
    with count_compilations() as log:
        result = slt_jax.estimate_llc_grid(linear_loss, CKPTS, DATA, step_size=EPS, localization=GAMMA,
                                           nbeta=NBETA, **KW)
    return result, log


def test_grid_compiles_one_sampling_program(grid):
    """3 ε × 2 γ × 2 nβ × 3 checkpoints × 4 chains = 144 chains in one program: exactly one
    segment program (`draws`) is compiled, and the result records it."""
    result, log = grid
    assert [n for n in log.names if "draws" in n] == ["jit(draws)"]
    assert result.attrs["configs_per_program"] == 36 and result.attrs["padded_chains"] == 144
    assert result.attrs["compilations"] == log.count and result.attrs["compile_s"] > 0
    assert dict(result.dataset["loss"].sizes) == {
        "checkpoint": 3, "step_size": 3, "localization": 2, "nbeta": 2, "chain": 4, "draw": 60}
    assert result.llc_mean.dims == ("checkpoint", "step_size", "localization", "nbeta")
    assert result.dataset["checkpoint"].values.tolist() == [100, 200, 300]


@pytest.mark.parametrize("index", range(36))
def test_each_configuration_equals_a_separate_run(grid, index):
    """Chain c of every configuration uses fold_in(key(seed), c) and reads its own ε, γ, nβ and
    w*, so its draws are those of a separate estimate_llc run of that configuration. Measured
    bitwise equal on XLA CPU; the tolerance allows float32 rounding from vectorizing 144 chains
    instead of 4 (XLA may fuse differently), far below the chains' spread."""
    result, _ = grid
    cfg = result.configurations()[index]
    one = result.sel(**cfg)
    nbeta = None if cfg["nbeta"] == pytest.approx(256 / np.log(256)) else cfg["nbeta"]
    alone = slt_jax.estimate_llc(linear_loss, CKPTS[cfg["checkpoint"]], DATA, step_size=cfg["step_size"],
                                 localization=cfg["localization"], nbeta=nbeta, **KW)
    np.testing.assert_allclose(one.llc_per_chain, alone.llc_per_chain, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one.per_sample_losses("probe"), alone.per_sample_losses("probe"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one.init_loss, alone.init_loss, rtol=1e-6)
    assert one.attrs["step_size"] == cfg["step_size"] and one.attrs["nbeta_rule"] == alone.attrs["nbeta_rule"]


def test_configurations_really_differ(grid):
    """Larger γ pulls chains closer to w*: smaller distance and smaller λ̂ at every ε and nβ."""
    result, _ = grid
    dist = result.dataset["distance"].mean(("chain", "draw"))
    assert bool((dist.isel(localization=1) < dist.isel(localization=0)).all())
    assert len({round(float(v), 6) for v in result.llc_mean.values.ravel()}) == 36


def test_netcdf_round_trip(grid, tmp_path):
    result, _ = grid
    path = result.to_netcdf(tmp_path / "grid.nc")
    back = GridResult.from_netcdf(path)
    np.testing.assert_array_equal(back.llc_mean.values, result.llc_mean.values)
    cfg = result.configurations()[5]
    np.testing.assert_array_equal(back.sel(**cfg).llc_per_chain, result.sel(**cfg).llc_per_chain)


def test_sel_errors_name_the_dim(grid):
    result, _ = grid
    with pytest.raises(KeyError, match="step_size has 3 values"):
        result.sel(checkpoint=100, localization=10.0, nbeta=30.0)
    with pytest.raises(KeyError, match="checkpoint=7 is not one of"):
        result.sel(checkpoint=7, step_size=1e-3, localization=10.0, nbeta=30.0)


def test_second_call_with_new_checkpoint_step_size_and_seed_compiles_nothing():
    """The program cache is keyed by what is static; values are data."""
    kw = dict(localization=10.0, num_chains=4, num_draws=50, batch_size=32, progress=False)
    first = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, step_size=1e-3, seed=1, **kw)
    moved = {"W": PARAMS["W"] + 0.01}
    with count_compilations() as log:
        second = slt_jax.estimate_llc(linear_loss, moved, DATA, step_size=2e-3, seed=9, **kw)
    assert log.count == 0, log.names
    assert second.attrs["compilations"] == 0 and second.attrs["program_cache_hit"]
    assert second.llc_mean != first.llc_mean and second.init_loss != first.init_loss


def test_inputs_of_any_placement_hit_the_same_program():
    """Host numpy, default-device and committed device arrays: one compiled program."""
    kw = dict(step_size=1e-3, localization=10.0, num_chains=4, num_draws=50, batch_size=32, progress=False)
    base = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, **kw)
    variants = [
        jax.tree.map(np.asarray, PARAMS),
        jax.device_put(PARAMS, jax.devices()[0]),
    ]
    device_data = (jnp.asarray(X), jnp.asarray(Y))
    with count_compilations() as log:
        for params, data in zip(variants, (DATA, device_data)):
            r = slt_jax.estimate_llc(linear_loss, params, data, **kw)
            np.testing.assert_array_equal(r.llc_per_chain, base.llc_per_chain)
    assert log.count == 0, log.names


def test_bounding_box_clamps_every_coordinate():
    """devinterp's bounding_box_size: |w - w*| ≤ b per coordinate after every step, so the
    distance to w* never exceeds b·sqrt(d); recorded in the metadata."""
    b = 0.01
    kw = dict(step_size=1e-2, localization=0.0, num_chains=4, num_draws=100, batch_size=32, progress=False,
              nbeta=1.0)
    free = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, **kw)
    boxed = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, bounding_box=b, **kw)
    d = boxed.attrs["num_params"]
    assert float(boxed.dataset["distance"].max()) <= b * np.sqrt(d) * (1 + 1e-5)
    assert float(free.dataset["distance"].max()) > 3 * b * np.sqrt(d)
    assert boxed.attrs["bounding_box"] == b and free.attrs["bounding_box"] is None


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_params_are_supported(dtype):
    """bf16/f16 params: chains hold float32 state, the loss runs in the params' dtype, and
    λ̂ agrees with the float32 run within the low-precision loss's resolution (recorded)."""
    kw = dict(step_size=1e-3, localization=10.0, num_chains=4, num_draws=200, batch_size=32, progress=False)
    low = jax.tree.map(lambda w: w.astype(dtype), PARAMS)
    r = slt_jax.estimate_llc(linear_loss, low, (X.astype(dtype), Y.astype(dtype)), **kw)
    ref = slt_jax.estimate_llc(linear_loss, jax.tree.map(lambda w: w.astype(dtype).astype(jnp.float32), PARAMS),
                               DATA, **kw)
    assert r.attrs["param_dtypes"] == [jnp.dtype(dtype).name] and r.attrs["sampler_state_dtype"] == "float32"
    assert np.all(np.isfinite(r.llc_per_chain))
    # λ̂ = nβ·ΔL with nβ ≈ 46 and ΔL ~ 0.05: bf16 resolves L ≈ 0.9 to ~4e-3, i.e. λ̂ to ~0.2.
    assert abs(r.llc_mean - ref.llc_mean) < 1.0


def test_grid_of_sampler_constants_is_recorded():
    """Every sampler constant, defaults included, is in the metadata."""
    r = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, step_size=1e-4, localization=10.0, num_chains=2,
                             num_draws=20, batch_size=32, progress=False, sampler="rmsprop_sgld",
                             sampler_kwargs={"beta2": 0.99})
    assert r.attrs["sampler_constants"] == {"beta2": 0.99, "eps_stabilizer": 1e-5, "initial_square_avg": 1.0,
                                            "bias_correction": True}


def test_components_run_in_one_program_and_match_their_restriction():
    """components={name: mask}: every chain carries its own element mask, so all components
    share one compiled program; a component that freezes a column keeps it at w* exactly, and
    its λ̂ matches a separate masked run statistically (its noise stream differs: noise is drawn
    for every leaf any component samples). d per component is recorded."""
    col = np.zeros((3, 2), bool)
    col[:, 0] = True
    comps = {"all": None, "col0": {"W": col}}
    kw = dict(step_size=1e-3, localization=10.0, num_chains=8, num_draws=300, batch_size=32, progress=False,
              seed=4)
    with count_compilations() as log:
        g = slt_jax.estimate_llc_grid(linear_loss, [PARAMS], DATA, components=comps, **kw)
    assert [n for n in log.names if "draws" in n] == ["jit(draws)"]
    assert g.dims[-1] == "component" and g.dataset["num_params"].values.tolist() == [6, 3]
    full, part = g.sel(component="all"), g.sel(component="col0")
    assert part.attrs["num_params"] == 3 and full.attrs["num_params"] == 6
    alone = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, mask={"W": col}, **kw)
    # Regular 3-parameter restriction: λ̂ ≈ 3/2 in both, within 4 combined standard errors.
    se = np.hypot(part.llc_se, alone.llc_se)
    assert abs(part.llc_mean - alone.llc_mean) < 4 * se + 0.05, (part.llc_mean, alone.llc_mean, se)
    assert full.llc_mean > 1.5 * part.llc_mean


def test_susceptibilities_run_all_components_in_one_program():
    from slt_jax.adapters import mask_from_paths  # noqa: F401  (the usual way to build components)

    col = np.zeros((3, 2), bool)
    col[:, 1] = True
    with count_compilations() as log:
        res = slt_jax.estimate_susceptibilities(
            linear_loss, PARAMS, DATA, probes={"p": (X[:4], Y[:4])}, components={"all": None, "c1": {"W": col}},
            step_size=1e-3, localization=10.0, num_chains=4, num_draws=100, batch_size=32, progress=False,
        )
    assert [n for n in log.names if "draws" in n] == ["jit(draws)"]
    assert res.matrix.shape == (2, 4) and np.all(np.isfinite(res.matrix))


def test_cpu_threefry_lowering_is_scoped_to_slt_jax_programs():
    """The unrolled CPU lowering is active only while slt_jax lowers its own programs (unless
    the user installed it process-wide), and the choice is recorded."""
    from jax._src.interpreters import mlir as mlir_internal
    from jax.extend.random import threefry2x32_p

    from slt_jax import cpu_rng

    table = mlir_internal._platform_specific_lowerings["cpu"]
    before = table.get(threefry2x32_p)
    r = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, step_size=1e-3, localization=10.0, num_chains=2,
                             num_draws=10, batch_size=32, progress=False)
    assert r.attrs["cpu_threefry"] == "unrolled" and r.attrs["backend"] == "cpu"
    assert table.get(threefry2x32_p) is before  # jax's own rule (or a user's install()) is back
    if not cpu_rng._installed:
        with cpu_rng.lowering():
            assert table.get(threefry2x32_p) is not before


def test_auto_planner_compiles_only_the_program_it_runs():
    """checkpoints_per_call="auto" reads the memory analysis of the program it then runs."""
    kw = dict(step_size=1e-3, localization=10.0, num_chains=3, num_draws=40, batch_size=32, progress=False,
              seed=11)
    ckpts = [PARAMS, {"W": PARAMS["W"] * 1.01}, {"W": PARAMS["W"] * 0.99}, {"W": PARAMS["W"] + 0.001}]
    with count_compilations() as log:
        rs = slt_jax.estimate_llc_checkpoints(linear_loss, ckpts, DATA, checkpoints_per_call="auto", **kw)
    assert [n for n in log.names if "draws" in n] == ["jit(draws)"]
    assert [r.attrs["checkpoints_in_program"] for r in rs] == [4, 4, 4, 4]


def test_eval_batching_auto_keeps_evaluation_batches_small_on_cpu():
    """"auto": ~4k rows (chains × data chunk) per vmapped evaluation batch on CPU, all chains at
    once elsewhere; an int must divide the chains per device; the choice is recorded."""
    from slt_jax.backends import resolve_eval_batch

    assert resolve_eval_batch("auto", 128, 1000, "cpu") == 4
    assert resolve_eval_batch("auto", 8, 100, "cpu") == 0  # 8 chains × 100 rows: all at once
    assert resolve_eval_batch("auto", 128, 1000, "gpu") == 0
    assert resolve_eval_batch("map", 128, 1000) == 1 and resolve_eval_batch("vmap", 128, 1000) == 0
    assert resolve_eval_batch(8, 128, 1000) == 8
    with pytest.raises(ValueError, match="eval_batching=5 must divide the 128 chains per device"):
        resolve_eval_batch(5, 128, 1000)
    r = slt_jax.estimate_llc(linear_loss, PARAMS, DATA, step_size=1e-3, localization=10.0, num_chains=8,
                             num_draws=20, batch_size=32, progress=False, eval_batching=2)
    assert r.attrs["eval_chain_group"] == 2 and r.attrs["eval_batching"] == 2


def test_auto_planner_with_float64_host_data_compiles_one_program():
    """The planner describes inputs by shape and by the dtype the devices will hold (float64
    host data becomes float32), so the program it analyses is the one that runs."""
    x, y = X.astype(np.float64), Y.astype(np.float64)
    ckpts = [PARAMS, {"W": PARAMS["W"] + 0.01}]
    with count_compilations() as log:
        slt_jax.estimate_llc_checkpoints(linear_loss, ckpts, (x, y), step_size=1e-3, localization=10.0,
                                         num_chains=2, num_draws=20, batch_size=32, progress=False, seed=21)
    assert [n for n in log.names if "draws" in n] == ["jit(draws)"]
