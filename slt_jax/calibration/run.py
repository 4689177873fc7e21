"""`calibrate`: ε × γ × nβ on a few checkpoints as one `estimate_llc_grid` program, every cell
scored by the rules in `rules.py`, one setting recommended with its reasons, written to a file
the sweep reads (`load_recommendation`). docs/calibration.md explains the rules and choices.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slt_jax import _validate as check
from slt_jax.calibration import rules as R
from slt_jax.calibration.checkpoints import not_a_minimum

__all__ = [
    "CALIBRATION_FILE",
    "DEFAULT_LOCALIZATIONS",
    "DEFAULT_NBETA_FACTORS",
    "DEFAULT_STEP_FACTORS",
    "WHICH",
    "Calibration",
    "calibrate",
    "load_calibration",
    "load_recommendation",
]

CALIBRATION_FILE = "calibration.json"
KIND = "slt_jax.calibration"
FORMAT_VERSION = 1
# ε = factor / nβ* (nβ* = n/log n): the drift is (ε/2)·nβ·∇L, so ε·nβ is the step in units of
# the loss curvature; half-decades from 1e-5 (chains that barely move) to 1 (at the SGLD edge
# εκ = 4 once the curvature exceeds 4, i.e. beyond it for most trained networks).
DEFAULT_STEP_FACTORS = tuple(float(10.0 ** (k / 2)) for k in range(-10, 1))
DEFAULT_LOCALIZATIONS = (1.0, 10.0, 100.0)  # the literature's values: DLNs (1), MNIST MLPs (100)
DEFAULT_NBETA_FACTORS = (0.5, 1.0, 2.0)  # × n/log n: the standard β* = 1/log n and a neighbour each side
WHICH = ("first-middle-last", "all", "first", "middle", "last")
_GRID_ARGS = {"step_size": "step_sizes", "localization": "localizations", "nbeta": "nbetas"}
_RECOMMENDED = ("step_size", "localization", "nbeta")


@dataclass
class Calibration:
    """What `calibrate` found. `recommended`: {"step_size", "localization", "nbeta"}; `reasons`:
    why, in words; `passed`: whether it passes every rule at every checkpoint used; `table`: one
    row per cell (rule verdicts and worst values over the checkpoints, score, rank), best first;
    `grid`: the GridResult with every draw; `checkpoints`: the labels used; `excluded_checkpoints`:
    {label: reason} for those whose runs say w* is not a local minimum (not held to the rules; when
    every one is, none is excluded and `reasons` says so)."""

    recommended: dict
    reasons: list
    passed: bool
    table: Any
    grid: Any
    checkpoints: list
    settings: dict
    runs: dict = field(repr=False, default_factory=dict)  # (ε, γ, nβ) -> [rule results per checkpoint]
    excluded_checkpoints: dict = field(default_factory=dict)

    def write(self, path: str | Path = CALIBRATION_FILE) -> Path:
        """Atomic JSON (slt_jax.atomic). A directory, or a path without a suffix (a directory to be
        made), gets `CALIBRATION_FILE` inside; missing parent directories are created. Returns the path."""
        from slt_jax import __version__, atomic

        path = Path(path)
        if path.is_dir() or not path.suffix:
            path = path / CALIBRATION_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "kind": KIND, "format_version": FORMAT_VERSION, "recommended": self.recommended, "passed": self.passed,
            "reasons": list(self.reasons), "rules": R.thresholds(), "checkpoints": list(self.checkpoints),
            "excluded_checkpoints": dict(self.excluded_checkpoints), **self.settings, "slt_jax_version": __version__,
            "table": self.table.to_dict(orient="records"),
        }
        return atomic.write_json(path, _jsonable(payload), allow_nan=False)

    def plot(self, out_dir: str | Path = ".") -> list[Path]:
        """PNGs in out_dir: λ̂ and MALA acceptance over the grid, traces of the top candidates."""
        from slt_jax.calibration import plots

        return plots.save_all(self, out_dir)

    def summary(self) -> str:
        head = "recommended" if self.passed else "best available (NO cell passes every rule)"
        rec = ", ".join(f"{k}={v:.4g}" for k, v in self.recommended.items())
        kept = [c for c in self.checkpoints if c not in self.excluded_checkpoints]
        where = f"checkpoints {self.checkpoints}" + (f" (held to the rules: {kept})" if self.excluded_checkpoints else "")
        return "\n".join([f"calibration over {len(self.table)} cells × {where}", f"{head}: {rec}"]
                         + [f"  - {line}" for line in self.reasons])

    def __repr__(self) -> str:
        return f"Calibration(\n{self.summary()}\n)"


def calibrate(
    loss_fn: Callable, checkpoints: Any, data: Any, *, batch_size: int,
    step_sizes: Sequence[float] | None = None, localizations: Sequence[float] | None = None,
    nbetas: Sequence | None = None, num_chains: int = 4, num_draws: int = 1000, num_burnin: int = 200,
    seed: int = 0, which: str | Sequence = "first-middle-last", eval_sets: dict | None = None,
    sampler: Any = "sgld", progress: bool = False, **engine_kwargs,
) -> Calibration:
    """Score every cell of step_sizes × localizations × nbetas on the chosen checkpoints (one
    compiled program) and recommend one setting (docs/calibration.md).

    checkpoints: a list of params pytrees or {label: params}, as for estimate_llc_grid. which:
      "first-middle-last" (default), "all", "first", "middle", "last", or a list of labels.
    step_sizes / localizations / nbetas: None for the defaults, DEFAULT_STEP_FACTORS / nβ*,
      DEFAULT_LOCALIZATIONS and DEFAULT_NBETA_FACTORS × nβ* with nβ* = n/log n; nbetas entries may
      be numbers or estimate_llc's rule names.
    engine_kwargs: passed to estimate_llc_grid (not the grid axes, nor components).
    Warns (RuntimeWarning) when no cell passes every rule; the best-scoring one is recommended.
    """
    _refuse_grid_kwargs(engine_kwargs)
    from slt_jax.workflows.grid import estimate_llc_grid
    from slt_jax.workflows.problem import checkpoint_list

    labels, params = checkpoint_list(checkpoints)
    chosen = choose_checkpoints(labels, which)
    n = _num_samples(data)
    eps, gammas, nbetas = _axes(step_sizes, localizations, nbetas, n)
    num_chains = check.integer("num_chains", num_chains, minimum=2,
                               hint="Calibration compares chains (variance-based λ̂, its SE): use at least 2.")
    num_draws = check.integer("num_draws", num_draws, minimum=R.MIN_DRAWS,
                              hint=f"The plateau rule needs at least {R.MIN_DRAWS} draws.")
    grid = estimate_llc_grid(
        loss_fn, {label: params[labels.index(label)] for label in chosen}, data, step_size=eps,
        localization=gammas, nbeta=nbetas, num_chains=num_chains, num_draws=num_draws, num_burnin=num_burnin,
        batch_size=batch_size, sampler=sampler, seed=seed, eval_sets=eval_sets, progress=progress, **engine_kwargs,
    )
    return score(grid)


_SETTINGS = ("sampler", "num_chains", "num_draws", "num_burnin", "batch_size", "seed", "num_samples")


def score(grid) -> Calibration:
    """Apply the rules to every cell of `grid` (a GridResult, e.g. one read back with
    GridResult.from_netcdf; without a component dim) and rank the cells."""
    import pandas as pd

    if "component" in grid.dims:
        raise ValueError("calibration scores a grid without components (one restriction of the weights).")
    settings = {k: grid.attrs.get(k) for k in _SETTINGS}
    n = int(settings["num_samples"])
    settings["nbeta_standard"] = n / math.log(n) if n >= 2 else math.nan  # the nβ preference's anchor

    runs, llc, mala = _evaluate(grid)
    labels = grid.dataset["checkpoint"].values.tolist()
    excluded = {}
    for k, label in enumerate(labels):
        why = not_a_minimum(label, {cell: results[k] for cell, results in runs.items()})
        if why:
            excluded[label] = why
    keep = [k for k, label in enumerate(labels) if label not in excluded] or list(range(len(labels)))
    rows = [_row(cell, [results[k] for k in keep], llc[cell], mala[cell], labels, settings["nbeta_standard"])
            for cell, results in runs.items()]
    table = pd.DataFrame(rows)
    table = table.sort_values("_key", ascending=False, kind="stable").drop(columns="_key").reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    best = table.iloc[0]
    recommended = {k: float(best[k]) for k in _RECOMMENDED}
    passed = bool(best["passed"])
    cell = (recommended["step_size"], recommended["localization"], recommended["nbeta"])
    reasons = _reasons(table, [runs[cell][k] for k in keep], [labels[k] for k in keep], settings["nbeta_standard"])
    if excluded and len(excluded) == len(labels):
        found = [why.replace("excluded from the consistency requirement", "kept") for why in excluded.values()]
        every = ("EVERY chosen checkpoint looks like a non-minimum, so none is excluded: the cells are scored on "
                 "all of them (expect positive to fail) and the best-scoring is recommended; calibrate on "
                 "checkpoints where training has converged (which=)")
        reasons[1:1] = [every, *found]
        excluded = {}
    elif excluded:
        reasons[1:1] = list(excluded.values())
    if not passed:
        warnings.warn("calibration: no cell passes every rule at every checkpoint; recommending the best-scoring "
                      f"one ({reasons[0]})", RuntimeWarning, stacklevel=3)
    return Calibration(recommended, reasons, passed, table, grid, labels, settings, runs, excluded)


# --- validation ------------------------------------------------------------------------------------
def _refuse_grid_kwargs(engine_kwargs: dict) -> None:
    for name, ours in _GRID_ARGS.items():
        if name in engine_kwargs:
            raise TypeError(f"calibrate takes {ours}= (a list), not {name}=.")
    for name in ("components", "checkpoints"):
        if name in engine_kwargs:
            raise TypeError(f"calibrate does not take {name}=.")


def choose_checkpoints(labels: list, which) -> list:
    """The labels `which` names, in checkpoint order, without repeats."""
    if isinstance(which, str):
        if which not in WHICH:
            raise ValueError(f"which={which!r} is not one of {list(WHICH)} (or pass a list of checkpoint labels).")
        picks = {"first": [0], "middle": [(len(labels) - 1) // 2], "last": [len(labels) - 1],
                 "first-middle-last": [0, (len(labels) - 1) // 2, len(labels) - 1],
                 "all": list(range(len(labels)))}[which]
        return [labels[i] for i in sorted(set(picks))]
    try:
        wanted = list(which)
    except TypeError:
        raise TypeError(f"which must be a string in {list(WHICH)} or a list of checkpoint labels; got {which!r}.") from None
    if not wanted:
        raise ValueError("which is an empty list; name at least one checkpoint label.")
    unknown = [w for w in wanted if w not in labels]
    if unknown:
        raise ValueError(f"which names checkpoint labels {unknown} that are not among the checkpoints' labels "
                         f"{labels[:20]}{' ...' if len(labels) > 20 else ''}.")
    return [label for label in labels if label in wanted]


def _axes(step_sizes, localizations, nbetas, n: int):
    """The grid's three axes, defaults filled in; every value checked before anything compiles."""
    from slt_jax.posterior import NBETA_RULES

    if n < 2 and (step_sizes is None or nbetas is None):
        raise ValueError("the default step sizes and nβ use n/log n, undefined for n = 1; pass step_sizes= and nbetas=.")
    standard = n / math.log(n) if n >= 2 else math.nan
    eps = _values("step_sizes", step_sizes, [f / standard for f in DEFAULT_STEP_FACTORS],
                  lambda v: check.positive_number("step_sizes", v))
    gammas = _values("localizations", localizations, DEFAULT_LOCALIZATIONS,
                     lambda v: check.positive_number("localizations", v, allow_zero=True))

    def nbeta(v):
        if isinstance(v, str) or v is None:
            return check.choice("nbetas", v, NBETA_RULES) if isinstance(v, str) else None
        return check.positive_number("nbetas", v)

    default = [f * standard if f != 1.0 else "n_log_n" for f in DEFAULT_NBETA_FACTORS]
    return eps, gammas, _values("nbetas", nbetas, default, nbeta)


