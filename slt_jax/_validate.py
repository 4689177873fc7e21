"""Boundary checks: every public entry point validates here, before anything is compiled.

Each error names the argument, shows the offending value, and says how to fix it.
Internals trust their inputs.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def _path_str(path) -> str:
    return jax.tree_util.keystr(path) or "<root>"


def positive_number(name: str, value: Any, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}.")
    return float(value)


def integer(name: str, value: Any, *, minimum: int, maximum: int | None = None, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r} of type {type(value).__name__}.")
    if value < minimum or (maximum is not None and value > maximum):
        rng = f"≥ {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name} must be {rng}; got {value}.{(' ' + hint) if hint else ''}")
    return int(value)


def choice(name: str, value: Any, options) -> str:
    if value not in options:
        raise ValueError(f"{name}={value!r} is not known; choose one of {sorted(options)}.")
    return value


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


def finite_params(params: Any, name: str = "params") -> None:
    leaves = jax.tree_util.tree_leaves_with_path(params)
    if not leaves:
        raise ValueError(f"{name} has no array leaves; pass the trained parameters w* as a pytree of arrays.")
    for path, leaf in leaves:
        arr = jnp.asarray(leaf)
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            raise TypeError(
                f"{name}{_path_str(path)} has dtype {arr.dtype}; sampled parameters must be floating point."
            )
        if not bool(jnp.all(jnp.isfinite(arr))):
            bad = int(jnp.sum(~jnp.isfinite(arr)))
            raise ValueError(
                f"{name}{_path_str(path)} (w*) has {bad} non-finite value(s); the center of the "
                "localized posterior must be finite. Check the checkpoint you loaded."
            )


def mask_matches(mask: Any, params: Any) -> None:
    if mask is None:
        return
    p_leaves, p_def = jax.tree.flatten(params)
    try:
        m_leaves = p_def.flatten_up_to(mask)
    except (ValueError, TypeError) as e:
        raise ValueError(
            "mask must have the same pytree structure as params, with a bool or a boolean array "
            f"per leaf (see slt_jax.adapters.mask_from_paths); structure mismatch: {e}"
        ) from None
    any_sampled = False
    for i, (leaf, m) in enumerate(zip(p_leaves, m_leaves)):
        if np.ndim(m) == 0:
            any_sampled |= bool(m)
        elif np.shape(m) != np.shape(leaf):
            raise ValueError(
                f"mask leaf {i} has shape {np.shape(m)} but the parameter has shape {np.shape(leaf)}; "
                "an array mask must match its parameter's shape (or use a single bool)."
            )
        else:
            any_sampled |= bool(np.any(m))
    if not any_sampled:
        raise ValueError("mask selects no parameters to sample; set at least one entry to True.")


def loss_output(loss_fn: Callable, params: Any, data: Any, batch_size: int, name: str = "data") -> None:
    """Trace (not compile) loss_fn on a batch-shaped placeholder and check its output.

    `params` and `data` are already jax arrays (estimate_llc converts them first).
    """
    batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct((batch_size,) + x.shape[1:], x.dtype), data)
    abstract_params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
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
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"loss_fn must return floating-point losses; got dtype {out.dtype}.")


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
