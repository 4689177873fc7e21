"""Boundary validation (slt_jax._validate, issue #9 §5): bad input is refused before anything
compiles, with a message naming the argument, the value and the fix.

Unit tests call each check directly; end-to-end tests go through the public entry points
under the `no_compilation` fixture (which fails a test if XLA compiled anything in it). Every
input array is built at import time: creating a jax array inside a test compiles."""

import inspect
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import slt_jax
from scripts.linear_problem import least_squares, linear_data, linear_loss
from slt_jax import _validate as check
from slt_jax.engine.compile_log import count_compilations
from slt_jax.streaming import StreamingData

X, Y = linear_data(64)
DATA = (X, Y)
W = np.asarray(least_squares(X, Y)["W"])  # host copy: (3, 2) float32
PARAMS = {"W": W}
BASE = dict(step_size=1e-4, localization=10.0, num_chains=2, num_draws=4, batch_size=16, progress=False)

X_NAN = X.copy()
X_NAN[5, 1] = np.nan
X_NAN[9, 0] = np.nan
Y_INF = Y.copy()
Y_INF[7, 1] = -np.inf
# Device arrays made here, outside any test: the checks must read them without compiling.
JAX_PARAMS = {"W": jnp.asarray(W)}
JAX_NAN_DATA = (jnp.asarray(X_NAN), jnp.asarray(Y))
JAX_BOOL_MASK = {"W": jnp.asarray(np.array([[True, False]] * 3))}
JAX_BF16_PARAMS = {"W": jnp.asarray(W, jnp.bfloat16)}
JAX_INT_SCALAR = jnp.asarray(7, jnp.int32)
JAX_FLOAT_SCALAR = jnp.asarray(0.5, jnp.float32)
BF16_NAN = np.array([1.0, np.nan], dtype=jnp.bfloat16)
jax.block_until_ready((JAX_PARAMS, JAX_NAN_DATA, JAX_BOOL_MASK, JAX_BF16_PARAMS, JAX_INT_SCALAR, JAX_FLOAT_SCALAR))
CPU = jax.devices("cpu")[0]


def _raises(exc, *fragments):
    """pytest.raises matching every fragment (literal text) in order."""
    return pytest.raises(exc, match=".*".join(re.escape(f) for f in fragments))


# --- numbers and strings -------------------------------------------------------------------------


@pytest.mark.parametrize("value,exc,fragments", [
    ("1e-3", TypeError, ("step_size", "'1e-3'", "pass a number, not a string", "step_size=0.001")),
    ("fast", TypeError, ("step_size", "'fast'", "pass a number, not a string")),
    (True, TypeError, ("step_size", "True")),
    (None, TypeError, ("step_size", "None")),
    (float("nan"), ValueError, ("step_size", "nan")),
    (float("inf"), ValueError, ("step_size", "inf")),
    (-1.0, ValueError, ("step_size", "> 0", "-1.0")),
    (0, ValueError, ("step_size", "> 0")),
])
def test_positive_number_refuses(value, exc, fragments):
    with _raises(exc, *fragments):
        check.positive_number("step_size", value)


def test_positive_number_accepts_numbers_and_0d_arrays(no_compilation):
    assert check.positive_number("eps", 1e-3) == 1e-3
    assert check.positive_number("eps", np.float32(0.5)) == 0.5
    assert check.positive_number("eps", np.int64(3)) == 3.0
    assert check.positive_number("eps", np.array(0.25)) == 0.25
    assert check.positive_number("eps", JAX_FLOAT_SCALAR) == 0.5  # a host read, no program
    assert check.positive_number("gamma", 0, allow_zero=True) == 0.0
    assert isinstance(check.positive_number("eps", 2), float)


