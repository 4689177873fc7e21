"""Calibration plots: λ̂ and MALA acceptance over the grid, running λ̂ of the top candidates.

One panel per (nβ, checkpoint); the step size on a log axis, one line per γ. Filled markers are
cells that pass every rule at every checkpoint, hollow ones fail some rule; a star marks the
recommended cell. Matplotlib with the Agg backend when saving (slt_jax.plots helpers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slt_jax.calibration import rules as R
from slt_jax.plots import _finish, _pyplot

__all__ = ["FILES", "plot_grid", "plot_traces", "save_all"]

FILES = {"llc": "calibration_llc.png", "mala": "calibration_mala.png", "traces": "calibration_traces.png"}


def save_all(cal, out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    paths = [out_dir / FILES["llc"], out_dir / FILES["mala"], out_dir / FILES["traces"]]
    plot_grid(cal, "llc", paths[0])
    plot_grid(cal, "mala", paths[1])
    plot_traces(cal, paths[2])
    return paths


def plot_grid(cal, quantity: str = "llc", path: str | Path | None = None):
    """λ̂ ("llc") or MALA acceptance ("mala") against the step size, per (nβ, checkpoint)."""
    if quantity not in ("llc", "mala"):
        raise ValueError(f"quantity must be 'llc' or 'mala'; got {quantity!r}.")
    plt = _pyplot(path)
    t = cal.table
    nbetas, gammas, labels = sorted(t["nbeta"].unique()), sorted(t["localization"].unique()), cal.checkpoints
    fig, axes = plt.subplots(len(nbetas), len(labels), squeeze=False, sharex=True,
                             figsize=(3.8 * len(labels) + 0.8, 2.9 * len(nbetas) + 0.8))
    for i, nbeta in enumerate(nbetas):
        for j, label in enumerate(labels):
            ax = axes[i][j]
            for c, gamma in enumerate(gammas):
                _line(ax, t[(t["nbeta"] == nbeta) & (t["localization"] == gamma)], f"{quantity}@{label}", f"C{c % 10}",
                      f"γ = {gamma:g}")
            rec = cal.recommended
            if np.isclose(rec["nbeta"], nbeta):
                row = t.iloc[0]
                ax.scatter([rec["step_size"]], [row[f"{quantity}@{label}"]], marker="*", s=180, color="k", zorder=6,
                           label="recommended")
            _axes_style(ax, quantity, t, label)
            ax.set_title(f"checkpoint {label}, nβ = {nbeta:.4g}", fontsize=9)
            if i == len(nbetas) - 1:
                ax.set_xlabel("step size ε")
            if j == 0:
                ax.set_ylabel("λ̂" if quantity == "llc" else "MALA acceptance")
    axes[0][-1].legend(fontsize=7, loc="best")
    what = "λ̂" if quantity == "llc" else "MALA acceptance"
    return _finish(fig, path, plt, title=f"{what} over the calibration grid (filled: passes every rule; "
                   "red ×: no value, the chains diverged)")


def _line(ax, sub, column, color, label):
    sub = sub.sort_values("step_size")
    x, y, ok = sub["step_size"].to_numpy(), sub[column].to_numpy(float), sub["passed"].to_numpy(bool)
    ax.plot(x, y, color=color, lw=1, label=label)
    ax.scatter(x[ok], y[ok], color=color, s=22, zorder=4)
    ax.scatter(x[~ok], y[~ok], facecolors="none", edgecolors=color, s=22, zorder=4)
    # No value (every chain diverged, or too few healthy): a red × on the bottom edge.
    missing = ~np.isfinite(y)
    if missing.any():
        ax.scatter(x[missing], np.full(missing.sum(), 0.03), marker="x", color="tab:red", s=30, zorder=5,
                   transform=ax.get_xaxis_transform(), clip_on=False)


def _axes_style(ax, quantity, t, label):
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    steps = t["step_size"].to_numpy(float)
    ax.set_xlim(steps.min() / 1.6, steps.max() * 1.6)  # NaN cells included (their × marks)
    if quantity == "mala":
        ax.axhspan(*R.MALA_BAND, color="0.92", zorder=-1)
        ax.axhline(R.MALA_TARGET, color="0.5", lw=0.8, ls=":")
        ax.set_ylim(-0.02, 1.02)
        return
    # λ̂ of diverging cells runs off to huge values (or is NaN): scale to the stable cells.
    values = t.loc[t["stability"], f"llc@{label}"].to_numpy(float)
    values = values[np.isfinite(values)]
    if values.size:
        lo, hi = min(0.0, float(values.min())), float(values.max())
        pad = 0.08 * (hi - lo or 1.0)
        ax.set_ylim(lo - pad, hi + pad)
    ax.axhline(0.0, color="0.6", lw=0.6)


def plot_traces(cal, path: str | Path | None = None, *, top: int = 4):
    """Running λ̂ per healthy chain for the `top` ranked cells, by checkpoint (colour and line
    style: chains of different checkpoints share their random numbers, so they may overlap)."""
    plt = _pyplot(path)
    rows = cal.table.head(top)
    fig, axes = plt.subplots(1, len(rows), squeeze=False, figsize=(4.0 * len(rows) + 0.6, 3.4))
    for ax, (_, row) in zip(axes[0], rows.iterrows()):
        for c, label in enumerate(cal.checkpoints):
            r = cal.grid.sel(checkpoint=label, step_size=row["step_size"], localization=row["localization"],
                             nbeta=row["nbeta"])
            running = r.running_llc()[r.healthy]
            for k, trace in enumerate(running):
                ax.plot(trace, color=f"C{c % 10}", lw=0.8, alpha=0.8, ls=("-", "--", ":", "-.")[c % 4],
                        label=f"checkpoint {label}" if k == 0 else None)
        verdict = "passes every rule" if row["passed"] else f"fails: {row['failed']}"
        ax.set_title(f"#{row['rank']}: ε={row['step_size']:.3g}, γ={row['localization']:g}, "
                     f"nβ={row['nbeta']:.4g}\n{verdict}", fontsize=8)
        ax.set_xlabel("draw")
        if ax.get_legend_handles_labels()[0]:  # a cell with no healthy chain draws no trace
            ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("running λ̂ (healthy chains)")
    return _finish(fig, path, plt, title="running λ̂ of the top-ranked cells")
