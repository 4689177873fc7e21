"""λ̂ per chain: the mean-loss estimator, its running curve, and the variance estimator."""

from __future__ import annotations

import numpy as np

__all__ = ["llc_from_variance", "llc_per_chain", "running_llc"]


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
    return np.var(nbeta * np.ascontiguousarray(eval_loss, np.float64), axis=1, ddof=1)


def running_llc(draw_loss: np.ndarray, init_loss: float, nbeta: float) -> np.ndarray:
    """λ̂ from draws 0..d for every d, shape (chains, draws): the trace plot's curve."""
    counts = np.arange(1, draw_loss.shape[1] + 1)
    return nbeta * (np.cumsum(np.asarray(draw_loss, np.float64), axis=1) / counts - init_loss)
