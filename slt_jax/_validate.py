"""Boundary checks: every public entry point validates here, before anything is compiled.

Each error names the argument, shows the offending value, and says how to fix it.
Internals trust their inputs.

No check may compile: on jax arrays, every jnp operation (and every numpy function that
dispatches to the array's own method, such as `np.any(x)` → `x.any()`) builds an XLA
program. The checks read shapes and dtypes, copy values to the host with `np.asarray` (a
transfer, not a program) and compute with numpy there; `jax.eval_shape` only traces.
tests/test_validation.py runs every check under the `no_compilation` fixture.
"""

from __future__ import annotations

import collections
import math
import numbers
import operator
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

# Largest number of elements a finiteness scan holds as a temporary at once (bool mask).
_SCAN_CHUNK_ELEMENTS = 1 << 24
SEED_LIMIT = 2**32  # jax.random.key keeps the low 32 bits (x64 off): 2**32 + 5 is seed 5


def _path_str(path) -> str:
    return jax.tree_util.keystr(path) or "<root>"


def _where(name: str, path) -> str:
    return name + (jax.tree_util.keystr(path) if path else "")


def _string_hint(name: str, value: str, cast) -> str:
    """'pass a number, not a string', with the literal to write when the string parses."""
    try:
        parsed = cast(value.strip())
    except (TypeError, ValueError):
        return "pass a number, not a string."
    return f"pass a number, not a string ({name}={parsed!r})."


