"""Susceptibilities (Baker et al., arXiv 2504.18274; estimators.md §4) from weight-restricted runs.

For each component C (a mask over the params; None = all weights) chains sample the
posterior restricted to C with the probe sets as evaluation sets; all components run as one
compiled program (each chain carries its component's mask). At every evaluation the
program records L_n(w) on the training data and the per-sample losses l_z(w) of every probe
sample; then, over the pooled draws of healthy chains,

    φ_C = L_n(w) - L_n(w*),     χ_z = -nβ Cov_w[φ_C, l_z - L_n]       (slt_jax convention)

convention="devinterp" reproduces devinterp v2: no nβ, plain means, and (l_z - L) centred
with its mean under the *unrestricted* run (an extra run with mask=None if no component is
unrestricted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import xarray as xr

from slt_jax import observables as obs
from slt_jax.workflows.grid import estimate_llc_grid
from slt_jax.workflows.llc import estimate_llc
from slt_jax.results.llc_result import LLCResult
from slt_jax.results.schema import ResultSchema, _decode_attr, encode_attrs, read_netcdf, write_netcdf

__all__ = ["SUSCEPTIBILITY_SCHEMA", "SusceptibilityResult", "estimate_susceptibilities"]

SUSCEPTIBILITY_SCHEMA = ResultSchema(
    "susceptibility",
    variables={"chi": ("component", "probe"), "llc": ("component",), "probe_set": ("probe",)},
    attrs=("convention", "nbeta"),
)


class SusceptibilityResult:
    """χ per (component, probe sample) with the probe set of each sample; one LLC run per component.

    `.dataset`: chi (component, probe), llc (component), probe_set (probe), attrs.
    `.runs`: component name -> LLCResult (in memory only; not saved).
    """

    def __init__(self, dataset: xr.Dataset, runs: dict[str, LLCResult] | None = None):
        self.dataset = dataset
        self.runs = runs or {}

    @property
    def matrix(self) -> np.ndarray:
        """(components, probe samples) response matrix."""
        return self.dataset["chi"].values

    @property
    def components(self) -> list[str]:
        return [str(c) for c in self.dataset["component"].values]

    @property
    def probe_sets(self) -> np.ndarray:
        return self.dataset["probe_set"].values.astype(str)

    def aggregate(self) -> dict[tuple[str, str], float]:
        """Mean χ over each probe set's samples, per component: {(component, probe set): χ}."""
        out = {}
        for c, comp in enumerate(self.components):
            for name in dict.fromkeys(self.probe_sets):
                out[(comp, name)] = float(self.matrix[c, self.probe_sets == name].mean())
        return out

    def pca(self, k: int = 2):
        """PCA of the response matrix with probe samples as observations (observables.response_pca)."""
        return obs.response_pca(self.matrix, min(k, len(self.components)))

    def to_netcdf(self, path: str | Path) -> Path:
        """Write chi, llc, probe_set and attrs atomically (the per-component runs are not saved)."""
        return write_netcdf(self.dataset, path, kind=SUSCEPTIBILITY_SCHEMA.kind)

    @classmethod
    def from_netcdf(cls, path: str | Path) -> "SusceptibilityResult":
        """Load a file written by `to_netcdf`; ResultFileError if it is unreadable or incomplete."""
        return cls(read_netcdf(path, SUSCEPTIBILITY_SCHEMA))

    @property
    def attrs(self) -> dict:
        return {k: _decode_attr(v) for k, v in self.dataset.attrs.items()}


