"""Plots of an LLCResult (matplotlib; the Agg backend is used when no display is set)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_trace", "save_figure", "MALA_TYPICAL", "plot_mala", "plot_loss_histograms",
    "plot_diagnostics", "plot_bif", "plot_susceptibility_pca", "save_standard_plots"]


def plot_trace(result, path: str | Path | None = None, *, title: str | None = None, truth: float | None = None):
    """Loss trace and running λ̂ per chain (burn-in shaded). Returns the matplotlib Figure.

    Unhealthy chains are drawn dashed in grey; `truth` (exact λ, if known) as a black line.
    """
    plt = _pyplot(path)
    ds = result.dataset
    burn = ds["burnin_loss"].values
    loss = result.loss_trace
    running = result.running_llc()
    nb = burn.shape[1]
    x_burn, x_draw = np.arange(-nb, 0), np.arange(loss.shape[1])

    fig, (ax_loss, ax_llc) = plt.subplots(1, 2, figsize=(12, 4.2))
    for c in range(loss.shape[0]):
        style = _chain_style(result, c)
        ax_loss.plot(x_draw, loss[c], **style)
        ax_loss.plot(x_burn, burn[c], **style)
        ax_llc.plot(x_draw, running[c], **style)
    _clip_to_healthy(ax_loss, result.healthy, loss, burn, extra=[result.init_loss])
    _clip_to_healthy(ax_llc, result.healthy, running)
    if nb:
        ax_loss.axvspan(-nb, 0, color="0.9", zorder=-1, label="burn-in")
    ax_loss.axhline(result.init_loss, color="k", lw=1, ls=":", label="L_n(w*)")
    ax_loss.set(xlabel="draw", ylabel="minibatch loss", title="loss trace")
    ax_loss.legend(loc="upper right", fontsize=8)
    ax_llc.axhline(result.llc_mean, color="k", lw=2, label=f"λ̂ = {result.llc_mean:.3g} ± {result.llc_se:.2g}")
    if truth is not None:
        ax_llc.axhline(truth, color="k", lw=1.5, ls="--", label=f"exact λ = {truth:.4g}")
    ax_llc.set(xlabel="draw", ylabel="running λ̂", title="running λ̂ per chain")
    ax_llc.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
        plt.close(fig)
    return fig


def save_figure(fig, path: str | Path, **savefig_kwargs) -> Path:
    """fig.savefig to `path` atomically (slt_jax.atomic): a failed or killed save leaves any
    earlier image intact. The format follows the suffix of `path`, as with savefig."""
    from slt_jax.atomic import atomic_path

    path = Path(path)
    savefig_kwargs.setdefault("dpi", 110)
    if not path.suffix:  # an explicit format: savefig must not append an extension to the temporary
        import matplotlib

        savefig_kwargs.setdefault("format", matplotlib.rcParams["savefig.format"])
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **savefig_kwargs)
    return path


# =========================================================================================
# Shared helpers
# =========================================================================================

MALA_TYPICAL = 0.9  # MALA acceptance typical of healthy SGLD for LLC estimation (estimators.md §4)


def _pyplot(path):
    """pyplot, switching to the Agg backend first when the figure is to be saved to a file.

    Only when pyplot is not imported yet (a script or a headless job): once a notebook or an
    application has chosen its backend, switching would silently turn off its inline plots.
    """
    import sys

    import matplotlib

    if path is not None and "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path, plt, *, title=None, rect=None):
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=rect)
    if path is not None:
        save_figure(fig, path)
        plt.close(fig)
    return fig


def _chain_style(result, c: int) -> dict:
    """Chain c's colour C{c} when healthy; grey and dashed when not."""
    if result.healthy[c]:
        return dict(color=f"C{c % 10}", lw=0.8, alpha=0.85)
    return dict(color="grey", lw=0.8, ls="--", alpha=0.8)


