"""Per-chain health verdicts and run-level consistency verdicts: pure functions of the draws
(estimators.md §4).

Per chain, two severities. A chain is *excluded* (not averaged into any summary) only on evidence
of divergence: its loss went non-finite, or it ran away from L_n(w*) (`runaway`). Being an outlier
among the other chains is *not* such evidence: chains of one run can legitimately differ by orders
of magnitude (issue #9: a finite chain with λ̂ = 0.045 against a median of 0.0017). A chain is kept
but *flagged* when its λ̂ trace has not plateaued, when it spends most evaluations below L_n(w*)
(w* is then not a local minimum), or when its loss spiked during burn-in (a step size near
instability).

Per run, `too_few_healthy` says when the survivors are too few to stand for the run (the summary
statistics are then NaN), and `run_verdicts` flags inconsistencies between the estimates and the
hyperparameters, each with the change that fixes it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["ChainHealth", "RUNAWAY_LLC_FACTOR", "RUNAWAY_SCALES", "RUNAWAY_ACCELERATION",
    "RUNAWAY_MIN_QUARTER", "MIN_HEALTHY_FRACTION", "PLATEAU_Z", "PLATEAU_REL",
    "BELOW_CENTER_FRACTION", "SPIKE_FACTOR", "assess_chains", "runaway", "runaway_growth",
    "too_few_healthy", "batch_means_se", "plateau_z", "VAR_Z", "VAR_RATIO", "SPREAD_FRACTION",
    "STEP_EDGE", "STEP_EDGE_FRACTION", "MALA_BAND", "run_verdicts", "localization_distance"]


class ChainHealth(NamedTuple):
    chain: int
    healthy: bool  # False: excluded from every summary statistic
    reason: str  # why it was excluded ("" if healthy)
    warnings: tuple[str, ...]  # flags that do not exclude the chain

    def __str__(self) -> str:
        verdict = "ok" if self.healthy else f"excluded, {self.reason}"
        flags = f" (warnings: {'; '.join(self.warnings)})" if self.warnings else ""
        return f"chain {self.chain}: {verdict}{flags}"


# --- exclusion: evidence of divergence ---------------------------------------------------------
# |λ̂_c| beyond this many times d/2 is beyond any chain localized at a local minimum: there the
# posterior mean of nβ(L - L*) is λ ≤ d/2 (for a locally quadratic loss it is exactly
# Σ_i ½ nβh_i/(nβh_i + γ) ≤ d/2: localization only lowers it), and a *stable* SGLD step inflates a
# direction's variance by 1/(1 - εκ/4) (κ its curvature of U), ×10 at 90% of the stability edge
# εκ = 4; minibatch gradient noise adds a comparable factor at most at such steps. 100·d/2 leaves a
# further ×10 margin. Below L_n(w*) the same bound applies: a chain that far below has left the
# basin the localization is meant to hold it in (w* not a minimum, or a loss unbounded below).
RUNAWAY_LLC_FACTOR = 100.0
# Runaway without d (`runaway_growth`): over the last quarter of the draws the median excursion
# x = nβ(L - L*) moved away from L* by more than RUNAWAY_SCALES posterior scales, at least
# RUNAWAY_ACCELERATION times as far as in any earlier quarter, and it was still moving that fast
# between the last quarter's two halves (no plateau). The posterior scale at level x is
# sqrt(1 + |x|): nβ(L - L*) ≈ Gamma(λ, 1) has standard deviation sqrt(λ) = sqrt(mean) (the same
# holds below L* at a w* with a gradient, where x is Gaussian with variance |mean|), so a chain at
# equilibrium, however slowly it mixes, stays within a few such scales; 10 leaves a margin for the
# Gamma approximation. A chain still relaxing toward its equilibrium moves by more, but a
# relaxation (a sum of decaying exponentials) slows down, so its last move is its smallest, never
# twice its largest. A chain that jumped onto a higher plateau (a loss step the gradient does not
# see) has stopped moving by the end. An unstable direction grows like e^{t/τ}: all three tests
# pass once the draws span a few e-foldings.
RUNAWAY_SCALES = 10.0
RUNAWAY_ACCELERATION = 2.0
# Quarters shorter than this give medians too noisy to judge (heavy-tailed minibatch noise).
RUNAWAY_MIN_QUARTER = 10
# Below this fraction of healthy chains the survivors are a selected minority (those whose noise
# happened not to trip an instability that is the run's typical behaviour): they are biased toward
# quiet chains and do not stand for the run, so the summary statistics are NaN. At or above it the
# divergences are the exception and the survivors typify the run.
MIN_HEALTHY_FRACTION = 0.5

# --- flags ---------------------------------------------------------------------------------------
# Plateau check: the last two quarters of the draws must agree to within this many standard
# errors (batch means) or this relative tolerance, whichever is looser.
PLATEAU_Z = 4.0
PLATEAU_REL = 0.05
BELOW_CENTER_FRACTION = 0.5
SPIKE_FACTOR = 10.0


def assess_chains(
    draw_loss: np.ndarray,
    burnin_loss: np.ndarray,
    eval_loss: np.ndarray,
    init_loss: float,
    nbeta: float,
    first_bad_draw: list,
    num_burnin: int,
    thin: int,
    *,
    num_params: int | None = None,
) -> list[ChainHealth]:
    """Verdict per chain. draw_loss (C, D), burnin_loss (C, Db), eval_loss (C, E) full-data.

    first_bad_draw[c]: index of chain c's first non-finite draw (negative: in burn-in), or None.
    num_params: the number of sampled parameters d; enables the |λ̂| > 100·d/2 runaway bound
    (without it only non-finite losses and the trend test exclude a chain).
    """
    out = []
    for c in range(draw_loss.shape[0]):
        reason = _exclusion(draw_loss[c], first_bad_draw[c], init_loss, nbeta, num_params, num_burnin, thin)
        warnings = () if reason else _warnings(draw_loss[c], burnin_loss[c], eval_loss[c], init_loss, nbeta)
        out.append(ChainHealth(c, not reason, reason, warnings))
    return out


def _exclusion(row, bad, init_loss, nbeta, num_params, num_burnin, thin) -> str:
    """Why chain `row` is excluded ("" if it is not): non-finite, then runaway."""
    excursion = nbeta * (np.asarray(row, np.float64) - init_loss)
    if bad is None and not np.all(np.isfinite(excursion)):
        bad = int(np.argmin(np.isfinite(excursion)))  # a caller that did not track it
    if bad is not None:
        where = f"burn-in step {num_burnin + bad * thin}" if bad < 0 else f"draw {bad}"
        return f"non-finite loss at {where}"
    return runaway(excursion, num_params)


def runaway(excursion: np.ndarray, num_params: int | None = None) -> str:
    """Evidence that a finite chain diverged, from its excursion nβ(L_B - L_n(w*)) per draw.

    Returns the reason ("diverged: ...") or "" when there is none. Two tests (module constants):
    |λ̂_c| > RUNAWAY_LLC_FACTOR · d/2 when d is known, and the trend test `runaway_growth`.
    """
    llc = float(np.mean(excursion)) if excursion.size else 0.0
    if num_params and abs(llc) > RUNAWAY_LLC_FACTOR * num_params / 2:
        side = "above" if llc > 0 else "below"
        return (
            f"diverged: λ̂ = {llc:.4g}, {side} L_n(w*) by more than {RUNAWAY_LLC_FACTOR:g}·d/2 = "
            f"{RUNAWAY_LLC_FACTOR * num_params / 2:.4g}, which no chain localized at a minimum reaches "
            "(λ ≤ d/2); reduce the step size, or check that the loss is bounded below and w* is a minimum"
        )
    scales = runaway_growth(excursion)
    if scales > RUNAWAY_SCALES:
        return (
            f"diverged: the loss runs away from L_n(w*), accelerating (over the last quarter of the "
            f"draws nβ(L - L*) moved {scales:.3g} posterior scales, more than twice any earlier "
            "quarter's move); reduce the step size, or check that the loss is bounded below"
        )
    return ""


def runaway_growth(excursion: np.ndarray) -> float:
    """How far the median excursion ran away from L* (excursion 0) at the end of the draws, in
    posterior scales sqrt(1 + |x|) plus the medians' noise: the smaller of the last quarter's move
    and the move between the last quarter's two halves (no plateau at the end). 0 unless the last
    quarter moved away from L* and at least RUNAWAY_ACCELERATION times as far as every earlier
    quarter, and for traces of fewer than 4·RUNAWAY_MIN_QUARTER draws. Medians, so minibatch
    noise and isolated spikes do not count."""
    q = len(excursion) // 4
    if q < RUNAWAY_MIN_QUARTER:
        return 0.0
    tail = excursion[len(excursion) - 4 * q :]
    med = np.median(tail.reshape(4, q), axis=1)
    sign = 1.0 if med[3] >= med[2] else -1.0
    moves = sign * np.diff(med)
    if abs(med[3]) <= abs(med[2]) or moves[2] < RUNAWAY_ACCELERATION * max(moves[0], moves[1], 0.0):
        return 0.0
    half = q // 2
    late = np.median(tail[-2 * half : -half]), np.median(tail[-half:])
    still = sign * (late[1] - late[0])
    # Minibatch noise of a median: from first differences, which a slow trend or wander leaves
    # alone (for iid noise of std σ they have std sqrt(2)σ; a median of m draws has SE 1.25σ/sqrt(m)).
    steps = np.diff(excursion)
    sigma = 1.4826 * float(np.median(np.abs(steps - np.median(steps)))) / math.sqrt(2)
    scale = lambda level, m: math.sqrt(1.0 + abs(level)) + 1.2533 * sigma / math.sqrt(m)  # noqa: E731
    return float(min(moves[2] / scale(med[2], q), still / scale(late[0], half)))


def too_few_healthy(num_healthy: int, num_chains: int) -> str:
    """"" when enough chains are healthy to report summary statistics, else the message saying
    how many survived and what to change (MIN_HEALTHY_FRACTION)."""
    if num_chains and num_healthy >= MIN_HEALTHY_FRACTION * num_chains:
        return ""
    survivors = "no survivor" if not num_healthy else "the survivors are a selected minority"
    return (
        f"only {num_healthy} of {num_chains} chains are healthy (fewer than "
        f"{MIN_HEALTHY_FRACTION:.0%}): {survivors}, so λ̂ and the other summary statistics are "
        "NaN (per-chain values stay in llc_per_chain). Divergence was the "
        "typical behaviour: use a smaller step size, check that the loss is bounded below (a loss "
        "with the wrong sign diverges at any step size) and that w* is a trained minimum; see "
        "result.health for each chain's reason."
    )


def batch_means_se(trace: np.ndarray, num_batches: int = 20) -> float:
    """Standard error of a trace's mean from the means of `num_batches` contiguous batches."""
    b = len(trace) // num_batches
    if b < 1:
        return float("nan")
    means = trace[: b * num_batches].reshape(num_batches, b).mean(axis=1)
    return float(means.std(ddof=1) / np.sqrt(num_batches))


