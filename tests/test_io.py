"""Files: atomic writes (slt_jax.atomic) and the netCDF reader's checks (issue #9 §5)."""

import json
import os

import numpy as np
import pytest
import xarray as xr

import slt_jax
from slt_jax import atomic
from slt_jax.result import LLC_SCHEMA, LLCResult, ResultFileError, ResultSchema, read_netcdf
from slt_jax.susceptibility import SusceptibilityResult


def _linear_problem():
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 3)).astype(np.float32)
    y = (x @ np.ones((3, 1)) + 0.1 * rng.normal(size=(128, 1))).astype(np.float32)
    w = np.linalg.lstsq(x, y, rcond=None)[0].astype(np.float32)
    loss = lambda p, b: 0.5 * jnp.sum((b[1] - b[0] @ p["W"]) ** 2, axis=-1)  # noqa: E731
    return loss, {"W": jnp.asarray(w)}, (x, y)


@pytest.fixture(scope="module")
def result():
    loss, params, data = _linear_problem()
    return slt_jax.estimate_llc(
        loss, params, data, step_size=1e-4, localization=10.0, num_chains=2, num_draws=30, num_burnin=10,
        batch_size=32, eval_every=5, eval_sets={"probe": (data[0][:6], data[1][:6])}, progress=False,
    )


@pytest.fixture
def saved(result, tmp_path):
    return result.to_netcdf(tmp_path / "r.nc")


def _susceptibility_result() -> SusceptibilityResult:
    ds = xr.Dataset(
        {"chi": (("component", "probe"), np.arange(6.0).reshape(2, 3)), "llc": (("component",), [1.0, 2.0]),
         "probe_set": (("probe",), np.array(["a", "a", "b"]))},
        coords={"component": ["x", "y"], "probe": np.arange(3)},
        attrs={"convention": "slt_jax", "nbeta": 10.0},
    )
    return SusceptibilityResult(ds)


# --- atomic writes -----------------------------------------------------------------------------


def test_atomic_path_replaces_on_success_and_keeps_the_suffix(tmp_path):
    target = tmp_path / "sub" / "a.png"
    with atomic.atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith("-a.png") and not tmp.exists()
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and os.listdir(target.parent) == ["a.png"]


def test_atomic_path_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="midway"):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("midway")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_atomic_path_refuses_a_writer_that_wrote_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="created no file"):
        with atomic.atomic_path(tmp_path / "a.txt"):
            pass
    assert not (tmp_path / "a.txt").exists()


def test_write_helpers_and_temporaries(tmp_path):
    atomic.write_json(tmp_path / "s.json", {"x": [1, 2]})
    atomic.write_text(tmp_path / "t.txt", "λ")
    atomic.write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert json.loads((tmp_path / "s.json").read_text()) == {"x": [1, 2]}
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "λ" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    (tmp_path / ".tmp-deadbeef-result.nc").write_bytes(b"\x89HDF" + bytes(92))  # a killed write's leftover
    assert [p.name for p in atomic.remove_temporaries(tmp_path)] == [".tmp-deadbeef-result.nc"]
    assert sorted(os.listdir(tmp_path)) == ["b.bin", "s.json", "t.txt"]
    digest = atomic.file_digest(tmp_path / "b.bin")
    assert digest["bytes"] == 2 and len(digest["sha256"]) == 64


def test_a_failed_to_netcdf_keeps_the_existing_file(result, saved, monkeypatch):
    """Regression: the write went straight to `path`, so a failure midway destroyed the old result."""

    def broken(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\x89HDF\r\n\x1a\n" + bytes(88))  # the 96 bytes a killed write leaves
        raise OSError("disk full")

    before = saved.read_bytes()
    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        result.to_netcdf(saved)
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]
    monkeypatch.undo()
    np.testing.assert_array_equal(LLCResult.from_netcdf(saved).loss_trace, result.loss_trace)