def _chain_legend(ax, result, *, loc="best", extra=()):
    """A compact legend: chains by index (≤ 8 chains), an 'unhealthy' entry if any, then `extra`."""
    from matplotlib.lines import Line2D

    num = len(result.healthy)
    handles = []
    if num <= 8:
        handles = [Line2D([], [], **_chain_style(result, c), label=f"chain {c}") for c in range(num) if result.healthy[c]]
    bad = int((~result.healthy).sum())
    if bad:
        handles.append(Line2D([], [], color="grey", ls="--", lw=0.8, label=f"unhealthy ({bad}, excluded)"))
    handles += list(extra)
    if handles:
        ax.legend(handles=handles, loc=loc, fontsize=7, ncol=2 if len(handles) > 4 else 1)


def _clip_to_healthy(ax, healthy, *arrays, extra=(), log=False) -> bool:
    """Limit the y-range to the healthy chains' values when unhealthy ones stray far outside.

    arrays: (chains, x) arrays plotted on `ax`. Returns True (and notes it on the plot) if clipped.
    """
    healthy = np.asarray(healthy, bool)
    good = np.concatenate([np.ravel(a[healthy]) for a in arrays] + [np.ravel(np.asarray(extra, np.float64))])
    good = good[np.isfinite(good)]
    if log:
        good = good[good > 0]
    allv = np.concatenate([np.ravel(a) for a in arrays])
    allv = allv[np.isfinite(allv)]
    if good.size == 0 or allv.size == 0 or healthy.all():
        return False
    lo, hi = float(good.min()), float(good.max())
    if log:
        far = allv.max() > hi * 10 or allv[allv > 0].min(initial=lo) < lo / 10
        limits = (lo / 1.3, hi * 1.3)
    else:
        span = hi - lo or abs(hi) or 1.0
        far = allv.max() > hi + 2 * span or allv.min() < lo - 2 * span
        limits = (lo - 0.08 * span, hi + 0.08 * span)
    if not far:
        return False
    ax.set_ylim(*limits)
    ax.text(0.99, 0.01, "y-range of the healthy chains; unhealthy ones leave it", transform=ax.transAxes,
            ha="right", va="bottom", fontsize=7, color="0.3",
            bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.8))
    return True


def _no_data(ax, message: str):
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4", wrap=True)
    ax.set(xticks=[], yticks=[])


def _has_evals(result) -> bool:
    ds = result.dataset
    return ds.sizes.get("eval_draw", 0) > 0 and bool(np.isfinite(ds["eval_loss"].values).any())


def _eval_x(result) -> np.ndarray:
    return np.asarray(result.dataset["eval_draw"].values)


# =========================================================================================
# Run diagnostics
# =========================================================================================


