"""Bayesian influence functions (Kreer et al., arXiv 2509.26544)."""

from __future__ import annotations

from typing import Any

import numpy as np

from slt_jax._validate import choice
from slt_jax.observables._arrays import _draws3, _min_draws, _pool, _same_draws

__all__ = ["bif"]


def _centered(arr: np.ndarray, center: str) -> tuple[np.ndarray, int]:
    """Pooled (N, S) deviations and the ddof-corrected divisor."""
    if center == "pooled":
        pooled = _pool(arr)
        return pooled - pooled.mean(axis=0), pooled.shape[0] - 1
    dev = arr - arr.mean(axis=1, keepdims=True)
    return _pool(dev), arr.shape[0] * (arr.shape[1] - 1)


def bif(
    train_losses: Any,
    query_losses: Any = None,
    kind: str = "covariance",
    *,
    center: str = "pooled",
) -> np.ndarray:
    """Bayesian influence function matrix over posterior draws, shape (n_train, n_query).

    train_losses: (chains, draws, n_train) per-sample losses l_i(w) at the draws.
    query_losses: (chains, draws, n_query) at the same draws; None means the train set itself.

    kind="covariance": BIF(i, j) = -Cov_w[l_i, l_j] (Kreer et al.; estimators.md §4). The minus
        sign makes BIF(i, j) > 0 when up-weighting train sample i lowers query loss j.
    kind="correlation": the Pearson correlation Corr_w[l_i, l_j] *without* the minus sign
        (devinterp's `compute_bif` convention), so identical samples score +1. The two kinds
        therefore have opposite signs: -BIF_cov(i, j) / (σ_i σ_j) = BIF_corr(i, j).
        A sample with zero loss variance over the draws gives NaN in its row/column.

    center="pooled" (default): one mean over all draws of all chains; the covariance is the
        pooled posterior covariance (ddof=1), which is what the BIF asks for when every chain
        samples the same posterior, and it also counts between-chain differences of the means.
    center="per_chain": each chain is centred on its own mean and the within-chain products are
        pooled (divisor chains·(draws-1)): removes between-chain offsets (chains stuck in
        different basins, slow drifts) at the cost of ignoring that part of the posterior spread.

    When the query set is the train set (query_losses None or equal to train_losses) the
    result is exactly symmetric and, for "correlation", has a diagonal of exactly 1.
    """
    choice("kind", kind, ("covariance", "correlation"))
    choice("center", center, ("pooled", "per_chain"))
    train = _draws3("train_losses", train_losses, "n_train")
    if center == "per_chain" and train.shape[1] < 2:
        raise ValueError(f"center='per_chain' needs ≥ 2 draws per chain; train_losses has shape {train.shape}.")
    _min_draws("train_losses", train)
    if query_losses is None:
        query, same = train, True
    else:
        query = _draws3("query_losses", query_losses, "n_query")
        _same_draws("train_losses", train, "query_losses", query)
        same = query.shape == train.shape and np.array_equal(query, train, equal_nan=True)
    dt, divisor = _centered(train, center)
    dq = dt if same else _centered(query, center)[0]
    cov = dt.T @ dq / divisor
    if same:
        cov = 0.5 * (cov + cov.T)
    if kind == "covariance":
        return -cov
    sd_t = np.sqrt(np.sum(dt * dt, axis=0) / divisor)
    sd_q = sd_t if same else np.sqrt(np.sum(dq * dq, axis=0) / divisor)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.clip(cov / np.outer(sd_t, sd_q), -1.0, 1.0)
    if same:
        diag = np.where(sd_t > 0, 1.0, np.nan)
        np.fill_diagonal(corr, diag)
    return corr
