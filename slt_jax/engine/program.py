"""The compiled programs of a run. Pure: nothing here touches files or progress bars.

Layout of one compiled segment (static shapes, so a run compiles one program; burn-in runs
through it as draws with negative indices):

    scan over blocks of `eval_every` draws            (unbatched block index)
      ├─ evaluation at the block's first draw          (a real `lax.cond`, skipped outside the run):
      │    full-data loss, MALA probe, per-sample losses of every eval set   -> BlockRecord
      └─ scan over draws in the block
           └─ scan over `thin` steps                   (a `lax.cond` skips steps outside the run)
                └─ vmap over chains: minibatch → value_and_grad → sampler step -> DrawRecord

Step and draw indices are scan inputs, *outside* the chain vmap, so `lax.cond` on them stays
a real branch instead of becoming a select that computes both sides. Every chain reads its
own ε, γ, nβ, key and sampler constants from its ChainConfig (traced data), so one program
serves any batch of configurations. Randomness for chain c at global step s is
fold_in(config.key[c], s): results do not depend on how the run is cut into segments, on
the device count, or on which other chains share the program.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from slt_jax.engine.config import ChainConfig
from slt_jax.engine.data import chunked_per_sample, draw_minibatch, mean_per_sample, num_samples
from slt_jax.engine.plan import RunPlan
from slt_jax.engine.records import BlockRecord, DrawRecord
from slt_jax.engine.sharding import shardings
from slt_jax.engine.vectorize import batched_shaped, flat, map_over_chains, norm, shaped
from slt_jax.posterior import Posterior, apply_element_mask, potential_grad

__all__ = ["Programs", "build_programs", "MALA_SALT"]

MALA_SALT = 0x4D414C41  # "MALA": the probe's key is fold_in(fold_in(chain key, draw), salt)


class Programs(NamedTuple):
    """The jitted pieces of one run. States are batched over chains on axis 0."""

    init: Callable  # (center, config) -> sampler states
    draws: Callable  # (states, config, first_draw, center, frozen, data, eval_sets, element_mask) -> (states, DrawRecord, BlockRecord)
    full_loss: Callable  # (sampled, frozen, data) -> L_n
    chunk_losses: Callable  # (sampled, frozen, batch) -> per-sample losses (B,) (streamed L_n)


def _loss_view(plan: RunPlan):
    """Sampled leaves as the loss sees them: the user's shapes, in the params' own dtype
    (chains hold float32; bf16/f16 models are evaluated in their precision)."""
    dtypes = plan.loss_dtypes

    def view(flat_position, like):
        leaves = shaped(flat_position, like)
        return [x.astype(d) for x, d in zip(leaves, dtypes)] if dtypes else leaves

    return view


def build_programs(raw_loss: Callable, sampler: tuple, plan: RunPlan, mesh: jax.sharding.Mesh,
                   grad_transform: Callable | None = None) -> Programs:
    """Jitted programs for `plan` on `mesh`.

    raw_loss(sampled, frozen, batch) is the user's loss on the sampled leaves, (B,) or (B, T).
    sampler = (init(position, hyper), step(key, state, grad, posterior, hyper)). The chain
    axis (plan.num_chains, a multiple of the mesh size) is split over the devices and
    everything else is replicated; chains never communicate, so there are no collectives.
    grad_transform wraps value_and_grad (the backend's matmul layout; plan.cpu_dot_layout
    records that it is set, so the program cache tells the two apart).
    """
    from slt_jax.observables import mala_acceptance
    from slt_jax.samplers.base import langevin_update, tree_normal

    sampler_init, sampler_step = sampler
    view = _loss_view(plan)

    def mean_loss(position, like, frozen, batch):
        return jnp.mean(mean_per_sample(raw_loss(view(position, like), frozen, batch)))

    full_per_sample = chunked_per_sample(
        lambda s, f, b: mean_per_sample(raw_loss(s, f, b)), plan.num_samples, plan.eval_chunk
    )

    def full_loss(sampled, frozen, data):
        return jnp.mean(full_per_sample(sampled, frozen, data))

    def chunk_losses(sampled, frozen, batch):
        return mean_per_sample(raw_loss(sampled, frozen, batch))

    loss_and_grad = jax.value_and_grad(lambda p, like, f, b: mean_loss(p, like, f, b))
    if grad_transform is not None:
        loss_and_grad = grad_transform(loss_and_grad)

    def value_and_grad(position, like, frozen, batch):
        loss, grad = loss_and_grad(position, like, frozen, batch)
        return loss, flat(grad)

    stop = plan.num_burnin + plan.num_draws * plan.thin
    nan_per_chain = jnp.full((plan.num_chains,), jnp.nan, jnp.float32)
    center_axis = 0 if plan.per_chain_center else None
    mask_axis = 0 if plan.per_chain_mask else None
    data_axis = 0 if plan.streaming else None

    def posterior_of(cfg: ChainConfig, center, element_mask) -> Posterior:
        return Posterior(cfg.nbeta, cfg.localization, center, element_mask)

    def one_chain_step(state, cfg, step, center, frozen, data, element_mask):
        batch_key, kernel_key = jax.random.split(jax.random.fold_in(cfg.key, step))
        # Streaming: the host already gathered this step's rows (same indices, same key).
        batch = data if plan.streaming else draw_minibatch(batch_key, data, plan)
        # The loss is recorded at the position *before* this step's update (estimators.md §3).
        position = state.position
        loss, grad = value_and_grad(position, center, frozen, batch)
        posterior = posterior_of(cfg, flat(center), flat(element_mask))
        hyper = {"step_size": cfg.step_size, **cfg.hyper}
        state, info = sampler_step(kernel_key, state, grad, posterior, hyper)
        if plan.bounding_box:
            box = cfg.bounding_box
            state = state._replace(position=jax.tree.map(
                lambda w, c: jnp.clip(w, c - box, c + box), state.position, posterior.center
            ))
        if not plan.draw_diagnostics:
            # Only the loss: the norms below are reductions that also keep the gradient and
            # the noise from fusing into the update (measured ~30% of a small-MLP step).
            nan = jnp.float32(jnp.nan)
            return state, DrawRecord(loss.astype(jnp.float32), nan, nan, nan, nan)
        record = DrawRecord(
            loss.astype(jnp.float32),
            norm(apply_element_mask(posterior.element_mask, grad)),
            norm(jax.tree.map(jnp.subtract, position, posterior.center)),
            norm(position),
            jnp.asarray(info.get("noise_norm", jnp.nan), jnp.float32),
        )
        return state, record

    def over_chains(fn, in_axes, group):
        return map_over_chains(fn, in_axes, plan.num_chains, plan.num_devices, group)

    all_chains_step = over_chains(
        one_chain_step, (0, 0, None, center_axis, center_axis, data_axis, mask_axis), plan.step_chain_group
    )
    nan_record = DrawRecord(*([nan_per_chain] * len(DrawRecord._fields)))

    def potential(position, like, frozen, batch, posterior):
        """U and ∇U at a flat `position`; `posterior` flat, `like` in the loss's shapes."""
        loss, grad = value_and_grad(position, like, frozen, batch)
        u = posterior.nbeta * loss + 0.5 * posterior.localization * norm(
            jax.tree.map(jnp.subtract, position, posterior.center)
        ) ** 2
        grad_u = apply_element_mask(posterior.element_mask, potential_grad(posterior, position, grad))
        return u, grad_u

    def mala_probe(position, cfg, block_first_draw, center, frozen, data, element_mask):
        """α of one SGLD proposal from `position` at the chain's ε on one minibatch
        (estimators.md §4); not taken. Streaming: `data` is the block's first minibatch."""
        key = jax.random.fold_in(jax.random.fold_in(cfg.key, block_first_draw), MALA_SALT)
        batch_key, noise_key = jax.random.split(key)
        batch = data if plan.streaming else draw_minibatch(batch_key, data, plan)
        posterior = posterior_of(cfg, flat(center), flat(element_mask))
        u, grad_u = potential(position, center, frozen, batch, posterior)
        eps = jax.tree.map(lambda _: cfg.step_size, position)
        proposal = langevin_update(position, grad_u, tree_normal(noise_key, position), eps, posterior.element_mask)
        u_new, grad_u_new = potential(proposal, center, frozen, batch, posterior)
        return mala_acceptance(position, grad_u, u, proposal, grad_u_new, u_new, cfg.step_size)

    def evaluate(states, config, block_first_draw, center, frozen, data, eval_sets, element_mask):
        """`data`: the full data, or when streaming the block's first-step minibatches (C, B, ...)."""
        group = plan.eval_chain_group
        positions = [
            p.astype(d) if plan.loss_dtypes else p
            for p, d in zip(batched_shaped(states.position, center, plan.per_chain_center), plan.loss_dtypes or [None] * len(center))
        ]
        if plan.streaming or not plan.eval_full_loss:  # streaming: the full data is not on the device
            full = nan_per_chain
        else:
            full = over_chains(full_loss, (0, center_axis, None), group)(positions, frozen, data)
        if plan.eval_mala:
            mala = over_chains(mala_probe, (0, 0, None, center_axis, center_axis, data_axis, mask_axis), group)(
                states.position, config, block_first_draw, center, frozen, data, element_mask
            )
        else:
            mala = nan_per_chain
        per_sample = {
            name: over_chains(
                chunked_per_sample(raw_loss, num_samples(es), plan.eval_chunk), (0, center_axis, None), group
            )(positions, frozen, es).astype(jnp.float32)
            for name, es in eval_sets.items()
        }
        return BlockRecord(full.astype(jnp.float32), mala.astype(jnp.float32), per_sample)

    def draws(states, config, first_draw, center, frozen, data, eval_sets, element_mask):
        segment_first_step = plan.num_burnin + first_draw * plan.thin

        def data_at(step):
            """Streaming: `data` holds this segment's minibatches, (steps, chains, B, ...)."""
            if not plan.streaming:
                return data
            pos = jnp.clip(step - segment_first_step, 0, plan.segment_draws * plan.thin - 1)
            return jax.tree.map(lambda b: jax.lax.dynamic_index_in_dim(b, pos, 0, keepdims=False), data)

        def guarded_step(states, step):
            # Steps outside [0, stop) (before a burn-in that is not a multiple of thin, or
            # past the end in the last segment) leave the states untouched.
            return jax.lax.cond(
                (step >= 0) & (step < stop),
                lambda s: all_chains_step(s, config, step, center, frozen, data_at(step), element_mask),
                lambda s: (s, nan_record),
                states,
            )

        def one_draw(states, draw):
            first = plan.num_burnin + draw * plan.thin
            states, records = jax.lax.scan(guarded_step, states, first + jnp.arange(plan.thin))
            return states, jax.tree.map(lambda r: r[0], records)

        def evaluate_at(states, block_first_draw):
            block_data = data_at(plan.num_burnin + block_first_draw * plan.thin)
            return evaluate(states, config, block_first_draw, center, frozen, block_data, eval_sets, element_mask)

        def skipped_block(states):
            """NaN records shaped like an evaluation's, without tracing the evaluation again
            (the MALA probe made that a third of the program's tracing time)."""
            one_center = center if not plan.per_chain_center else jax.tree.map(lambda x: x[0], center)
            one_frozen = frozen if not plan.per_chain_center else jax.tree.map(lambda x: x[0], frozen)
            per_sample = {}
            for name, es in eval_sets.items():
                shape = jax.eval_shape(raw_loss, one_center, one_frozen, es).shape
                per_sample[name] = jnp.full((plan.num_chains,) + shape, jnp.nan, jnp.float32)
            return BlockRecord(nan_per_chain, nan_per_chain, per_sample)

        def one_block(states, block_first_draw):
            if plan.eval_every is None:
                evaluated = skipped_block(states)
            else:
                in_range = (block_first_draw >= 0) & (block_first_draw < plan.num_draws)
                evaluated = jax.lax.cond(
                    in_range, lambda s: evaluate_at(s, block_first_draw), skipped_block, states
                )
            states, records = jax.lax.scan(one_draw, states, block_first_draw + jnp.arange(plan.block_draws))
            return states, (records, evaluated)

        block_starts = first_draw + plan.block_draws * jnp.arange(plan.draw_blocks_per_segment)
        states, (records, evaluated) = jax.lax.scan(one_block, states, block_starts)
        records = jax.tree.map(lambda r: r.reshape((plan.segment_draws, plan.num_chains)), records)
        return states, records, evaluated

    def init(center, config):
        hyper = {"step_size": config.step_size, **config.hyper}
        if plan.per_chain_center:
            start = jax.tree.map(lambda x: x.reshape(x.shape[0], -1).astype(jnp.float32), center)
        else:
            start = jax.tree.map(lambda x: jnp.broadcast_to(x.astype(jnp.float32), (plan.num_chains,) + x.shape),
                                 flat(center))
        return jax.vmap(sampler_init)(start, hyper)

    chains, per_step, replicated = shardings(mesh)
    center_sharding = chains if plan.per_chain_center else replicated
    mask_sharding = chains if plan.per_chain_mask else replicated
    data_sharding = per_step if plan.streaming else replicated
    return Programs(
        init=jax.jit(init, in_shardings=(center_sharding, chains), out_shardings=chains),
        draws=jax.jit(
            draws,
            donate_argnums=0,
            in_shardings=(chains, chains, replicated, center_sharding, center_sharding, data_sharding,
                          replicated, mask_sharding),
            out_shardings=(chains, per_step, per_step),
        ),
        full_loss=jax.jit(full_loss),
        chunk_losses=jax.jit(chunk_losses),
    )