def plot_mala(result, path: str | Path | None = None, *, title: str | None = None):
    """MALA acceptance of the SGLD probe move per chain over the evaluations, and per-chain means.

    Left: acceptance at each evaluation (x = the draw it was taken at); right: each chain's mean
    (bar) with its individual evaluations (dots). The dotted line marks 0.9, typical of healthy
    SGLD for LLC estimation; acceptance → 0 means the step size is too large. A diagnostic only:
    the probe move is never accepted or rejected. Unhealthy chains are grey/dashed.
    """
    plt = _pyplot(path)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw=dict(width_ratios=(2.2, 1)))
    num = len(result.healthy)
    if not _has_evals(result):
        for ax in (ax_t, ax_m):
            _no_data(ax, "no evaluations in this run\n(eval_every=None): no MALA probe")
        ax_t.set_title("MALA acceptance of the SGLD probe move")
        return _finish(fig, path, plt, title=title)

    acc = result.dataset["mala_acceptance"].values.astype(np.float64)
    x = _eval_x(result)
    for c in range(num):
        style = _chain_style(result, c)
        ax_t.plot(x, acc[c], marker="." if x.size <= 60 else None, ms=3, **style)
    ref = ax_t.axhline(MALA_TYPICAL, color="k", ls=":", lw=1.2, label=f"{MALA_TYPICAL:g}: typical when healthy")
    ax_t.set(xlabel="draw", ylabel="MALA acceptance α", title="MALA acceptance of the SGLD probe move")
    lo = np.nanmin(acc) if np.isfinite(acc).any() else 0.0
    ax_t.set_ylim(min(lo, 0.8) - 0.03, 1.03)
    _chain_legend(ax_t, result, loc="lower left", extra=[ref])

    with np.errstate(invalid="ignore"):
        means = np.array([np.nanmean(a) if np.isfinite(a).any() else np.nan for a in acc])
    colors = [_chain_style(result, c)["color"] for c in range(num)]
    chains = np.arange(num)
    bars = ax_m.bar(chains, np.nan_to_num(means, nan=0.0), color=colors, alpha=0.45, width=0.7, edgecolor=colors)
    for c, bar in enumerate(bars):
        if not result.healthy[c]:
            bar.set_hatch("//")
    rng = np.random.default_rng(0)
    for c in range(num):
        jitter = rng.uniform(-0.2, 0.2, size=acc.shape[1])
        ax_m.scatter(c + jitter, acc[c], s=6, color=colors[c], alpha=0.7, lw=0)
    ax_m.axhline(MALA_TYPICAL, color="k", ls=":", lw=1.2)
    ax_m.set_ylim(ax_t.get_ylim())
    ax_m.set(xlabel="chain", ylabel="mean α per chain", title="per-chain mean (bars) and evaluations (dots)")
    ax_m.title.set_fontsize(10)
    ax_m.set_xticks(chains if num <= 16 else chains[:: int(np.ceil(num / 16))])
    fig.text(
        0.5, 0.01,
        "Diagnostic of one SGLD probe move per evaluation (same minibatch; never rejected). "
        f"α ≈ {MALA_TYPICAL:g} is typical of healthy LLC estimation; α → 0 means the step size is too large.",
        ha="center", va="bottom", fontsize=8, color="0.3",
    )
    return _finish(fig, path, plt, title=title, rect=(0, 0.05, 1, 1))


def _gamma_pdf(x: np.ndarray, shape: float) -> np.ndarray:
    """Gamma(shape, scale 1) density."""
    import math

    out = np.zeros_like(x, dtype=np.float64)
    pos = x > 0
    out[pos] = np.exp((shape - 1) * np.log(x[pos]) - x[pos] - math.lgamma(shape))
    return out


def plot_loss_histograms(result, path: str | Path | None = None, *, bins: int = 40, title: str | None = None):
    """Histograms of nβ(L − L_n(w*)) over the draws, per healthy chain (overlaid) and pooled.

    Left: minibatch losses at the draws; their mean is λ̂ (marked), and their spread includes the
    minibatch noise. Right (when the run has full-data evaluations): nβ(L_n − L_n(w*)), which the
    local theory says is ≈ Gamma(λ, 1) (mean and variance λ); the Gamma(λ̂, 1) density is drawn
    over it. Unhealthy chains are left out (their count is noted).
    """
    plt = _pyplot(path)
    evals = _has_evals(result)
    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(12 if evals else 6.5, 4.2), squeeze=False)
    axes = axes[0]
    good = np.flatnonzero(result.healthy)
    bad = len(result.healthy) - good.size
    lam = result.llc_mean
    nb, l0 = result.nbeta, result.init_loss

    def panel(ax, values, xlabel, panel_title):
        if good.size == 0:
            _no_data(ax, "no healthy chains")
            ax.set_title(panel_title)
            return None
        per = nb * (values[good].astype(np.float64) - l0)
        pooled = per[np.isfinite(per)]
        if pooled.size == 0:
            _no_data(ax, "no finite values")
            ax.set_title(panel_title)
            return None
        # square-root rule (capped at `bins`): per chain coarser than pooled, so few draws stay readable
        edges = np.histogram_bin_edges(pooled, bins=int(np.clip(np.sqrt(pooled.size), 5, bins)))
        chain_bins = int(np.clip(np.sqrt(pooled.size / good.size), 5, bins))
        chain_edges = np.linspace(edges[0], edges[-1], chain_bins + 1)
        for row, c in zip(per, good):
            ax.hist(row[np.isfinite(row)], bins=chain_edges, density=True, alpha=0.22, color=f"C{c % 10}",
                    label=f"chain {c}" if good.size <= 8 else None)
        ax.hist(pooled, bins=edges, density=True, histtype="step", color="0.3", lw=1.6,
                label=f"pooled ({good.size} chains, {pooled.size} values)")
        ax.set(xlabel=xlabel, ylabel="density", title=panel_title)
        return pooled

    pooled = panel(axes[0], result.loss_trace, "nβ (L_B − L_n(w*))  (minibatch loss at the draws)",
                   "minibatch nβ(L − L*) per chain")
    if pooled is not None:
        axes[0].axvline(lam, color="k", lw=2.2, label=f"λ̂ = {lam:.3g} (mean)")
    if bad:
        axes[0].plot([], [], color="grey", ls="--", label=f"{bad} unhealthy chain(s) excluded")
    if pooled is not None or bad:
        axes[0].legend(fontsize=7, loc="upper right")

    if evals:
        ax = axes[1]
        full = panel(ax, result.dataset["eval_loss"].values, "nβ (L_n − L_n(w*))  (full-data loss)",
                     "full-data nβ(L_n − L*) vs Gamma(λ̂, 1)")
        if full is not None:
            ax.axvline(lam, color="k", lw=2.2, label=f"λ̂ = {lam:.3g}")
            if np.isfinite(lam) and lam > 0:
                lo, hi = ax.get_xlim()
                grid = np.linspace(max(lo, 1e-6), max(hi, lam + 4 * np.sqrt(lam)), 400)
                ax.plot(grid, _gamma_pdf(grid, lam), color="k", ls="--", lw=1.5, label=f"Gamma(λ̂={lam:.3g}, 1)")
            var = np.var(full, ddof=1) if full.size > 1 else np.nan
            ax.plot([], [], " ", label=f"values: mean {np.mean(full):.3g}, var {var:.3g}\n(Gamma(λ, 1): mean = var = λ)")
            ax.legend(fontsize=7, loc="upper right")
    return _finish(fig, path, plt, title=title)


