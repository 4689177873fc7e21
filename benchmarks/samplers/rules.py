"""Step-size rules: chosen on the ε grid's runs, then confirmed on fresh runs.

A rule maps a model to one ε of the sampler's grid: `fixed` (ε = c/nβ, one c) or `mala` (the
largest ε whose SGLD-probe MALA acceptance is ≥ τ: needs no λ). A rule's parameter and the
sampler are chosen on the grid runs (in sample: the grid is also where they are scored, so
those numbers are optimistic); run.py then re-runs the chosen (sampler, ε) per model with a new
seed and more chains, and the acceptance is judged on that confirmation run only.

Errors: `sampler error` = (λ̂ − reference)/reference, the SGMCMC chain against the exact
posterior expectation (what a sampler controls); `error vs λ` = (λ̂ − λ)/λ, what a user gets.
The objective, J = max(median |e| / 0.10, max |e| / 0.25) over the models, is the issue's
acceptance (median ≤ 10%, none > 25%) as one number: J ≤ 1 passes. Selection minimizes J of
|e| + 2 MCSE/reference (J_bound), so a noisy cell cannot win by luck.
"""

from __future__ import annotations

import math
import statistics

MEDIAN_LIMIT, MAX_LIMIT = 0.10, 0.25
MALA_TARGETS = (0.8, 0.9, 0.95, 0.99)


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


def _score(picks: dict[str, dict | None]) -> dict:
    per_model = {}
    for model, r in picks.items():
        if r is None or not math.isfinite(r.get("llc", math.nan)):
            per_model[model] = dict(c=None if r is None else r["c"], llc=math.nan, se=math.nan, err_ref=math.inf,
                                    err_exact=math.inf)
            continue
        llc, se = r["llc"], r.get("mcse", math.nan)
        # The selection scores |error| + 2 MCSE: a cell whose error bar could hide a 40% error is
        # not a safe pick, however small its point error (the crossings' small-ε cells are such).
        noise = 2 * se / abs(r["reference"]) if math.isfinite(se) else math.inf
        per_model[model] = dict(c=r["c"], llc=llc, se=se, err_ref=rel(llc, r["reference"]),
                                err_ref_bound=abs(rel(llc, r["reference"])) + noise,
                                err_exact=rel(llc, r["exact"]), mala=r.get("mala"), sensitivity=r.get("sensitivity"),
                                discretization=r.get("discretization"))
    return per_model


def _summarize(per_model: dict) -> dict:
    ref = [m["err_ref"] for m in per_model.values()]
    ex = [m["err_exact"] for m in per_model.values()]
    fin = lambda xs: [abs(x) for x in xs if math.isfinite(x)] or [math.inf]  # noqa: E731
    bound = [m.get("err_ref_bound", abs(m["err_ref"])) for m in per_model.values()]
    return dict(J=objective(ref), J_bound=objective(bound), median_ref=statistics.median(fin(ref)), max_ref=max(abs(x) for x in ref),
                J_exact=objective(ex), median_exact=statistics.median(fin(ex)), max_exact=max(abs(x) for x in ex))


def candidates(rows, sampler: str, models: list[str] | None = None) -> list[dict]:
    """Every (rule, parameter) for a sampler, each with its in-sample summary over the grid runs."""
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
        cand["models"] = _score(cand["picks"])
        cand["select"] = _summarize(cand["models"])
        cand["picks"] = {m: (None if r is None else r["c"]) for m, r in cand["picks"].items()}
    return out


def summarize_confirmation(rows: list[dict]) -> dict:
    """The acceptance numbers of confirmation rows (one per model)."""
    return _summarize({r["model"]: dict(err_ref=r.get("sampler_err", math.inf), err_exact=r.get("rel_err", math.inf))
                       for r in rows})


def best(cands: list[dict], rule: str | None = None) -> dict | None:
    pool = [c for c in cands if rule is None or c["rule"] == rule]
    return min(pool, key=lambda c: (c["select"]["J_bound"], c["select"]["J"]), default=None)


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


def recommendations(rows) -> dict:
    """{"all": the best (sampler, rule) over every model, family: the best over that family's models}."""
    samplers = list(dict.fromkeys(r["sampler"] for r in rows))
    out = {"all": best([c for s in samplers for c in candidates(rows, s)])}
    families: dict[str, list[str]] = {}
    for r in rows:
        families.setdefault(r["family"], [])
        if r["model"] not in families[r["family"]]:
            families[r["family"]].append(r["model"])
    for fam, models in families.items():
        out[fam] = best([c for s in samplers for c in candidates(rows, s, models)])
    return out
