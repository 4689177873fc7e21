"""Thermodynamic observables: WBIC, local free energy, reweighting, multi-temperature λ̂."""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np

from slt_jax.observables._arrays import (
    _as_array,
    _count,
    _draws2,
    _pool,
    _positive,
    _same_draws,
)

__all__ = [
    "MultiTemperatureFit",
    "ReweightingLLC",
    "local_free_energy",
    "multi_temperature_llc",
    "reweight",
    "reweighting_llc",
    "wbic",
]


# =========================================================================================
# WBIC and free energy
# =========================================================================================


def wbic(nll_at_draws: Any, n: int) -> float:
    """WBIC = E_β[n L_n(w)] at β = 1/log n (Watanabe 2013; estimators.md §4).

    nll_at_draws: (chains, draws) full-data *mean* losses L_n(w) at draws from the posterior at
        nβ = n / log n (the default temperature; WBIC is defined at that temperature only).
        Minibatch losses give the same expectation but a noisier estimate.
    n: number of training samples. Returns n · mean over all draws of all chains (nats).
    """
    arr = _draws2("nll_at_draws", nll_at_draws)
    return float(_count("n", n) * np.mean(arr))


def local_free_energy(init_loss: float, llc: float, n: int) -> float:
    """Local free energy F̂ = n L_n(w*) + λ̂ log n (nats; estimators.md §4).

    init_loss: L_n(w*), the full-data mean loss at the trained parameter; llc: λ̂; n: samples.
    """
    n = _count("n", n)
    try:
        init_loss, llc = float(init_loss), float(llc)
    except (TypeError, ValueError):
        raise ValueError(f"init_loss and llc must be numbers; got {init_loss!r}, {llc!r}.") from None
    return n * init_loss + llc * math.log(n)


# =========================================================================================
# Reweighting to nearby temperatures and the multi-temperature estimator
# =========================================================================================


def _reweight_weights(nl: np.ndarray, beta: float, beta_new: float) -> tuple[np.ndarray, float]:
    """Normalized importance weights (pooled draws) and their Kish ESS."""
    log_w = -(beta_new - beta) * _pool(nl)
    log_w = log_w - np.max(log_w)  # log-sum-exp shift: the largest weight is 1 before normalizing
    w = np.exp(log_w)
    w /= np.sum(w)
    return w, float(1.0 / np.sum(w * w))


def reweight(observable: Any, nl: Any, beta: float, beta_new: float) -> tuple[Any, float]:
    """E_β'[O] from draws at β by importance reweighting (estimators.md §4), with its Kish ESS.

        E_β'[O] = E_β[O e^{-(β'-β) nL}] / E_β[e^{-(β'-β) nL}]

    computed with normalized weights w_d = softmax_d(-(β'-β) nL_d) over all draws of all chains
    pooled (the log-sum-exp shift makes it overflow-free).

    observable: (chains, draws) or (chains, draws, ...) values of O at the draws.
    nl: (chains, draws) n·L_n(w) at the same draws (n times the *full-data* mean loss; the
        energy whose Boltzmann factor changes with β; minibatch losses would reweight by noise).
    beta, beta_new: the sampled β and the target β' (β itself, not nβ).
    Returns (value, ess): value a float (or an array of O's trailing shape); ess the Kish effective
    sample size 1/Σ w_d² of the normalized weights, between 1 and chains·draws. It ignores
    autocorrelation. Reweighting is reliable only while ess stays a sizable fraction of the draws,
    i.e. |β'-β| · Std_β[nL] ≲ 1 (locally Std[nL] ≈ sqrt(λ)/β, so |β'-β|/β ≲ 1/sqrt(λ)).
    """
    nl = _draws2("nl", nl)
    obs_arr = _as_array("observable", observable, tuple(range(2, 33)), "(chains, draws[, ...])")
    _same_draws("observable", obs_arr, "nl", nl)
    beta, beta_new = _positive("beta", beta), _positive("beta_new", beta_new)
    w, ess = _reweight_weights(nl, beta, beta_new)
    value = np.tensordot(w, _pool(obs_arr), axes=(0, 0))
    return (float(value) if value.ndim == 0 else value), ess


class MultiTemperatureFit(NamedTuple):
    """Least-squares fit E_β[n L_n] = intercept + llc / β."""

    llc: float  # slope against 1/β: the λ estimate
    intercept: float  # ≈ n L_n at the local minimum (nats)
    llc_se: float  # OLS standard error of the slope (NaN with 2 temperatures)