def plot_diagnostics(result, path: str | Path | None = None, *, title: str | None = None):
    """Gradient norm ||∇L_B(w)|| and distance ||w − w*|| per chain over the draws (two panels).

    Burn-in distances are shaded in at negative draw indices. Unhealthy chains are grey/dashed.
    A distance that keeps growing means the chain escapes the localization; a gradient norm that
    blows up precedes divergence.
    """
    plt = _pyplot(path)
    ds = result.dataset
    fig, (ax_g, ax_d) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(ds.sizes["draw"])
    grad, dist = ds["grad_norm"].values, ds["distance"].values
    burn = ds["burnin_distance"].values if "burnin_distance" in ds else np.zeros((len(result.healthy), 0))
    nb = burn.shape[1]
    for c in range(len(result.healthy)):
        style = _chain_style(result, c)
        ax_g.plot(x, grad[c], **style)
        ax_d.plot(x, dist[c], **style)
        if nb:
            ax_d.plot(np.arange(-nb, 0), burn[c], **style)
    if nb:
        ax_d.axvspan(-nb, 0, color="0.9", zorder=-1)
        ax_d.text(-nb / 2, 0.98, "burn-in", transform=ax_d.get_xaxis_transform(), ha="center", va="top",
                  fontsize=7, color="0.4")
    for ax, values in ((ax_g, [grad]), (ax_d, [dist, burn])):
        h = result.healthy
        finite = np.concatenate([np.ravel(v[h]) for v in values])
        finite = finite[np.isfinite(finite)]
        log = bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > 100)
        if log:
            ax.set_yscale("log")
        _clip_to_healthy(ax, h, *values, log=log)
    ax_g.set(xlabel="draw", ylabel="||∇L_B(w)||", title="minibatch loss gradient norm")
    ax_d.set(xlabel="draw", ylabel="||w − w*||", title="distance from w*")
    _chain_legend(ax_g, result, loc="upper right")
    return _finish(fig, path, plt, title=title)


# =========================================================================================
# Matrices: BIF and susceptibility PCA
# =========================================================================================