def _values(name: str, given, default, check_one) -> list:
    if given is None:
        return list(default)
    values = list(given) if isinstance(given, (list, tuple, np.ndarray)) else [given]
    if not values:
        raise ValueError(f"{name} is empty; pass at least one value (or None for the defaults).")
    return [check_one(v) for v in values]


def _num_samples(data) -> int:
    from slt_jax.streaming import StreamingData

    return data.num_samples if isinstance(data, StreamingData) else check.data_size(data)


# --- scoring ---------------------------------------------------------------------------------------
def _evaluate(grid):
    """Rule results per cell and checkpoint: the run rules, step_consistency along each line of
    step sizes and localization_consistency along each line of localizations."""
    ds = grid.dataset
    eps, gammas, nbetas = (ds[d].values.tolist() for d in ("step_size", "localization", "nbeta"))
    order = sorted(range(len(gammas)), key=lambda i: gammas[i])  # localization_consistency: γ ascending
    runs, llc, mala = {}, {}, {}
    for label in ds["checkpoint"].values.tolist():
        cells = {}
        for g in gammas:
            for b in nbetas:
                line = [grid.sel(checkpoint=label, step_size=e, localization=g, nbeta=b) for e in eps]
                results = [R.evaluate_run(r) for r in line]
                good = [all(res[x].passed for x in R.GOOD_FOR_COMPARISON) for res in results]
                per_chain, what = zip(*(R.per_chain_llc(r) for r in line))
                consistency = R.step_consistency(eps, per_chain, good, what[0])
                for e, res, sc, r, pc in zip(eps, results, consistency, line, per_chain):
                    res["step_consistency"] = sc
                    cells[(e, g, b)] = (res, r, pc, what[0])
        for e in eps:
            for b in nbetas:
                line = [cells[(e, gammas[i], b)] for i in order]
                found = R.localization_consistency([gammas[i] for i in order], [c[2] for c in line],
                                                   [c[0]["stability"].passed for c in line], line[0][3])
                for c, lc in zip(line, found):
                    c[0]["localization_consistency"] = lc
        for cell, (res, r, _, _) in cells.items():
            runs.setdefault(cell, []).append({rule: res[rule] for rule in R.RULES})
            llc.setdefault(cell, []).append(_quiet_mean(r))
            mala.setdefault(cell, []).append(res["mala"].value)
    return runs, llc, mala