@pytest.mark.parametrize("value,exc,fragments", [
    ("4", TypeError, ("num_chains", "'4'", "pass a number, not a string", "num_chains=4")),
    ("four", TypeError, ("num_chains", "'four'", "pass a number, not a string")),
    (True, TypeError, ("num_chains", "True")),
    (np.bool_(True), TypeError, ("num_chains", "True")),
    (4.0, TypeError, ("num_chains", "4.0", "num_chains=4")),
    (2.5, TypeError, ("num_chains", "2.5")),
    (float("nan"), TypeError, ("num_chains", "nan")),
    (0, ValueError, ("num_chains", "≥ 1", "0")),
])
def test_integer_refuses(value, exc, fragments):
    with _raises(exc, *fragments):
        check.integer("num_chains", value, minimum=1)


def test_integer_accepts_ints_numpy_ints_and_0d_integer_arrays(no_compilation):
    assert check.integer("k", 4, minimum=1) == 4
    assert check.integer("k", np.int32(4), minimum=1) == 4
    assert check.integer("k", np.uint64(4), minimum=1) == 4
    assert check.integer("k", np.array(4), minimum=1) == 4
    assert check.integer("k", JAX_INT_SCALAR, minimum=1) == 7
    assert type(check.integer("k", np.int64(4), minimum=1)) is int


def test_integer_hint_is_given_for_range_and_type_errors():
    with _raises(ValueError, "between 1 and 3", "use fewer"):
        check.integer("k", 5, minimum=1, maximum=3, hint="use fewer")
    with _raises(TypeError, "pass a number, not a string", "use fewer"):
        check.integer("k", "5", minimum=1, hint="use fewer")


def test_boolean_and_choice():
    assert check.boolean("progress", np.bool_(False)) is False
    with _raises(TypeError, "progress must be True or False", "'no'"):
        check.boolean("progress", "no")
    with _raises(TypeError, "progress must be True or False"):
        check.boolean("progress", 1)
    with _raises(ValueError, "sampler=['sgld'] is not known", "choose one of"):
        check.choice("sampler", ["sgld"], {"sgld": None})  # unhashable: no raw TypeError


def test_nbeta_and_diagnostics():
    assert check.nbeta(None, 10, 2, ("n_log_n", "batch_log_batch")) is None
    assert check.nbeta(np.float32(3.0), 10, 2, ("n_log_n",)) == 3.0
    with _raises(ValueError, "nbeta='30' is not known", "pass a number, not a string"):
        check.nbeta("30", 10, 2, ("n_log_n",))
    with _raises(ValueError, "undefined for n = 1"):
        check.nbeta(None, 1, 1, ("n_log_n",))
    assert check.diagnostics("mala", ("full_loss", "mala")) == ("mala",)
    with _raises(TypeError, "diagnostics must be a tuple"):
        check.diagnostics(None, ("mala",))


# --- seeds ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value,exc,fragments", [
    (2**32, ValueError, ("seed", "between 0 and 4294967295", "4294967296", "seed % 2**32")),
    (2**32 + 5, ValueError, ("seed", "4294967301", "seed 5's chains")),
    (2**63, ValueError, ("seed", "9223372036854775808")),
    (-1, ValueError, ("seed", "-1")),
    (True, TypeError, ("seed", "True")),
    (3.0, TypeError, ("seed", "3.0", "seed=3")),
    ("7", TypeError, ("seed", "pass a number, not a string", "seed=7")),
])
def test_seed_refuses(value, exc, fragments):
    with _raises(exc, *fragments):
        check.seed(value)


def test_seed_accepts_the_32_bit_range():
    assert check.seed(0) == 0
    assert check.seed(2**32 - 1) == 2**32 - 1
    assert check.seed(np.uint32(2**32 - 1)) == 2**32 - 1
    assert check.seed(np.int64(12)) == 12


def test_seeds_past_32_bits_really_alias():
    """Why the limit: jax keeps the low 32 bits (x64 off), so 2**32 + 5 is seed 5."""
    a = jax.random.key_data(jax.random.key(2**32 + 5))
    b = jax.random.key_data(jax.random.key(5))
    np.testing.assert_array_equal(a, b)