def _tick_labels(ax_set_ticks, ax_set_labels, labels, n, rotation=0):
    if labels is None:
        return
    labels = [str(s) for s in labels]
    if len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for an axis of length {n}.")
    step = max(1, int(np.ceil(n / 40)))
    idx = np.arange(0, n, step)
    ax_set_ticks(idx)
    ax_set_labels([labels[i] for i in idx], fontsize=7 if n > 12 else 8, rotation=rotation)


def plot_bif(
    matrix,
    path: str | Path | None = None,
    *,
    train_labels=None,
    query_labels=None,
    title: str | None = None,
    label: str = "BIF",
    ax=None,
):
    """Heat map of a BIF matrix (train samples × query samples), diverging colours centred at 0.

    matrix: (n_train, n_query), e.g. `result.bif("train")`; NaN entries (zero-variance samples)
    are drawn grey. train_labels / query_labels: optional per-row / per-column names (thinned to
    ≤ 40 ticks). label: the colour bar's label. ax: draw into an existing Axes.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"matrix must be a non-empty 2-D (n_train, n_query) array; got shape {m.shape}.")
    plt = _pyplot(path)
    import matplotlib as mpl

    if ax is None:
        ratio = m.shape[0] / m.shape[1]
        w = 7.0
        fig, ax = plt.subplots(figsize=(w, float(np.clip(w * ratio * 0.85, 3.0, 9.0))))
    else:
        fig = ax.figure
    finite = m[np.isfinite(m)]
    vmax = float(np.max(np.abs(finite))) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    cmap = mpl.colormaps["RdBu_r"].with_extremes(bad="0.75")
    im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto",
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, label=label, fraction=0.046, pad=0.03)
    _tick_labels(ax.set_yticks, ax.set_yticklabels, train_labels, m.shape[0])
    _tick_labels(ax.set_xticks, ax.set_xticklabels, query_labels, m.shape[1], rotation=90)
    ax.set(xlabel="query sample j", ylabel="train sample i", title=title or f"{label} ({m.shape[0]} × {m.shape[1]})")
    return _finish(fig, path, plt)


def plot_susceptibility_pca(
    matrix,
    path: str | Path | None = None,
    *,
    component_names=None,
    probe_names=None,
    k: int = 2,
    title: str | None = None,
    ax=None,
):
    """PCA of a (components, probe_samples) susceptibility response matrix: probes on PC1 vs PC2.

    Each probe sample is a point in component space (`observables.response_pca`, observations=
    "probes"); its scores on the first two principal components are scattered, coloured by
    `probe_names` (a per-probe list of group labels, e.g. which probe set it came from). The
    loading of each weight component on PC1/PC2 is drawn as an arrow (biplot; scaled to the
    scores' extent), labelled by `component_names`. Axis labels give the explained variance
    ratios; k (≥ 2) is the number of components computed (the ratios of all k are in the title).
    """
    from slt_jax.observables import response_pca

    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"matrix must be 2-D (components, probe_samples); got shape {m.shape}.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an integer ≥ 2 (the plot shows PC1 vs PC2); got {k!r}.")
    if min(m.shape) < 2:
        raise ValueError(
            f"a PC1-vs-PC2 plot needs at least 2 components and 2 probe samples; the matrix has shape {m.shape}."
        )
    num_comp, num_probes = m.shape
    if component_names is not None and len(component_names) != num_comp:
        raise ValueError(f"component_names has {len(component_names)} entries; the matrix has {num_comp} rows.")
    if probe_names is not None and len(probe_names) != num_probes:
        raise ValueError(f"probe_names has {len(probe_names)} entries; the matrix has {num_probes} probe columns.")
    pca = response_pca(m, k, observations="probes")
    scores, loadings, ratio = pca.scores, pca.components, pca.explained_variance_ratio

    plt = _pyplot(path)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.8, 6.2))
    else:
        fig = ax.figure
    if probe_names is None:
        ax.scatter(scores[:, 0], scores[:, 1], s=14, alpha=0.7, color="C0", lw=0, label="probe samples")
    else:
        groups = list(dict.fromkeys(str(g) for g in probe_names))
        labels = np.array([str(g) for g in probe_names])
        for i, g in enumerate(groups):
            sel = labels == g
            ax.scatter(scores[sel, 0], scores[sel, 1], s=14, alpha=0.7, color=f"C{i % 10}", lw=0,
                       label=f"{g} ({int(sel.sum())})")
    extent = float(np.max(np.abs(scores[:, :2]))) if np.isfinite(scores).all() else 1.0
    lmax = float(np.max(np.abs(loadings[:2]))) or 1.0
    scale = 0.85 * (extent if extent > 0 else 1.0) / lmax
    names = [str(s) for s in component_names] if component_names is not None else [f"c{j}" for j in range(num_comp)]
    for j in range(num_comp):
        dx, dy = scale * loadings[0, j], scale * loadings[1, j]
        ax.annotate("", xy=(dx, dy), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="->", color="0.25", lw=1.0, shrinkA=0, shrinkB=0))
        ax.text(dx * 1.1, dy * 1.1, names[j], fontsize=7, color="0.15", ha="center", va="center",
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75))
    ax.plot([], [], color="0.25", lw=1.0, label=f"component loadings (×{scale:.2g})")
    ax.axhline(0, color="0.85", lw=0.8, zorder=-1)
    ax.axvline(0, color="0.85", lw=0.8, zorder=-1)
    pct = lambda r: f"{100 * r:.1f}%" if np.isfinite(r) else "n/a"
    ax.set(xlabel=f"PC1 ({pct(ratio[0])} of variance)", ylabel=f"PC2 ({pct(ratio[1])} of variance)")
    lim = 1.15 * max(extent, scale * lmax) or 1.0
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal", adjustable="box")
    ax.set_title(title or "susceptibility PCA: probes on PC1/PC2  (explained: "
                 + ", ".join(pct(r) for r in ratio) + ")", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return _finish(fig, path, plt)


# =========================================================================================
# Everything at once
# =========================================================================================


def save_standard_plots(result, out_dir: str | Path, *, max_bif_samples: int = 256) -> list[Path]:
    """Write trace, MALA, loss-histogram and diagnostics PNGs (plus a BIF heat map per eval set).

    Files in out_dir: trace.png, mala.png, loss_histograms.png, diagnostics.png and, for each eval
    set `name` stored per draw, bif_<name>.png (correlation BIF of its first `max_bif_samples`
    samples over the healthy chains' evaluations; skipped with a warning when it cannot be
    computed; eval sets stored as running moments have no BIF and are skipped). Returns the paths
    written, in that order.
    """
    import warnings

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fn in (("trace", plot_trace), ("mala", plot_mala), ("loss_histograms", plot_loss_histograms),
                     ("diagnostics", plot_diagnostics)):
        fn(result, out / f"{name}.png")
        paths.append(out / f"{name}.png")
    for name in result.attrs.get("eval_sets") or []:
        if f"{name}_losses" not in result.dataset:
            continue
        try:
            matrix = _bif_subset(result, name, max_bif_samples)
        except ValueError as e:
            warnings.warn(f"save_standard_plots: no BIF heat map for eval set {name!r}: {e}", RuntimeWarning,
                          stacklevel=2)
            continue
        if not np.isfinite(matrix).any():
            warnings.warn(f"save_standard_plots: the BIF of eval set {name!r} is all NaN; no heat map.",
                          RuntimeWarning, stacklevel=2)
            continue
        p = out / f"bif_{name}.png"
        total = result.dataset.sizes[f"{name}_sample"]
        shown = f"first {matrix.shape[0]} of {total} samples" if matrix.shape[0] < total else f"{total} samples"
        plot_bif(matrix, p, title=f"BIF (correlation) on eval set {name!r}, {shown}", label="Corr_w[l_i, l_j]")
        paths.append(p)
    return paths


def _bif_subset(result, name: str, max_samples: int) -> np.ndarray:
    """result.bif(name), computed on the first max_samples samples only (the matrix is m × m)."""
    from slt_jax import observables as obs

    if result.dataset.sizes[f"{name}_sample"] <= max_samples:
        return result.bif(name)
    losses = result.per_sample_losses(name)[:, :, :max_samples]
    losses = losses.reshape(losses.shape[:3] + (-1,)).mean(axis=-1)
    return obs.bif(losses, kind="correlation")