def _as_real(value: Any) -> float | None:
    """A real non-bool number (Python, numpy, or a 0-d numpy/jax array) as a float, else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    dtype = getattr(value, "dtype", None)
    if dtype is not None and np.shape(value) == () and (np.dtype(dtype).kind in "iu" or _is_float(np.dtype(dtype))):
        return float(np.asarray(value))  # a 0-d numpy/jax array: a host read, no program
    return None


# --- scalars --------------------------------------------------------------------------------


def loss_function(loss_fn: Any) -> Callable:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(params, batch); got {type(loss_fn).__name__}.")
    return loss_fn


def positive_number(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """A finite real number > 0 (≥ 0 with allow_zero). Strings, bools and NaN/inf are refused."""
    bound = "≥ 0" if allow_zero else "> 0"
    if isinstance(value, str):
        raise TypeError(
            f"{name} must be a finite number {bound}; got the string {value!r}: "
            + _string_hint(name, value, float)
        )
    number = _as_real(value)
    if number is None:
        raise TypeError(
            f"{name} must be a finite number {bound}; got {value!r} of type {type(value).__name__}"
            + (" (True/False are not numbers here)." if isinstance(value, (bool, np.bool_)) else ".")
        )
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}.")
    return number


def integer(name: str, value: Any, *, minimum: int, maximum: int | None = None, hint: str = "") -> int:
    """An integer (Python, numpy, or a 0-d integer array) in [minimum, maximum].

    Strings, bools and floats (even 4.0) are refused with the literal to write instead."""
    tail = f" {hint}" if hint else ""
    if isinstance(value, str):
        raise TypeError(f"{name} must be an integer; got the string {value!r}: {_string_hint(name, value, int)}{tail}")
    if isinstance(value, (bool, np.bool_)) or np.dtype(getattr(value, "dtype", "O")) == np.bool_:
        raise TypeError(f"{name} must be an integer; got {value!r} (True/False are not counts here).{tail}")
    if isinstance(value, numbers.Integral):
        result = int(value)
    elif getattr(value, "dtype", None) is not None and np.shape(value) == () and np.dtype(value.dtype).kind in "iu":
        result = operator.index(value)  # a 0-d integer numpy/jax array: a host read, no program
    else:
        suggestion = ""
        if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
            suggestion = f" Pass {name}={int(value)}."
        raise TypeError(
            f"{name} must be an integer; got {value!r} of type {type(value).__name__}.{suggestion}{tail}"
        )
    if result < minimum or (maximum is not None and result > maximum):
        rng = f"≥ {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name} must be {rng}; got {result}.{tail}")
    return result


def seed(value: Any, name: str = "seed") -> int:
    """0 ≤ seed < 2**32: larger seeds alias smaller ones (jax keeps 32 bits) or overflow."""
    return integer(
        name, value, minimum=0, maximum=SEED_LIMIT - 1,
        hint=(
            "jax.random.key keeps 32 bits, so 2**32 + 5 would silently give seed 5's chains; "
            "reduce a larger seed with seed % 2**32 (or draw one with "
            "int(np.random.SeedSequence(big).generate_state(1)[0]))."
        ),
    )


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r} of type {type(value).__name__}.")
    return bool(value)


def choice(name: str, value: Any, options) -> Any:
    try:
        known = value in options
    except TypeError:  # unhashable (a list, a dict): certainly not an option
        known = False
    if not known:
        hint = ""
        if isinstance(value, str):
            try:
                hint = f" For a number, pass a number, not a string ({name}={float(value)!r})."
            except ValueError:
                pass
        raise ValueError(f"{name}={value!r} is not known; choose one of {sorted(options, key=str)}.{hint}")
    return value


def nbeta(value: Any, n: int, batch_size: int, rules) -> float | str | None:
    """nβ: None, one of `rules` ("n_log_n", "batch_log_batch"), or a number > 0."""
    if isinstance(value, str):
        choice("nbeta", value, rules)
    elif value is not None:
        value = positive_number("nbeta", value)
    if n == 1 and value in (None, "n_log_n"):
        raise ValueError("nbeta defaults to n / log n, which is undefined for n = 1; pass nbeta explicitly.")
    if batch_size == 1 and value == "batch_log_batch":
        raise ValueError("nbeta='batch_log_batch' is undefined for batch_size = 1; pass nbeta explicitly.")
    return value


def diagnostics(value: Any, options) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (tuple, list, set, frozenset)):
        raise TypeError(f"diagnostics must be a tuple of names from {list(options)} (() for none); got {value!r}.")
    return tuple(choice("diagnostics", d, options) for d in value)


# --- sampler constants -------------------------------------------------------------------------


class Constant(NamedTuple):
    """One sampler constant: its default (as in slt_jax.kernels) and valid range.

    Numbers lie in the interval from `low` to `high` (open where `*_open`); `high` may name
    another constant of the same sampler (noise_estimate ≤ friction). kind "bool": True/False.
    `optional`: None is accepted (it means "derived", e.g. SGNHT's ζ0 = diffusion)."""

    default: Any
    why: str
    low: float = 0.0
    high: float | str = math.inf
    low_open: bool = False
    high_open: bool = False
    kind: str = "real"
    optional: bool = False

    def interval(self) -> str:
        """The range as text: "[0, 1)", "(0, 1]", "[0, friction]", "[0, inf)"."""
        high = self.high if isinstance(self.high, str) else format(self.high, "g")
        closing = ")" if self.high_open or self.high == math.inf else "]"
        return f"{'(' if self.low_open else '['}{self.low:g}, {high}{closing}"


_BETA2 = ("the decay of the squared-gradient average; β2 = 1 never updates it and makes the bias "
          "correction 1/(1 - β2^t) divide by 0")
_EPS = "a in ε/(sqrt(v̂) + a), the floor of the preconditioner's denominator"
_V0 = "v_{-1}, the squared-gradient average before the first step (a mean of squares)"
_BIAS = "whether v (and m) are divided by 1 - β^t"

_BETA1 = ("the decay of the gradient's first moment; β1 = 1 never updates m (the drift stays 0) "
          "and divides by 1 - β1^t = 0")
_FRICTION = ("α, the share of the momentum damped per step: 0 never forgets the momentum and injects "
             "no noise, above 1 the momentum flips sign every step")
_NOISE_ESTIMATE = ("β̂, the gradient noise's share of the momentum noise, subtracted from the injected "
                   "2(α - β̂)η: it cannot exceed the friction α")
_ZETA0 = ("ζ0, the starting friction (None: ζ0 = diffusion); a negative friction heats the chain from "
          "the first step")
_OPEN_1 = dict(low=0.0, high=1.0, high_open=True)  # [0, 1)

# Every sampler's constants and ranges, in one place. Defaults must equal the keyword
# defaults of the public constructors and the registry (tests/test_validation.py checks).
SAMPLER_CONSTANTS: dict[str, dict[str, Constant]] = {
    "sgld": {},
    "rmsprop_sgld": {
        "beta2": Constant(0.999, _BETA2, **_OPEN_1),
        "eps_stabilizer": Constant(1e-5, _EPS),
        "initial_square_avg": Constant(1.0, _V0),
        "bias_correction": Constant(True, _BIAS, kind="bool"),
    },
    "rmsprop_sgld_devinterp": {  # v starts at 0 and is not bias-corrected: fixed by the variant
        "beta2": Constant(0.99, _BETA2, **_OPEN_1),
        "eps_stabilizer": Constant(0.1, _EPS + "; this variant starts from v = 0, so a = 0 divides by 0",
                                   low_open=True),
    },
    "adam_sgld": {
        "beta1": Constant(0.9, _BETA1, **_OPEN_1),
        "beta2": Constant(0.999, _BETA2, **_OPEN_1),
        "eps_stabilizer": Constant(1e-8, _EPS),
        "initial_square_avg": Constant(1.0, _V0),
        "bias_correction": Constant(True, _BIAS, kind="bool"),
    },
    "sghmc": {
        "friction": Constant(0.01, _FRICTION, 0.0, 1.0, low_open=True),  # (0, 1]
        "noise_estimate": Constant(0.0, _NOISE_ESTIMATE, 0.0, "friction"),  # [0, friction]
    },
    "sgnht": {
        "diffusion": Constant(0.01, "α, the injected noise sqrt(2αη) per step: a variance, so ≥ 0"),
        "initial_thermostat": Constant(None, _ZETA0, optional=True),
    },
}


def sampler_constants(sampler_name: str, kwargs: Any) -> dict[str, float | bool | None]:
    """Validate `sampler_kwargs` for a named sampler; returns the constants given (not the
    defaults), as floats / bools, ready for `make_kernel(sampler_name, step_size, **result)`.

    sampler_name "custom" (a `Kernel` passed directly) takes no sampler_kwargs."""
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise TypeError(
            f"sampler_kwargs must be a dict of constant names to values, e.g. {{'beta2': 0.999}}; "
            f"got {kwargs!r} of type {type(kwargs).__name__}."
        )
    if sampler_name == "custom":
        if kwargs:
            raise ValueError(
                f"sampler_kwargs={dict(kwargs)!r} cannot configure a Kernel passed as sampler=; "
                "set its constants when building it (e.g. slt_jax.sghmc(step_size, friction=0.1))."
            )
        return {}
    table = SAMPLER_CONSTANTS.get(sampler_name)
    if table is None:
        choice("sampler", sampler_name, SAMPLER_CONSTANTS)
    unknown = [k for k in kwargs if k not in table]
    if unknown:
        valid = ", ".join(
            f"{k} (default {c.default!r}, {c.interval() if c.kind == 'real' else 'True/False'})"
            for k, c in table.items()
        )
        raise ValueError(
            f"sampler_kwargs has {', '.join(map(repr, unknown))}, not a constant of sampler "
            f"{sampler_name!r}; its constants are: {valid or 'none (SGLD has only step_size)'}."
        )
    out: dict[str, Any] = {}
    for key, spec in table.items():  # table order: a bound like "friction" is read before its user
        if key not in kwargs:
            continue
        value, label = kwargs[key], f"sampler_kwargs[{key!r}]"
        if spec.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{label} ({spec.why}) must be True or False; got {value!r}.")
            out[key] = bool(value)
            continue
        if value is None and spec.optional:
            out[key] = None
            continue
        if isinstance(value, str):
            raise TypeError(f"{label} must be a number; got the string {value!r}: " + _string_hint(key, value, float))
        number = _as_real(value)
        if number is None or not math.isfinite(number):
            raise (TypeError if number is None else ValueError)(
                f"{label} must be a finite number; got {value!r}" + (" (None for the default)." if spec.optional else ".")
            )
        high = spec.high
        if isinstance(high, str):  # another constant: its validated value, else its default
            high = out.get(high, table[high].default)
        too_low = number < spec.low or (spec.low_open and number == spec.low)
        too_high = number > high or (spec.high_open and number == high)
        if too_low or too_high:
            bound = f" (friction = {high:g} here)" if isinstance(spec.high, str) else ""
            raise ValueError(
                f"{label}={value!r} is outside the valid range {spec.interval()}{bound} for sampler "
                f"{sampler_name!r}: {key} is {spec.why}. The default is {spec.default!r}."
            )
        out[key] = number
    return out


# --- pytrees -------------------------------------------------------------------------------------


def _leaf_dtype(leaf: Any) -> np.dtype:
    """The dtype jax will give the leaf (float64 → float32 with x64 off), without a copy."""
    dtype = getattr(leaf, "dtype", None)
    dtype = np.dtype(dtype) if dtype is not None else np.asarray(leaf).dtype
    try:
        return np.dtype(jax.dtypes.canonicalize_dtype(dtype))
    except (TypeError, ValueError):  # strings, objects: no jax dtype
        return dtype


def _is_float(dtype: np.dtype) -> bool:
    return jax.dtypes.issubdtype(dtype, np.floating)  # np.issubdtype says no for bfloat16


def _nonfinite(leaf: Any) -> tuple[int, int, tuple[int, ...]] | None:
    """(count, NaN count, index of the first) of the leaf's non-finite values, or None.

    On a host copy (np.asarray of a jax array is a transfer), scanned in chunks of the leading
    axis so the temporary mask stays small for large data."""
    arr = np.asarray(leaf)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    row = max(1, math.prod(arr.shape[1:]))
    step = max(1, _SCAN_CHUNK_ELEMENTS // row)
    count = nans = 0
    first = None
    for start in range(0, arr.shape[0], step):
        chunk = arr[start : start + step]
        bad = ~np.isfinite(chunk)
        c = int(np.count_nonzero(bad))
        if not c:
            continue
        if first is None:
            idx = np.unravel_index(int(np.argmax(bad)), bad.shape)
            first = (int(idx[0]) + start,) + tuple(int(i) for i in idx[1:])
        count += c
        nans += int(np.count_nonzero(np.isnan(chunk[bad])))
    if not count:
        return None
    if np.ndim(leaf) == 0:
        first = ()
    return count, nans, first


def data_size(data: Any, name: str = "data") -> int:
    """The shared leading axis n of every leaf of `data`."""
    leaves = jax.tree_util.tree_leaves_with_path(data)
    if not leaves:
        raise ValueError(f"{name} is empty (no array leaves); pass a pytree of arrays with a leading sample axis.")
    sizes = {}
    for path, leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                f"{name}{_path_str(path)} is a scalar; every leaf of {name} needs a leading sample axis."
            )
        sizes[_path_str(path)] = shape[0]
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{p}: {s}" for p, s in sizes.items())
        raise ValueError(
            f"the leaves of {name} disagree on the number of samples (leading axis): {listing}. "
            "Every leaf must have the same length n along axis 0."
        )
    n = next(iter(sizes.values()))
    if n == 0:
        raise ValueError(f"{name} has zero samples; pass at least one sample.")
    return int(n)


def float_params(params: Any, name: str = "params", *, supported: tuple[str, ...] | None = None) -> dict[str, np.dtype]:
    """Every leaf of `params` is floating point; returns {leaf path: dtype} (as jax will see it).

    Non-float leaves (int, bool, complex, strings) are refused with their path. `supported`:
    optionally, the float dtype names the engine handles (others refused with a cast hint)."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    if not leaves:
        raise ValueError(f"{name} has no array leaves; pass the trained parameters w* as a pytree of arrays.")
    found = {_where(name, path): _leaf_dtype(leaf) for path, leaf in leaves}
    counts = collections.Counter(d.name for d in found.values())
    summary = ", ".join(f"{d} ({c} lea{'f' if c == 1 else 'ves'})" for d, c in sorted(counts.items()))
    for where, dtype in found.items():
        if not _is_float(dtype):
            raise TypeError(
                f"{where} has dtype {dtype}; sampled parameters must be floating point (dtypes found "
                f"in {name}: {summary}). Cast it (x.astype(jnp.float32)), or keep non-parameter "
                "state (step counters, integer buffers) out of params by closing over it in loss_fn."
            )
    if supported is not None:
        unsupported = {w: d for w, d in found.items() if d.name not in supported}
        if unsupported:
            where, dtype = next(iter(unsupported.items()))
            raise TypeError(
                f"{where} has dtype {dtype}, which this engine does not sample yet (supported: "
                f"{', '.join(supported)}; dtypes found in {name}: {summary}). Cast the parameters, "
                "jax.tree.map(lambda x: x.astype(jnp.float32), params), and if the model must run "
                "in low precision, cast back inside loss_fn."
            )
    return found


def finite_params(params: Any, name: str = "params") -> None:
    """Float leaves (see float_params) with finite values only: w* is the posterior's center."""
    float_params(params, name)
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        bad = _nonfinite(leaf)
        if bad:
            count, nans, first = bad
            raise ValueError(
                f"{_where(name, path)} (w*) has {count} non-finite value(s) ({nans} NaN, "
                f"{count - nans} ±inf), the first at index {first}; the center of the localized "
                "posterior must be finite. Check the checkpoint you loaded."
            )


def _lazy(leaf: Any) -> bool:
    """A StreamingData leaf read from disk on access (memmap, h5py, ...): not scanned."""
    return not isinstance(leaf, np.ndarray) or isinstance(leaf, np.memmap)


def finite_data(data: Any, name: str = "data") -> tuple[str, ...]:
    """Every float leaf of `data` is finite (host numpy scan); non-numeric leaves are refused.

    For `StreamingData`, leaves held in host memory are scanned and lazily loaded ones
    (np.memmap, h5py datasets) are skipped, since scanning them reads the whole file: returns
    the paths skipped (empty otherwise). A NaN there still shows up, after compiling, as a
    non-finite loss at w* or a chain flagged by the run's NaN check."""
    from slt_jax.streaming import StreamingData

    streaming = isinstance(data, StreamingData)
    tree = data.data if streaming else data
    skipped = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        where = _where(name, path)
        if streaming and _lazy(leaf):
            skipped.append(where)
            continue
        dtype = _leaf_dtype(leaf)
        # jax's dtype hierarchy: numpy files bfloat16 and float8 under kind "V" (void)
        if not (jax.dtypes.issubdtype(dtype, np.number) or dtype == np.bool_):
            raise TypeError(
                f"{where} has dtype {dtype}; data leaves must be numeric arrays (floats, or "
                "integers such as token ids). Encode it before calling."
            )
        if not jax.dtypes.issubdtype(dtype, np.inexact):
            continue
        bad = _nonfinite(leaf)
        if bad:
            count, nans, first = bad
            raise ValueError(
                f"{where} has {count} non-finite value(s) ({nans} NaN, {count - nans} ±inf), the "
                f"first at index {first}{f' (sample {first[0]})' if first else ''}; every loss touching "
                "those samples would be NaN. Drop or impute them before calling, e.g. keep = "
                "np.isfinite(x).reshape(len(x), -1).all(axis=1), then index every leaf with keep."
            )
    return tuple(skipped)


def _mask_leaf_hint(m: Any) -> str:
    if isinstance(m, str):
        return f"the string {m!r} is truthy whatever it says; pass the bool {m.strip().lower() == 'true'}."
    if m is None:
        return "use False to keep the leaf frozen at w* (or True to sample it)."
    if isinstance(m, (list, tuple)):
        return "convert it with np.asarray(m, dtype=bool)."
    arr = np.asarray(m)
    if arr.ndim == 0 and arr.dtype.kind in "iuf":
        return "pass True or False (a mask selects coordinates, it does not scale them)."
    if arr.dtype.kind in "iuf" and arr.size and np.isin(arr, (0, 1)).all():
        return "it holds only 0/1: convert it with np.asarray(m, dtype=bool)."
    return ("a mask selects coordinates, it does not scale them (0.5 would scale the drift and "
            "noise); convert with np.asarray(m) != 0, or m > threshold.")


def mask(mask: Any, params: Any, name: str = "mask") -> None:
    """`mask` is None or a pytree like params of True/False / boolean arrays of the leaf's shape.

    Booleans only: a number (0.5) would scale the step instead of selecting, a string ('False')
    would count as True, and a 0/1 integer array is one `!= 0` away from a boolean one."""
    if mask is None:
        return
    p_leaves, p_def = jax.tree_util.tree_flatten_with_path(params)
    try:
        m_leaves = p_def.flatten_up_to(mask)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{name} must have the same pytree structure as params, with a bool or a boolean array "
            f"per leaf (see slt_jax.adapters.mask_from_paths); structure mismatch: {e}"
        ) from None
    any_sampled = False
    for (path, leaf), m in zip(p_leaves, m_leaves):
        where = _where(name, path)
        if isinstance(m, (bool, np.bool_)):
            any_sampled |= bool(m)
            continue
        dtype = getattr(m, "dtype", None)
        if dtype is None or not hasattr(m, "shape") or np.dtype(dtype) != np.bool_:
            shown = f"an array of dtype {dtype}" if dtype is not None and np.ndim(m) else repr(m)
            raise TypeError(f"{where} is {shown}; mask leaves must be True/False or boolean arrays: {_mask_leaf_hint(m)}")
        if np.ndim(m) == 0:
            any_sampled |= bool(np.asarray(m))
        elif np.shape(m) != np.shape(leaf):
            raise ValueError(
                f"{where} has shape {np.shape(m)} but the parameter has shape {np.shape(leaf)}; "
                "an array mask must match its parameter's shape (or use a single bool)."
            )
        else:
            any_sampled |= bool(np.asarray(m).any())
    if not any_sampled:
        raise ValueError(f"{name} selects no parameters to sample; set at least one entry to True.")