# --- masks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("leaf,exc,fragments", [
    (0.5, TypeError, ("mask['W'] is 0.5", "True/False or boolean arrays", "does not scale")),
    ("False", TypeError, ("mask['W'] is 'False'", "truthy", "pass the bool False")),
    ("True", TypeError, ("mask['W'] is 'True'", "pass the bool True")),
    (1, TypeError, ("mask['W'] is 1", "pass True or False")),
    (None, TypeError, ("mask['W'] is None", "use False")),
    (np.ones((3, 2), np.int32), TypeError, ("mask['W'] is an array of dtype int32", "only 0/1", "dtype=bool")),
    (np.full((3, 2), 0.5), TypeError, ("mask['W'] is an array of dtype float64", "!= 0")),
    ([[True, False]] * 3, TypeError, ("mask['W']", "np.asarray(m, dtype=bool)")),
    (np.ones((2, 3), bool), ValueError, ("mask['W'] has shape (2, 3)", "(3, 2)")),
])
def test_mask_refuses_non_boolean_leaves(leaf, exc, fragments):
    with _raises(exc, *fragments):
        check.mask({"W": leaf}, PARAMS)


def test_mask_accepts_bools_and_boolean_arrays_without_compiling(no_compilation):
    check.mask(None, PARAMS)
    check.mask({"W": True}, PARAMS)
    check.mask({"W": np.bool_(True)}, PARAMS)
    check.mask({"W": np.array(True)}, PARAMS)
    check.mask({"W": np.zeros((3, 2), bool) | np.eye(3, 2, dtype=bool)}, PARAMS)
    check.mask(JAX_BOOL_MASK, JAX_PARAMS)  # a device array: read on the host, no program
    assert check.mask_matches is check.mask


def test_mask_structure_and_empty_selection():
    with _raises(ValueError, "same pytree structure"):
        check.mask({"V": True}, PARAMS)
    with _raises(ValueError, "selects no parameters"):
        check.mask({"W": np.zeros((3, 2), bool)}, PARAMS)


# --- sampler constants ------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler,kwargs,exc,fragments", [
    ("rmsprop_sgld", {"eps_stabilizer": -1e-5}, ValueError, ("sampler_kwargs['eps_stabilizer']=-1e-05", "[0, inf)", "'rmsprop_sgld'")),
    ("rmsprop_sgld", {"beta2": 1.0}, ValueError, ("sampler_kwargs['beta2']=1.0", "[0, 1)", "default is 0.999")),
    ("rmsprop_sgld", {"beta2": -0.1}, ValueError, ("beta2", "[0, 1)")),
    ("rmsprop_sgld", {"initial_square_avg": -1.0}, ValueError, ("initial_square_avg", "[0, inf)")),
    ("rmsprop_sgld", {"bias_correction": "False"}, TypeError, ("bias_correction", "True or False", "'False'")),
    ("rmsprop_sgld", {"bias_correction": 0}, TypeError, ("bias_correction", "True or False")),
    ("rmsprop_sgld", {"beta2": "0.99"}, TypeError, ("beta2", "pass a number, not a string", "beta2=0.99")),
    ("rmsprop_sgld", {"beta2": float("nan")}, ValueError, ("beta2", "finite")),
    ("rmsprop_sgld_devinterp", {"eps_stabilizer": 0.0}, ValueError, ("eps_stabilizer", "(0, inf)", "divides by 0")),
    ("rmsprop_sgld_devinterp", {"initial_square_avg": 1.0}, ValueError, ("'initial_square_avg'", "beta2", "eps_stabilizer")),
    ("adam_sgld", {"beta1": 1.0}, ValueError, ("sampler_kwargs['beta1']=1.0", "[0, 1)", "'adam_sgld'")),
    ("adam_sgld", {"beta2": 1.5}, ValueError, ("beta2", "[0, 1)")),
    ("adam_sgld", {"initial_square_avg": -0.5}, ValueError, ("initial_square_avg", "[0, inf)")),
    ("sghmc", {"friction": 0.0}, ValueError, ("friction", "(0, 1]")),
    ("sghmc", {"friction": 1.5}, ValueError, ("friction", "(0, 1]")),
    ("sghmc", {"noise_estimate": 0.02}, ValueError, ("noise_estimate", "[0, friction]", "friction = 0.01 here")),
    ("sghmc", {"friction": 0.1, "noise_estimate": 0.2}, ValueError, ("noise_estimate']=0.2", "friction = 0.1 here")),
    ("sghmc", {"noise_estimate": -0.001}, ValueError, ("noise_estimate", "[0, friction]")),
    ("sgnht", {"diffusion": -0.01}, ValueError, ("diffusion", "[0, inf)")),
    ("sgnht", {"initial_thermostat": -1.0}, ValueError, ("initial_thermostat", "[0, inf)", "heats")),
    ("sgld", {"beta2": 0.9}, ValueError, ("'beta2'", "'sgld'", "none")),
    ("sghmc", {"frcition": 0.1}, ValueError, ("'frcition'", "friction (default 0.01, (0, 1])", "noise_estimate")),
    ("sghmc", [("friction", 0.1)], TypeError, ("sampler_kwargs must be a dict",)),
    ("custom", {"friction": 0.1}, ValueError, ("cannot configure a Kernel",)),
    ("hmc", {}, ValueError, ("sampler='hmc' is not known",)),
])
def test_sampler_constants_refuses(sampler, kwargs, exc, fragments):
    with _raises(exc, *fragments):
        check.sampler_constants(sampler, kwargs)


