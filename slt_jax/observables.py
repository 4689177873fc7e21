"""Observables as pure functions of the draws (estimators.md §3–4).

Inputs are plain arrays with chains on axis 0 and draws on axis 1 (numpy or jax; converted to
float64 numpy), so every function works on a fresh run, on a reloaded netCDF file, or on draws
made by other code. Per-sample losses add a last axis: (chains, draws, samples). Where draws
are pooled, all draws of all chains count as one posterior sample. Variances and covariances
over draws use ddof=1 unless a docstring says otherwise.

The exceptions are `mala_acceptance`, `tree_norm` and `distance_from_center`: pure jax.numpy
over pytrees, callable inside jitted, vmapped programs.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from slt_jax._validate import choice


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


# =========================================================================================
# Shared input checks (numpy side). Every public function validates at entry and names the
# argument in its error; internals trust their inputs.
# =========================================================================================


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


# =========================================================================================
# MALA acceptance and norms (jax; callable inside jitted, vmapped programs)
# =========================================================================================


def _check_same_structure(names: tuple[str, ...], trees: tuple[Any, ...]) -> None:
    ref_def = jax.tree.structure(trees[0])
    ref_shapes = [jnp.shape(x) for x in jax.tree.leaves(trees[0])]
    for name, tree in zip(names[1:], trees[1:]):
        if jax.tree.structure(tree) != ref_def:
            raise ValueError(
                f"{name} must have the same pytree structure as {names[0]}; got {jax.tree.structure(tree)} "
                f"vs {ref_def}."
            )
        shapes = [jnp.shape(x) for x in jax.tree.leaves(tree)]
        if shapes != ref_shapes:
            raise ValueError(f"{name} leaf shapes {shapes} differ from {names[0]}'s {ref_shapes}.")


def _sq_norm(tree: Any) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros(())
    return sum(jnp.sum(jnp.square(x)) for x in leaves)


def tree_norm(tree: Any) -> jax.Array:
    """Euclidean norm sqrt(Σ_leaves Σ_entries x²) of a pytree, a jax scalar (0 for an empty tree).

    Pure jax.numpy: usable inside jit/vmap (per chain under vmap).
    """
    return jnp.sqrt(_sq_norm(tree))


def distance_from_center(w: Any, center: Any) -> jax.Array:
    """||w - center|| over the whole pytree (e.g. the distance of a draw from w*), a jax scalar.

    `w` and `center` must share structure and leaf shapes (checked at trace time).
    """
    _check_same_structure(("center", "w"), (center, w))
    return tree_norm(jax.tree.map(jnp.subtract, w, center))


def mala_acceptance(w, grad_U_w, U_w, w_new, grad_U_new, U_new, step_size) -> jax.Array:
    """Metropolis-adjusted (MALA) acceptance probability of one SGLD move w → w' (estimators.md §4).

    The SGLD proposal has drift ε/2 and variance ε (w' = w - (ε/2)∇U(w) + sqrt(ε) ξ), so

        log q(w'|w) = -||w' - w + (ε/2) ∇U(w)||² / (2ε)
        α = min(1, exp[U(w) - U(w') + log q(w|w') - log q(w'|w)])

    A diagnostic only (the move is never rejected); α ≈ 0.9 is typical of healthy SGLD for LLC
    estimation, and α → 0 signals a step size that is too large.

    w, grad_U_w, w_new, grad_U_new: pytrees with identical structure and leaf shapes (positions
        and potential gradients ∇U, U = nβ L_B + (γ/2)||w - w*||²; masked coordinates should have
        zero gradient and w' = w there, so they contribute nothing).
    U_w, U_new: scalar potentials, both on the *same* minibatch.
    step_size: ε > 0 (a Python number or a traced scalar).
    Returns a jax scalar in [0, 1] (NaN if any input is non-finite). Pure jax.numpy: callable
    inside jit and vmap (e.g. vmapped over chains); exp is taken of min(log-ratio, 0), so it
    cannot overflow.
    """
    _check_same_structure(("w", "grad_U_w", "w_new", "grad_U_new"), (w, grad_U_w, w_new, grad_U_new))
    for name, u in (("U_w", U_w), ("U_new", U_new)):
        if jnp.ndim(u) != 0:
            raise ValueError(f"{name} must be a scalar potential; got shape {jnp.shape(u)}.")
    if not isinstance(step_size, jax.core.Tracer):
        _positive("step_size", step_size)
    eps = step_size
    forward = jax.tree.map(lambda a, b, g: b - a + 0.5 * eps * g, w, w_new, grad_U_w)  # w' - w + ε/2 ∇U(w)
    backward = jax.tree.map(lambda a, b, g: a - b + 0.5 * eps * g, w, w_new, grad_U_new)  # w - w' + ε/2 ∇U(w')
    log_q_forward = -_sq_norm(forward) / (2 * eps)
    log_q_backward = -_sq_norm(backward) / (2 * eps)
    log_ratio = U_w - U_new + log_q_backward - log_q_forward
    return jnp.exp(jnp.minimum(log_ratio, 0.0))


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


# =========================================================================================
# Susceptibilities (Baker et al., arXiv 2504.18274) and response-matrix PCA
# =========================================================================================


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


# =========================================================================================
# Bayesian influence functions (Kreer et al., arXiv 2509.26544)
# =========================================================================================


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