def _quiet_mean(r) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return r.llc_mean


def _worst(rule: str, per_checkpoint: list):
    """(index, RuleResult) of the checkpoint where `rule` does worst: failures first."""
    k = max(range(len(per_checkpoint)), key=lambda i: (not per_checkpoint[i][rule].passed,
                                                       R.badness(rule, per_checkpoint[i][rule].value)))
    return k, per_checkpoint[k][rule]


def _row(cell, results, llc, mala, labels, standard) -> dict:
    eps, gamma, nbeta = cell
    row = {"step_size": eps, "localization": gamma, "nbeta": nbeta}
    passes = {rule: all(res[rule].passed for res in results) for rule in R.RULES}
    for rule in R.RULES:
        row[rule] = passes[rule]
        row[f"{rule}_value"] = float(_worst(rule, results)[1].value)
    for label, m, a in zip(labels, llc, mala):
        row[f"llc@{label}"], row[f"mala@{label}"] = float(m), float(a)
    failed = [rule for rule in R.RULES if not passes[rule]]
    row["passed"] = not failed
    row["failed"] = ", ".join(failed)
    row["score"] = float(np.mean([res[rule].passed for res in results for rule in R.RULES]))
    # Best first: stable everywhere, most rules passed everywhere, most (rule, checkpoint) passes;
    # then the preferences (docs/calibration.md): nβ nearest n/log n, smallest γ, largest ε. A cell
    # failing step_consistency ranks by its bias bound first (smallest shown bias, not largest ε).
    bias = row["step_consistency_value"] if not passes["step_consistency"] else 0.0
    row["_key"] = (passes["stability"], len(R.RULES) - len(failed), row["score"],
                   -abs(math.log(nbeta / standard)) if standard > 0 else 0.0, -gamma,
                   -bias if math.isfinite(bias) else -math.inf, eps)
    return row