def test_sampler_constants_returns_the_given_constants_as_floats_and_bools():
    out = check.sampler_constants("rmsprop_sgld", {"beta2": np.float32(0.5), "bias_correction": np.bool_(False)})
    assert out == {"beta2": 0.5, "bias_correction": False}
    assert type(out["beta2"]) is float and type(out["bias_correction"]) is bool
    assert check.sampler_constants("sgnht", {"initial_thermostat": None}) == {"initial_thermostat": None}
    assert check.sampler_constants("sghmc", {"friction": 1, "noise_estimate": 1}) == {"friction": 1.0, "noise_estimate": 1.0}
    assert check.sampler_constants("adam_sgld", {"beta1": 0}) == {"beta1": 0.0}
    assert check.sampler_constants("sgld", None) == {}
    assert check.sampler_constants("custom", None) == {}


def test_sampler_table_matches_the_samplers():
    """One row per keyword of each public constructor, with its default; the registry's
    defaults agree (so the table cannot drift from slt_jax/samplers)."""
    from slt_jax.samplers import REGISTRY, SAMPLERS

    assert set(check.SAMPLER_CONSTANTS) == set(SAMPLERS) == set(REGISTRY)
    for name, table in check.SAMPLER_CONSTANTS.items():
        signature = inspect.signature(SAMPLERS[name]).parameters
        keywords = {k: p.default for k, p in signature.items() if k != "step_size"}
        assert {k: c.default for k, c in table.items()} == keywords, name
        spec = REGISTRY[name]
        registered = {**spec.numeric, **spec.structural}
        for key, constant in table.items():
            assert registered[key] == constant.default, (name, key)
            if constant.kind == "real" and constant.default is not None:
                check.sampler_constants(name, {key: constant.default})  # every default is valid


def test_every_validated_constant_builds_a_kernel():
    for name, kwargs in [("rmsprop_sgld", {"beta2": 0.0, "eps_stabilizer": 0.0}),
                         ("adam_sgld", {"beta1": 0.0, "initial_square_avg": 0.0}),
                         ("sghmc", {"friction": 1.0, "noise_estimate": 1.0}),
                         ("sgnht", {"diffusion": 0.0, "initial_thermostat": 0.0})]:
        slt_jax.make_kernel(name, 1e-3, **check.sampler_constants(name, kwargs))