mask_matches = mask  # the earlier name


def eval_sets(value: Any, name: str = "eval_sets") -> dict[str, Any]:
    """None → {}; else a dict {identifier: data pytree with its own leading sample axis}."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{name} must be a dict {{name: data}} (each name labels the result variable "
            f"<name>_losses); got a {type(value).__name__}. E.g. {name}={{'test': (x_test, y_test)}}."
        )
    from slt_jax.streaming import StreamingData

    out = {}
    for key, es in value.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(
                f"{name} keys must be identifiers (they name result variables <name>_losses); got "
                f"{key!r}. Use letters, digits and underscores, e.g. 'test_set'."
            )
        if isinstance(es, StreamingData):
            raise TypeError(
                f"{name}[{key!r}] is StreamingData; eval sets are held in device memory, pass "
                "their arrays (StreamingData is for the training data)."
            )
        data_size(es, name=f"{name}[{key!r}]")
        out[key] = es
    return out


def devices(value: Any, name: str = "devices") -> list:
    """None → jax.devices(); else a non-empty list of distinct jax.Device on one platform."""
    if value is None:
        return list(jax.devices())
    if isinstance(value, (str, bytes)):
        platform = str(value).split(":")[0]
        raise TypeError(
            f"{name}={value!r} is a string; pass jax Device objects, e.g. {name}=jax.devices({platform!r}) "
            f"(all of them) or jax.devices({platform!r})[:k]."
        )
    if isinstance(value, jax.Device):
        raise TypeError(f"{name} must be a list of devices; got the single device {value!r}: pass {name}=[{value!r}].")
    try:
        items = list(np.ravel(np.asarray(value, dtype=object))) if isinstance(value, np.ndarray) else list(value)
    except TypeError:
        raise TypeError(f"{name} must be a list of jax devices (e.g. jax.devices()); got {value!r}.") from None
    if not items:
        raise ValueError(f"{name} is empty; pass None (all devices) or a list of jax devices.")
    for i, d in enumerate(items):
        if isinstance(d, str):
            raise TypeError(
                f"{name}[{i}]={d!r} is a string; pass jax Device objects, e.g. "
                f"{name}=jax.devices({d.split(':')[0]!r})."
            )
        if not isinstance(d, jax.Device):
            raise TypeError(f"{name}[{i}]={d!r} of type {type(d).__name__} is not a jax device; use jax.devices().")
    repeated = [d for d, c in collections.Counter(items).items() if c > 1]
    if repeated:
        listing = ", ".join(f"{d!r} ×{items.count(d)}" for d in repeated)
        raise ValueError(
            f"{name} lists a device more than once ({listing}); each device holds one share of the "
            f"chains. Pass distinct devices, e.g. list(dict.fromkeys({name}))."
        )
    platforms = collections.defaultdict(list)
    for d in items:
        platforms[d.platform].append(d)
    if len(platforms) > 1:
        listing = "; ".join(f"{p}: {ds}" for p, ds in platforms.items())
        raise ValueError(
            f"{name} mixes platforms ({listing}); the chains run as one program on one backend. "
            f"Pick one, e.g. jax.devices({next(iter(platforms))!r})."
        )
    return items


def _abstract(x: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(np.shape(x), _leaf_dtype(x))


def loss_output(loss_fn: Callable, params: Any, data: Any, batch_size: int, name: str = "data") -> jax.ShapeDtypeStruct:
    """Trace (not compile) loss_fn on a batch-shaped placeholder and check its output.

    `params` and `data` may be host or device arrays: only shapes and dtypes are read (with
    jax's dtype for each, float64 → float32 with x64 off). Returns the output's shape/dtype."""
    batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct((batch_size,) + np.shape(x)[1:], _leaf_dtype(x)), data)
    abstract_params = jax.tree.map(_abstract, params)
    try:
        out = jax.eval_shape(loss_fn, abstract_params, batch)
    except Exception as e:  # the user's code failed: say where, keep their error as the cause
        raise ValueError(
            f"loss_fn(params, batch) failed when traced with a batch of {batch_size} samples of {name} "
            f"({type(e).__name__}: {e}). loss_fn must take the params pytree and a batch pytree "
            "shaped like data with leading axis batch_size, and return per-sample losses."
        ) from e
    if not isinstance(out, jax.ShapeDtypeStruct) or out.ndim == 0 or out.shape[0] != batch_size:
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"loss_fn must return per-sample losses with leading axis batch_size={batch_size} "
            f"(shape (B,) or (B, T) for per-token losses); it returned {shape}. If it returns a "
            "mean, drop the reduction: the engine averages."
        )
    if not _is_float(out.dtype):
        raise TypeError(f"loss_fn must return floating-point losses; got dtype {out.dtype}.")
    return out


def same_structure(reference: Any, other: Any, name: str) -> None:
    """`other` has the pytree structure, shapes and dtypes of `reference` (checkpoints of one model)."""
    ref_def, other_def = jax.tree.structure(reference), jax.tree.structure(other)
    if ref_def != other_def:
        raise ValueError(f"{name} has a different pytree structure from the first checkpoint: {other_def} vs {ref_def}.")
    for i, (a, b) in enumerate(zip(jax.tree.leaves(reference), jax.tree.leaves(other))):
        if np.shape(a) != np.shape(b):
            raise ValueError(
                f"{name} leaf {i} has shape {np.shape(b)} but the first checkpoint's has {np.shape(a)}; "
                "checkpoints batched together must share one architecture."
            )
