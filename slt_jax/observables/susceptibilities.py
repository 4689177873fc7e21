"""Susceptibilities, the response matrix and its PCA (Baker et al., arXiv 2504.18274)."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np

from slt_jax._validate import choice
from slt_jax.observables._arrays import (
    _as_array,
    _draws2,
    _draws3,
    _min_draws,
    _pool,
    _positive,
    _same_draws,
)

__all__ = [
    "ResponsePCA",
    "aggregate_susceptibility",
    "response_matrix",
    "response_pca",
    "susceptibility",
    "susceptibility_center",
]


def susceptibility(
    phi: Any,
    probe_losses: Any,
    base_loss: Any,
    nbeta: float,
    convention: str = "slt_jax",
    *,
    delta_center: Any = None,
) -> np.ndarray:
    """Per-probe-sample susceptibilities χ_z, shape (probe_samples,) (estimators.md §4).

    phi: (chains, draws) the observable φ at the draws; for a component susceptibility φ_C =
        L(w) - L(w*) on draws from the posterior restricted to component C.
    probe_losses: (chains, draws, probe_samples) per-sample losses l_z(w) on the probe set.
    base_loss: (chains, draws) the mean loss L(w) on the sampling distribution at the same draws.
    nbeta: nβ of the posterior the draws come from.
    Draws of all chains are pooled.

    convention="slt_jax" (default):  χ_z = -nβ Cov_w[φ, l_z - L], the covariance over the pooled
        draws with ddof=1. Sign: a probe sample whose loss rises together with φ has χ_z < 0.
    convention="devinterp": devinterp v2's `compute_susceptibilities` normalization, which drops
        nβ and centres the (l_z - L) factor with the *unrestricted* run:
            χ_z = -(E_w[φ (l_z - L)] - E_w[φ] c_z),   c_z = E_full[l_z - L],
        plain means over the pooled draws (ddof=0). Pass c_z as `delta_center` (probe_samples,)
        (`susceptibility_center` computes it from an unrestricted run); without it c_z is this
        run's own mean and χ_z = -Cov_w[φ, l_z - L] with ddof=0. So, with the same draws and no
        delta_center, devinterp = slt_jax · (N-1)/(N nβ) for N pooled draws.
    `delta_center` is honoured by both conventions (replacing the run's own mean of l_z - L).
    The aggregate susceptibility over the probe distribution is the mean over probe samples
    (`aggregate_susceptibility`).
    """
    phi_a = _draws2("phi", phi)
    probe = _draws3("probe_losses", probe_losses, "probe_samples")
    base = _draws2("base_loss", base_loss)
    _same_draws("phi", phi_a, "probe_losses", probe)
    _same_draws("phi", phi_a, "base_loss", base)
    _min_draws("phi", phi_a)
    nbeta = _positive("nbeta", nbeta)
    choice("convention", convention, ("slt_jax", "devinterp"))
    f = _pool(phi_a)  # (N,)
    delta = _pool(probe) - _pool(base)[:, None]  # (N, probe_samples): l_z - L
    if delta_center is None:
        center = delta.mean(axis=0)
    else:
        center = _as_array("delta_center", delta_center, 1, "(probe_samples,)")
        if center.shape[0] != delta.shape[1]:
            raise ValueError(
                f"delta_center has {center.shape[0]} entries but probe_losses has {delta.shape[1]} probe samples."
            )
    num = f.shape[0]
    if convention == "slt_jax":
        cov = (f - f.mean()) @ (delta - center) / (num - 1)
        return -nbeta * cov
    # devinterp: E[φ X] - E[φ] c  (plain means)
    return -(f @ delta / num - f.mean() * center)


def susceptibility_center(probe_losses: Any, base_loss: Any) -> np.ndarray:
    """c_z = E_w[l_z - L] over the pooled draws of an (unrestricted) run, shape (probe_samples,).

    The centring devinterp v2 uses for every weight restriction (`delta_center` of
    `susceptibility`). probe_losses: (chains, draws, probe_samples); base_loss: (chains, draws).
    """
    probe = _draws3("probe_losses", probe_losses, "probe_samples")
    base = _draws2("base_loss", base_loss)
    _same_draws("probe_losses", probe, "base_loss", base)
    return np.mean(_pool(probe) - _pool(base)[:, None], axis=0)


def aggregate_susceptibility(chi_per_sample: Any) -> float:
    """χ = mean over probe samples of χ_z (the susceptibility to the whole probe distribution q')."""
    return float(np.mean(_as_array("chi_per_sample", chi_per_sample, 1, "(probe_samples,)")))


def response_matrix(chis: dict) -> np.ndarray:
    """Stack per-component susceptibilities into a (components, probe_samples) matrix.

    chis: {component name: (probe_samples,) χ_z}; rows follow the dict's order (list(chis)).
    """
    if not isinstance(chis, dict) or not chis:
        raise ValueError("chis must be a non-empty dict {component: (probe_samples,) susceptibilities}.")
    rows = [_as_array(f"chis[{k!r}]", v, 1, "(probe_samples,)") for k, v in chis.items()]
    sizes = {k: r.shape[0] for k, r in zip(chis, rows)}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"every entry of chis must have the same number of probe samples; got {sizes}.")
    return np.stack(rows)


class ResponsePCA(NamedTuple):
    explained_variance_ratio: np.ndarray  # (k,)
    components: np.ndarray  # (k, features) principal directions (unit rows)
    scores: np.ndarray  # (observations, k) coordinates of each observation


def response_pca(matrix: Any, k: int, *, observations: str = "probes") -> ResponsePCA:
    """PCA of a (components, probe_samples) response matrix by SVD of the column-centred data.

    observations="probes" (default, as in Baker et al.): each probe sample (token) is a point in
        component space: data X = matrix.T, shape (probes, components), each column (component)
        centred over probes. components: (k, num_components) loadings; scores: (probes, k).
    observations="components": each weight component is a point in probe space: X = matrix,
        each column (probe) centred over components; components (k, probes), scores (components, k).
    explained_variance_ratio: s_j² / Σ s² over all singular values (NaN if X is constant).
    Signs of singular vectors are fixed so each component's largest-|loading| entry is positive.
    """
    m = _as_array("matrix", matrix, 2, "(components, probe_samples)")
    choice("observations", observations, ("probes", "components"))
    x = m.T if observations == "probes" else m
    rank_max = min(x.shape)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= rank_max:
        raise ValueError(
            f"k must be an integer between 1 and {rank_max} (min of the data's shape {x.shape}); got {k!r}."
        )
    xc = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    total = np.sum(s**2)
    ratio = s[:k] ** 2 / total if total > 0 else np.full(k, np.nan)
    vt = vt[:k]
    signs = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    vt = vt * signs[:, None]
    scores = xc @ vt.T
    return ResponsePCA(ratio, vt, scores)