# --- params dtypes and values ------------------------------------------------------------------------


def test_float_params_reports_dtypes_and_refuses_non_floats(no_compilation):
    found = check.float_params({"W": W, "b": np.zeros(2, np.float64), "s": JAX_BF16_PARAMS["W"]}, "params")
    assert {k: d.name for k, d in found.items()} == {
        "params['W']": "float32", "params['b']": "float32", "params['s']": "bfloat16"}  # float64 → float32 (x64 off)
    with _raises(TypeError, "params['step'] has dtype int32", "float32 (1 leaf), int32 (1 leaf)", "astype"):
        check.float_params({"W": W, "step": np.int32(3)}, "params")
    with _raises(TypeError, "params['on'] has dtype bool"):
        check.float_params({"W": W, "on": np.array([True])}, "params")
    with _raises(TypeError, "checkpoints[1]['c'] has dtype complex64"):
        check.float_params({"W": W, "c": np.zeros(2, np.complex64)}, "checkpoints[1]")
    with _raises(TypeError, "params['W'] has dtype bfloat16", "not sample yet", "float32"):
        check.float_params(JAX_BF16_PARAMS, "params", supported=("float32",))
    with _raises(ValueError, "no array leaves"):
        check.float_params({}, "params")


def test_finite_params_names_the_leaf_count_and_first_index(no_compilation):
    bad = W.copy()
    bad[1, 0] = np.inf
    bad[2, 1] = np.nan
    with _raises(ValueError, "params['W'] (w*) has 2 non-finite value(s) (1 NaN, 1 ±inf), the first at index (1, 0)"):
        check.finite_params({"W": bad})
    check.finite_params(JAX_PARAMS)
    check.finite_params(JAX_BF16_PARAMS)


# --- data ----------------------------------------------------------------------------------------------


def test_finite_data_names_the_leaf_count_and_first_index(no_compilation):
    with _raises(ValueError, "data[0] has 2 non-finite value(s) (2 NaN, 0 ±inf), the first at index (5, 1) (sample 5)", "keep ="):
        check.finite_data((X_NAN, Y))
    with _raises(ValueError, "data[1] has 1 non-finite value(s) (0 NaN, 1 ±inf), the first at index (7, 1)"):
        check.finite_data((X, Y_INF))
    with _raises(ValueError, "eval_sets['test'][0] has 2 non-finite", "(5, 1)"):
        check.finite_data(JAX_NAN_DATA, "eval_sets['test']")  # device arrays: host copy, no program
    with _raises(ValueError, "data['x'] has 1 non-finite"):
        check.finite_data({"x": BF16_NAN})
    assert check.finite_data((X, Y)) == ()
    assert check.finite_data({"tokens": np.arange(10)}) == ()  # integer leaves cannot be NaN


def test_finite_data_scans_large_leaves_in_chunks(monkeypatch):
    monkeypatch.setattr(check, "_SCAN_CHUNK_ELEMENTS", 6)  # 3 rows of 2 at a time
    with _raises(ValueError, "3 non-finite value(s) (2 NaN, 1 ±inf), the first at index (7, 1)"):
        big = Y_INF.copy()
        big[40, 0] = np.nan
        big[63, 1] = np.nan
        check.finite_data((big,))


def test_finite_data_refuses_non_numeric_leaves():
    with _raises(TypeError, "data[1] has dtype <U1", "numeric"):
        check.finite_data((X[:2], np.array(["a", "b"])))
    with _raises(TypeError, "data[0] has dtype object"):
        check.finite_data((np.array([{}, {}], dtype=object),))
    assert check.finite_data((np.ones(2, jnp.bfloat16), np.ones(2, bool))) == ()


