"""Per-chain health verdicts: pure functions of the recorded draws (estimators.md §4).

Two severities. A chain is *excluded* (not averaged into any summary) when its loss went
non-finite or it diverged far above the other chains. It is kept but *flagged* when its λ̂
trace has not plateaued, when it spends most evaluations below L_n(w*) (w* is then not a
local minimum), or when its loss spiked during burn-in (a step size near instability).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ChainHealth(NamedTuple):
    chain: int
    healthy: bool  # False: excluded from every summary statistic
    reason: str  # why it was excluded ("" if healthy)
    warnings: tuple[str, ...]  # flags that do not exclude the chain

    def __str__(self) -> str:
        verdict = "ok" if self.healthy else f"excluded, {self.reason}"
        flags = f" (warnings: {'; '.join(self.warnings)})" if self.warnings else ""
        return f"chain {self.chain}: {verdict}{flags}"


# A chain whose λ̂ exceeds the median by more than this many robust spreads, medians and typical
# standard errors has left the basin of the other chains: excluded as diverged.
DIVERGENCE_SPREADS = 10.0
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
) -> list[ChainHealth]:
    """Verdict per chain. draw_loss (C, D), burnin_loss (C, Db), eval_loss (C, E) full-data."""
    num_chains = draw_loss.shape[0]
    llc = nbeta * (np.nanmean(np.asarray(draw_loss, np.float64), axis=1) - init_loss)
    finite = np.array([bad is None for bad in first_bad_draw])
    se = np.array([batch_means_se(nbeta * np.asarray(row, np.float64)) for row in draw_loss])
    diverged = _diverged(llc, se, finite)
    out = []
    for c in range(num_chains):
        bad = first_bad_draw[c]
        if bad is not None:
            where = f"burn-in step {num_burnin + bad * thin}" if bad < 0 else f"draw {bad}"
            reason = f"non-finite loss at {where}"
        elif diverged[c]:
            reason = f"diverged: λ̂ = {llc[c]:.4g} against a median of {np.median(llc[finite]):.4g} over chains"
        else:
            reason = ""
        warnings = () if reason else _warnings(draw_loss[c], burnin_loss[c], eval_loss[c], init_loss, nbeta)
        out.append(ChainHealth(c, not reason, reason, warnings))
    return out


def _diverged(llc: np.ndarray, se: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """Robust outlier test against the finite chains (needs at least 3 to say anything).

    The margin is 10 times the largest of: the robust spread of λ̂ across chains, |median|,
    and the typical (median) per-chain standard error, so minibatch noise in short chains does not
    trip it while a chain that left the others' basin (and is noisy because of it) still does.
    """
    if finite.sum() < 3:
        return np.zeros_like(finite)
    ref = llc[finite]
    median = np.median(ref)
    spread = 1.4826 * np.median(np.abs(ref - median))
    typical_se = float(np.nan_to_num(np.median(se[finite])))
    margin = DIVERGENCE_SPREADS * max(spread, abs(median), typical_se)
    return finite & (llc - median > margin)


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
