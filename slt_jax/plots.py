"""Plots of an LLCResult (matplotlib; the Agg backend is used when no display is set)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_trace(result, path: str | Path | None = None, *, title: str | None = None, truth: float | None = None):
    """Loss trace and running λ̂ per chain (burn-in shaded). Returns the matplotlib Figure.

    Unhealthy chains are drawn dashed in grey; `truth` (exact λ, if known) as a black line.
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ds = result.dataset
    burn = ds["burnin_loss"].values
    loss = result.loss_trace
    running = result.running_llc()
    nb = burn.shape[1]
    x_burn, x_draw = np.arange(-nb, 0), np.arange(loss.shape[1])

    fig, (ax_loss, ax_llc) = plt.subplots(1, 2, figsize=(12, 4.2))
    for c in range(loss.shape[0]):
        style = dict(lw=0.7, alpha=0.8) if result.healthy[c] else dict(lw=0.7, color="grey", ls="--")
        line = ax_loss.plot(x_draw, loss[c], **style)[0]
        ax_loss.plot(x_burn, burn[c], color=line.get_color(), **{k: v for k, v in style.items() if k != "color"})
        ax_llc.plot(x_draw, running[c], color=line.get_color(), **{k: v for k, v in style.items() if k != "color"})
    if nb:
        ax_loss.axvspan(-nb, 0, color="0.9", zorder=-1, label="burn-in")
    ax_loss.axhline(result.init_loss, color="k", lw=1, ls=":", label="L_n(w*)")
    ax_loss.set(xlabel="draw", ylabel="minibatch loss", title="loss trace")
    ax_loss.legend(loc="upper right", fontsize=8)
    ax_llc.axhline(result.llc_mean, color="C3", lw=1.5, label=f"λ̂ = {result.llc_mean:.3g} ± {result.llc_se:.2g}")
    if truth is not None:
        ax_llc.axhline(truth, color="k", lw=1.5, ls="--", label=f"exact λ = {truth:.4g}")
    ax_llc.set(xlabel="draw", ylabel="running λ̂", title="running λ̂ per chain")
    ax_llc.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
