"""The labelled result of an LLC run: an xarray Dataset plus derived estimates.

Everything needed to recompute the estimates (the draws, L_n(w*), nβ) and to understand them
later (every hyperparameter and convention) lives in the Dataset, which round-trips through
netCDF; the estimates are recomputed on load by the pure functions in `observables`.
"""

from __future__ import annotations

import json
import warnings
from functools import cached_property
from pathlib import Path

import numpy as np
import xarray as xr

from slt_jax import observables as obs
from slt_jax.results.schema import (  # noqa: F401  (re-exported for older imports)
    KIND_ATTR, ResultFileError, ResultSchema, _decode_attr, decode_attrs, encode_attrs, read_netcdf, write_netcdf,
)

__all__ = ["CONVENTIONS", "LLCResult", "LLC_SCHEMA"]

CONVENTIONS = (
    "posterior p(w) ∝ exp(-nβ L_n(w) - γ/2 ||w - w*||²); "
    "SGLD w ← w - ε/2 ∇U + sqrt(ε) ξ with U = nβ L_B + γ/2 ||w - w*||²; "
    "draw loss = minibatch mean loss before the draw's update; "
    "λ̂ = nβ (mean over post-burn-in draws - L_n(w*)), L_n(w*) on the full data; "
    "llc_std across chains with ddof=1; llc_se = ArviZ MCSE of the pooled mean; "
    "llc_var = Var over draws of nβ L_n(w) from full-data losses, averaged over chains; "
    "unhealthy chains (non-finite or runaway loss) are excluded from every summary statistic, "
    "which is NaN when fewer than half the chains are healthy"
)


