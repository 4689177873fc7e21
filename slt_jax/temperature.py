"""λ̂ as a function of the inverse temperature β for one checkpoint (the "heat capacity" view).

For a regular model near a minimum, nβ·E_β[L_n − L_n(w*)] = d/2 at every β and the
variance-based estimate nβ²·Var_β[L_n] agrees with it; in a singular model both move with β
as the posterior resolves finer structure (Watanabe; estimators.md §1, §3). Every temperature
runs as a column of one `estimate_llc_grid` program: nβ is per-chain data, so the sweep
compiles once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["TemperatureSweep", "temperature_sweep", "plot"]

DEFAULT_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)  # × n/log n (β* = 1/log n in the middle)


@dataclass(frozen=True)
class TemperatureSweep:
    """`table`: a DataFrame, one row per nβ (nbeta, beta, llc, llc_se, llc_var, mala_mean,
    chains_used); `grid`: the GridResult with every draw."""

    table: Any
    grid: Any


def temperature_sweep(
    loss_fn: Callable, params: Any, data: Any, *, nbeta: Sequence[float] | None = None,
    factors: Sequence[float] = DEFAULT_FACTORS, **llc_kwargs,
) -> TemperatureSweep:
    """λ̂ and the variance-based λ̂ at several nβ, as one compiled program.

    nbeta: the values; default `factors` × n/log n. llc_kwargs: everything `estimate_llc_grid`
    takes (step_size, localization, num_chains, num_draws, batch_size, ...). Note that the
    stable step size shrinks as nβ grows (the drift is ε/2 · nβ ∇L): check `table.mala_mean`.
    """
    import pandas as pd

    from slt_jax.workflows.grid import estimate_llc_grid

    if nbeta is None:
        n = _num_samples(data)
        if n < 2:
            raise ValueError("the default temperatures need n ≥ 2 samples; pass nbeta=[...].")
        if not factors or any(not (isinstance(f, (int, float)) and f > 0) for f in factors):
            raise ValueError(f"factors must be positive numbers; got {list(factors)!r}.")
        nbeta = [float(f) * n / math.log(n) for f in factors]
    grid = estimate_llc_grid(loss_fn, [params], data, nbeta=list(nbeta), **llc_kwargs)
    rows = []
    n = grid.attrs["num_samples"]
    for value in grid.dataset["nbeta"].values:
        r = grid.sel(nbeta=float(value))
        mala = r.mala_acceptance[r.healthy]
        rows.append(dict(
            nbeta=float(value), beta=float(value) / n, llc=r.llc_mean, llc_se=r.llc_se, llc_var=r.llc_var,
            mala_mean=float(np.nanmean(mala)) if np.isfinite(mala).any() else float("nan"),
            chains_used=int(r.num_healthy),
        ))
    return TemperatureSweep(pd.DataFrame(rows), grid)


def plot(sweep: TemperatureSweep, ax=None):
    """λ̂ (± MCSE) and the variance-based λ̂ against β on a log axis; returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    t = sweep.table
    ax.errorbar(t["beta"], t["llc"], yerr=t["llc_se"], marker="o", capsize=3, label="λ̂ (mean-based)")
    ax.plot(t["beta"], t["llc_var"], marker="s", linestyle="--", label="λ̂ (variance-based)")
    ax.set_xscale("log")
    ax.set_xlabel("β = nβ / n")
    ax.set_ylabel("λ̂")
    ax.legend()
    return ax


def _num_samples(data) -> int:
    from slt_jax.streaming import StreamingData

    if isinstance(data, StreamingData):
        return data.num_samples
    import jax

    return int(np.shape(jax.tree.leaves(data)[0])[0])