def test_a_failed_plot_keeps_the_existing_image(result, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from slt_jax.plots import plot_trace

    path = tmp_path / "trace.png"
    plot_trace(result, path)
    before = path.read_bytes()

    def broken(self, fname, **kwargs):
        open(fname, "wb").write(b"\x89PNG")
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="renderer"):
        plot_trace(result, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["trace.png"]


# --- the reader's checks -------------------------------------------------------------------------


def test_round_trip_keeps_attrs_exactly(result, saved):
    back = LLCResult.from_netcdf(saved)
    assert back.attrs == result.attrs and "slt_jax_result_kind" not in back.dataset.attrs
    np.testing.assert_array_equal(back.per_sample_losses("probe"), result.per_sample_losses("probe"))


@pytest.mark.parametrize("keep", [96, 0.5])
def test_truncated_file_is_one_clear_error(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    with pytest.raises(ResultFileError, match="cannot be read as a netCDF4/HDF5 file") as e:
        LLCResult.from_netcdf(saved)
    assert str(saved) in str(e.value) and isinstance(e.value, ValueError)


def test_not_a_netcdf_file(tmp_path):
    path = tmp_path / "notes.nc"
    path.write_text("not netCDF at all")
    with pytest.raises(ResultFileError, match=str(path)):
        LLCResult.from_netcdf(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no result file"):
        LLCResult.from_netcdf(tmp_path / "absent.nc")


def test_another_tools_netcdf_names_what_is_missing(tmp_path):
    path = tmp_path / "weather.nc"
    xr.Dataset({"temperature": (("time",), np.zeros(4))}, attrs={"source": "model"}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ResultFileError) as e:
        LLCResult.from_netcdf(path)
    msg = str(e.value)
    assert str(path) in msg and "'llc' result" in msg
    assert "variable 'loss' is missing" in msg and "attribute 'init_loss' is missing" in msg


@pytest.mark.parametrize("variable", ["loss", "eval_loss", "healthy", "burnin_loss"])
def test_a_result_missing_a_variable(result, tmp_path, variable):
    path = tmp_path / "r.nc"
    slt_jax.result.write_netcdf(result.dataset.drop_vars(variable), path, kind="llc")
    with pytest.raises(ResultFileError, match=f"variable '{variable}' is missing"):
        LLCResult.from_netcdf(path)


def test_a_result_missing_an_attribute_or_with_wrong_dims(result, tmp_path):
    ds = result.dataset.copy()
    del ds.attrs["nbeta"]
    slt_jax.result.write_netcdf(ds, tmp_path / "a.nc")
    with pytest.raises(ResultFileError, match="attribute 'nbeta' is missing"):
        LLCResult.from_netcdf(tmp_path / "a.nc")
    ds = result.dataset.copy()
    ds["loss"] = ds["loss"].transpose("draw", "chain")
    slt_jax.result.write_netcdf(ds, tmp_path / "d.nc")
    with pytest.raises(ResultFileError, match=r"'loss' has dims \('draw', 'chain'\), expected \('chain', 'draw'\)"):
        LLCResult.from_netcdf(tmp_path / "d.nc")


def test_an_eval_set_without_its_losses(result, tmp_path):
    slt_jax.result.write_netcdf(result.dataset.drop_vars("probe_losses"), tmp_path / "r.nc")
    with pytest.raises(ResultFileError, match="eval set 'probe' has neither probe_losses"):
        LLCResult.from_netcdf(tmp_path / "r.nc")


def test_the_wrong_loader_names_the_right_kind(saved, tmp_path):
    with pytest.raises(ResultFileError, match="holds an slt_jax 'llc' result, not 'susceptibility'"):
        SusceptibilityResult.from_netcdf(saved)
    sus = _susceptibility_result().to_netcdf(tmp_path / "chi.nc")
    with pytest.raises(ResultFileError, match="holds an slt_jax 'susceptibility' result, not 'llc'"):
        LLCResult.from_netcdf(sus)


def test_susceptibility_round_trip_and_truncation(tmp_path):
    res = _susceptibility_result()
    path = res.to_netcdf(tmp_path / "chi.nc")
    back = SusceptibilityResult.from_netcdf(path)
    np.testing.assert_array_equal(back.matrix, res.matrix)
    assert back.components == ["x", "y"] and list(back.probe_sets) == ["a", "a", "b"]
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ResultFileError, match="chi.nc cannot be read"):
        SusceptibilityResult.from_netcdf(path)


def test_a_schema_per_result_kind(tmp_path):
    """Other result kinds (e.g. the grid result) reuse the reader with their own schema."""
    schema = ResultSchema("toy", variables={"x": ("a", "b"), "y": None}, attrs=("n",),
                          check=lambda ds: [] if ds.attrs["n"] > 0 else ["attribute 'n' must be > 0"])
    ds = xr.Dataset({"x": (("a", "b"), np.zeros((2, 3))), "y": (("c",), np.ones(1))}, attrs={"n": 3})
    slt_jax.result.write_netcdf(ds, tmp_path / "t.nc", kind="toy")
    assert read_netcdf(tmp_path / "t.nc", schema)["x"].shape == (2, 3)
    slt_jax.result.write_netcdf(ds.assign_attrs(n=0), tmp_path / "bad.nc", kind="toy")
    with pytest.raises(ResultFileError, match="attribute 'n' must be > 0"):
        read_netcdf(tmp_path / "bad.nc", schema)
    assert read_netcdf(tmp_path / "bad.nc").attrs["n"] == 0  # no schema: only readability is checked
    assert LLC_SCHEMA.kind == "llc"
