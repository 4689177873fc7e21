"""The labelled result of a grid run: one Dataset over checkpoint × ε × γ × nβ × chain × draw."""

from __future__ import annotations

import itertools
from functools import cached_property
from pathlib import Path

import numpy as np
import xarray as xr

from slt_jax.results.llc_result import LLCResult
from slt_jax.results.schema import ResultSchema, decode_attrs, encode_attrs, read_netcdf, write_netcdf

__all__ = ["GridResult", "CONFIG_DIMS"]

CONFIG_DIMS = ("checkpoint", "step_size", "localization", "nbeta")
OPTIONAL_DIMS = ("component",)  # present when the run had components (several masks)
_GRID_ONLY = ("init_loss", "nbeta_rule", "sampling_s", "checkpoints_in_program", "num_params")


class GridResult:
    """Result of `estimate_llc_grid`. `.dataset` holds every draw with dims (checkpoint,
    step_size, localization, nbeta, chain, draw, ...) and coordinates for the labels.

    `.sel(checkpoint=..., step_size=..., localization=..., nbeta=...)` gives the `LLCResult` of
    one configuration (dims with a single value may be omitted); `.llc_mean`, `.llc_se`,
    `.llc_std`, `.llc_var`, `.mala_mean`, `.num_healthy` are DataArrays over the configuration dims.
    """

    def __init__(self, dataset: xr.Dataset):
        self.dataset = dataset

    @cached_property
    def attrs(self) -> dict:
        return decode_attrs(self.dataset.attrs)

    @property
    def dims(self) -> tuple:
        """The configuration dims: CONFIG_DIMS, plus "component" for a run with components."""
        return CONFIG_DIMS + tuple(d for d in OPTIONAL_DIMS if d in self.dataset.dims)

    @property
    def coords(self) -> dict:
        return {d: self.dataset[d].values for d in self.dims}

    def configurations(self) -> list[dict]:
        """Every configuration as {dim: label}, in the order the chains were laid out."""
        values = [self.dataset[d].values.tolist() for d in self.dims]
        return [dict(zip(self.dims, combo)) for combo in itertools.product(*values)]

    def sel(self, **labels) -> LLCResult:
        """The LLCResult of one configuration (by label; a dim with one value may be omitted)."""
        index = self._index(labels)
        ds = self.dataset.isel(index)
        k = index["checkpoint"]
        attrs = dict(self.attrs)
        attrs.update(
            init_loss=float(ds["init_loss"]),
            step_size=float(ds["step_size"]),
            localization=float(ds["localization"]),
            nbeta=float(ds["nbeta"]),
            nbeta_rule=str(ds["nbeta_rule"].values),
            checkpoint=k,
            checkpoint_label=self.dataset["checkpoint"].values[k].item(),
            checkpoints_in_program=int(ds["checkpoints_in_program"]),
            sampling_s=float(ds["sampling_s"]),
        )
        if "component" in index:
            attrs.update(component=str(ds["component"].values), num_params=int(ds["num_params"]), masked=True)
        programs_chains = attrs["padded_chains"]
        attrs["chain_steps_per_s"] = (
            programs_chains * (attrs["num_burnin"] + attrs["num_draws"] * attrs["thin"]) / max(attrs["sampling_s"], 1e-12)
        )
        keep = [v for v in ds.data_vars if v not in _GRID_ONLY]
        out = ds[keep].drop_vars(list(self.dims), errors="ignore")
        # C-ordered copies: a slice of the grid is strided, and numpy's reductions sum strided
        # and contiguous arrays in different orders, so statistics of a fresh selection would
        # differ in the last bit from the same result read back from its file.
        for name in out.data_vars:
            out[name] = out[name].copy(data=np.ascontiguousarray(out[name].values))

        out.attrs = encode_attrs(attrs)
        return LLCResult(out)

    def _index(self, labels: dict) -> dict:
        unknown = sorted(set(labels) - set(self.dims))
        if unknown:
            raise KeyError(f"unknown grid dims {unknown}; the dims are {list(self.dims)}.")
        index = {}
        for dim in self.dims:
            values = self.dataset[dim].values
            if dim not in labels:
                if len(values) != 1:
                    raise KeyError(f"{dim} has {len(values)} values {values.tolist()}; pass {dim}=<one of them>.")
                index[dim] = 0
                continue
            hits = np.flatnonzero(_matches(values, labels[dim]))
            if hits.size != 1:
                raise KeyError(f"{dim}={labels[dim]!r} is not one of {values.tolist()}.")
            index[dim] = int(hits[0])
        return index

    # --- summaries over the configuration dims --------------------------------------------
    def _over_configs(self, fn) -> xr.DataArray:
        shape = tuple(self.dataset.sizes[d] for d in self.dims)
        out = np.full(shape, np.nan)
        for idx in itertools.product(*(range(s) for s in shape)):
            labels = {d: self.dataset[d].values[i] for d, i in zip(self.dims, idx)}
            out[idx] = fn(self.sel(**labels))
        return xr.DataArray(out, dims=self.dims, coords={d: self.dataset[d] for d in self.dims})

    @cached_property
    def llc_mean(self) -> xr.DataArray:
        return self._over_configs(lambda r: r.llc_mean)

    @cached_property
    def llc_se(self) -> xr.DataArray:
        return self._over_configs(lambda r: r.llc_se)

    @cached_property
    def llc_std(self) -> xr.DataArray:
        return self._over_configs(lambda r: r.llc_std)

    @cached_property
    def llc_var(self) -> xr.DataArray:
        return self._over_configs(lambda r: r.llc_var)

    @cached_property
    def mala_mean(self) -> xr.DataArray:
        return self._over_configs(lambda r: float(np.nanmean(r.mala_acceptance)) if np.isfinite(r.mala_acceptance).any() else np.nan)

    @cached_property
    def num_healthy(self) -> xr.DataArray:
        return self.dataset["healthy"].sum("chain")

    def llc_per_chain(self) -> xr.DataArray:
        """λ̂ per chain over (configuration dims, chain); unhealthy chains included (see healthy)."""
        loss = self.dataset["loss"].astype("float64").mean("draw")
        return (self.dataset["nbeta"] * (loss - self.dataset["init_loss"])).transpose(*self.dims, "chain")

    def summary(self) -> str:
        lines = [f"grid {dict((d, self.dataset.sizes[d]) for d in self.dims)} × {self.dataset.sizes['chain']} chains; "
                 f"compile {self.attrs['compile_s']:.2f}s ({self.attrs['compilations']} compilations)"]
        for cfg in self.configurations():
            r = self.sel(**cfg)
            lines.append(f"  {cfg}: λ̂ = {r.llc_mean:.4g} ± {r.llc_se:.2g}  chains used {r.num_healthy}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"GridResult(\n{self.summary()}\n)"

    # --- persistence ---------------------------------------------------------------------
    def to_netcdf(self, path: str | Path) -> Path:

        return write_netcdf(self.dataset, path, kind=GRID_SCHEMA.kind)

    @classmethod
    def from_netcdf(cls, path: str | Path) -> "GridResult":

        return cls(read_netcdf(path, GRID_SCHEMA))


def _matches(values: np.ndarray, label) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isclose(values, float(label), rtol=1e-9, atol=0.0)
    return values == label


def _schema():

    # Dims are checked by the grid's own rule (CONFIG_DIMS, then optionally "component").
    return ResultSchema(
        kind="llc_grid",
        variables={"loss": None, "eval_loss": None, "healthy": None,
                   "init_loss": ("checkpoint",), "nbeta_rule": ("nbeta",)},
        check=_grid_dims,
        attrs=("num_chains", "num_samples", "num_params", "sampler"),
    )


def _grid_dims(ds) -> list[str]:
    extra = tuple(d for d in OPTIONAL_DIMS if d in ds.dims)
    want = CONFIG_DIMS + extra + ("chain", "draw")
    return [] if ds["loss"].dims == want else [f"variable 'loss' has dims {ds['loss'].dims}, expected {want}"]


GRID_SCHEMA = _schema()