def _warnings(draw_loss, burnin_loss, eval_loss, init_loss, nbeta) -> tuple[str, ...]:
    out = []
    plateau = plateau_z(nbeta * (np.asarray(draw_loss, np.float64) - init_loss))
    if plateau is not None:
        z, rel = plateau
        if z > PLATEAU_Z and rel > PLATEAU_REL:
            out.append(f"λ̂ has not plateaued (last two quarters differ by {rel:.0%}, {z:.1f} SE)")
    if eval_loss.size:
        below = float(np.mean(eval_loss < init_loss))
        if below > BELOW_CENTER_FRACTION:
            out.append(f"{below:.0%} of full-data evaluations below L_n(w*): w* may not be a local minimum")
    if burnin_loss.size and draw_loss.size:
        # Against the draws' own upper range, so minibatch noise alone never trips it.
        median, q99 = np.percentile(draw_loss, [50, 99])
        peak = np.max(burnin_loss)
        if q99 > median and peak - median > SPIKE_FACTOR * (q99 - median):
            out.append(
                f"burn-in loss spiked {(peak - median) / (q99 - median):.0f}× above the draws' 99th "
                "percentile range (step size near instability?)"
            )
    return tuple(out)


def plateau_z(trace: np.ndarray, num_batches: int = 10) -> tuple[float, float] | None:
    """(|Δ| / SE, |Δ| / |mean|) between the means of the third and fourth quarter of a trace.

    SE from batch means within each quarter, which absorbs autocorrelation up to a batch's
    length. None when the trace is too short to say.
    """
    q = len(trace) // 4
    if q < 2 * num_batches:
        return None
    third, fourth = trace[2 * q : 3 * q], trace[3 * q : 4 * q]
    b = q // num_batches
    means3 = third[: b * num_batches].reshape(num_batches, b).mean(1)
    means4 = fourth[: b * num_batches].reshape(num_batches, b).mean(1)
    se = np.sqrt(means3.var(ddof=1) / num_batches + means4.var(ddof=1) / num_batches)
    delta = abs(means4.mean() - means3.mean())
    scale = max(abs(trace[2 * q :].mean()), 1e-12)
    return (float(delta / se) if se > 0 else float("inf") if delta > 0 else 0.0), float(delta / scale)


