"""MCMC diagnostics of (chains, draws) traces via ArviZ: MCSE of the mean, bulk ESS, R̂."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["ess_bulk", "mcse_mean", "rhat"]


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
