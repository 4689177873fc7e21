"""What a sweep derives from its per-checkpoint results: the summary table, the combined
dataset with a `step` coordinate, the stages of λ̂(t), and the λ̂/loss-against-step plot.
Pure functions of LLCResults and tables; the writes are in `write_outputs`."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np

from slt_jax import atomic

__all__ = ["SUMMARY_COLUMNS", "summary_row", "summary_table", "combined_dataset", "detect_stages", "plot_sweep",
           "write_outputs", "read_summary", "read_combined", "COMBINED_FILE", "PLOT_FILE", "STAGES_FILE"]

# L_n(w*) is `init_loss`: the full-data loss at the checkpoint, where every chain starts.
SUMMARY_COLUMNS = ("step", "llc", "llc_mcse", "llc_std", "llc_var", "rhat", "ess", "mala_mean", "mala_min",
                   "chains_used", "chains_flagged", "chains_excluded", "exclusion_reasons", "verdicts", "init_loss")
COMBINED_FILE, PLOT_FILE, STAGES_FILE = "sweep.nc", "llc_vs_step.png", "stages.csv"
# Fewer checkpoints than this cannot show a stage (stages.detect needs 3 per stage).
MIN_CHECKPOINTS_FOR_STAGES = 6


_TEXT_COLUMNS = ("exclusion_reasons", "verdicts")


def _observable_values(r, observables: list[str]) -> dict:
    out = {}
    for name in observables:
        if name in ("waic", "nu"):
            fn = r.waic if name == "waic" else r.singular_fluctuation
            for es in r.attrs.get("eval_sets") or []:
                out[f"{name}_{es}"] = _or_nan(fn, es)
        else:
            out[name] = _or_nan(getattr, r, name)
    return out


def _or_nan(fn, *args) -> float:
    try:
        return float(fn(*args))
    except Exception:  # e.g. no healthy chain, or no per-sample losses kept: the column says NaN
        return float("nan")


def read_summary(out: str | Path):
    """summary.csv of a sweep as a DataFrame (empty text cells as "", not NaN)."""
    import pandas as pd

    table = pd.read_csv(Path(out) / "summary.csv")
    for c in _TEXT_COLUMNS:
        if c in table:
            column = table[c].astype(object)
            table[c] = column.where(column.notna(), "").astype(str)
    return table


def summary_row(step: int, r, observables: list[str] = ()) -> dict:
    """One checkpoint's row: SUMMARY_COLUMNS, then the requested observables."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        used = r._summarized
        mala = np.asarray(r.mala_acceptance, dtype=float)[used]
        mala = mala[np.isfinite(mala)]
        health = r.health
        row = {
            "step": int(step), "llc": r.llc_mean, "llc_mcse": float(r.llc_se), "llc_std": r.llc_std,
            "llc_var": r.llc_var, "rhat": float(r.rhat), "ess": float(r.ess),
            "mala_mean": float(mala.mean()) if mala.size else float("nan"),
            "mala_min": float(mala.min()) if mala.size else float("nan"),
            "chains_used": int(used.sum()),
            "chains_flagged": int(sum(1 for h in health if h.healthy and h.warnings)),
            "chains_excluded": int(len(health) - used.sum()),
            "exclusion_reasons": "; ".join(f"chain {h.chain}: {h.reason}" for h in health if not h.healthy)
            or (r.too_few_healthy if not used.any() and len(health) else ""),
            "verdicts": " | ".join(r.verdicts),
            "init_loss": r.init_loss,
        }
        row.update(_observable_values(r, observables))
    return row


def summary_table(results: dict, observables: list[str] = ()):
    import pandas as pd

    rows = [summary_row(step, results[step], observables) for step in sorted(results)]
    table = pd.DataFrame(rows)
    if table.empty:
        table = pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    for c in _TEXT_COLUMNS:
        table[c] = table[c].astype(str)
    return table


def combined_dataset(results: dict):
    """Every checkpoint's draws in one xarray Dataset along a `step` coordinate; the scalars that
    differ per checkpoint (init_loss, sampling_s, ...) become variables over `step`."""
    import xarray as xr

    from slt_jax.results.schema import decode_attrs, encode_attrs

    steps = sorted(results)
    parts, per_step = [], {}
    for step in steps:
        ds = results[step].dataset
        attrs = decode_attrs(ds.attrs)
        for k in ("init_loss", "sampling_s", "compile_s", "checkpoint_label", "checkpoints_in_program"):
            if isinstance(attrs.get(k), (int, float)):
                per_step.setdefault(k, []).append(float(attrs[k]))
        parts.append(ds.drop_attrs() if hasattr(ds, "drop_attrs") else ds.assign_attrs({}))
    combined = xr.concat(parts, dim="step", coords="minimal", compat="override", join="outer")
    combined = combined.assign_coords(step=np.asarray(steps, np.int64))
    for k, v in per_step.items():
        if len(v) == len(steps):
            combined[k] = ("step", np.asarray(v))
    first = decode_attrs(results[steps[0]].dataset.attrs)
    same = {k: v for k, v in first.items()
            if all(decode_attrs(results[s].dataset.attrs).get(k) == v for s in steps[1:])}
    combined.attrs = encode_attrs(same)
    return combined


