"""Calibration rules: each a pure function of one run (an LLCResult) or of arrays, returning
`RuleResult(value, passed, words)`. docs/calibration.md gives every rule's source.

The thresholds are health.py's wherever health.py already judges the same thing (plateau,
MALA band, the two estimates agreeing, spread at the localization scale, the SGLD step edge),
so a recommended setting is one whose runs `LLCResult.verdicts` would not flag either.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from slt_jax import health
from slt_jax.calibration.across import (
    LOCALIZATION_DROP_TOL,
    LOCALIZATION_Z,
    STEP_BIAS_TOL,
    STEP_Z,
    RuleResult,
    localization_consistency,
    step_consistency,
)

__all__ = [
    "GOOD_FOR_COMPARISON",
    "LOCALIZATION_DROP_TOL",
    "LOCALIZATION_Z",
    "MALA_BAND",
    "MALA_TARGET",
    "MIN_DRAWS",
    "MIN_EVALS",
    "PLATEAU_REL",
    "PLATEAU_Z",
    "POSITIVE_Z",
    "RULES",
    "RUN_RULES",
    "SPREAD_FRACTION",
    "STEP_BIAS_TOL",
    "STEP_EDGE_LIMIT",
    "STEP_Z",
    "VAR_RATIO",
    "VAR_Z",
    "RuleResult",
    "agreement",
    "badness",
    "evaluate_run",
    "full_data_llc",
    "halves_z",
    "localization_consistency",
    "mala",
    "per_chain_llc",
    "plateau",
    "positive",
    "spread",
    "stability",
    "step_consistency",
    "step_edge",
    "thresholds",
]

# --- thresholds ------------------------------------------------------------------------------
# Reused from health.py (run_verdicts and the per-chain flags), so the two never disagree.
MALA_BAND = health.MALA_BAND  # (0.7, 0.99): devinterp's calibration notebook, estimators.md §4
MALA_TARGET = 0.9  # the acceptance healthy SGLD shows (devinterp; plots.MALA_TYPICAL); for "worst"
PLATEAU_Z, PLATEAU_REL = health.PLATEAU_Z, health.PLATEAU_REL  # last two quarters agree
VAR_Z, VAR_RATIO = health.VAR_Z, health.VAR_RATIO  # mean- vs variance-based λ̂
SPREAD_FRACTION = health.SPREAD_FRACTION  # distance to w* vs sqrt(d/γ)
STEP_EDGE_LIMIT = health.STEP_EDGE_FRACTION * health.STEP_EDGE  # ε·κ below 0.4: variance bias < 11%
# Calibration's own. λ̂ must stand out of its noise: within 2 MCSE of 0 the run has not resolved
# anything (a step so small the chains barely left w*, or too few draws), and no other rule can
# judge it (a chain that does not move plateaus and "agrees" with everything).
POSITIVE_Z = 2.0
MIN_EVALS = 20
# health.plateau_z compares the third and fourth quarters in 10 batches each, so it needs at
# least 4 × 2 × 10 draws to say anything.
MIN_DRAWS = 80


def _quiet(fn):
    """LLCResult's summaries warn when too few chains are healthy; `stability` reports that."""

    def wrapped(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(*args, **kwargs)

    wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
    return wrapped


def _verdict(**given) -> str:
    """One of health.run_verdicts' checks: the inputs of the others are NaN ("not measured")."""
    names = ("llc_mean", "llc_se", "llc_var", "llc_var_se", "mean_distance", "num_params", "localization",
             "step_size", "nbeta", "mala_mean")
    kwargs = {k: given.get(k, math.nan) for k in names}
    found = health.run_verdicts(**kwargs, curvature=given.get("curvature"))
    return found[0] if found else ""


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def _healthy_mean(values: np.ndarray, healthy: np.ndarray) -> float:
    values = np.asarray(values, np.float64)[healthy]
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


# --- rules of one run --------------------------------------------------------------------------
@_quiet
def stability(r) -> RuleResult:
    """Fraction of chains that diverged (excluded by health: non-finite or runaway loss) or whose
    burn-in loss spiked (a step near instability). Passes only at 0: at a calibrated step no
    chain diverges; one in many already says the step sits at the edge."""
    bad = [h for h in r.health if not h.healthy or any(w.startswith("burn-in loss spiked") for w in h.warnings)]
    value = len(bad) / max(len(r.healthy), 1)
    if not bad:
        return RuleResult(0.0, True, f"all {len(r.healthy)} chains stable")
    first = bad[0]
    why = first.reason or next(w for w in first.warnings if w.startswith("burn-in loss spiked"))
    return RuleResult(value, False, f"{len(bad)} of {len(r.healthy)} chains unstable (chain {first.chain}: "
                      f"{why}); use a smaller step size")


@_quiet
def positive(r) -> RuleResult:
    """λ̂ / MCSE (full_data_llc: the full-data λ̂ when there are enough evaluations): λ̂ must be
    above 0 by POSITIVE_Z standard errors (chains above L_n(w*), and far enough from w* to
    measure anything)."""
    mean, se, what = full_data_llc(r)
    if not _finite(mean):
        return RuleResult(math.nan, False, "λ̂ is NaN (too few healthy chains)")
    z = mean / se if _finite(se) and se > 0 else math.copysign(math.inf, mean)
    if z > POSITIVE_Z:
        return RuleResult(z, True, f"{what} = {mean:.4g} ± {se:.2g}, {z:.1f} SE above 0")
    if mean <= 0:
        return RuleResult(z, False, f"{what} = {mean:.4g} ± {se:.2g} is not above 0: the chains sit below L_n(w*) "
                          "(w* not a local minimum, or too weak a localization: increase γ)")
    return RuleResult(z, False, f"{what} = {mean:.4g} ± {se:.2g} is within {POSITIVE_Z:g} SE of 0: the chains "
                      "barely left w* (increase the step size or the draws)")


def step_edge(r) -> RuleResult:
    """ε·κ for plain SGLD, κ = γ (+ nβ·h_max when the run recorded a curvature h_max): below
    STEP_EDGE_LIMIT (health's step-edge verdict). Other samplers step differently: not applied."""
    a = r.attrs
    eps, gamma = float(a["step_size"]), float(a["localization"])
    if a.get("sampler") != "sgld":
        return RuleResult(math.nan, True, f"not applied to sampler {a.get('sampler')!r} (adaptive/momentum step)")
    curvature = a.get("curvature")
    kappa = gamma + (r.nbeta * float(curvature) if _finite(curvature) else 0.0)
    flag = _verdict(step_size=eps, localization=gamma, nbeta=r.nbeta, curvature=curvature)
    if flag:
        return RuleResult(eps * kappa, False, flag)
    return RuleResult(eps * kappa, True, f"ε·κ = {eps * kappa:.3g} < {STEP_EDGE_LIMIT:g}")


@_quiet
def mala(r) -> RuleResult:
    """Mean MALA acceptance of the healthy chains: passes at MALA_BAND[0] or above. Above
    MALA_BAND[1] it still passes, with a note: acceptance near 1 says the step is small against
    the stiffest direction, which in few dimensions still mixes in tens of steps (d = 4: 0.994 at
    εκ = 0.1), so whether the chains mixed is judged where it shows (plateau, agreement, positive,
    step_consistency), not presumed from the acceptance."""
    value = _healthy_mean(r.mala_acceptance, r.healthy)
    low, high = MALA_BAND
    if not _finite(value):
        return RuleResult(math.nan, True, "MALA acceptance not measured (diagnostics without 'mala')")
    if value < low:
        return RuleResult(value, False, _verdict(mala_mean=value))
    if value <= high:
        return RuleResult(value, True, f"MALA acceptance {value:.3f} in [{low}, {high}]")
    return RuleResult(value, True, f"MALA acceptance {value:.3f} above {high} (a small step; whether the chains "
                      "mixed is judged by plateau, agreement and step_consistency)")


@_quiet
def plateau(r) -> RuleResult:
    """Largest relative change of λ̂ between the last two quarters of the draws (health.plateau_z
    on the chains' mean excursion nβ(L - L*), as health flags chains) and between the two halves
    (`halves_z`: λ̂ averages every draw, so a transient in the first half biases it even when the
    end is flat). Each comparison passes within PLATEAU_Z SEs or PLATEAU_REL."""
    if not r.healthy.any():
        return RuleResult(math.nan, False, "no healthy chain")
    draws = r.nbeta * (np.asarray(r.loss_trace, np.float64)[r.healthy] - r.init_loss)
    evals = _evals(r)
    # Halves from the full-data losses where there are enough (no minibatch noise to hide a trend).
    per_chain = r.nbeta * (evals - r.init_loss) if evals is not None else draws
    quarters, halves = health.plateau_z(draws.mean(axis=0)), halves_z(per_chain)
    if quarters is None or halves is None:
        return RuleResult(math.nan, False, f"{draws.shape[1]} draws are too few to judge a plateau "
                          f"(need ≥ {MIN_DRAWS})")
    failed = [(name, z, rel) for name, (z, rel) in (("last two quarters", quarters), ("two halves", halves))
              if z > PLATEAU_Z and rel > PLATEAU_REL]
    rel = max(quarters[1], halves[1])
    if not failed:
        return RuleResult(rel, True, f"λ̂ plateaued (last two quarters differ by {quarters[1]:.1%}, "
                          f"{quarters[0]:.1f} SE; halves by {halves[1]:.1%}, {halves[0]:.1f} SE)")
    name, z, worst = failed[0]
    return RuleResult(rel, False, f"λ̂ has not plateaued (the {name} of the draws differ by {worst:.1%}, "
                      f"{z:.1f} SE): use a larger step size, a longer burn-in or more draws")


def halves_z(per_chain: np.ndarray) -> tuple[float, float] | None:
    """(|Δ| / SE, |Δ| / |mean of the second half|) between the means of the two halves of a
    (chains, draws) trace. SE from the spread of the per-chain differences: chains are independent,
    so it holds whatever the autocorrelation (batch means would underestimate it for traces without
    minibatch noise). None for fewer than 2 chains or MIN_DRAWS/2 draws per half."""
    per_chain = np.asarray(per_chain, np.float64)
    half = per_chain.shape[1] // 2
    if per_chain.shape[0] < 2 or 2 * half < MIN_DRAWS // 2:
        return None
    d = per_chain[:, -half:].mean(axis=1) - per_chain[:, :half].mean(axis=1)
    se = d.std(ddof=1) / math.sqrt(d.size)
    delta = abs(d.mean())
    z = delta / se if se > 0 else (math.inf if delta > 0 else 0.0)
    return float(z), float(delta / max(abs(per_chain[:, -half:].mean()), 1e-12))


@_quiet
def agreement(r) -> RuleResult:
    """λ̂ / variance-based λ̂ (nβ² Var[L_n], Watanabe's heat capacity): both positive and within a
    factor VAR_RATIO. Stricter than health's estimates-agree verdict, which also lets a gap within
    VAR_Z combined SEs pass: a flag needs the disagreement shown, but acceptance needs agreement,
    and a variance-based λ̂ too noisy to resolve a factor 2.7 (measured: 28 vs 76 passed) shows none."""
    mean, var = r.llc_mean, r.llc_var
    ratio = mean / var if _finite(mean) and _finite(var) and var != 0 else math.nan
    if not (_finite(mean) and _finite(var)):
        return RuleResult(ratio, True, "variance-based λ̂ not measured (no full-data evaluations): not checked")
    if ratio > 0 and 1 / VAR_RATIO <= ratio <= VAR_RATIO:
        return RuleResult(ratio, True, f"λ̂ = {mean:.4g} and variance-based λ̂ = {var:.4g} agree (within a "
                          f"factor {VAR_RATIO:g})")
    flag = _verdict(llc_mean=mean, llc_se=r.llc_se, llc_var=var, llc_var_se=r.llc_var_se)
    if flag:
        return RuleResult(ratio, False, flag)
    return RuleResult(ratio, False, f"λ̂ = {mean:.4g} ± {r.llc_se:.2g} and variance-based λ̂ = {var:.4g} ± "
                      f"{r.llc_var_se:.2g} are not within a factor {VAR_RATIO:g}; the gap is within {VAR_Z:g} "
                      "SE only because the runs are too noisy to resolve it, which shows no agreement: use "
                      "longer chains (a longer burn-in if λ̂ is still drifting) or more chains")


@_quiet
def spread(r) -> RuleResult:
    """Mean distance to w* over its value under the localization Gaussian alone (≈ sqrt(d/γ)):
    below SPREAD_FRACTION (health's spread verdict), else λ̂ measures γ more than the loss."""
    gamma = float(r.attrs["localization"])
    d = float(r.attrs["num_params"])
    if "distance" not in r.dataset or gamma <= 0:
        return RuleResult(math.nan, True, "no localization (γ = 0) or no distance trace: not checked")
    distance = _healthy_mean(np.nanmean(r.dataset["distance"].values, axis=1), r.healthy)
    ratio = distance / health.localization_distance(d, gamma) if _finite(distance) else math.nan
    flag = _verdict(mean_distance=distance, num_params=d, localization=gamma)
    if flag:
        return RuleResult(ratio, False, flag)
    return RuleResult(ratio, True, f"distance to w* is {ratio:.0%} of sqrt(d/γ)'s (< {SPREAD_FRACTION:.0%})")


RUN_RULES = {"stability": stability, "positive": positive, "step_edge": step_edge, "mala": mala,
             "plateau": plateau, "agreement": agreement, "spread": spread}
# A neighbour's λ̂ is a reference for step_consistency only if its run passed these (the rules
# that judge the sampling at its step; step_edge is a prediction and spread is about γ).
GOOD_FOR_COMPARISON = ("stability", "positive", "mala", "plateau", "agreement")
RULES = tuple(RUN_RULES) + ("step_consistency", "localization_consistency")


def evaluate_run(r) -> dict[str, RuleResult]:
    return {name: rule(r) for name, rule in RUN_RULES.items()}


def _evals(r):
    """(healthy chains, evaluations) full-data losses, or None when too few to use."""
    if "eval_loss" not in r.dataset or r.too_few_healthy:
        return None
    evals = np.asarray(r.dataset["eval_loss"].values, np.float64)[r.healthy]
    return evals if evals.shape[1] >= MIN_EVALS and np.all(np.isfinite(evals)) else None


@_quiet
def full_data_llc(r) -> tuple[float, float, str]:
    """(λ̂, MCSE, what): from the full-data evaluations when every healthy chain has MIN_EVALS of
    them (no minibatch noise), else the draws' llc_mean and llc_se."""
    evals = _evals(r)
    if evals is None:
        return r.llc_mean, r.llc_se, "λ̂"
    from slt_jax.observables import mcse_mean

    excursion = r.nbeta * (evals - r.init_loss)
    return float(excursion.mean()), mcse_mean(excursion), "full-data λ̂"


@_quiet
def per_chain_llc(r) -> tuple[np.ndarray, str]:
    """(λ̂ per chain, NaN for excluded chains; what): as `full_data_llc`, chain by chain."""
    evals = _evals(r)
    out = np.full(len(r.healthy), np.nan)
    if evals is None:
        if not r.too_few_healthy:
            out[r.healthy] = r.llc_per_chain[r.healthy]
        return out, "λ̂"
    out[r.healthy] = r.nbeta * (evals.mean(axis=1) - r.init_loss)
    return out, "full-data λ̂"


# --- ordering -------------------------------------------------------------------------------------
def badness(rule: str, value: float) -> float:
    """Larger is worse, to pick a rule's worst checkpoint among those with the same verdict."""
    if not _finite(value):
        return -math.inf
    if rule == "positive":
        return -value
    if rule == "mala":
        return abs(value - MALA_TARGET)
    if rule == "agreement":
        return abs(math.log(value)) if value > 0 else math.inf
    return value


def thresholds() -> dict:
    """Every threshold in force, for the calibration file."""
    return {"mala_band": list(MALA_BAND), "plateau_z": PLATEAU_Z, "plateau_rel": PLATEAU_REL,
            "positive_z": POSITIVE_Z, "step_z": STEP_Z, "step_bias_tol": STEP_BIAS_TOL,
            "localization_z": LOCALIZATION_Z, "localization_drop_tol": LOCALIZATION_DROP_TOL, "step_edge_limit": STEP_EDGE_LIMIT,
            "var_z": VAR_Z, "var_ratio": VAR_RATIO, "spread_fraction": SPREAD_FRACTION,
            "stable_fraction": 1.0, "min_draws": MIN_DRAWS, "min_evals": MIN_EVALS, "rules": list(RULES),
            "good_for_comparison": list(GOOD_FOR_COMPARISON)}