def test_finite_data_streaming_scans_host_arrays_and_skips_lazy_ones(tmp_path):
    with _raises(ValueError, "data[0] has 2 non-finite"):
        check.finite_data(StreamingData((X_NAN, Y)))
    path = tmp_path / "x.npy"
    np.save(path, X_NAN)
    lazy = StreamingData((np.load(path, mmap_mode="r"), Y))
    assert check.finite_data(lazy) == ("data[0]",)  # reading a memmap would cost an epoch


def test_data_size():
    assert check.data_size(DATA) == 64
    with _raises(ValueError, "disagree"):
        check.data_size((X, Y[:-1]))


# --- eval sets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value,exc,fragments", [
    ([DATA], TypeError, ("eval_sets must be a dict {name: data}", "got a list", "eval_sets={'test': (x_test, y_test)}")),
    (X, TypeError, ("eval_sets must be a dict", "got a ndarray")),
    (DATA, TypeError, ("eval_sets must be a dict", "got a tuple")),
    ({"a b": DATA}, ValueError, ("identifiers", "'a b'")),
    ({3: DATA}, ValueError, ("identifiers", "3")),
    ({"p": (X, Y[:5])}, ValueError, ("eval_sets['p']", "disagree")),
    ({"p": StreamingData(DATA)}, TypeError, ("eval_sets['p'] is StreamingData",)),
])
def test_eval_sets_refuses(value, exc, fragments):
    with _raises(exc, *fragments):
        check.eval_sets(value)


def test_eval_sets_accepts_none_and_dicts():
    assert check.eval_sets(None) == {}
    assert check.eval_sets({}) == {}
    out = check.eval_sets({"test": DATA})
    assert list(out) == ["test"] and out["test"] is DATA


# --- devices ----------------------------------------------------------------------------------------


class _FakeDevice:
    """Stands in for a second platform's device (a CPU-only machine has one platform)."""

    def __init__(self, platform):
        self.platform, self.id = platform, 0


@pytest.mark.parametrize("value,exc,fragments", [
    ("cpu", TypeError, ("devices='cpu' is a string", "jax.devices('cpu')")),
    (["cpu"], TypeError, ("devices[0]='cpu' is a string", "jax.devices('cpu')")),
    ([], ValueError, ("devices is empty",)),
    ((), ValueError, ("devices is empty",)),
    ([CPU, CPU], ValueError, ("devices lists a device more than once", f"{CPU!r} ×2")),
    ([CPU, 0], TypeError, ("devices[1]=0", "not a jax device")),
    (CPU, TypeError, ("single device", f"devices=[{CPU!r}]")),
    (3, TypeError, ("list of jax devices",)),
])
def test_devices_refuses(value, exc, fragments):
    with _raises(exc, *fragments):
        check.devices(value)


def test_devices_refuses_mixed_platforms(monkeypatch):
    gpu = _FakeDevice("gpu")
    monkeypatch.setattr(jax, "Device", (type(CPU), _FakeDevice))
    with _raises(ValueError, "devices mixes platforms", "cpu:", "gpu:", "one backend"):
        check.devices([CPU, gpu])


def test_devices_accepts_none_lists_tuples_and_arrays():
    assert check.devices(None) == jax.devices()
    assert check.devices([CPU]) == [CPU]
    assert check.devices((CPU,)) == [CPU]
    assert check.devices(np.array(jax.devices())) == jax.devices()


# --- the loss, traced on host arrays ------------------------------------------------------------------


def test_loss_output_traces_host_arrays_with_jax_dtypes(no_compilation):
    out = check.loss_output(linear_loss, {"W": W.astype(np.float64)}, (X.astype(np.float64), Y), 8)
    assert out.shape == (8,) and out.dtype == np.float32
    with _raises(ValueError, "per-sample losses"):
        check.loss_output(lambda p, b: jnp.mean(linear_loss(p, b)), PARAMS, DATA, 8)


# --- end to end: every public entry point refuses before compiling ---------------------------------------