# --- run-level consistency verdicts ---------------------------------------------------------------
# Mean- vs variance-based λ̂: both estimate λ (nβ(L - L*) ≈ Gamma(λ, 1) has mean and variance λ),
# with finite-n corrections of tens of percent (O(1/sqrt(log n)), estimators.md §3). Flag when they
# differ by more than VAR_Z combined standard errors *and* by more than a factor VAR_RATIO. The
# failure it catches is far larger: for a quadratic loss with loss precision a fraction
# a = nβh/(nβh + γ) of the total, mean/variance = 1/a (8 when chains mostly sample the localization).
VAR_Z = 4.0
VAR_RATIO = 2.0
# Spread at the localization scale: flag when the mean distance to w* is at least this fraction of
# its value under the localization Gaussian N(w*, I/γ) alone (≈ sqrt(d/γ)). For a quadratic loss the
# squared ratio is the average over directions of γ/(nβh_i + γ): at 0.8 the localization supplies
# 64% of the posterior precision on average, i.e. the loss hardly constrains the chains.
SPREAD_FRACTION = 0.8
# SGLD stability: the drift multiplies a direction of curvature κ (of U) by 1 - εκ/2 per step,
# unstable at εκ ≥ 4, with the stationary variance inflated by 1/(1 - εκ/4). Flag from
# STEP_EDGE_FRACTION of the edge: at εκ = 0.4 that bias is already 11%, against the few-percent
# accuracy λ̂ is capable of.
STEP_EDGE = 4.0
STEP_EDGE_FRACTION = 0.1
# MALA acceptance of the SGLD probe move. Source: devinterp's examples/sgld_calibration.ipynb ("the
# MALA acceptance criterion should be as close as possible to .9 (but don't worry if you can't reach
# that). MALA acceptance probs of 0 and 1 are indications of unhealthy chains"); estimators.md §4.
# Below 0.7 each step's discretization error is large (that notebook settles for ≈ 0.6 only when
# nothing better is reachable); above 0.99 the step is far smaller than the posterior allows, so the
# chains barely move (slow mixing, a λ̂ that may not have plateaued), the "1" end of that advice.
MALA_BAND = (0.7, 0.99)