def _reasons(table, results, labels, standard) -> list[str]:
    best = table.iloc[0]
    where = f"checkpoint{'s' if len(labels) > 1 else ''} {', '.join(map(str, labels))}"
    nbeta_words = "n/log n" if math.isclose(best["nbeta"], standard, rel_tol=1e-6) else \
        f"{best['nbeta'] / standard:.3g} × n/log n"
    head = (f"step_size={best['step_size']:.4g}, localization={best['localization']:.4g}, "
            f"nbeta={best['nbeta']:.4g} ({nbeta_words})")
    passing = int(table["passed"].sum())
    if best["passed"]:
        out = [f"{head} passes all {len(R.RULES)} rules at every checkpoint used ({where}).",
               (f"{passing} of {len(table)} cells pass; among them this one has the nβ nearest n/log n, then the "
                "smallest γ (localization only lowers λ̂), then the largest step size (fastest mixing; "
                "step_consistency bounds its bias).")]
    else:
        out = [(f"NO cell passes every rule at every checkpoint used ({where}); {head} scores best "
                f"(score {best['score']:.2f}, failing: {best['failed']}). Treat its λ̂ with caution: widen the "
                "grid, or use more draws or chains.")]
    for rule in R.RULES:
        k, worst = _worst(rule, results)
        at = f" (worst at checkpoint {labels[k]})" if len(labels) > 1 else ""
        verdict = "passed" if all(res[rule].passed for res in results) else "FAILED"
        out.append(f"{rule}: {verdict}{at}: {worst.words}")
    return out


