"""The labelled result of an LLC run: an xarray Dataset plus derived estimates.

Everything needed to recompute the estimates (the draws, L_n(w*), nβ) and to understand them
later (every hyperparameter and convention) lives in the Dataset, which round-trips through
netCDF; the estimates are recomputed on load by the pure functions in `observables`.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np
import xarray as xr

from slt_jax import observables as obs

CONVENTIONS = (
    "posterior p(w) ∝ exp(-nβ L_n(w) - γ/2 ||w - w*||²); "
    "SGLD w ← w - ε/2 ∇U + sqrt(ε) ξ with U = nβ L_B + γ/2 ||w - w*||²; "
    "draw loss = minibatch mean loss before the draw's update; "
    "λ̂ = nβ (mean over post-burn-in draws - L_n(w*)), L_n(w*) on the full data; "
    "llc_std across chains with ddof=1; llc_se = ArviZ MCSE of the pooled mean; "
    "llc_var = Var over draws of nβ L_n(w) from full-data losses, averaged over chains; "
    "unhealthy chains are excluded from every summary statistic"
)


class LLCResult:
    """Result of `estimate_llc`. `.dataset` holds the labelled arrays and metadata.

    Dataset variables (dims):
      loss (chain, draw)                 minibatch mean loss at each post-burn-in draw
      burnin_loss (chain, burnin_draw)   same during burn-in (thinned like the draws)
      eval_loss (chain, eval_draw)       full-data loss L_n at every `eval_every`-th draw
      healthy (chain), health_reason (chain)
    attrs: init_loss, nbeta, and every hyperparameter and convention used.
    """

    def __init__(self, dataset: xr.Dataset):
        self.dataset = dataset

    # --- raw pieces --------------------------------------------------------------------
    @cached_property
    def attrs(self) -> dict:
        """Metadata with JSON-encoded entries (dicts, lists, None) decoded."""
        return {k: _decode_attr(v) for k, v in self.dataset.attrs.items()}

    @property
    def init_loss(self) -> float:
        return float(self.attrs["init_loss"])

    @property
    def nbeta(self) -> float:
        return float(self.attrs["nbeta"])

    @property
    def loss_trace(self) -> np.ndarray:
        """(chains, draws) minibatch losses at the draws, all chains (healthy or not)."""
        return self.dataset["loss"].values

    @property
    def healthy(self) -> np.ndarray:
        return self.dataset["healthy"].values.astype(bool)

    @property
    def health_reasons(self) -> list[str]:
        return [str(r) for r in self.dataset["health_reason"].values]

    @property
    def num_healthy(self) -> int:
        return int(self.healthy.sum())

    # --- estimates ---------------------------------------------------------------------
    @cached_property
    def llc_per_chain(self) -> np.ndarray:
        """λ̂ per chain, all chains (NaN-bearing for unhealthy ones); shape (chains,)."""
        return obs.llc_per_chain(self.loss_trace, self.init_loss, self.nbeta)

    @property
    def llc_mean(self) -> float:
        """Mean of λ̂ over healthy chains."""
        good = self.llc_per_chain[self.healthy]
        return float(np.mean(good)) if good.size else float("nan")

    @property
    def llc_std(self) -> float:
        """Standard deviation of λ̂ across healthy chains (ddof=1)."""
        good = self.llc_per_chain[self.healthy]
        return float(np.std(good, ddof=1)) if good.size > 1 else float("nan")

    @cached_property
    def llc_se(self) -> float:
        """Standard error of llc_mean from the effective sample size of the nβ·loss trace."""
        return obs.mcse_mean(self.nbeta * self.loss_trace[self.healthy])

    @cached_property
    def ess(self) -> float:
        return obs.ess_bulk(self.loss_trace[self.healthy])

    @cached_property
    def rhat(self) -> float:
        """Rank-normalized split-R̂ of the loss trace over healthy chains."""
        return obs.rhat(self.loss_trace[self.healthy])

    @cached_property
    def llc_var_per_chain(self) -> np.ndarray:
        return obs.llc_from_variance(self.dataset["eval_loss"].values, self.nbeta)

    @property
    def llc_var(self) -> float:
        """Variance-based λ estimate (estimators.md §3), mean over healthy chains."""
        good = self.llc_var_per_chain[self.healthy]
        return float(np.mean(good)) if good.size else float("nan")

    def running_llc(self) -> np.ndarray:
        return obs.running_llc(self.loss_trace, self.init_loss, self.nbeta)

    # --- presentation ------------------------------------------------------------------
    def summary(self) -> str:
        a = self.attrs
        lines = [
            f"λ̂ = {self.llc_mean:.4g} ± {self.llc_se:.2g} (MCSE)   std across chains {self.llc_std:.3g}",
            f"variance-based λ̂ = {self.llc_var:.4g}   R̂ = {self.rhat:.3f}   ESS = {self.ess:.0f}",
            f"chains used {self.num_healthy}/{a['num_chains']}   draws {a['num_draws']} "
            f"(burn-in {a['num_burnin']}, thin {a['thin']})   L_n(w*) = {self.init_loss:.6g}",
            f"sampler {a['sampler']}  ε={a['step_size']:g}  γ={a['localization']:g}  "
            f"nβ={self.nbeta:.4g} ({a['nbeta_rule']})  batch {a['batch_size']}/{a['num_samples']}  "
            f"d={a['num_params']}",
            f"compile {a['compile_s']:.2f}s   sampling {a['sampling_s']:.2f}s "
            f"({a['chain_steps_per_s']:.3g} chain-steps/s)",
        ]
        for c, (ok, why) in enumerate(zip(self.healthy, self.health_reasons)):
            if not ok:
                lines.append(f"  chain {c} excluded: {why}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"LLCResult(\n{self.summary()}\n)"

    # --- persistence ---------------------------------------------------------------------
    def to_netcdf(self, path: str | Path) -> Path:
        """Write the Dataset (draws + metadata) to netCDF (h5netcdf engine; no pickle)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.dataset.to_netcdf(path, engine="h5netcdf")
        return path

    @classmethod
    def from_netcdf(cls, path: str | Path) -> "LLCResult":
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return cls(ds.load())


def encode_attrs(attrs: dict) -> dict:
    """netCDF attributes hold numbers and strings only: dicts/lists/None go as JSON text."""
    out = {}
    for k, v in attrs.items():
        if v is None or isinstance(v, (dict, list, tuple, bool)):
            out[k] = "json:" + json.dumps(v)
        else:
            out[k] = v
    return out


def _decode_attr(v):
    if isinstance(v, str) and v.startswith("json:"):
        return json.loads(v[5:])
    if isinstance(v, np.generic):
        return v.item()
    return v