def multi_temperature_llc(betas: Any, mean_nl_per_beta: Any) -> MultiTemperatureFit:
    """λ̂ as the slope of E_β[n L_n] against 1/β (multi-temperature estimator, estimators.md §4).

    Locally E_β[n L_n] ≈ n L_n(w*) + λ/β, so ordinary least squares of y_k = E_{β_k}[n L_n] on
    x_k = 1/β_k gives slope λ̂ and intercept ≈ n L_n(w*).

    betas: (k,) inverse temperatures β_k > 0 (β, not nβ), at least 2 distinct values.
    mean_nl_per_beta: (k,) the posterior means of n·L_n at each β_k.
    llc_se = sqrt(RSS/(k-2) / Σ(x - x̄)²), the usual OLS slope standard error; it treats the k
    means as independent and exact up to noise, and is NaN for k = 2.
    """
    b = _as_array("betas", betas, 1, "(k,)")
    y = _as_array("mean_nl_per_beta", mean_nl_per_beta, 1, "(k,)")
    if b.shape != y.shape:
        raise ValueError(f"betas {b.shape} and mean_nl_per_beta {y.shape} must have the same length.")
    if not np.all(np.isfinite(b) & (b > 0)):
        raise ValueError(f"betas must be finite and > 0; got {b}.")
    x = 1.0 / b
    if np.unique(x).size < 2:
        raise ValueError(f"betas must contain at least 2 distinct values to fit a slope; got {b}.")
    xm, ym = x.mean(), y.mean()
    sxx = np.sum((x - xm) ** 2)
    slope = float(np.sum((x - xm) * (y - ym)) / sxx)
    intercept = float(ym - slope * xm)
    k = x.size
    if k > 2:
        rss = float(np.sum((y - intercept - slope * x) ** 2))
        se = math.sqrt(rss / (k - 2) / sxx)
    else:
        se = float("nan")
    return MultiTemperatureFit(slope, intercept, se)


class ReweightingLLC(NamedTuple):
    llc: float
    intercept: float
    llc_se: float  # OLS error of the fit only: the points share draws, so it is not a Monte Carlo error
    betas: np.ndarray  # (k,) the temperatures fitted, sampled β included
    mean_nl: np.ndarray  # (k,) reweighted E_β'[n L_n]
    ess_fraction: np.ndarray  # (k,) Kish ESS / number of draws at each β'


def reweighting_llc(
    nl: Any, beta: float, betas_near: Any, *, min_ess_fraction: float = 0.1
) -> ReweightingLLC:
    """Multi-temperature λ̂ from one run: reweight E[n L_n] to nearby β' and fit the slope.

    nl: (chains, draws) n·L_n(w) at draws sampled at `beta` (full-data losses; see `reweight`).
    beta: the sampled β (β = nβ / n). betas_near: (k,) nearby targets β' (β itself is added if
    absent). Each E_β'[n L_n] comes from `reweight`, then `multi_temperature_llc` fits the slope
    against 1/β'. For small |β' - β| the slope tends to β² Var_β[n L_n] = Var_β[nβ L_n], the
    variance ("heat capacity") estimate, so this is a consistency check rather than independent
    information. Issues a UserWarning naming the β' whose Kish ESS falls below
    `min_ess_fraction` of the draws (the reweighted mean there is unreliable).
    """
    nl_arr = _draws2("nl", nl)
    beta = _positive("beta", beta)
    near = _as_array("betas_near", betas_near, 1, "(k,)")
    if not np.all(np.isfinite(near) & (near > 0)):
        raise ValueError(f"betas_near must be finite and > 0; got {near}.")
    if not 0 <= min_ess_fraction <= 1:
        raise ValueError(f"min_ess_fraction must be in [0, 1]; got {min_ess_fraction!r}.")
    targets = np.unique(np.concatenate([near, [beta]]))
    total = nl_arr.shape[0] * nl_arr.shape[1]
    means, fracs = [], []
    for b in targets:
        value, ess = reweight(nl_arr, nl_arr, beta, float(b))
        means.append(value)
        fracs.append(ess / total)
    means, fracs = np.asarray(means), np.asarray(fracs)
    low = fracs < min_ess_fraction
    if np.any(low):
        listing = ", ".join(f"β'={b:.6g} (ESS {f:.1%})" for b, f in zip(targets[low], fracs[low]))
        warnings.warn(
            f"reweighting_llc: Kish ESS below {min_ess_fraction:.0%} of the {total} draws at {listing}; "
            "those reweighted means are unreliable. Move β' closer to β.",
            UserWarning,
            stacklevel=2,
        )
    fit = multi_temperature_llc(targets, means)
    return ReweightingLLC(fit.llc, fit.intercept, fit.llc_se, targets, means, fracs)
