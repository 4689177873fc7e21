"""Per-sample observables: V_n, ν̂, T_n, G_n, WAIC, from losses or streaming moments."""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np

from slt_jax.observables._arrays import (
    _draws3,
    _logsumexp,
    _min_draws,
    _pool,
    _positive,
)

__all__ = [
    "PerSampleMoments",
    "bayes_training_loss",
    "bayes_training_loss_from_moments",
    "functional_variance",
    "functional_variance_from_moments",
    "gibbs_training_loss",
    "gibbs_training_loss_from_moments",
    "singular_fluctuation",
    "singular_fluctuation_from_moments",
    "waic",
    "waic_from_moments",
]


# =========================================================================================
# Per-sample observables: functional variance, singular fluctuation, T_n, G_n, WAIC
#
# Convention: per-sample losses are (chains, draws, samples) on a fixed evaluation set of n
# samples (n = the last axis; for Watanabe's definitions it is the training set). Chains are
# pooled by reshaping to (chains·draws, samples): every draw of every chain is one posterior
# sample. Variances use ddof = 1.
# =========================================================================================


def _per_sample_losses(losses: Any) -> np.ndarray:
    arr = _draws3("losses", losses)
    _min_draws("losses", arr)
    return _pool(arr)


def functional_variance(losses: Any) -> float:
    """Functional variance V_n = Σ_i Var_w[l_i(w)] (estimators.md §4).

    losses: (chains, draws, samples) per-sample losses l_i(w) (negative log-likelihoods, nats) on
    a fixed evaluation set at each draw; chains pooled; Var over the pooled draws with ddof=1.
    """
    pooled = _per_sample_losses(losses)
    return float(np.sum(np.var(pooled, axis=0, ddof=1)))


def singular_fluctuation(losses: Any, beta: float) -> float:
    """Singular fluctuation ν̂ = (β/2) V_n (estimators.md §4; ν = d/2 for a regular model).

    losses: (chains, draws, samples) as in `functional_variance`, on the training set (V_n is
    a sum over the n training samples; with an evaluation subset of m samples ν̂ is m/n of it).
    beta: the posterior's β (= nβ / n, not nβ).
    """
    return 0.5 * _positive("beta", beta) * functional_variance(losses)


def bayes_training_loss(losses: Any) -> float:
    """Bayes training loss T_n = -(1/n) Σ_i log E_w[exp(-l_i(w))] (nats per sample).

    losses: (chains, draws, samples), chains pooled; E_w is the mean over the D pooled draws,
    computed as logsumexp_d(-l_i) - log D. n = number of samples (last axis).
    """
    pooled = _per_sample_losses(losses)
    log_pred = _logsumexp(-pooled, axis=0) - math.log(pooled.shape[0])
    return float(-np.mean(log_pred))


def gibbs_training_loss(losses: Any) -> float:
    """Gibbs training loss G_n = (1/n) Σ_i E_w[l_i(w)] (nats per sample); chains pooled."""
    pooled = _per_sample_losses(losses)
    return float(np.mean(pooled))


def waic(losses: Any, beta: float) -> float:
    """WAIC = T_n + (β/n) V_n (Watanabe's tempered form; nats per sample; estimators.md §4).

    losses: (chains, draws, samples) with n = samples; beta: the posterior's β (= nβ / n).
    """
    beta = _positive("beta", beta)
    pooled = _per_sample_losses(losses)
    n = pooled.shape[1]
    t_n = -np.mean(_logsumexp(-pooled, axis=0) - math.log(pooled.shape[0]))
    v_n = np.sum(np.var(pooled, axis=0, ddof=1))
    return float(t_n + beta / n * v_n)