# --- the file --------------------------------------------------------------------------------------
def _jsonable(obj):
    """Plain JSON: numpy scalars to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def load_calibration(path: str | Path) -> dict:
    """The whole record `Calibration.write` wrote (a directory: its CALIBRATION_FILE), checked."""
    path = Path(path)
    if path.is_dir():
        path = path / CALIBRATION_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no calibration file at {path} (write one with calibrate(...).write(path)).") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a calibration file: not JSON ({e}).") from None
    if not isinstance(record, dict) or record.get("kind") != KIND:
        found = record.get("kind") if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"{path} is not a calibration file (kind {found!r}, expected {KIND!r}); "
                         "write one with calibrate(...).write(path).")
    missing = [k for k in ("recommended", "reasons", "rules", "table", "checkpoints") if k not in record]
    if missing:
        raise ValueError(f"{path} is a damaged calibration file: missing {missing}.")
    _check_recommended(path, record["recommended"])
    return record


def load_recommendation(path: str | Path) -> dict:
    """{"step_size", "localization", "nbeta"} (floats) from a calibration file, for the sweep."""
    return {k: float(v) for k, v in load_calibration(path)["recommended"].items()}


def _check_recommended(path, rec) -> None:
    if not isinstance(rec, dict) or set(rec) != set(_RECOMMENDED):
        raise ValueError(f"{path}: 'recommended' must have exactly the keys {list(_RECOMMENDED)}; got {rec!r}.")
    for k, v in rec.items():
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or v < 0 or (v == 0 and k != "localization"):
            raise ValueError(f"{path}: recommended {k} = {v!r} is not a valid value.")