def run_verdicts(
    *,
    llc_mean: float,
    llc_se: float,
    llc_var: float,
    llc_var_se: float,
    mean_distance: float,
    num_params: float,
    localization: float,
    step_size: float,
    nbeta: float,
    mala_mean: float,
    curvature: float | None = None,
) -> tuple[str, ...]:
    """Run-level consistency verdicts, each naming its fix; () when all is consistent.

    Flags, never exclusions. NaN (or None) inputs mean "not measured": that verdict is skipped.
    curvature: the top Hessian eigenvalue h of L_n at w*; with it the step-size check uses the
    stiffest direction of U, ε(nβh + γ), instead of the localization term εγ alone. step_size:
    pass NaN for samplers whose effective step is not ε (adaptive or momentum samplers).
    """
    checks = (
        _estimates_agree(llc_mean, llc_se, llc_var, llc_var_se),
        _spread_vs_localization(mean_distance, num_params, localization),
        _step_vs_edge(step_size, localization, nbeta, curvature),
        _mala_in_band(mala_mean),
    )
    return tuple(c for c in checks if c)


def _known(*xs) -> bool:
    return all(x is not None and math.isfinite(float(x)) for x in xs)


def _estimates_agree(mean, se, var, var_se) -> str:
    if not _known(mean, se, var, var_se):
        return ""
    gap, err = mean - var, math.hypot(se, var_se)
    if abs(gap) <= VAR_Z * err or abs(gap) <= (1 - 1 / VAR_RATIO) * max(abs(mean), abs(var)):
        return ""
    head = f"mean-based λ̂ = {mean:.4g} ± {se:.2g} and variance-based λ̂ = {var:.4g} ± {var_se:.2g} disagree"
    if gap > 0:
        return (
            f"{head} (mean-based larger): the chains sample the localization Gaussian more than the "
            "loss; increase nβ, decrease γ (localization), or check the loss scale (per-sample losses "
            "whose mean is L_n)"
        )
    return (
        f"{head} (variance-based larger): the loss trace is not stationary (still drifting, or spikes "
        "from a step near instability); use a longer burn-in or a smaller step size"
    )