BAD_CALLS = [
    ("mask_half", dict(mask={"W": 0.5}), TypeError, ("mask['W'] is 0.5",)),
    ("mask_string", dict(mask={"W": "False"}), TypeError, ("mask['W'] is 'False'", "truthy")),
    ("mask_int_array", dict(mask={"W": np.ones((3, 2), np.int64)}), TypeError, ("mask['W']", "dtype=bool")),
    ("seed_alias", dict(seed=2**32 + 5), ValueError, ("seed", "4294967301")),
    ("seed_overflow", dict(seed=2**63), ValueError, ("seed", "9223372036854775808")),
    ("seed_float", dict(seed=1.0), TypeError, ("seed", "seed=1")),
    ("seed_bool", dict(seed=True), TypeError, ("seed", "True")),
    ("rmsprop_eps", dict(sampler="rmsprop_sgld", sampler_kwargs={"eps_stabilizer": -1.0}), ValueError, ("eps_stabilizer",)),
    ("rmsprop_beta2", dict(sampler="rmsprop_sgld", sampler_kwargs={"beta2": 1.0}), ValueError, ("beta2", "[0, 1)")),
    ("adam_beta1", dict(sampler="adam_sgld", sampler_kwargs={"beta1": 1.0}), ValueError, ("beta1", "[0, 1)")),
    ("adam_square_avg", dict(sampler="adam_sgld", sampler_kwargs={"initial_square_avg": -1.0}), ValueError, ("initial_square_avg",)),
    ("sghmc_friction", dict(sampler="sghmc", sampler_kwargs={"friction": 2.0}), ValueError, ("friction", "(0, 1]")),
    ("sghmc_noise", dict(sampler="sghmc", sampler_kwargs={"noise_estimate": 0.5}), ValueError, ("noise_estimate", "[0, friction]")),
    ("sgnht_diffusion", dict(sampler="sgnht", sampler_kwargs={"diffusion": -1.0}), ValueError, ("diffusion",)),
    ("sgnht_thermostat", dict(sampler="sgnht", sampler_kwargs={"initial_thermostat": -0.5}), ValueError, ("initial_thermostat",)),
    ("unknown_constant", dict(sampler="sgld", sampler_kwargs={"beta2": 0.9}), ValueError, ("'beta2'", "'sgld'")),
    ("int_params", dict(params={"W": np.ones((3, 2), np.int32)}), TypeError, ("params['W'] has dtype int32",)),
    ("nan_data", dict(data=(X_NAN, Y)), ValueError, ("data[0] has 2 non-finite", "(5, 1)")),
    ("inf_data", dict(data=(X, Y_INF)), ValueError, ("data[1] has 1 non-finite", "(7, 1)")),
    ("nan_device_data", dict(data=JAX_NAN_DATA), ValueError, ("data[0] has 2 non-finite",)),
    ("nan_eval_set", dict(eval_sets={"test": (X_NAN, Y)}), ValueError, ("eval_sets['test'][0] has 2 non-finite",)),
    ("duplicate_devices", dict(devices=[CPU, CPU]), ValueError, ("more than once",)),
    ("string_devices", dict(devices=["cpu"]), TypeError, ("devices[0]='cpu' is a string", "jax.devices('cpu')")),
    ("empty_devices", dict(devices=[]), ValueError, ("devices is empty",)),
    ("eval_sets_list", dict(eval_sets=[DATA]), TypeError, ("eval_sets must be a dict",)),
    ("eval_sets_array", dict(eval_sets=X), TypeError, ("eval_sets must be a dict",)),
    ("step_size_string", dict(step_size="1e-3"), TypeError, ("step_size", "pass a number, not a string")),
    ("num_chains_string", dict(num_chains="4"), TypeError, ("num_chains", "pass a number, not a string")),
    ("localization_inf", dict(localization=math.inf), ValueError, ("localization",)),
    ("batch_size_bool", dict(batch_size=True), TypeError, ("batch_size",)),
    ("nbeta_string", dict(nbeta="30"), ValueError, ("nbeta='30' is not known", "pass a number, not a string (nbeta=30.0)")),
]