def detect_stages(table):
    """stages.detect on the healthy rows; (StageResult or None, why not)."""
    from slt_jax import stages

    ok = table[np.isfinite(table["llc"]) & np.isfinite(table["llc_mcse"]) & (table["llc_mcse"] > 0)]
    if len(ok) < MIN_CHECKPOINTS_FOR_STAGES:
        return None, f"{len(ok)} checkpoints with a finite λ̂ and standard error; stage detection needs ≥ {MIN_CHECKPOINTS_FOR_STAGES}"
    try:
        return stages.detect(ok["step"].to_numpy(float), ok["llc"].to_numpy(), ok["llc_mcse"].to_numpy(),
                             loss=ok["init_loss"].to_numpy()), ""
    except ValueError as e:
        return None, f"stage detection refused the curve: {e}"


def plot_sweep(table, stage_result, path: Path, *, title: str | None = None) -> Path:
    """λ̂ (with MCSE bars) and L_n(w*) against step, on log (symlog: step 0 allowed) and linear
    step axes, stage boundaries marked."""
    from slt_jax.plots import _pyplot, save_figure

    plt = _pyplot(path)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex="col")
    steps = table["step"].to_numpy(float)
    bounds = list(stage_result.boundaries) if stage_result is not None else []
    for col, scale in enumerate(("symlog", "linear")):
        top, bottom = axes[0, col], axes[1, col]
        top.errorbar(steps, table["llc"], yerr=table["llc_mcse"], fmt="o-", ms=3, capsize=2, label="λ̂ (± MCSE)")
        if np.isfinite(table["llc_var"]).any():
            top.plot(steps, table["llc_var"], "s--", ms=3, alpha=0.6, label="variance-based λ̂")
        bottom.plot(steps, table["init_loss"], "o-", ms=3, color="C2", label="L_n(w*)")
        for ax in (top, bottom):
            if scale == "symlog":
                ax.set_xscale("symlog", linthresh=1.0)
            for b in bounds:
                ax.axvline(b, color="k", ls=":", lw=1)
            ax.grid(alpha=0.3)
        _clip_to_llc(top, table)
        top.set_ylabel("λ̂")
        bottom.set_ylabel("loss at checkpoint")
        bottom.set_yscale("log" if (table["init_loss"] > 0).all() else "linear")
        bottom.set_xlabel("training step" + (" (log)" if scale == "symlog" else ""))
    axes[0, 0].legend(fontsize=8)
    if bounds:
        axes[0, 1].plot([], [], "k:", label="stage boundary")
        axes[0, 1].legend(fontsize=8)
    fig.suptitle(title or "λ̂ and loss over training")
    fig.tight_layout()
    saved = save_figure(fig, path)
    plt.close(fig)  # a sweep in a notebook or a long job must not accumulate open figures
    return saved


def _clip_to_llc(ax, table) -> None:
    """The λ̂ axis spans λ̂ ± MCSE: a variance-based λ̂ far outside (chains mid-escape from a
    saddle have a huge loss variance) would otherwise flatten the curve the plot is for."""
    lo = (table["llc"] - table["llc_mcse"].fillna(0)).to_numpy(float)
    hi = (table["llc"] + table["llc_mcse"].fillna(0)).to_numpy(float)
    lo, hi = lo[np.isfinite(lo)], hi[np.isfinite(hi)]
    if lo.size and hi.size:
        a, b = float(lo.min()), float(hi.max())
        pad = 0.08 * (b - a) if b > a else max(abs(a), 1.0) * 0.1
        ax.set_ylim(a - pad, b + pad)


def write_outputs(out: Path, results: dict, table, *, plots: bool = True) -> dict:
    """Write summary.csv (and .parquet), the combined dataset, stages and the plot; returns
    {"parquet": ..., "stages": ..., "plot": ...} saying what was written or why not."""
    from slt_jax.results.schema import write_netcdf

    notes = {}
    with atomic.atomic_path(out / "summary.csv") as tmp:
        table.to_csv(tmp, index=False)
    if importlib.util.find_spec("pyarrow") is not None:
        with atomic.atomic_path(out / "summary.parquet") as tmp:
            table.to_parquet(tmp, index=False)
        notes["parquet"] = "written"
    else:
        (out / "summary.parquet").unlink(missing_ok=True)
        notes["parquet"] = "skipped: pyarrow is not importable (pip install pyarrow); summary.csv has the same table"
    write_netcdf(combined_dataset(results), out / COMBINED_FILE, kind="sweep")
    stage_result, why = detect_stages(table)
    if stage_result is not None:
        with atomic.atomic_path(out / STAGES_FILE) as tmp:
            stage_result.table.to_csv(tmp, index=False)
        atomic.write_json(out / "stages.json", {"boundaries": [float(b) for b in stage_result.boundaries]})
        notes["stages"] = stage_result
    else:
        for name in (STAGES_FILE, "stages.json"):
            (out / name).unlink(missing_ok=True)
        notes["stages"] = why
    if plots:
        try:
            notes["plot"] = str(plot_sweep(table, stage_result, out / PLOT_FILE))
        except Exception as e:  # a plotting failure must not lose the sweep's numbers
            notes["plot"] = f"failed: {type(e).__name__}: {e}"
    return notes


def read_combined(out: str | Path):
    """The combined dataset of a finished sweep (xarray, dims step, chain, draw, ...)."""
    from slt_jax.results.schema import decode_attrs, read_netcdf

    ds = read_netcdf(Path(out) / COMBINED_FILE)
    ds.attrs = decode_attrs(ds.attrs)
    return ds
