"""Developmental stages from a λ̂(t) curve over training checkpoints.

`detect(steps, llc, llc_sem, loss=None)` splits training into stages where the local
learning coefficient rises, falls or sits on a plateau, with uncertainty from the chain
spread (the per-checkpoint standard error `llc_sem`). `plot(result)` draws it.

Pure functions of numpy arrays (numpy / scipy / pandas / matplotlib only; no JAX).

Method (after Hoogland et al., "The developmental landscape of in-context learning",
arXiv:2402.02364, and Wang et al. 2024, "Differentiation and specialization of attention
heads via the refined local learning coefficient", who smooth λ̂ over log training step and
read stage boundaries off the critical points of the smoothed curve):

1. **Log-step axis.** x = log10(1 + t), so step 0 is allowed (x = 0) and for t ≳ 10 this is
   log10 t to within 0.05 decades. All bandwidths and tolerances are in decades of x.
2. **Linear smoother.** Gaussian-kernel *local linear* regression of λ̂ on x evaluated on a
   uniform grid: at each grid point u, fit a + b (x - u) with weights exp(-(x - u)²/2h²);
   the level a is the smoothed λ̂ and b is dλ̂/dlog10 t. On densely, evenly spaced
   checkpoints b is exactly the Gaussian-smoothed derivative (∑K(v) v y(u+v)/∑K v² =
   ∫K(v) y'(u+v) dv by parts), so a feature of width w in the true derivative appears with
   width ≈ sqrt(w² + h²); local linear (unlike Nadaraya-Watson) has no first-order bias of
   the slope at the ends of the run. The bandwidth h is given or chosen by
   leave-one-out cross-validation of the level (unweighted, see select_bandwidth), between 1.5×
   the median checkpoint spacing and a third of the log-step range.
3. **Uncertainty.** Both a and b are linear in λ̂: a(u) = ∑ A_ui λ̂_i, b(u) = ∑ B_ui λ̂_i.
   With independent checkpoint estimates (separate chains per checkpoint) of standard error
   σ_i = llc_sem_i, se(b(u))² = ∑ B_ui² σ_i², and the change of λ̂ over a stage [u0, u1] is
   a(u1) - a(u0) with se² = ∑ (A_u1,i - A_u0,i)² σ_i² (correlations handled exactly). The
   smoothing bias is not included in the error, nor is the jitter of the detected
   boundaries: delta_llc_se is the error of the change between those fixed steps. Re-running
   detection on fresh noise, a move's change scatters ~1.3× more than delta_llc_se (the
   ends sit where λ̂ still moves at edge_fraction of its peak rate; tests/test_stages.py);
   a plateau's change may hold the slow tail of the neighbouring move.
4. **Stages.** A grid point is *moving* (rising/falling) when its slope is significant,
   |b| > z·se(b), and at least `edge_fraction` of the peak |b| in its connected significant
   run; everywhere else is *plateau* (|b| within z of its uncertainty, or the slow tail of
   a transition: without the relative clause an asymptotic, e.g. logistic, tail would be
   "significantly rising" forever at high signal-to-noise and no plateau onset would ever be
   found). The fraction rule puts the start/end of a transition where its smoothed rate
   falls to that fraction of its peak, which does not move with the noise level.
5. **Significance and resolution.** Stages are then pruned, repeatedly until nothing
   changes: a moving stage whose λ̂ change is not significant, |Δλ̂| ≤ z·se(Δλ̂), becomes a
   plateau; adjacent stages of one type merge; a stage shorter than `min_width` (default h:
   the smoother cannot resolve anything narrower) is absorbed — a short plateau between a
   rise and a fall collapses to a single boundary at the zero crossing of dλ̂/dlog t
   (a *critical point*, a maximum or minimum of λ̂; a longer plateau between a rise and a
   fall is kept, and its critical point is the extremum of smoothed λ̂ in it), a short
   plateau between two moves of
   one sign merges with them, other short stages join their neighbours. A stage holding
   fewer than `min_checkpoints` (3) checkpoints counts as short. Default z = 3.
   Measured on flat curves with noise at the llc_sem level (tests/test_stages.py) this
   gives no boundaries in ≥ 95 % of noise draws.

Boundaries are returned as training steps (floats, between checkpoints; 10**x - 1).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FALLING",
    "PLATEAU",
    "RISING",
    "StageResult",
    "detect",
    "plot",
    "select_bandwidth",
    "smoother_weights",
]

RISING, FALLING, PLATEAU = "rising", "falling", "plateau"
_SIGN = {RISING: 1, FALLING: -1, PLATEAU: 0}
_MIN_POINTS = 5


# =========================================================================================
# The linear smoother
# =========================================================================================

def _log_step(steps) -> np.ndarray:
    return np.log10(1.0 + np.asarray(steps, dtype=float))


def _from_log(x) -> np.ndarray:
    return np.power(10.0, np.asarray(x, dtype=float)) - 1.0


def _weights_x(x: np.ndarray, at: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    d = x[None, :] - at[:, None]                      # (n_at, n)
    k = np.exp(-0.5 * (d / h) ** 2)
    s0, s1, s2 = k.sum(1), (k * d).sum(1), (k * d * d).sum(1)
    det = s0 * s2 - s1 ** 2
    det = np.where(det > 0, det, np.nan)
    level = k * (s2[:, None] - s1[:, None] * d) / det[:, None]
    slope = k * (s0[:, None] * d - s1[:, None]) / det[:, None]
    return level, slope


def smoother_weights(steps, at, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    """The linear maps of the smoother: matrices (len(at), len(steps)) A, B such that the
    smoothed λ̂ at training step `at[j]` is A[j] @ llc and its derivative dλ̂/dlog10(1+t)
    is B[j] @ llc (Gaussian-kernel local linear regression in x = log10(1 + step),
    bandwidth in decades)."""
    if not (np.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a positive number of decades, got {bandwidth!r}")
    return _weights_x(_log_step(steps), np.atleast_1d(_log_step(at)), float(bandwidth))


def _loo_score(x, y, w, h) -> float:
    level, _ = _weights_x(x, x, h)
    hii = np.diag(level)
    if not np.all(np.isfinite(level)) or np.any(hii >= 1 - 1e-9):
        return np.inf
    r = (y - level @ y) / (1.0 - hii)
    return float(np.sum(w * r * r))


def _bandwidth_range(x: np.ndarray) -> tuple[float, float]:
    span = float(x[-1] - x[0])
    gaps = np.diff(x)
    lo = 1.5 * float(np.median(gaps[gaps > 0])) if np.any(gaps > 0) else span / 10
    hi = max(span / 3.0, lo)
    return lo, hi


def select_bandwidth(steps, llc, llc_sem, *, num: int = 40) -> float:
    """Bandwidth (decades of log10(1 + step)) minimising the leave-one-out error of the
    smoothed λ̂, over a log grid from 1.5× the median checkpoint spacing to a third of the
    log-step range. Inputs as for `detect` (sorted, finite).

    The error is unweighted, as the smoother is: weighting it by 1/llc_sem² (tried first)
    ignores exactly the checkpoints where λ̂ is hard to estimate, which are often where it
    moves (chains escaping a saddle mid-transition had 25× the MCSE of the plateaus in the
    deep-linear-network example), and then chose the widest bandwidth and one stage."""
    x = _log_step(steps)
    order = np.argsort(x, kind="stable")
    x, y, s = x[order], np.asarray(llc, float)[order], np.asarray(llc_sem, float)[order]
    lo, hi = _bandwidth_range(x)
    hs = np.geomspace(lo, hi, num) if hi > lo else np.array([lo])
    scores = [_loo_score(x, y, np.ones_like(s), h) for h in hs]
    return float(hs[int(np.argmin(scores))])


# =========================================================================================
# Result
# =========================================================================================

def _frozen(a) -> np.ndarray:
    a = np.array(a, dtype=float, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class StageResult:
    """Output of `detect`.

    boundaries      training steps where one stage ends and the next begins (float)
    critical_points steps of the maxima / minima of λ̂ between a rising and a falling stage:
                    the boundary where they meet, or the extremum of the smoothed λ̂ inside
                    the plateau between them
    table           pandas DataFrame, one row per stage: start, end (steps), log_start,
                    log_end (decades), type, llc_start, llc_end (smoothed), delta_llc,
                    delta_llc_se, z (= delta/se), n_checkpoints, and delta_loss when loss given
    grid_steps / grid_log   the evaluation grid (steps, and x = log10(1 + step))
    smooth, smooth_se       smoothed λ̂ on the grid and its standard error
    slope, slope_se         dλ̂/dlog10(1 + step) on the grid and its standard error
    bandwidth, z, edge_fraction, min_width   the settings used (widths in decades)
    steps, llc, llc_sem, loss   the inputs after sorting and dropping NaN λ̂
    dropped         steps of the checkpoints dropped for non-finite λ̂ or llc_sem
    """

    boundaries: np.ndarray
    critical_points: np.ndarray
    table: object
    grid_steps: np.ndarray
    grid_log: np.ndarray
    smooth: np.ndarray
    smooth_se: np.ndarray
    slope: np.ndarray
    slope_se: np.ndarray
    bandwidth: float
    z: float
    edge_fraction: float
    min_width: float
    steps: np.ndarray
    llc: np.ndarray
    llc_sem: np.ndarray
    loss: np.ndarray | None = None
    dropped: np.ndarray = field(default_factory=lambda: _frozen([]))

    @property
    def types(self) -> list[str]:
        return list(self.table["type"])

    def change(self, start: float, end: float) -> tuple[float, float]:
        """Change of the smoothed λ̂ from training step `start` to `end`, and its standard
        error from llc_sem (the same linear map as the table's delta_llc)."""
        a, _ = smoother_weights(self.steps, [start, end], self.bandwidth)
        w = a[1] - a[0]
        return float(w @ self.llc), float(np.sqrt(np.sum(w ** 2 * self.llc_sem ** 2)))

    def __repr__(self) -> str:
        kinds = ", ".join(f"{r.type} [{r.start:.4g}, {r.end:.4g}]" for r in self.table.itertuples())
        return f"StageResult({len(self.table)} stages: {kinds}; bandwidth={self.bandwidth:.3g} dec)"


# =========================================================================================
# Detection
# =========================================================================================

def _as_1d(name: str, v) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a 1-D array of numbers: {e}") from None
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    return a


def _check_inputs(steps, llc, llc_sem, loss):
    t = _as_1d("steps", steps)
    y = _as_1d("llc", llc)
    n = t.size
    s = np.full(n, float(llc_sem)) if np.ndim(llc_sem) == 0 else _as_1d("llc_sem", llc_sem)
    for name, a in (("llc", y), ("llc_sem", s)):
        if a.size != n:
            raise ValueError(f"{name} has length {a.size} but steps has length {n}")
    L = None
    if loss is not None:
        L = _as_1d("loss", loss)
        if L.size != n:
            raise ValueError(f"loss has length {L.size} but steps has length {n}")
    if not np.all(np.isfinite(t)):
        raise ValueError("steps must be finite")
    if np.any(t < 0):
        raise ValueError(f"steps must be >= 0 (training steps), got min {t.min():g}")
    if np.unique(t).size != n:
        raise ValueError("steps has duplicate values: one λ̂ per checkpoint step")
    bad_sem = np.isfinite(s) & (s <= 0)
    if np.any(bad_sem):
        raise ValueError(f"llc_sem must be > 0 (a standard error), got {s[bad_sem][0]!r} "
                         f"at step {t[bad_sem][0]:g}")
    order = np.argsort(t, kind="stable")
    t, y, s = t[order], y[order], s[order]
    L = None if L is None else L[order]
    keep = np.isfinite(y) & np.isfinite(s)
    dropped = t[~keep]
    if dropped.size:
        warnings.warn(f"stages.detect: dropped {dropped.size} checkpoint(s) with non-finite llc or "
                      f"llc_sem (e.g. unhealthy chains) at steps {dropped.tolist()}", stacklevel=3)
        t, y, s = t[keep], y[keep], s[keep]
        L = None if L is None else L[keep]
    if t.size < _MIN_POINTS:
        raise ValueError(f"steps: need at least {_MIN_POINTS} checkpoints with finite llc to detect "
                         f"stages, got {t.size}")
    return t, y, s, L, dropped


def _runs(labels: np.ndarray) -> list[list[int]]:
    """[[start, end_exclusive, label], ...] of constant runs."""
    out, i = [], 0
    while i < labels.size:
        j = i
        while j < labels.size and labels[j] == labels[i]:
            j += 1
        out.append([i, j, int(labels[i])])
        i = j
    return out


def _crossing(xg, f, i0, i1) -> float:
    """x where f changes sign in grid [i0, i1) (linear interpolation); the middle if none."""
    seg = f[i0:i1]
    idx = np.nonzero(np.sign(seg[:-1]) * np.sign(seg[1:]) <= 0)[0]
    if idx.size == 0:
        return 0.5 * (xg[i0] + xg[i1 - 1])
    k = i0 + idx[np.argmin(np.abs(idx + i0 - 0.5 * (i0 + i1)))]
    f0, f1 = f[k], f[k + 1]
    return float(xg[k] if f0 == f1 else xg[k] + (xg[k + 1] - xg[k]) * f0 / (f0 - f1))


def detect(steps, llc, llc_sem, loss=None, *, bandwidth: float | None = None, z: float = 3.0,
           edge_fraction: float = 0.2, min_width: float | None = None,
           min_checkpoints: int = 3, grid_size: int = 400) -> StageResult:
    """Stages of λ̂ over training: rising, falling and plateau, with their boundaries.

    steps     training step of each checkpoint (>= 0, any order; sorted here)
    llc       λ̂ per checkpoint; non-finite values are dropped with a warning
    llc_sem   standard error of each λ̂ (e.g. the chain spread's MCSE), > 0; a scalar is
              broadcast. The significance of every stage comes from it.
    loss      optional training loss per checkpoint: the table then has delta_loss
    bandwidth Gaussian kernel width in decades of log10(1 + step); None: cross-validated
    z         significance level, in standard errors, for slopes and stage changes
    edge_fraction  a move ends where its smoothed rate drops below this fraction of its peak
    min_width shortest resolvable stage in decades (default: the bandwidth)
    min_checkpoints  fewest checkpoints a stage must hold (sparse early steps, e.g. 0, 1, 2,
              are too far apart in log-step for the kernel to resolve a stage there)
    grid_size points of the evaluation grid

    See the module docstring for the method and where it comes from.
    """
    t, y, s, L, dropped = _check_inputs(steps, llc, llc_sem, loss)
    if not (np.isfinite(z) and z > 0):
        raise ValueError(f"z must be a positive number of standard errors, got {z!r}")
    if not (0 < edge_fraction < 1):
        raise ValueError(f"edge_fraction must be in (0, 1), got {edge_fraction!r}")
    if int(grid_size) < 10:
        raise ValueError(f"grid_size must be >= 10, got {grid_size!r}")
    x = _log_step(t)
    if bandwidth is None:
        h = select_bandwidth(t, y, s)
    else:
        if not (np.isfinite(bandwidth) and bandwidth > 0):
            raise ValueError(f"bandwidth must be a positive number of decades, got {bandwidth!r}")
        h = float(bandwidth)
    mw = h if min_width is None else float(min_width)
    if not (np.isfinite(mw) and mw >= 0):
        raise ValueError(f"min_width must be >= 0 decades, got {min_width!r}")

    xg = np.linspace(x[0], x[-1], int(grid_size))
    A, B = _weights_x(x, xg, h)
    var = s ** 2
    level, slope = A @ y, B @ y
    level_se, slope_se = np.sqrt((A ** 2) @ var), np.sqrt((B ** 2) @ var)

    # 4. pointwise labels
    sig = np.where(np.abs(slope) > z * slope_se, np.sign(slope), 0).astype(int)
    lab = np.zeros_like(sig)
    for i0, i1, v in _runs(sig):
        if v:
            peak = np.max(np.abs(slope[i0:i1]))
            lab[i0:i1] = np.where(np.abs(slope[i0:i1]) >= edge_fraction * peak, v, 0)

    # stages as [x_start, x_end, sign]; boundaries of pointwise runs at the midpoint of the cells
    runs = _runs(lab)
    edges = [xg[0]] + [0.5 * (xg[r[0] - 1] + xg[r[0]]) for r in runs[1:]] + [xg[-1]]
    stages = [[edges[k], edges[k + 1], r[2]] for k, r in enumerate(runs)]

    def delta(x0, x1):
        a0, _ = _weights_x(x, np.array([x0, x1]), h)
        w = a0[1] - a0[0]
        return float(w @ y), float(np.sqrt(np.sum(w ** 2 * var))), w

    def grid_index(xv):
        return int(np.clip(np.searchsorted(xg, xv), 0, xg.size - 1))

    for _ in range(10 * len(stages) + 10):
        changed = False
        # significance of moves
        for st in stages:
            if st[2]:
                d, se, _w = delta(st[0], st[1])
                if not (abs(d) > z * se and np.sign(d) == st[2]):
                    st[2], changed = 0, True
        # merge equal neighbours
        merged = [stages[0]]
        for st in stages[1:]:
            if st[2] == merged[-1][2]:
                merged[-1][1] = st[1]
                changed = True
            else:
                merged.append(st)
        stages = merged
        # absorb the shortest stage narrower than min_width
        if len(stages) > 1:
            widths = np.array([b - a for a, b, _ in stages])
            npts = np.array([np.sum((x >= a) & (x <= b)) for a, b, _ in stages])
            widths = np.where(npts < min_checkpoints, -1.0 + widths, widths)  # too few checkpoints first
            k = int(np.argmin(widths))
            if widths[k] < mw:
                a, b, v = stages[k]
                left = stages[k - 1] if k > 0 else None
                right = stages[k + 1] if k + 1 < len(stages) else None
                if left is None:            # at the start of the run: unresolved, joins its neighbour
                    right[0] = a
                    stages.pop(k)
                elif right is None:
                    left[1] = b
                    stages.pop(k)
                elif v:                     # a short move: demoted (merged on the next pass)
                    stages[k][2] = 0
                elif left[2] == right[2]:   # a short pause inside one move
                    left[1] = right[1]
                    del stages[k:k + 2]
                else:                       # a short turn between a rise and a fall: critical point
                    i0, i1 = grid_index(a), grid_index(b)
                    xc = _crossing(xg, slope, max(i0 - 1, 0), min(i1 + 1, xg.size))
                    xc = min(max(xc, a), b)
                    left[1], right[0] = xc, xc
                    stages.pop(k)
                changed = True
        if not changed:
            break

    import pandas as pd

    rows, crit = [], []
    for k, (a, b, v) in enumerate(stages):
        d, se, _w = delta(a, b)
        ta, tb = float(_from_log(a)), float(_from_log(b))
        if k == 0:
            ta = float(t[0])
        if k == len(stages) - 1:
            tb = float(t[-1])
        row = {"start": ta, "end": tb, "log_start": float(a), "log_end": float(b),
                   "type": {1: RISING, -1: FALLING, 0: PLATEAU}[v],
                   "llc_start": float(np.interp(a, xg, level)), "llc_end": float(np.interp(b, xg, level)),
                   "delta_llc": d, "delta_llc_se": se, "z": d / se if se > 0 else math.inf,
                   "n_checkpoints": int(np.sum((x >= a) & (x <= b)))}
        if L is not None:
            la, _ = _weights_x(x, np.array([a, b]), h)
            row["delta_loss"] = float((la[1] - la[0]) @ L)
        rows.append(row)
        if k > 0 and v and stages[k - 1][2] == -v:      # a rise meets a fall directly
            crit.append(float(_from_log(a)))
        elif 0 < k < len(stages) - 1 and not v and stages[k - 1][2] and stages[k - 1][2] == -stages[k + 1][2]:
            inside = np.nonzero((xg >= a) & (xg <= b))[0]  # a plateau at the turn: its extremum
            if inside.size:
                pick = np.argmax if stages[k - 1][2] > 0 else np.argmin
                crit.append(float(_from_log(xg[inside[pick(level[inside])]])))
    table = pd.DataFrame(rows)
    bounds = [float(_from_log(st[0])) for st in stages[1:]]
    return StageResult(
        boundaries=_frozen(bounds), critical_points=_frozen(crit), table=table,
        grid_steps=_frozen(_from_log(xg)), grid_log=_frozen(xg), smooth=_frozen(level),
        smooth_se=_frozen(level_se), slope=_frozen(slope), slope_se=_frozen(slope_se),
        bandwidth=h, z=float(z), edge_fraction=float(edge_fraction), min_width=mw,
        steps=_frozen(t), llc=_frozen(y), llc_sem=_frozen(s),
        loss=None if L is None else _frozen(L), dropped=_frozen(dropped))


# =========================================================================================
# Plot
# =========================================================================================

_COLOURS = {RISING: "tab:red", FALLING: "tab:blue", PLATEAU: "0.6"}


def plot(result: StageResult, ax=None):
    """λ̂ ± llc_sem against step (log axis; against 1 + step when step 0 is present), the
    smoothed curve with its ±1 se band, boundaries as vertical lines, stages shaded by type
    (rising red, falling blue, plateau grey), and the loss on a twin axis when given.
    Returns the Axes. Save with slt_jax.plots.save_figure(ax.figure, path)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.2))
    off = 1.0 if result.steps.size and result.steps[0] <= 0 else 0.0
    X = lambda steps: np.asarray(steps, float) + off
    lo_x, hi_x = X(result.steps[0]), X(result.steps[-1])
    seen = set()
    for r in result.table.itertuples():
        ax.axvspan(max(X(r.start), lo_x), X(r.end), color=_COLOURS[r.type], alpha=0.13, lw=0,
                   label=None if r.type in seen else r.type, zorder=0)
        seen.add(r.type)
    ax.errorbar(X(result.steps), result.llc, yerr=result.llc_sem, fmt="o", ms=3.5, color="k",
                ecolor="0.4", elinewidth=1, capsize=2, label="λ̂ ± se", zorder=3)
    gx = X(result.grid_steps)
    ax.plot(gx, result.smooth, color="tab:purple", lw=2, label=f"smoothed (h={result.bandwidth:.2g} dec)", zorder=2)
    ax.fill_between(gx, result.smooth - result.smooth_se, result.smooth + result.smooth_se,
                    color="tab:purple", alpha=0.2, lw=0, zorder=1)
    for k, b in enumerate(result.boundaries):
        ax.axvline(X(b), color="k", ls="--", lw=1, label="boundary" if k == 0 else None, zorder=2)
    ax.set_xscale("log")
    ax.set_xlim(lo_x, hi_x)
    ax.set(xlabel="1 + training step" if off else "training step", ylabel="λ̂", title="stages of λ̂")
    if result.loss is not None:
        ax2 = ax.twinx()
        ax2.plot(X(result.steps), result.loss, color="tab:green", lw=1, alpha=0.8, label="loss")
        ax2.set_ylabel("loss", color="tab:green")
        ax2.tick_params(axis="y", colors="tab:green")
    ax.legend(loc="best", fontsize=8)
    return ax
