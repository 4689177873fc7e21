"""Observables as pure functions of the draws (estimators.md §3–4).

Inputs are plain arrays with chains on axis 0 and draws on axis 1, so every function works
on a fresh run, on a reloaded netCDF file, or on draws made by other code.
"""

from __future__ import annotations

import warnings

import numpy as np


def llc_per_chain(draw_loss: np.ndarray, init_loss: float, nbeta: float) -> np.ndarray:
    """λ̂_c = nβ (mean_d L_B(w_{c,d}) - L_n(w*)), shape (chains,).

    draw_loss: (chains, draws) minibatch losses at the post-burn-in draws.
    """
    # float64: float32 means depend on memory layout (pairwise summation order).
    return nbeta * (np.mean(np.asarray(draw_loss, np.float64), axis=1) - init_loss)


def llc_from_variance(eval_loss: np.ndarray, nbeta: float) -> np.ndarray:
    """Variance-based ("heat capacity") λ estimate per chain: Var_p[nβ L_n(w)], shape (chains,).

    Locally nβ(L_n - L_n(w*)) is approximately Gamma(λ, 1), whose variance is λ. Use full-data
    (or fixed evaluation set) losses: minibatch losses carry batch noise nβ² Var_B ≫ λ.
    eval_loss: (chains, evaluations); chains with fewer than 2 evaluations give NaN.
    """
    if eval_loss.shape[1] < 2:
        return np.full(eval_loss.shape[0], np.nan)
    return np.var(nbeta * np.asarray(eval_loss, np.float64), axis=1, ddof=1)


def _arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # ArviZ 0.x announces its 1.0 refactor
        import arviz

    return arviz


def mcse_mean(trace: np.ndarray) -> float:
    """Monte Carlo standard error of the pooled mean of a (chains, draws) trace (ArviZ, ESS-based)."""
    if trace.shape[0] == 0 or trace.shape[1] < 4:
        return float("nan")
    return float(_arviz().mcse(np.asarray(trace, np.float64), method="mean"))


def ess_bulk(trace: np.ndarray) -> float:
    """Bulk effective sample size of a (chains, draws) trace (ArviZ)."""
    if trace.shape[0] == 0 or trace.shape[1] < 4:
        return float("nan")
    return float(_arviz().ess(np.asarray(trace, np.float64), method="bulk"))


def rhat(trace: np.ndarray) -> float:
    """Rank-normalized split-R̂ of a (chains, draws) trace (ArviZ's default method).

    Needs at least 2 chains; NaN otherwise.
    """
    if trace.shape[0] < 2 or trace.shape[1] < 4:
        return float("nan")
    return float(_arviz().rhat(np.asarray(trace, np.float64), method="rank"))


def running_llc(draw_loss: np.ndarray, init_loss: float, nbeta: float) -> np.ndarray:
    """λ̂ from draws 0..d for every d, shape (chains, draws): the trace plot's curve."""
    counts = np.arange(1, draw_loss.shape[1] + 1)
    return nbeta * (np.cumsum(np.asarray(draw_loss, np.float64), axis=1) / counts - init_loss)
