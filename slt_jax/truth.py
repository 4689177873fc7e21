"""Exact learning coefficients and toy problems whose true parameter is known.

The formulas (shared/docs/estimators.md §5) return ``fractions.Fraction`` so tests compare
exactly. The generators build realizable Gaussian regression problems in the engine's
contract:

- ``loss_fn(params, batch) -> (B,)`` per-sample losses
  ``0.5 * sum((y - f(x))**2, axis=-1) / noise_std**2`` (the Gaussian negative
  log-likelihood without its constant), where ``batch = {"x": (B, d_in), "y": (B, d_out)}``;
- ``params``: the teacher (true parameter), a dict of arrays;
- ``data = {"x": (n, d_in), "y": (n, d_out)}``.

Local vs global learning coefficient: the exact formulas give the *global* learning
coefficient, which equals the local one only at the most singular points of the true set.
E.g. for widths (5, 3, 5) and rank 0, λ = 13/2 at W = 0, but at (W1 = 0, W2 of full rank 3)
the map W1 -> W1 W2 is injective, so K ≍ |W1|² there and the local value is 15/2. The DLN
teacher is therefore built with every layer of rank exactly r along one shared r-dimensional
path (for r = 0: all weights zero), which is such a most singular point.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "ToyProblem",
    "regular_learning_coefficient",
    "normal_crossing_learning_coefficient",
    "normal_crossing_multiplicity",
    "rrr_learning_coefficient",
    "dln_learning_coefficient",
    "make_dln",
    "make_rrr",
    "make_regular",
    "make_normal_crossing",
]


# ----------------------------------------------------------------------------- validation


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}; pass a whole number >= {minimum}.")
    return int(value)


def _as_tuple(name: str, value: Any, what: str) -> tuple:
    # Any non-string iterable (list, tuple, numpy array) is accepted.
    if not isinstance(value, (str, bytes)):
        try:
            return tuple(value)
        except TypeError:
            pass
    raise ValueError(f"{name} must be a sequence of {what}, got {value!r}.")


def _check_widths(widths: Any) -> tuple[int, ...]:
    widths = _as_tuple("widths", widths, "positive ints (input first, output last)")
    if len(widths) < 2:
        raise ValueError(f"widths must list at least 2 widths (input and output), got {widths!r}; e.g. (5, 3, 5).")
    for i, width in enumerate(widths):
        if not _is_int(width) or width < 1:
            raise ValueError(f"widths[{i}] must be a positive int, got {width!r} in widths={widths!r}; use widths >= 1.")
    return tuple(int(w) for w in widths)


def _check_rank(rank: Any, widths: Sequence[int]) -> int:
    upper = min(widths)
    if not _is_int(rank) or not 0 <= rank <= upper:
        raise ValueError(
            f"rank must be an int with 0 <= rank <= min(widths) = {upper}, got {rank!r} for widths={tuple(widths)!r}; "
            "the product of the layers cannot have a rank above its narrowest width."
        )
    return int(rank)


def _check_noise_std(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"noise_std must be a number ≥ 0 (0: noise-free data), got {value!r}.")
    return float(value)


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    return float(value)


def _check_powers(powers: Any) -> tuple[int, ...]:
    powers = _as_tuple("powers", powers, "non-negative ints, e.g. (1, 2)")
    if len(powers) == 0:
        raise ValueError("powers is empty; give one non-negative int per parameter, e.g. (1, 2).")
    for i, k in enumerate(powers):
        if not _is_int(k) or k < 0:
            raise ValueError(f"powers[{i}] must be a non-negative int, got {k!r} in powers={powers!r}.")
    if all(k == 0 for k in powers):
        raise ValueError(
            f"powers={tuple(powers)!r} are all zero: K(w) = 1 has no zero, so there is no singularity to measure; "
            "give at least one positive power."
        )
    return tuple(int(k) for k in powers)


def _check_prior_powers(prior_powers: Any, num: int) -> tuple[Fraction, ...]:
    if prior_powers is None:
        return (Fraction(0),) * num
    prior_powers = _as_tuple("prior_powers", prior_powers, f"{num} rationals (one per power)")
    if len(prior_powers) != num:
        raise ValueError(f"prior_powers must be a sequence of {num} rationals (one per power), got {prior_powers!r}.")
    out = []
    for i, h in enumerate(prior_powers):
        # Floats are refused so that the result stays exact (Fraction(0.1) is not 1/10).
        if isinstance(h, bool) or not isinstance(h, numbers.Rational) or not h > -1:
            raise ValueError(
                f"prior_powers[{i}] must be an int or Fraction > -1 (so |w|^h is integrable), got {h!r}; "
                "pass e.g. Fraction(1, 2) instead of 0.5."
            )
        out.append(Fraction(h))
    return tuple(out)


def _as_key(key: Any) -> jax.Array:
    """Typed PRNG key from an int seed, a typed key, or a legacy uint32 key."""
    if _is_int(key):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            return key
        return jax.random.wrap_key_data(key)
    raise ValueError(f"key must be an int seed or a jax.random.key(...), got {key!r}.")


# ----------------------------------------------------------------------------- formulas


def regular_learning_coefficient(num_params: int) -> Fraction:
    """λ = d/2 for a regular model (non-degenerate Fisher information) with d parameters."""
    return Fraction(_check_int("num_params", num_params, 0), 2)


def _normal_crossing_ratios(powers, prior_powers) -> list[Fraction]:
    powers = _check_powers(powers)
    prior = _check_prior_powers(prior_powers, len(powers))
    return [(h + 1) / (2 * k) for k, h in zip(powers, prior) if k > 0]


def normal_crossing_learning_coefficient(powers: Sequence[int], prior_powers: Sequence | None = None) -> Fraction:
    """λ for K(w) = Π w_i^{2 k_i} with prior locally Π |w_i|^{h_i}: min over k_i > 0 of (h_i + 1)/(2 k_i).

    ``powers`` are the k_i (non-negative ints, not all zero); ``prior_powers`` the h_i
    (ints or Fractions > -1; default 0, a smooth prior).
    """
    return min(_normal_crossing_ratios(powers, prior_powers))


def normal_crossing_multiplicity(powers: Sequence[int], prior_powers: Sequence | None = None) -> int:
    """Multiplicity m for the same K and prior: the number of coordinates attaining the minimum."""
    ratios = _normal_crossing_ratios(powers, prior_powers)
    return ratios.count(min(ratios))


def rrr_learning_coefficient(input_dim: int, hidden: int, output_dim: int, rank: int) -> Fraction:
    """Reduced-rank regression x -> x A B, A: (M, H), B: (H, N), true rank r (Aoyagi & Watanabe 2005).

    Arguments are M = input_dim, H = hidden, N = output_dim, r = rank with 0 <= r <= min(M, H, N).
    """
    M, H, N = (_check_int(n, v, 1) for n, v in (("input_dim", input_dim), ("hidden", hidden), ("output_dim", output_dim)))
    r = _check_rank(rank, (M, H, N))
    if N + r <= M + H and M + r <= N + H and H + r <= M + N:
        value = Fraction(2 * (H + r) * (M + N) + 2 * M * N - (H + r) ** 2 - M**2 - N**2, 8)
        return value + (Fraction(1, 8) if (M + H + N + r) % 2 else 0)
    # Exactly one of these holds: adding any two gives 2H < 2r, 2M < 2r or 2N < 2r, impossible.
    if M + H < N + r:
        return Fraction(H * M - H * r + N * r, 2)
    if N + H < M + r:
        return Fraction(H * N - H * r + M * r, 2)
    return Fraction(M * N, 2)  # M + N < H + r


def dln_learning_coefficient(widths: Sequence[int], rank: int) -> Fraction:
    """Deep linear network f(x) = W_L ⋯ W_1 x with true product of rank r (Aoyagi 2024).

    ``widths`` = (H_0, ..., H_L), input first, output last (at least 2 entries);
    ``0 <= rank <= min(widths)``. Algorithm as in estimators.md §5.
    """
    widths = _check_widths(widths)
    r = _check_rank(rank, widths)
    deltas = sorted(h - r for h in widths)
    num_layers = len(widths) - 1
    # An accepted prefix always exists, so the loop always breaks: (b) for k+1 is exactly the
    # negation of (c) for k, and (b) holds for k = 2. So the first k whose (c) holds also has
    # (b), and then (a) too (a tie max Σ = min rest would make (b) and (c) contradict); if (c)
    # never holds, the full list (k = L+1) has (b) and vacuous (a), (c).
    for k in range(2, num_layers + 2):
        sigma, rest = deltas[:k], deltas[k:]
        ell, total = k - 1, sum(deltas[:k])
        if rest and not (sigma[-1] < rest[0] and total < ell * rest[0]):
            continue
        if total >= ell * sigma[-1]:
            break
    else:  # pragma: no cover - unreachable, see above
        raise RuntimeError(f"no accepted prefix for widths={widths}, rank={r}")
    ceil_mean = -(-total // ell)
    a = total - (ceil_mean - 1) * ell
    pair_sum = (total**2 - sum(d * d for d in sigma)) // 2  # Σ_{i<j} Δ_i Δ_j
    # L = 1 needs no special case: Σ = both Δ, ℓ = 1, a(ℓ-a) = 0 and the pair term gives
    # exactly H_0 H_1 / 2 (a single linear layer is regular).
    return (
        Fraction(r * (widths[0] + widths[-1]) - r * r, 2)
        + Fraction(a * (ell - a), 4 * ell)
        - Fraction((ell - 1) * total**2, 4 * ell)
        + Fraction(pair_sum, 2)
    )


# ----------------------------------------------------------------------------- toy problems


@dataclasses.dataclass(frozen=True, eq=False)
class ToyProblem:
    """A realizable problem at its true parameter, with its exact learning coefficient.

    ``loss_fn(params, batch) -> (B,)`` per-sample losses; ``params`` is the teacher (a dict of
    arrays); ``data`` is a dict of arrays sharing leading axis n; ``num_params`` counts the
    entries of ``params`` (all of them are sampled).
    """

    loss_fn: Callable[[Any, Any], jax.Array]
    params: dict[str, jax.Array]
    data: dict[str, jax.Array]
    learning_coefficient: Fraction
    num_params: int
    name: str
    description: str


def _squared_error_loss(forward: Callable, noise_std: float) -> Callable:
    # noise_std = 0 (noise-free data) keeps the unit-variance scale: λ does not depend on it.
    inv_var = 1.0 / noise_std**2 if noise_std > 0 else 1.0

    def loss_fn(params, batch):
        residual = batch["y"] - forward(params, batch["x"])
        return 0.5 * inv_var * jnp.sum(residual**2, axis=-1)

    return loss_fn


def _random_orthonormal(key, dim: int, rank: int, dtype) -> jax.Array:
    """(dim, rank) matrix with orthonormal columns and a uniformly random span."""
    if rank == 0:
        return jnp.zeros((dim, 0), dtype)
    # QR needs at least float32; low-precision dtypes are rounded after orthonormalizing.
    work_dtype = jnp.promote_types(dtype, jnp.float32)
    q, r = jnp.linalg.qr(jax.random.normal(key, (dim, rank), work_dtype))
    # The sign fix makes the distribution Haar rather than dependent on the QR convention.
    return (q * jnp.sign(jnp.diagonal(r))).astype(dtype)


def _dln_forward(params, x):
    for i in range(1, len(params) + 1):
        x = x @ params[f"W{i}"]
    return x


# One compiled program per shape: op-by-op dispatch of the QRs and draws costs seconds.
@functools.partial(jax.jit, static_argnames=("widths", "rank", "num_samples", "dtype"))
def _sample_dln(key, noise_std, input_std, *, widths, rank, num_samples, dtype):
    key_x, key_eps, key_u, key_o = jax.random.split(key, 4)
    bases = [_random_orthonormal(k, h, rank, dtype) for k, h in zip(jax.random.split(key_u, len(widths)), widths)]
    params = {}
    for i, k in enumerate(jax.random.split(key_o, len(widths) - 1), start=1):
        rotation = _random_orthonormal(k, rank, rank, dtype)
        params[f"W{i}"] = bases[i - 1] @ rotation @ bases[i].T
    x = (input_std * jax.random.normal(key_x, (num_samples, widths[0]), dtype)).astype(dtype)
    noise = noise_std * jax.random.normal(key_eps, (num_samples, widths[-1]), dtype)
    return params, {"x": x, "y": (_dln_forward(params, x) + noise).astype(dtype)}


def make_dln(
    key,
    widths: Sequence[int],
    rank: int,
    *,
    num_samples: int,
    noise_std: float = 1.0,
    input_std: float = 1.0,
    dtype=jnp.float32,
) -> ToyProblem:
    """Deep linear network teacher with a true product of rank ``rank``.

    Convention (row vectors): f(x) = x @ W1 @ W2 @ ... @ WL with ``params["Wi"]`` of shape
    (H_{i-1}, H_i); this is W_L^T ⋯ W_1^T x in column form, same λ. Data: x ~ N(0,
    input_std² I) of shape (n, H_0), y = f(x) + noise_std·ε of shape (n, H_L).

    Teacher: Wi = U_{i-1} O_i U_i^T with U_i (H_i, r) random orthonormal and O_i (r, r)
    random orthogonal, so every layer has rank r, the product U_0 O_1⋯O_L U_L^T has rank r
    with all singular values 1 (by construction, no float rank test), and activations never
    exceed |x|. Every layer at minimal rank makes the teacher a most singular point of the
    true set, where the local learning coefficient equals Aoyagi's global one (module doc).
    """
    widths = _check_widths(widths)
    r = _check_rank(rank, widths)
    n = _check_int("num_samples", num_samples, 1)
    noise_std = _check_noise_std(noise_std)
    input_std = _check_positive("input_std", input_std)
    num_layers = len(widths) - 1
    key = _as_key(key)
    params, data = _sample_dln(
        key, noise_std, input_std, widths=widths, rank=r, num_samples=n, dtype=jnp.dtype(dtype)
    )
    widths_text = ",".join(map(str, widths))
    return ToyProblem(
        loss_fn=_squared_error_loss(_dln_forward, noise_std),
        params=params,
        data=data,
        learning_coefficient=dln_learning_coefficient(widths, r),
        num_params=sum(a * b for a, b in zip(widths[:-1], widths[1:])),
        name=f"dln({widths_text};r={r})",
        description=(
            f"Deep linear network x @ W1 @ ... @ W{num_layers}, widths {widths} (input first), teacher product "
            f"of rank {r} with every layer of rank {r}; Gaussian noise std {noise_std}, inputs N(0, {input_std}² I), "
            f"n = {n}. λ from Aoyagi (2024)."
        ),
    )


def make_rrr(
    key,
    input_dim: int,
    hidden: int,
    output_dim: int,
    rank: int,
    *,
    num_samples: int,
    noise_std: float = 1.0,
    input_std: float = 1.0,
    dtype=jnp.float32,
) -> ToyProblem:
    """Reduced-rank regression: ``make_dln`` with widths (input_dim, hidden, output_dim).

    params {"W1": (M, H), "W2": (H, N)}; λ from Aoyagi & Watanabe (2005).
    """
    problem = make_dln(
        key,
        (input_dim, hidden, output_dim),
        rank,
        num_samples=num_samples,
        noise_std=noise_std,
        input_std=input_std,
        dtype=dtype,
    )
    return dataclasses.replace(
        problem,
        learning_coefficient=rrr_learning_coefficient(input_dim, hidden, output_dim, rank),
        name=f"rrr({input_dim},{hidden},{output_dim};r={rank})",
        description=problem.description.replace("Deep linear network", "Reduced-rank regression").replace(
            "Aoyagi (2024)", "Aoyagi & Watanabe (2005)"
        ),
    )


def _linear_forward(params, x):
    out = x @ params["W"]
    return out + params["b"] if "b" in params else out


@functools.partial(jax.jit, static_argnames=("shape", "bias", "num_samples", "dtype"))
def _sample_regular(key, noise_std, input_std, *, shape, bias, num_samples, dtype):
    (d_in, d_out), (key_x, key_eps, key_w, key_b) = shape, jax.random.split(key, 4)
    params = {"W": jax.random.normal(key_w, shape, dtype) / math.sqrt(d_in)}
    if bias:
        params["b"] = jax.random.normal(key_b, (d_out,), dtype)
    x = (input_std * jax.random.normal(key_x, (num_samples, d_in), dtype)).astype(dtype)
    noise = noise_std * jax.random.normal(key_eps, (num_samples, d_out), dtype)
    return params, {"x": x, "y": (_linear_forward(params, x) + noise).astype(dtype)}


def make_regular(
    key,
    input_dim: int,
    output_dim: int,
    *,
    num_samples: int,
    bias: bool = True,
    noise_std: float = 1.0,
    input_std: float = 1.0,
    dtype=jnp.float32,
) -> ToyProblem:
    """Single linear layer f(x) = x @ W (+ b): a regular model, λ = d/2.

    params {"W": (input_dim, output_dim)} plus {"b": (output_dim,)} when ``bias``; d counts
    both. Teacher entries W ~ N(0, 1/input_dim), b ~ N(0, 1). Inputs are centred and
    isotropic, so the Fisher information E[(x, 1)(x, 1)^T] ⊗ I is non-degenerate.
    """
    d_in = _check_int("input_dim", input_dim, 1)
    d_out = _check_int("output_dim", output_dim, 1)
    n = _check_int("num_samples", num_samples, 1)
    noise_std = _check_noise_std(noise_std)
    input_std = _check_positive("input_std", input_std)
    params, data = _sample_regular(
        _as_key(key), noise_std, input_std, shape=(d_in, d_out), bias=bool(bias), num_samples=n, dtype=jnp.dtype(dtype)
    )
    num_params = d_in * d_out + (d_out if bias else 0)
    return ToyProblem(
        loss_fn=_squared_error_loss(_linear_forward, noise_std),
        params=params,
        data=data,
        learning_coefficient=regular_learning_coefficient(num_params),
        num_params=num_params,
        name=f"regular({d_in},{d_out};bias={bool(bias)})",
        description=(
            f"Linear layer {d_in} -> {d_out}{' with bias' if bias else ''}, d = {num_params}; Gaussian noise std "
            f"{noise_std}, inputs N(0, {input_std}² I), n = {n}. Regular: λ = d/2."
        ),
    )


def make_normal_crossing(
    key,
    powers: Sequence[int],
    *,
    num_samples: int,
    noise_std: float = 1.0,
    input_std: float = 1.0,
    dtype=jnp.float32,
) -> ToyProblem:
    """Scalar model f(x) = x Π w_i^{k_i} at the true parameter w = 0, so K(w) ∝ Π w_i^{2 k_i}.

    params {"w": (len(powers),)} all zero; data {"x": (n, 1), "y": (n, 1)} with y pure noise
    (the true function is 0, as long as some k_i > 0). λ = normal_crossing_learning_coefficient
    (powers) with a smooth prior, which the engine's Gaussian localization is.
    """
    powers = _check_powers(powers)
    n = _check_int("num_samples", num_samples, 1)
    noise_std = _check_noise_std(noise_std)
    input_std = _check_positive("input_std", input_std)
    key_x, key_eps = jax.random.split(_as_key(key))

    def forward(params, x):
        # Python-int powers lower to integer_pow, whose gradient at w = 0 is finite; a float
        # exponent array would give 0 * 0**-1 = nan for k = 0. Zero powers are skipped.
        w = params["w"]
        return x * math.prod(w[i] ** k for i, k in enumerate(powers) if k > 0)

    params = {"w": jnp.zeros((len(powers),), dtype)}
    x = input_std * jax.random.normal(key_x, (n, 1), dtype)
    y = noise_std * jax.random.normal(key_eps, (n, 1), dtype)
    return ToyProblem(
        loss_fn=_squared_error_loss(forward, noise_std),
        params=params,
        data={"x": x, "y": y},
        learning_coefficient=normal_crossing_learning_coefficient(powers),
        num_params=len(powers),
        name=f"normal_crossing({','.join(map(str, powers))})",
        description=(
            f"f(x) = x Π w_i^k_i with k = {powers} at w = 0 (y is pure noise, std {noise_std}), "
            f"inputs N(0, {input_std}²), n = {n}. λ = min_(k_i>0) 1/(2 k_i)."
        ),
    )
