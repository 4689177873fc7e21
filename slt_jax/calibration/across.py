"""Calibration rules across cells: λ̂ along a line of the grid, paired chain by chain (chain c of
every cell shares its random numbers, `fold_in(key(seed), c)`). docs/calibration.md gives the
sources and the thresholds' reasons.

- `step_consistency`: λ̂ must be *shown* not to depend on ε (an equivalence test against an
  adjacent step size).
- `localization_consistency`: λ̂ must not be *shown* to drop when γ grows (against the next smaller
  γ): the localization only lowers λ̂, so a resolved drop means it cuts into the posterior.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["LOCALIZATION_DROP_TOL", "LOCALIZATION_Z", "STEP_BIAS_TOL", "STEP_Z", "RuleResult",
           "localization_consistency", "paired", "step_consistency"]

# λ̂ must not depend on the step size. SGLD's bias is first order in ε (a direction's variance is
# inflated by 1/(1 - εκ/4); minibatch gradient noise adds another term ∝ ε), so two steps a factor
# r apart differ by (1 - 1/r) of the larger step's bias b: b ≈ Δ·r/(r - 1). An equivalence test:
# that bias must be *shown* small, (|Δ| + STEP_Z·SE(Δ))·r/(r - 1) ≤ STEP_BIAS_TOL·λ̂ (a difference
# the draws cannot resolve is no evidence of agreement: slowly mixing runs have huge SEs). For
# half-decade steps that allows |Δ| + 1 SE ≤ 10%. SE(Δ) from per-chain differences: chain c of
# every cell shares its random numbers, so adjacent cells' per-chain λ̂ correlate (0.8-0.98
# measured) and the paired SE is 3-5× smaller than the unpaired one. Per-chain λ̂ from the
# full-data evaluations when each chain has at least MIN_EVALS of them (no minibatch noise), else
# from the draws. STEP_Z = 1 (a one-sided 84% bound): at 2 SE, 8 chains × 1,000 draws on a d = 4
# model passed no cell in most seeds; at 1 SE they pass the step with a 4% bias and fail the one
# with 13%. 15% is about λ̂'s own finite-n error, O(1/log n) (estimators.md §3).
STEP_Z = 1.0
STEP_BIAS_TOL = 0.15
# The localization only lowers λ̂ (a quadratic direction of curvature nβh contributes
# ½·nβh/(nβh + γ); a flat direction is cut off at the scale 1/sqrt(γ)), so λ̂(γ) ≤ λ̂(γ') for
# γ' < γ, and the drop from γ' to γ is a lower bound on γ's own localization bias. A cell fails
# when that drop is *shown* (LOCALIZATION_Z paired SEs) above LOCALIZATION_DROP_TOL of the
# smaller-γ cell's λ̂: the same 15% budget as step_consistency's. Here the test is one of a
# difference (fail only when shown), not of equivalence: the smallest γ has no reference at all,
# and failing cells whose drop the draws cannot resolve would push toward smaller γ, where chains
# may escape, on no evidence. Z = 2 (one-sided 97.7%) for the same reason.
LOCALIZATION_Z = 2.0
LOCALIZATION_DROP_TOL = STEP_BIAS_TOL


class RuleResult(NamedTuple):
    value: float  # what was measured (see each rule)
    passed: bool
    words: str  # the measurement in a sentence, and the fix when it failed


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def step_consistency(steps, per_chain, good, what: str = "λ̂") -> list[RuleResult]:
    """For one line of the grid (one checkpoint, γ, nβ): steps ascending, per_chain[i] the
    per-chain λ̂ of cell i (NaN for excluded chains), good[i] whether its run passed
    GOOD_FOR_COMPARISON. A cell passes when, against an adjacent sound step, the bound on the
    larger step's first-order bias (|Δ| + STEP_Z·SE)·r/(r - 1) / λ̂ from the paired per-chain
    difference is within STEP_BIAS_TOL. value: the smallest such bound."""
    per_chain, good = [np.asarray(x, np.float64) for x in per_chain], np.asarray(good, bool)
    if len(per_chain) == 1:
        return [RuleResult(math.nan, True, "one step size in the grid: not checked")]
    out = []
    for i in range(len(per_chain)):
        found = []
        for j in (i - 1, i + 1):
            if 0 <= j < len(per_chain) and good[j]:
                r = max(steps[i], steps[j]) / min(steps[i], steps[j])
                delta, se, scale = paired(per_chain[i], per_chain[j])
                if _finite(delta) and scale > 0:
                    found.append(((abs(delta) + STEP_Z * se) / scale * r / (r - 1), delta / scale, j))
        if not found:
            out.append(RuleResult(math.nan, False, "no adjacent step size with a sound run to compare λ̂ with"))
            continue
        bias, delta, j = min(found)
        side = "smaller" if j < i else "larger"
        words = (f"{what} = {np.nanmean(per_chain[i]):.4g} vs {np.nanmean(per_chain[j]):.4g} at the next {side} step "
                 f"size ({delta:+.1%}): the larger step's bias is at most {bias:.1%} (paired, {STEP_Z:g} SE)")
        ok = bias <= STEP_BIAS_TOL
        out.append(RuleResult(bias, ok, words + (f" ≤ {STEP_BIAS_TOL:.0%}" if ok else f" > {STEP_BIAS_TOL:.0%}: λ̂ "
                              "depends on the step size, or the runs are too noisy to show it does not; use a "
                              "smaller step size, or more chains")))
    return out


def localization_consistency(gammas, per_chain, stable, what: str = "λ̂") -> list[RuleResult]:
    """For one line of the grid (one checkpoint, ε, nβ): gammas ascending, per_chain[i] the
    per-chain λ̂ of cell i (NaN for excluded chains), stable[i] whether its run passed `stability`.
    Cell i is compared with the nearest smaller γ whose run is stable; it fails when the paired
    drop of λ̂ minus LOCALIZATION_Z SEs exceeds LOCALIZATION_DROP_TOL of that cell's λ̂. The
    reference need not have plateaued: at a minimum λ̂ rises from 0 as the chains spread, so a
    reference still relaxing is low, and a drop against it is a smaller drop than the true one.
    The smallest γ in the grid (and a cell with no stable smaller-γ cell) passes: nothing to
    compare with. value: the drop's lower bound as a fraction of the reference's λ̂ (NaN when not
    compared)."""
    per_chain, stable = [np.asarray(x, np.float64) for x in per_chain], np.asarray(stable, bool)
    out = [RuleResult(math.nan, True, f"γ = {gammas[0]:g} is the smallest localization in the grid: no smaller γ "
                      "to compare with (passes by default)")]
    for i in range(1, len(per_chain)):
        j = next((k for k in range(i - 1, -1, -1) if stable[k]), None)
        if j is None:
            out.append(RuleResult(math.nan, True, "no stable run at a smaller γ to compare with: not checked"))
            continue
        delta, se, _ = paired(per_chain[j], per_chain[i])  # the drop: reference minus this cell
        ref = float(np.nanmean(per_chain[j]))
        here = float(np.nanmean(per_chain[i]))
        if not (_finite(delta) and _finite(ref)) or ref <= 0:
            out.append(RuleResult(math.nan, True, f"{what} at γ = {gammas[j]:g} is {ref:.4g} (not positive, or too few "
                                  "chains): no reference for a drop, not checked"))
            continue
        low = (delta - LOCALIZATION_Z * se) / ref
        words = (f"{what} = {here:.4g} at γ = {gammas[i]:g} vs {ref:.4g} at γ = {gammas[j]:g} ({-delta / ref:+.1%}; "
                 f"the drop is at least {max(low, 0.0):.1%} at {LOCALIZATION_Z:g} paired SE)")
        ok = low <= LOCALIZATION_DROP_TOL
        out.append(RuleResult(low, ok, words + (f" ≤ {LOCALIZATION_DROP_TOL:.0%}" if ok else
                              f" > {LOCALIZATION_DROP_TOL:.0%}: the localization cuts into the posterior "
                              "(it only lowers λ̂); use a smaller γ")))
    return out


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(mean(a - b), its SE, max(|mean a|, |mean b|)) over the chains finite in both (the SE from
    the spread of the per-chain differences); NaNs with fewer than 2 such chains."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    if both.sum() < 2:
        return math.nan, math.nan, math.nan
    d = a[both] - b[both]
    scale = max(abs(a[both].mean()), abs(b[both].mean()))
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)), float(scale)
