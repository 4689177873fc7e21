"""Observables as pure functions of the draws (estimators.md §3–4).

Inputs are plain arrays with chains on axis 0 and draws on axis 1 (numpy or jax; converted to
float64 numpy), so every function works on a fresh run, on a reloaded netCDF file, or on draws
made by other code. Per-sample losses add a last axis: (chains, draws, samples). Where draws
are pooled, all draws of all chains count as one posterior sample. Variances and covariances
over draws use ddof=1 unless a docstring says otherwise.

The exceptions are `mala_acceptance`, `tree_norm` and `distance_from_center`: pure jax.numpy
over pytrees, callable inside jitted, vmapped programs.

Modules, by what they compute:
    llc               λ̂ per chain, its running curve, the variance ("heat capacity") estimate
    mcmc              MCSE of the mean, bulk ESS, R̂ (ArviZ)
    norms, mala       pytree norms and the MALA acceptance probability (jax)
    thermo            WBIC, local free energy, reweighting, multi-temperature λ̂
    per_sample        functional variance, ν̂, T_n, G_n, WAIC; streaming PerSampleMoments
    susceptibilities  susceptibilities, the response matrix and its PCA
    influence         Bayesian influence functions (bif)
    _arrays           shared input checks and numpy helpers (private)
Every name is re-exported here, so `from slt_jax import observables as obs; obs.bif(...)` works.
"""

# The `_name as _name` imports re-export private names of the former single module for code
# that reaches them through it (e.g. results.llc_result calls obs._arviz()); not in __all__.
from slt_jax.observables._arrays import _as_array as _as_array
from slt_jax.observables._arrays import _count as _count
from slt_jax.observables._arrays import _draws2 as _draws2
from slt_jax.observables._arrays import _draws3 as _draws3
from slt_jax.observables._arrays import _logsumexp as _logsumexp
from slt_jax.observables._arrays import _min_draws as _min_draws
from slt_jax.observables._arrays import _pool as _pool
from slt_jax.observables._arrays import _positive as _positive
from slt_jax.observables._arrays import _same_draws as _same_draws
from slt_jax.observables.influence import _centered as _centered
from slt_jax.observables.influence import bif
from slt_jax.observables.llc import llc_from_variance, llc_per_chain, running_llc
from slt_jax.observables.mala import mala_acceptance
from slt_jax.observables.mcmc import _arviz as _arviz
from slt_jax.observables.mcmc import ess_bulk, mcse_mean, rhat
from slt_jax.observables.norms import _check_same_structure as _check_same_structure
from slt_jax.observables.norms import _sq_norm as _sq_norm
from slt_jax.observables.norms import distance_from_center, tree_norm
from slt_jax.observables.per_sample import (
    PerSampleMoments,
    bayes_training_loss,
    bayes_training_loss_from_moments,
    functional_variance,
    functional_variance_from_moments,
    gibbs_training_loss,
    gibbs_training_loss_from_moments,
    singular_fluctuation,
    singular_fluctuation_from_moments,
    waic,
    waic_from_moments,
)
from slt_jax.observables.per_sample import _moments as _moments
from slt_jax.observables.per_sample import _per_sample_losses as _per_sample_losses
from slt_jax.observables.susceptibilities import (
    ResponsePCA,
    aggregate_susceptibility,
    response_matrix,
    response_pca,
    susceptibility,
    susceptibility_center,
)
from slt_jax.observables.thermo import (
    MultiTemperatureFit,
    ReweightingLLC,
    local_free_energy,
    multi_temperature_llc,
    reweight,
    reweighting_llc,
    wbic,
)
from slt_jax.observables.thermo import _reweight_weights as _reweight_weights

__all__ = [
    "MultiTemperatureFit",
    "PerSampleMoments",
    "ResponsePCA",
    "ReweightingLLC",
    "aggregate_susceptibility",
    "bayes_training_loss",
    "bayes_training_loss_from_moments",
    "bif",
    "distance_from_center",
    "ess_bulk",
    "functional_variance",
    "functional_variance_from_moments",
    "gibbs_training_loss",
    "gibbs_training_loss_from_moments",
    "llc_from_variance",
    "llc_per_chain",
    "local_free_energy",
    "mala_acceptance",
    "mcse_mean",
    "multi_temperature_llc",
    "response_matrix",
    "response_pca",
    "reweight",
    "reweighting_llc",
    "rhat",
    "running_llc",
    "singular_fluctuation",
    "singular_fluctuation_from_moments",
    "susceptibility",
    "susceptibility_center",
    "tree_norm",
    "waic",
    "waic_from_moments",
    "wbic",
]