def localization_distance(num_params: float, localization: float) -> float:
    """E||δ|| for δ ~ N(0, I/γ) in d dimensions: sqrt(2/γ) Γ((d+1)/2) / Γ(d/2) ≈ sqrt(d/γ)."""
    d = float(num_params)
    return math.sqrt(2.0 / localization) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


def _spread_vs_localization(distance, num_params, localization) -> str:
    if not _known(distance, num_params, localization) or localization <= 0 or num_params < 1:
        return ""
    ref = localization_distance(num_params, localization)
    if distance < SPREAD_FRACTION * ref:
        return ""
    return (
        f"mean distance to w* = {distance:.3g} is {distance / ref:.0%} of its value under the "
        f"localization Gaussian alone ({ref:.3g} ≈ sqrt(d/γ)): the loss barely constrains the chains, "
        "so λ̂ reflects γ more than the loss; increase nβ, decrease γ, or check the loss scale"
    )


def _step_vs_edge(step_size, localization, nbeta, curvature) -> str:
    if not _known(step_size, localization):
        return ""
    with_h = _known(curvature, nbeta)
    kappa = nbeta * curvature + localization if with_h else localization
    x = step_size * kappa
    if x < STEP_EDGE_FRACTION * STEP_EDGE:
        return ""
    what = f"ε·(nβ·h_max + γ) = {x:.3g}" if with_h else f"ε·γ = {x:.3g}"
    term = "the stiffest direction of the potential" if with_h else "the localization term"
    effect = (
        "unstable: the chains diverge" if x >= STEP_EDGE
        else f"its variance is biased by 1/(1 - εκ/4) = {1 / (1 - x / STEP_EDGE):.3g}"
    )
    return (
        f"{what} is {x / STEP_EDGE:.0%} of the SGLD stability edge {STEP_EDGE:g} for {term} ({effect}); "
        f"use a step size below {STEP_EDGE_FRACTION * STEP_EDGE / kappa:.3g}" + ("" if with_h else " or a smaller γ")
    )


def _mala_in_band(mala) -> str:
    if not _known(mala):
        return ""
    low, high = MALA_BAND
    if mala < low:
        return (
            f"MALA acceptance {mala:.3f} is below {low}: each SGLD step has a large discretization "
            "error (healthy ≈ 0.9); use a smaller step size"
        )
    if mala > high:
        return (
            f"MALA acceptance {mala:.3f} is above {high}: the step is much smaller than the posterior "
            "allows and chains mix slowly (healthy ≈ 0.9); a larger step size would need fewer draws"
        )
    return ""