def estimate_susceptibilities(
    loss_fn: Callable,
    params: Any,
    data: Any,
    *,
    probes: dict[str, Any],
    components: dict[str, Any] | None = None,
    convention: str = "slt_jax",
    eval_every: int = 1,
    **llc_kwargs,
) -> SusceptibilityResult:
    """Per-component, per-probe-sample susceptibilities.

    probes: {name: data pytree} probe sets (same structure as `data`, their own leading axis).
    components: {name: mask} weight restrictions (see adapters.layer_masks / head_masks /
      mask_from_paths); default {"all": None}.
    eval_every: draws between evaluations of the probe losses (default every draw).
    llc_kwargs: everything else `estimate_llc` takes (step_size, localization, num_chains,
      num_draws, batch_size, ...), shared by every component's run.
    """
    if not probes:
        raise ValueError("probes is empty; pass {name: probe data} with at least one probe set.")
    if convention not in ("slt_jax", "devinterp"):
        raise ValueError(f"convention={convention!r} is not known; choose 'slt_jax' or 'devinterp'.")
    components = dict(components) if components else {"all": None}
    for forbidden in ("mask", "eval_sets"):
        if forbidden in llc_kwargs:
            raise ValueError(f"pass weight restrictions as components=, not {forbidden}=.")

    runs, unrestricted = _run_components(loss_fn, params, data, probes, components, convention, eval_every, llc_kwargs)
    centers = None
    if convention == "devinterp":
        centers = {p: obs.susceptibility_center(*_probe_and_base(unrestricted, p)) for p in probes}

    rows, llcs = [], []
    for name, r in runs.items():
        phi = r.dataset["eval_loss"].values[r.healthy] - r.init_loss
        row = []
        for p in probes:
            probe_losses, base = _probe_and_base(r, p)
            row.append(obs.susceptibility(
                phi, probe_losses, base, r.nbeta, convention,
                delta_center=None if centers is None else centers[p],
            ))
        rows.append(np.concatenate(row))
        llcs.append(r.llc_mean)
    probe_set = np.concatenate([[p] * _num_probe_samples(runs, p) for p in probes])
    first = next(iter(runs.values()))
    attrs = dict(
        convention=convention,
        normalization=(
            "chi_z = -nbeta Cov_w[L_n - L_n(w*), l_z - L_n] (ddof=1)" if convention == "slt_jax"
            else "devinterp v2: chi_z = -(E[phi (l_z - L)] - E[phi] c_z), c_z from the unrestricted run, no nbeta"
        ),
        nbeta=first.nbeta,
        eval_every=eval_every,
        components_masked={k: m is not None for k, m in components.items()},
        llc_kwargs={k: v for k, v in llc_kwargs.items() if isinstance(v, (int, float, str, bool, type(None)))},
    )
    ds = xr.Dataset(
        {
            "chi": (("component", "probe"), np.stack(rows)),
            "llc": (("component",), np.asarray(llcs)),
            "probe_set": (("probe",), probe_set.astype(str)),
        },
        coords={"component": list(runs), "probe": np.arange(len(probe_set))},
        attrs=encode_attrs(attrs),
    )
    return SusceptibilityResult(ds, runs)


_UNRESTRICTED = "__unrestricted__"


def _run_components(loss_fn, params, data, probes, components, convention, eval_every, llc_kwargs):
    """Every component (and, for devinterp's centring, an unrestricted run) in one program:
    each chain carries its component's mask (estimate_llc_grid's `components`)."""
    for bad in ("step_size", "localization", "nbeta"):
        if isinstance(llc_kwargs.get(bad), (list, tuple, np.ndarray)):
            raise TypeError(f"{bad} must be one value for estimate_susceptibilities.")
    needs_extra = convention == "devinterp" and all(m is not None for m in components.values())
    masks = {**components, _UNRESTRICTED: None} if needs_extra else components
    if len(masks) == 1:  # one component: exactly an estimate_llc run with its mask
        (name, mask), = masks.items()
        run = estimate_llc(loss_fn, params, data, mask=mask, eval_sets=probes, eval_every=eval_every, **llc_kwargs)
        return {name: run}, run
    grid = estimate_llc_grid(loss_fn, [params], data, components=masks, eval_sets=probes, eval_every=eval_every,
                             **llc_kwargs)
    runs = {name: grid.sel(component=name) for name in masks}
    unrestricted = runs.pop(_UNRESTRICTED, None) or next(
        (runs[n] for n, m in components.items() if m is None), None)
    return runs, unrestricted


def _probe_and_base(result: LLCResult, probe: str) -> tuple[np.ndarray, np.ndarray]:
    """(probe per-sample losses (C, E, m), full-data loss (C, E)) over healthy chains."""
    losses = result.per_sample_losses(probe)
    if losses.ndim > 3:  # per-token losses: a probe sample's loss is its mean token loss
        losses = losses.reshape(losses.shape[:3] + (-1,)).mean(-1)
    return losses, result.dataset["eval_loss"].values[result.healthy]


def _num_probe_samples(runs: dict, probe: str) -> int:
    return next(iter(runs.values())).dataset[f"{probe}_losses"].shape[2]
