"""Step-size rules, chosen on one half of the chains and scored on the other.

Every configuration runs C independent chains. A rule's free parameter (the constant c of
ε = c/nβ, or the MALA target τ) and the recommended sampler are chosen on chains [0, C/2) and
scored on chains [C/2, C): the chains are independent, so the score is out of sample for the
Monte Carlo noise (not for the model set, which is small: read the per-model rows too).

Errors: `sampler error` = (λ̂ − reference)/reference, the SGMCMC chain against the exact
posterior expectation (what a sampler controls); `error vs λ` = (λ̂ − λ)/λ, what a user gets.
The objective, J = max(median |e| / 0.10, max |e| / 0.25) over the models, is the issue's
acceptance (median ≤ 10%, none > 25%) as one number: J ≤ 1 passes.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

MEDIAN_LIMIT, MAX_LIMIT = 0.10, 0.25
MALA_TARGETS = (0.8, 0.9, 0.95, 0.99)


def half_estimate(row: dict, half: str) -> tuple[float, float]:
    """Mean and standard error (std/sqrt(k), chains independent) of λ̂ over one half's healthy chains."""
    per_chain = np.asarray(row.get("llc_per_chain") or [], float)
    if per_chain.size == 0:
        return math.nan, math.nan
    k = per_chain.size // 2
    part = per_chain[:k] if half == "select" else per_chain[k:]
    part = part[np.isfinite(part)]
    if part.size < max(2, len(per_chain) // 4):  # most of the half unhealthy: no estimate
        return math.nan, math.nan
    return float(part.mean()), float(part.std(ddof=1) / math.sqrt(part.size))


def rel(value: float, target: float) -> float:
    return (value - target) / target if math.isfinite(value) else math.inf


def objective(errors) -> float:
    errs = [abs(e) if math.isfinite(e) else math.inf for e in errors]
    if not errs:
        return math.inf
    return max(statistics.median(errs) / MEDIAN_LIMIT, max(errs) / MAX_LIMIT)


def pick_fixed(rows_of_model: list[dict], c: float) -> dict | None:
    return next((r for r in rows_of_model if r["c"] == c), None)


def pick_mala(rows_of_model: list[dict], tau: float) -> dict | None:
    """The largest ε whose SGLD-probe MALA acceptance is ≥ τ (the smallest ε if none is)."""
    ok = [r for r in rows_of_model if math.isfinite(r.get("mala", math.nan)) and r["mala"] >= tau]
    pool = ok or rows_of_model
    return max(pool, key=lambda r: r["c"]) if ok else min(pool, key=lambda r: r["c"])


def _by_model(rows, sampler):
    out: dict[str, list[dict]] = {}
    for r in rows:
        if r["sampler"] == sampler and not r.get("error"):
            out.setdefault(r["model"], []).append(r)
    return out


def _score(picks: dict[str, dict | None], half: str) -> dict:
    per_model = {}
    for model, r in picks.items():
        if r is None:
            per_model[model] = dict(c=None, llc=math.nan, se=math.nan, err_ref=math.inf, err_exact=math.inf)
            continue
        llc, se = half_estimate(r, half)
        per_model[model] = dict(c=r["c"], llc=llc, se=se, err_ref=rel(llc, r["reference"]),
                                err_exact=rel(llc, r["exact"]), mala=r.get("mala"), sensitivity=r.get("sensitivity"),
                                discretization=r.get("discretization"))
    return per_model


def _summarize(per_model: dict) -> dict:
    ref = [m["err_ref"] for m in per_model.values()]
    ex = [m["err_exact"] for m in per_model.values()]
    fin = lambda xs: [abs(x) for x in xs if math.isfinite(x)] or [math.inf]  # noqa: E731
    return dict(J=objective(ref), median_ref=statistics.median(fin(ref)), max_ref=max(abs(x) for x in ref),
                J_exact=objective(ex), median_exact=statistics.median(fin(ex)), max_exact=max(abs(x) for x in ex))


def candidates(rows, sampler: str, models: list[str] | None = None) -> list[dict]:
    """Every (rule, parameter) for a sampler, each with its select-half and score-half summary."""
    by_model = _by_model(rows, sampler)
    if models is not None:
        by_model = {m: rs for m, rs in by_model.items() if m in models}
    if not by_model:
        return []
    grid = sorted({r["c"] for rs in by_model.values() for r in rs})
    out = []
    for c in grid:
        picks = {m: pick_fixed(rs, c) for m, rs in by_model.items()}
        out.append(dict(sampler=sampler, rule="fixed", param=c, picks=picks))
    for tau in MALA_TARGETS:
        picks = {m: pick_mala(rs, tau) for m, rs in by_model.items()}
        out.append(dict(sampler=sampler, rule="mala", param=tau, picks=picks))
    for cand in out:
        cand["select"] = _summarize(_score(cand["picks"], "select"))
        cand["score_models"] = _score(cand["picks"], "score")
        cand["score"] = _summarize(cand["score_models"])
        del cand["picks"]
    return out


def best(cands: list[dict], rule: str | None = None) -> dict | None:
    pool = [c for c in cands if rule is None or c["rule"] == rule]
    return min(pool, key=lambda c: (c["select"]["J"], c["select"]["median_ref"]), default=None)


def describe(cand: dict) -> str:
    if cand["rule"] == "fixed":
        return f"ε = {cand['param']:g}/nβ"
    return f"largest ε with SGLD-probe MALA acceptance ≥ {cand['param']:g}"


def sensitivity(rows_of_model_sampler: list[dict]) -> None:
    """Annotate each row with d ln λ̂ / d ln ε from its neighbours on the grid (in place)."""
    rs = sorted(rows_of_model_sampler, key=lambda r: r["c"])
    for i, r in enumerate(rs):
        lo, hi = rs[max(i - 1, 0)], rs[min(i + 1, len(rs) - 1)]
        a, b = lo.get("llc", math.nan), hi.get("llc", math.nan)
        ok = lo is not hi and a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)
        r["sensitivity"] = math.log(b / a) / math.log(hi["c"] / lo["c"]) if ok else math.nan
