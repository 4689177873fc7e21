"""Shared input checks and small numpy helpers of the observables (numpy side).

Every public function validates at entry and names the argument in its error; internals trust
their inputs.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = [
    "_as_array",
    "_count",
    "_draws2",
    "_draws3",
    "_logsumexp",
    "_min_draws",
    "_pool",
    "_positive",
    "_same_draws",
]


def _as_array(name: str, x: Any, ndim: int | tuple[int, ...], layout: str) -> np.ndarray:
    """float64 copy-free view of `x` (numpy or jax) with `ndim` dimensions, else ValueError."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a numeric array shaped {layout}; could not convert it ({e}).") from None
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in allowed:
        raise ValueError(f"{name} must be shaped {layout}; got an array of shape {arr.shape}.")
    if 0 in arr.shape:
        raise ValueError(f"{name} is empty (shape {arr.shape}); it needs at least one entry per axis.")
    return arr


def _draws2(name: str, x: Any) -> np.ndarray:
    return _as_array(name, x, 2, "(chains, draws)")


def _draws3(name: str, x: Any, last: str = "samples") -> np.ndarray:
    return _as_array(
        name, x, 3, f"(chains, draws, {last}); for draws already pooled over chains pass x[None]"
    )


def _same_draws(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(
            f"{name_a} and {name_b} must come from the same draws: their (chains, draws) axes are "
            f"{a.shape[:2]} and {b.shape[:2]}."
        )


def _min_draws(name: str, arr: np.ndarray, minimum: int = 2) -> None:
    total = arr.shape[0] * arr.shape[1]
    if total < minimum:
        raise ValueError(f"{name} has {total} draw(s) in all; at least {minimum} are needed for a (co)variance.")


def _positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}.") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}.")
    return v


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2:
        raise ValueError(f"{name} must be an integer ≥ 2 (a number of samples); got {value!r}.")
    return int(value)


def _logsumexp(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """log Σ exp(x) along `axis`, shifted by the max so it cannot overflow (-inf for all -inf)."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.sum(np.exp(x - m), axis=axis)) + np.squeeze(m, axis=axis)


def _pool(arr: np.ndarray) -> np.ndarray:
    """(chains, draws, ...) -> (chains·draws, ...): all draws of all chains as one sample."""
    return arr.reshape((arr.shape[0] * arr.shape[1],) + arr.shape[2:])