@pytest.mark.parametrize("override,exc,fragments", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_estimate_llc_refuses_before_compiling(override, exc, fragments, no_compilation):
    kwargs = {**BASE, **override}
    params, data = kwargs.pop("params", PARAMS), kwargs.pop("data", DATA)
    with _raises(exc, *fragments):
        slt_jax.estimate_llc(linear_loss, params, data, **kwargs)


def test_estimate_llc_checkpoints_refuses_before_compiling(no_compilation):
    bad = {"W": W.copy()}
    bad["W"][0, 1] = np.nan
    with _raises(ValueError, "checkpoints[1]['W'] (w*) has 1 non-finite", "(0, 1)"):
        slt_jax.estimate_llc_checkpoints(linear_loss, [PARAMS, bad], DATA, **BASE)
    with _raises(TypeError, "checkpoints[1]['W'] has dtype int32"):
        slt_jax.estimate_llc_checkpoints(linear_loss, [PARAMS, {"W": np.ones((3, 2), np.int32)}], DATA, **BASE)
    with _raises(ValueError, "seed"):
        slt_jax.estimate_llc_checkpoints(linear_loss, [PARAMS, PARAMS], DATA, seed=2**40, **BASE)
    with _raises(TypeError, "mask['W'] is 0.5"):
        slt_jax.estimate_llc_checkpoints(linear_loss, [PARAMS, PARAMS], DATA, mask={"W": 0.5}, **BASE)


def test_estimate_llc_grid_refuses_before_compiling(no_compilation):
    with _raises(ValueError, "sampler_kwargs['beta1']=1.0"):
        slt_jax.estimate_llc_grid(linear_loss, [PARAMS], DATA, sampler="adam_sgld",
                                  sampler_kwargs={"beta1": 1.0}, **BASE)
    with _raises(ValueError, "data[0] has 2 non-finite"):
        slt_jax.estimate_llc_grid(linear_loss, [PARAMS], (X_NAN, Y), **BASE)


def test_estimate_susceptibilities_refuses_before_compiling(no_compilation):
    kw = {**BASE, "step_size": 1e-4}
    with _raises(ValueError, "eval_sets['p'][0] has 2 non-finite"):
        slt_jax.estimate_susceptibilities(linear_loss, PARAMS, DATA, probes={"p": (X_NAN, Y)}, **kw)
    with _raises(TypeError, "eval_sets must be a dict"):
        slt_jax.estimate_susceptibilities(linear_loss, PARAMS, DATA, probes=[DATA], **kw)
    with _raises(TypeError, "mask['W'] is 'False'"):
        slt_jax.estimate_susceptibilities(linear_loss, PARAMS, DATA, probes={"p": DATA},
                                          components={"w": {"W": "False"}}, **kw)
    with _raises(ValueError, "seed"):
        slt_jax.estimate_susceptibilities(linear_loss, PARAMS, DATA, probes={"p": DATA}, seed=2**32, **kw)


def test_estimate_susceptibilities_checks_every_component_mask_first():
    with count_compilations() as log:
        with pytest.raises(TypeError, match="mask"):
            slt_jax.estimate_susceptibilities(
                linear_loss, PARAMS, DATA, probes={"p": DATA}, components={"all": None, "w": {"W": 0.5}}, **BASE)
    assert log.count == 0, log.names


STACKED = {"W": jnp.stack([JAX_PARAMS["W"], JAX_PARAMS["W"]])}


def test_stacked_device_checkpoints_are_refused_before_compiling():
    with count_compilations() as log:
        with pytest.raises(ValueError, match="seed"):
            slt_jax.estimate_llc_checkpoints(linear_loss, STACKED, DATA, seed=2**32, **BASE)
    assert log.count == 0, log.names