class PerSampleMoments(NamedTuple):
    """Streaming per-sample moments of losses over draws, for when (draws, samples) does not fit.

    count: number of draws seen; mean, m2: (samples,) running mean and sum of squared deviations
    (Welford; chunks merged with Chan et al.'s formula); logsumexp_neg: (samples,)
    log Σ_draws exp(-l_i(w)). Pure: `update` returns a new accumulator.

        acc = PerSampleMoments.init(num_samples)
        for chunk in chunks:                        # (draws_chunk, samples), any chain order
            acc = acc.update(chunk)
        functional_variance_from_moments(acc), waic_from_moments(acc, beta), ...
    """

    count: int
    mean: np.ndarray
    m2: np.ndarray
    logsumexp_neg: np.ndarray

    @staticmethod
    def init(num_samples: int) -> "PerSampleMoments":
        if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer ≥ 1; got {num_samples!r}.")
        z = np.zeros(int(num_samples))
        return PerSampleMoments(0, z, z.copy(), np.full(int(num_samples), -np.inf))

    def update(self, losses_batch: Any) -> "PerSampleMoments":
        """Merge a (draws_chunk, samples) block of per-sample losses (pool chains beforehand)."""
        batch = np.asarray(losses_batch, dtype=np.float64)
        if batch.ndim != 2 or batch.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"losses_batch must be shaped (draws_chunk, {self.mean.shape[0]}); got {batch.shape}. "
                "Reshape (chains, draws, samples) blocks with .reshape(-1, samples)."
            )
        nb = batch.shape[0]
        if nb == 0:
            return self
        mean_b = batch.mean(axis=0)
        m2_b = np.sum((batch - mean_b) ** 2, axis=0)
        n = self.count + nb
        delta = mean_b - self.mean
        mean = self.mean + delta * (nb / n)
        m2 = self.m2 + m2_b + delta**2 * (self.count * nb / n)
        lse = np.logaddexp(self.logsumexp_neg, _logsumexp(-batch, axis=0))
        return PerSampleMoments(n, mean, m2, lse)

    def merge(self, other: "PerSampleMoments") -> "PerSampleMoments":
        """Combine two accumulators over disjoint draws (Chan et al.), e.g. two chains."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n)
        return PerSampleMoments(n, mean, m2, np.logaddexp(self.logsumexp_neg, other.logsumexp_neg))


def _moments(acc: Any, minimum: int = 2) -> PerSampleMoments:
    if not isinstance(acc, PerSampleMoments):
        raise ValueError(f"acc must be a PerSampleMoments accumulator; got {type(acc).__name__}.")
    if acc.count < minimum:
        raise ValueError(f"acc has seen {acc.count} draw(s); at least {minimum} are needed.")
    return acc


def functional_variance_from_moments(acc: PerSampleMoments) -> float:
    """V_n = Σ_i m2_i / (count - 1): equals `functional_variance` on the same draws."""
    acc = _moments(acc)
    return float(np.sum(acc.m2) / (acc.count - 1))


def singular_fluctuation_from_moments(acc: PerSampleMoments, beta: float) -> float:
    """ν̂ = (β/2) V_n from the accumulator."""
    return 0.5 * _positive("beta", beta) * functional_variance_from_moments(acc)


def bayes_training_loss_from_moments(acc: PerSampleMoments) -> float:
    """T_n = -(1/n) Σ_i (logsumexp_neg_i - log count)."""
    acc = _moments(acc, 1)
    return float(-np.mean(acc.logsumexp_neg - math.log(acc.count)))


def gibbs_training_loss_from_moments(acc: PerSampleMoments) -> float:
    """G_n = mean_i of the running means."""
    acc = _moments(acc, 1)
    return float(np.mean(acc.mean))


def waic_from_moments(acc: PerSampleMoments, beta: float) -> float:
    """WAIC = T_n + (β/n) V_n from the accumulator (n = number of samples)."""
    beta = _positive("beta", beta)
    acc = _moments(acc)
    return bayes_training_loss_from_moments(acc) + beta / acc.mean.shape[0] * functional_variance_from_moments(acc)
