"""The metadata every result carries: each hyperparameter (defaults included) and convention."""

from __future__ import annotations

import jax

__all__ = ["run_attrs", "package_version"]

KEY_DERIVATION = (
    "chain c of every configuration, step s: fold_in(fold_in(key(seed), c), s); "
    "c counts chains within the configuration"
)
MALA = "acceptance of one SGLD probe move (ε = the chain's step size, same minibatch) at each evaluation; not taken"


def run_attrs(setup, axes, storage: str, planned: int, per_program: int, plan, log) -> dict:
    """Grid-level attrs (the per-configuration values ε, γ, nβ live in coordinates)."""
    from slt_jax.results.llc_result import CONVENTIONS

    s, e, x, p = setup.sampling, setup.evals, setup.execution, setup.problem
    return dict(
        sampler=s.sampler,
        sampler_kwargs=s.sampler_kwargs,
        sampler_constants={**s.sampler_numeric, **s.sampler_structural},
        num_chains=s.num_chains, num_draws=s.num_draws, num_burnin=s.num_burnin, thin=s.thin,
        batch_size=s.batch_size, batch_sampling=s.batch_sampling, num_samples=plan.num_samples,
        num_params=p.num_params, num_params_total=p.num_params_total, masked=p.partition.frozen_index != ()
        or any(m is not None for m in p.partition.element_mask),
        param_dtypes=list(p.loss_dtypes), sampler_state_dtype="float32",
        seed=s.seed, bounding_box=s.bounding_box, eval_every=e.eval_every, eval_sets=sorted(p.eval_sets),
        diagnostics=list(e.diagnostics), eval_batching=e.eval_batching, draw_diagnostics=e.draw_diagnostics,
        chain_batch=x.chain_batch, step_chain_group=plan.step_chain_group, eval_chain_group=plan.eval_chain_group, **setup.choice.attrs(),
        per_sample_storage=storage, per_sample_bytes=planned,
        key_derivation=KEY_DERIVATION, mala=MALA, conventions=CONVENTIONS,
        slt_jax_version=package_version(), jax_version=jax.__version__,
        num_devices=len(x.devices), streaming=p.streaming,
        configs_per_program=per_program, padded_chains=plan.num_chains,
        compile_s=log.seconds, compilations=log.count, persistent_cache_hits=log.persistent_hits,
        program_cache_hit=all(setup.cache_hits),
        compilation_cache_dir=_cache_dir(),
    )


def _cache_dir():
    return jax.config.jax_compilation_cache_dir or None


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slt_jax")
    except PackageNotFoundError:
        return "unknown"