class LLCResult:
    """Result of `estimate_llc`. `.dataset` holds the labelled arrays and metadata.

    Dataset variables (dims):
      loss (chain, draw)                 minibatch mean loss at each post-burn-in draw
      grad_norm, distance, weight_norm, noise_norm (chain, draw)   ||∇L_B||, ||w - w*||, ||w||,
                                         noise scale at each draw (SGLD-type kernels: sqrt(Σ ε_t),
                                         the expected ||sqrt(ε_t)ξ||; SGHMC/SGNHT: the realized norm)
      mala_acceptance (chain, eval_draw) MALA acceptance of an SGLD probe move at each evaluation
      <name>_losses (chain, eval_draw, <name>_sample[, ...])  per-sample losses of eval set <name>
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
        return decode_attrs(self.dataset.attrs)

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
    def health(self) -> list:
        """Per-chain verdicts (ChainHealth: chain, healthy, reason, warnings)."""
        from slt_jax.health import ChainHealth

        warn = self.dataset["health_warnings"].values if "health_warnings" in self.dataset else [""] * len(self.healthy)
        return [
            ChainHealth(c, bool(ok), str(why), tuple(w for w in str(ws).split("; ") if w))
            for c, (ok, why, ws) in enumerate(zip(self.healthy, self.health_reasons, warn))
        ]

    @property
    def num_healthy(self) -> int:
        return int(self.healthy.sum())

    @cached_property
    def too_few_healthy(self) -> str:
        """Why the summary statistics are NaN ("" when enough chains are healthy): fewer than
        health.MIN_HEALTHY_FRACTION of the chains survived, so the survivors do not stand for the
        run. Warns (RuntimeWarning) once per result when it applies."""
        from slt_jax.health import too_few_healthy

        message = too_few_healthy(self.num_healthy, len(self.healthy))
        if message:
            warnings.warn(message, RuntimeWarning, stacklevel=3)
        return message

    @property
    def _summarized(self) -> np.ndarray:
        """The chains summary statistics average over: the healthy ones, or none when too few are."""
        return self.healthy & (not self.too_few_healthy)

    # --- estimates ---------------------------------------------------------------------
    @cached_property
    def llc_per_chain(self) -> np.ndarray:
        """λ̂ per chain, all chains (NaN-bearing for unhealthy ones); shape (chains,)."""
        return obs.llc_per_chain(self.loss_trace, self.init_loss, self.nbeta)

    @property
    def llc_mean(self) -> float:
        """Mean of λ̂ over healthy chains (NaN when too few are healthy: see too_few_healthy)."""
        good = self.llc_per_chain[self._summarized]
        return float(np.mean(good)) if good.size else float("nan")

    @property
    def llc_std(self) -> float:
        """Standard deviation of λ̂ across healthy chains (ddof=1)."""
        good = self.llc_per_chain[self._summarized]
        return float(np.std(good, ddof=1)) if good.size > 1 else float("nan")

    @cached_property
    def llc_se(self) -> float:
        """Standard error of llc_mean from the effective sample size of the nβ·loss trace."""
        return obs.mcse_mean(self.nbeta * self.loss_trace[self._summarized])

    @cached_property
    def ess(self) -> float:
        return obs.ess_bulk(self.loss_trace[self._summarized])

    @cached_property
    def rhat(self) -> float:
        """Rank-normalized split-R̂ of the loss trace over healthy chains."""
        return obs.rhat(self.loss_trace[self._summarized])

    @cached_property
    def llc_var_per_chain(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):  # diverged chains' inf losses: NaN, as for llc_per_chain
            return obs.llc_from_variance(self.dataset["eval_loss"].values, self.nbeta)

    @property
    def llc_var(self) -> float:
        """Variance-based λ estimate (estimators.md §3), mean over healthy chains."""
        good = self.llc_var_per_chain[self._summarized]
        return float(np.mean(good)) if good.size else float("nan")

    @property
    def llc_var_se(self) -> float:
        """Standard error of llc_var from its spread across healthy chains (NaN below 2 chains)."""
        good = self.llc_var_per_chain[self._summarized]
        good = good[np.isfinite(good)]
        return float(np.std(good, ddof=1) / np.sqrt(good.size)) if good.size > 1 else float("nan")

    @property
    def mala_acceptance(self) -> np.ndarray:
        """Mean MALA acceptance of the SGLD probe moves per chain, shape (chains,) (≈0.9 is healthy)."""
        values = self.dataset["mala_acceptance"].values
        with warnings.catch_warnings():  # all-NaN rows: not measured (diagnostics without "mala")
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(values, axis=1) if values.shape[1] else np.full(len(self.healthy), np.nan)

    @property
    def wbic(self) -> float:
        """WBIC = E_β[n L_n] from the full-data evaluations of healthy chains (β = 1/log n).

        NaN when nβ is not n/log n (to float32 rounding, whatever rule produced it): WBIC is
        defined at that temperature only. NaN with a RuntimeWarning when no chain (or too few)
        is healthy, or when the run has no full-data evaluations.
        """
        n = int(self.attrs["num_samples"])
        # rel 1e-6: nβ = n/log n passed explicitly may have been rounded through float32.
        if not np.isclose(self.nbeta, n / np.log(n), rtol=1e-6, atol=0.0):
            return float("nan")
        losses = self.dataset["eval_loss"].values[self._summarized]
        if not losses.size:
            why = (
                "no healthy chains" if not self.num_healthy
                else "too few healthy chains" if self.too_few_healthy else "no full-data evaluations"
            )
            warnings.warn(f"WBIC is NaN: {why} (see result.health).", RuntimeWarning, stacklevel=2)
            return float("nan")
        return obs.wbic(losses, n)

    @property
    def verdicts(self) -> tuple[str, ...]:
        """Run-level consistency verdicts (health.run_verdicts), each with its fix; flags only.

        Uses the attrs' curvature (top Hessian eigenvalue of L_n at w*) when recorded; pass one
        with `consistency(curvature=...)`.
        """
        return self.consistency(self.attrs.get("curvature"))

    def consistency(self, curvature: float | None = None) -> tuple[str, ...]:
        """`verdicts` with a curvature estimate h_max of L_n at w* (None: not known)."""
        from slt_jax.health import run_verdicts

        a = self.attrs
        with warnings.catch_warnings():  # all-NaN slices: not measured
            warnings.simplefilter("ignore", RuntimeWarning)
            distance = self.dataset["distance"].values[self.healthy] if "distance" in self.dataset else np.array([])
            mean_distance = float(np.nanmean(distance)) if distance.size else float("nan")
            mala = self.mala_acceptance[self.healthy]
            mala_mean = float(np.nanmean(mala)) if mala.size else float("nan")
        return run_verdicts(
            llc_mean=self.llc_mean, llc_se=self.llc_se, llc_var=self.llc_var, llc_var_se=self.llc_var_se,
            mean_distance=mean_distance, num_params=float(a["num_params"]),
            localization=float(a["localization"]),
            # ε·γ < 4 is the edge of plain SGLD; adaptive and momentum samplers step differently.
            step_size=float(a["step_size"]) if a.get("sampler") == "sgld" else float("nan"),
            nbeta=self.nbeta, mala_mean=mala_mean,
            curvature=float("nan") if curvature is None else float(curvature),
        )

    @property
    def free_energy(self) -> float:
        """Local free energy F̂ = n L_n(w*) + λ̂ log n."""
        return obs.local_free_energy(self.init_loss, self.llc_mean, int(self.attrs["num_samples"]))

    def per_sample_losses(self, name: str, *, healthy_only: bool = True) -> np.ndarray:
        """(chains, evaluations, samples[, tokens]) losses of eval set `name` at the evaluations."""
        key = f"{name}_losses"
        if key not in self.dataset:
            if f"{name}_moment_mean" in self.dataset:
                raise KeyError(
                    f"eval set {name!r} was stored as running moments (per_sample_storage="
                    f"{self.attrs.get('per_sample_storage')!r}), not per draw; rerun with "
                    "per_sample_storage='memory' for BIFs and susceptibilities."
                )
            raise KeyError(f"no eval set {name!r}; this run has {self.attrs.get('eval_sets') or 'none'} (pass eval_sets=).")
        values = self.dataset[key].values
        return values[self.healthy] if healthy_only else values

    def moments(self, name: str):
        """Per-sample moments of eval set `name` pooled over healthy chains (observables.PerSampleMoments).

        Available in both storage modes: from the stored losses, or from the run's accumulators.
        """
        if f"{name}_losses" in self.dataset:
            losses = _per_sample(self.per_sample_losses(name))
            return obs.PerSampleMoments.init(losses.shape[-1]).update(losses.reshape(-1, losses.shape[-1]))
        if f"{name}_moment_mean" not in self.dataset:
            raise KeyError(f"no eval set {name!r}; this run has {self.attrs.get('eval_sets') or 'none'} (pass eval_sets=).")
        ds, acc = self.dataset, None
        for c in np.flatnonzero(self.healthy):
            chain = obs.PerSampleMoments(
                int(ds[f"{name}_moment_count"].values[c]), ds[f"{name}_moment_mean"].values[c],
                ds[f"{name}_moment_m2"].values[c], ds[f"{name}_moment_lse"].values[c],
            )
            acc = chain if acc is None else acc.merge(chain)
        return acc

    def singular_fluctuation(self, name: str) -> float:
        """ν̂ = (β/2) V_n, V_n = Σ_{i ≤ n} Var_w[l_i], from eval set `name` (m samples of the
        training distribution; the sum is scaled by n/m, so a subset estimates the full V_n).
        Per-token losses are averaged per sample first."""
        acc = self.moments(name)
        return obs.singular_fluctuation_from_moments(acc, self.beta) * float(self.attrs["num_samples"]) / acc.mean.shape[0]

    def functional_variance(self, name: str) -> float:
        """Σ_i Var_w[l_i(w)] over the samples of eval set `name` (not rescaled to n)."""
        return obs.functional_variance_from_moments(self.moments(name))

    def waic(self, name: str) -> float:
        """WAIC = T_n + (β/n) V_n per sample of eval set `name` (estimators.md §4)."""
        return obs.waic_from_moments(self.moments(name), self.beta)

    def bif(self, train: str, query: str | None = None, kind: str = "correlation") -> np.ndarray:
        """Bayesian influence function matrix (train samples × query samples) over the draws."""
        q = self.per_sample_losses(query or train)
        return obs.bif(_per_sample(self.per_sample_losses(train)), _per_sample(q), kind=kind)

    def reweighting_llc(self, relative_offsets=(-0.05, -0.02, 0.02, 0.05)):
        """Multi-temperature λ̂ from this run: E[n L_n] reweighted to β' = β(1 + δ) and the slope
        against 1/β' (observables.reweighting_llc; warns when the weights degenerate). Uses the
        full-data losses of healthy chains at the evaluations."""
        nl = float(self.attrs["num_samples"]) * self.dataset["eval_loss"].values[self.healthy].astype(np.float64)
        return obs.reweighting_llc(nl, self.beta, self.beta * (1.0 + np.asarray(relative_offsets)))

    @property
    def beta(self) -> float:
        return self.nbeta / float(self.attrs["num_samples"])

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
        mala = self.mala_acceptance[self.healthy]
        if mala.size and np.isfinite(mala).any() and not self.too_few_healthy:
            lines.append(
                f"MALA acceptance {np.nanmean(mala):.3f} (min over chains {np.nanmin(mala):.3f})   "
                f"WBIC {self.wbic:.6g}   free energy {self.free_energy:.6g}"
            )
        if self.too_few_healthy:
            lines.append(f"λ̂ not reported: {self.too_few_healthy}")
        lines += [f"check: {v}" for v in self.verdicts]
        for h in self.health:
            if not h.healthy or h.warnings:
                lines.append(f"  {h}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"LLCResult(\n{self.summary()}\n)"

    def to_inference_data(self):
        """ArviZ InferenceData: posterior = nβ(L_B - L_n(w*)) per draw (its mean is λ̂), sample_stats
        = loss, grad_norm, distance; log_likelihood = -(per-sample losses) per eval set (so
        `az.waic`/`az.loo` apply, at the eval draws). All chains; see `.healthy`."""
        az = obs._arviz()
        ds = self.dataset
        posterior = xr.Dataset({"llc_draw": self.nbeta * (ds["loss"].astype("float64") - self.init_loss)})
        stats = ds[[v for v in ("loss", "grad_norm", "distance", "weight_norm", "noise_norm") if v in ds]]
        groups = {"posterior": posterior, "sample_stats": stats}
        loglik = {
            name[: -len("_losses")]: -ds[name].rename({"eval_draw": "draw"})
            for name in ds.data_vars if name.endswith("_losses")
        }
        if loglik:
            groups["log_likelihood"] = xr.Dataset(loglik)
        idata = az.InferenceData(**groups)
        idata.posterior.attrs.update(ds.attrs)
        return idata

    # --- persistence ---------------------------------------------------------------------
    def to_netcdf(self, path: str | Path) -> Path:
        """Write the Dataset (draws + metadata) to netCDF (h5netcdf engine; no pickle), atomically:
        a failed write leaves any earlier file at `path` intact."""
        return write_netcdf(self.dataset, path, kind=LLC_SCHEMA.kind)

    @classmethod
    def from_netcdf(cls, path: str | Path) -> "LLCResult":
        """Load a result written by `to_netcdf`; ResultFileError if it is unreadable or incomplete."""
        return cls(read_netcdf(path, LLC_SCHEMA))



# --- what an LLC result needs on disk ----------------------------------------------------
def _eval_sets_stored(ds: xr.Dataset) -> list[str]:
    """Every eval set named in the attrs has its per-draw losses or its running moments."""
    try:
        names = _decode_attr(ds.attrs.get("eval_sets", "json:[]")) or []
    except json.JSONDecodeError:
        return [f"attribute 'eval_sets' is not valid JSON: {ds.attrs['eval_sets']!r}"]
    moments = ("count", "mean", "m2", "lse")
    return [
        f"eval set {name!r} has neither {name}_losses nor {name}_moment_{{{','.join(moments)}}}"
        for name in names
        if f"{name}_losses" not in ds and not all(f"{name}_moment_{m}" in ds for m in moments)
    ]


_CD, _CB, _CE = ("chain", "draw"), ("chain", "burnin_draw"), ("chain", "eval_draw")
LLC_SCHEMA = ResultSchema(
    "llc",
    variables={
        "loss": _CD, "grad_norm": _CD, "distance": _CD, "burnin_loss": _CB, "burnin_distance": _CB,
        "eval_loss": _CE, "mala_acceptance": _CE, "healthy": ("chain",), "health_reason": ("chain",),
    },
    # What the estimates and .summary() read.
    attrs=(
        "init_loss", "nbeta", "nbeta_rule", "num_samples", "num_chains", "num_draws", "num_burnin", "thin",
        "sampler", "step_size", "localization", "batch_size", "num_params", "compile_s", "sampling_s",
        "chain_steps_per_s",
    ),
    check=_eval_sets_stored,
)


def _per_sample(losses: np.ndarray) -> np.ndarray:
    """(chains, draws, samples, tokens...) -> (chains, draws, samples): mean over tokens."""
    return losses.reshape(losses.shape[:3] + (-1,)).mean(axis=-1) if losses.ndim > 3 else losses


