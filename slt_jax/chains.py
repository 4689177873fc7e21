"""The chain runner: many chains as one compiled program, run as a host loop of segments.

Layout of one compiled segment (static shapes, so a run compiles one program; burn-in runs
through it as draws with negative indices):

    scan over blocks of `eval_every` draws            (unbatched block index)
      ├─ evaluation at the block's first draw          (a real `lax.cond`, skipped outside the run):
      │    full-data loss, MALA probe, per-sample losses of every eval set   -> BlockRecord
      └─ scan over draws in the block
           └─ scan over `thin` steps                   (a `lax.cond` skips steps outside the run)
                └─ vmap over chains: minibatch → value_and_grad → kernel.step -> DrawRecord

Step and draw indices are scan inputs, *outside* the chain vmap, so `lax.cond` on them stays
a real branch instead of becoming a select that computes both sides. Randomness for chain c
at global step s is fold_in(fold_in(key(seed), c), s): results do not depend on how the run
is cut into segments, on the device count, or on resuming.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from slt_jax.kernels import Kernel
from slt_jax.posterior import Posterior

BATCH_SAMPLING = ("with_replacement", "without_replacement")


@dataclass(frozen=True)
class RunPlan:
    """Static shape of a run; every field is part of the compiled programs' identity."""

    num_chains: int
    num_draws: int
    num_burnin: int
    thin: int
    batch_size: int
    num_samples: int
    batch_sampling: str
    eval_every: int | None  # draws between full-data evaluations; None: never
    eval_chunk: int  # samples per chunk of the full-data evaluation
    draw_blocks_per_segment: int  # blocks of `eval_every` draws per segment
    # Each chain has its own w* (and frozen leaves): several checkpoints in one program.
    per_chain_center: bool = False
    # Minibatches are gathered on the host and fed per segment (data larger than the device).
    streaming: bool = False
    # What an evaluation computes besides the eval sets' per-sample losses.
    eval_full_loss: bool = True  # L_n(w) on the full data (variance-based λ̂, health)
    eval_mala: bool = True  # MALA acceptance of an SGLD probe move
    num_devices: int = 1  # devices the chain axis is split over (chain batches stay local)
    # Per-draw grad norm, distance to w*, weight norm, noise norm (False: the loss only).
    draw_diagnostics: bool = True
    # Chains per vmapped batch, batches run one after another on each device (map_over_chains;
    # 0: all of a device's chains in one vmap). Steps: cache-sized batches on CPU. Evaluations:
    # 1 runs chains singly (less memory; faster on XLA CPU for attention models).
    step_chain_group: int = 0
    eval_chain_group: int = 0
    # Gradient matmuls re-laid out for XLA CPU's fast dot path (slt_jax.cpu_dots).
    cpu_dot_layout: bool = False

    @property
    def block_draws(self) -> int:
        return self.eval_every or 1

    @property
    def segment_draws(self) -> int:
        return self.draw_blocks_per_segment * self.block_draws

    @property
    def total_steps(self) -> int:
        return self.num_burnin + self.num_draws * self.thin


def plan_segments(num_draws: int, num_burnin: int, thin: int, block_draws: int, segment_steps: int | None) -> int:
    """Blocks of `block_draws` draws per compiled segment.

    Default: about 20 segments per run (a progress bar that moves; NaN checks every 5%), but
    no segment shorter than 200 steps, because each segment costs a host round trip.
    """
    total = num_burnin + num_draws * thin
    target = segment_steps or max(200, math.ceil(total / 20))
    return max(1, min(math.ceil((num_draws + num_burnin / thin) / block_draws), target // (block_draws * thin)))


def chain_keys(seed: int, num_chains: int, first_chain: int = 0) -> jax.Array:
    """Per-chain keys fold_in(key(seed), c): chain c's stream never depends on the chain count."""
    base = jax.random.key(seed)
    return jax.vmap(lambda c: jax.random.fold_in(base, c))(
        jnp.arange(first_chain, first_chain + num_chains, dtype=jnp.uint32)
    )


def minibatch_indices(key: jax.Array, plan: RunPlan) -> jax.Array:
    """The step's minibatch: batch_size indices into the n samples, drawn from the step's key."""
    if plan.batch_size == plan.num_samples:
        return jnp.arange(plan.num_samples)
    if plan.batch_sampling == "with_replacement":
        return jax.random.randint(key, (plan.batch_size,), 0, plan.num_samples)
    # distinct indices within a batch; costs a permutation of n per step
    return jax.random.choice(key, plan.num_samples, (plan.batch_size,), replace=False)


def draw_minibatch(key: jax.Array, data: Any, plan: RunPlan) -> Any:
    """Minibatch indices are drawn inside the program; data stays where it is.

    batch_size == n uses the whole data set in order (exact gradient, no gather).
    """
    if plan.batch_size == plan.num_samples:
        return data
    idx = minibatch_indices(key, plan)
    return jax.tree.map(lambda x: x[idx], data)


def step_batch_key(chain_key: jax.Array, step) -> jax.Array:
    """The key a step draws its minibatch from (the kernel gets the other half of the split)."""
    return jax.random.split(jax.random.fold_in(chain_key, step))[0]


def chunked_per_sample(raw_loss: Callable, num_samples: int, chunk: int) -> Callable:
    """Per-sample losses over a whole data set, evaluated in chunks of `chunk` samples.

    `raw_loss(sampled, frozen, batch)` returns the loss function's own output, (B,) or
    (B, T, ...); the result has shape (num_samples, ...). Chunks bound activation memory; the
    last one is padded by repeating the final sample and the padding is cut off.
    """
    num_chunks = math.ceil(num_samples / chunk)
    pad = num_chunks * chunk - num_samples

    def losses_at(sampled, frozen, data):
        if num_chunks == 1:
            return raw_loss(sampled, frozen, data)

        def chunked(x):
            x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]) if pad else x
            return x.reshape((num_chunks, chunk) + x.shape[1:])

        out = jax.lax.map(lambda b: raw_loss(sampled, frozen, b), jax.tree.map(chunked, data))
        return out.reshape((num_chunks * chunk,) + out.shape[2:])[:num_samples]

    return losses_at


def mean_per_sample(losses: jax.Array) -> jax.Array:
    """(B, T, ...) per-token losses -> (B,): each sample's mean, so every token weighs the same."""
    return losses.reshape(losses.shape[0], -1).mean(axis=1)


class DrawRecord(NamedTuple):
    """Recorded at every draw, per chain (cheap reductions of what the step computes anyway)."""

    loss: jax.Array  # minibatch mean loss before the draw's update
    grad_norm: jax.Array  # ||∇L_B(w)|| over the sampled coordinates
    distance: jax.Array  # ||w - w*||
    weight_norm: jax.Array  # ||w|| over the sampled leaves
    noise_norm: jax.Array  # scale of the injected noise as the kernel reports it (NaN if it does not)


class BlockRecord(NamedTuple):
    """Recorded at the first draw of every block of `eval_every` draws, per chain."""

    full_loss: jax.Array  # L_n(w) on the full data
    mala: jax.Array  # MALA acceptance of an SGLD probe move from w (diagnostic only)
    per_sample: dict  # name -> per-sample losses on that evaluation set, (m, ...) per chain


class Programs(NamedTuple):
    """The compiled pieces of one run. States are batched over chains on axis 0."""

    init: Callable  # (center_sampled, num_chains) -> kernel states
    draws: Callable  # (states, keys, first_draw, frozen, data, eval_sets, posterior) -> (states, DrawRecord, BlockRecord)
    full_loss: Callable  # (sampled, frozen, data) -> L_n
    chunk_losses: Callable  # (sampled, frozen, batch) -> per-sample losses (B,) (streamed L_n)


def first_draw_index(plan: RunPlan) -> int:
    """Burn-in runs through the draw program as draws with negative indices.

    Draw d covers steps num_burnin + d·thin + [0, thin); steps below 0 are skipped. Starting at
    a multiple of the block length keeps every block's evaluation aligned with draw 0.
    """
    burn_draws = math.ceil(plan.num_burnin / plan.thin)
    return -math.ceil(burn_draws / plan.block_draws) * plan.block_draws


def chain_mesh(devices) -> jax.sharding.Mesh | None:
    """A 1-D mesh named "chain" over `devices` (Auto axis type, so user loss functions need no
    sharding annotations; see jax-notes.md), or None for a single device."""
    devices = list(devices)
    if len(devices) < 2:
        return None
    return jax.sharding.Mesh(np.array(devices), ("chain",), axis_types=(jax.sharding.AxisType.Auto,))


def build_programs(
    raw_loss: Callable, kernel: Kernel, plan: RunPlan, step_size: float, mesh: jax.sharding.Mesh | None = None
) -> Programs:
    """Jitted programs for `plan`. Pure: nothing here touches files or progress bars.

    raw_loss(sampled, frozen, batch) is the user's loss on the sampled leaves, (B,) or (B, T).
    step_size is the SGLD ε of the MALA probe. With a mesh, the chain axis (plan.num_chains, a
    multiple of the mesh size) is split over its devices and everything else is replicated;
    chains never communicate, so the program has no collectives.
    """
    from slt_jax import cpu_dots
    from slt_jax.kernels import langevin_update, tree_normal
    from slt_jax.observables import mala_acceptance
    from slt_jax.posterior import apply_element_mask, potential_grad

    def mean_loss(sampled, frozen, batch):
        return jnp.mean(mean_per_sample(raw_loss(sampled, frozen, batch)))

    full_per_sample = chunked_per_sample(
        lambda s, f, b: mean_per_sample(raw_loss(s, f, b)), plan.num_samples, plan.eval_chunk
    )

    def full_loss(sampled, frozen, data):
        return jnp.mean(full_per_sample(sampled, frozen, data))

    def chunk_losses(sampled, frozen, batch):
        return mean_per_sample(raw_loss(sampled, frozen, batch))

    value_and_grad = jax.value_and_grad(mean_loss)
    if plan.cpu_dot_layout:
        value_and_grad = cpu_dots.canonical_dots(value_and_grad)
    stop = plan.num_burnin + plan.num_draws * plan.thin
    nan_per_chain = jnp.full((plan.num_chains,), jnp.nan, jnp.float32)

    def one_chain_step(state, key, step, frozen, data, posterior):
        batch_key, kernel_key = jax.random.split(jax.random.fold_in(key, step))
        # Streaming: the host already gathered this step's rows (same indices, same key).
        batch = data if plan.streaming else draw_minibatch(batch_key, data, plan)
        # The loss is recorded at the position *before* this step's update (estimators.md §3).
        loss, grad = value_and_grad(shaped(state.position, posterior.center), frozen, batch)
        position, grad, posterior = state.position, flat(grad), flat_posterior(posterior)
        state, info = kernel.step(kernel_key, state, grad, posterior)
        if not plan.draw_diagnostics:
            # Only the loss: the norms below are reductions that also keep the gradient and
            # the noise from fusing into the update (measured ~30% of a small-MLP step).
            nan = jnp.float32(jnp.nan)
            return state, DrawRecord(loss.astype(jnp.float32), nan, nan, nan, nan)
        record = DrawRecord(
            loss.astype(jnp.float32),
            _norm(apply_element_mask(posterior.element_mask, grad)),
            _norm(jax.tree.map(jnp.subtract, position, posterior.center)),
            _norm(position),
            jnp.asarray(info.get("noise_norm", jnp.nan), jnp.float32),
        )
        return state, record

    # Shared w* (one checkpoint): center and frozen leaves are broadcast; per-chain w*
    # (checkpoint batching): they carry the chain axis like the states.
    frozen_axis = 0 if plan.per_chain_center else None
    posterior_axes = Posterior(None, None, 0, None) if plan.per_chain_center else None
    data_axis = 0 if plan.streaming else None
    all_chains_step = map_over_chains(
        one_chain_step, (0, 0, None, frozen_axis, data_axis, posterior_axes), plan, plan.step_chain_group
    )
    nan_record = DrawRecord(*([nan_per_chain] * len(DrawRecord._fields)))

    def potential(position, frozen, batch, posterior, like):
        """U and ∇U at a flat `position` (see `flat`); `posterior` flat too, `like` in the
        loss's shapes."""
        loss, grad = value_and_grad(shaped(position, like), frozen, batch)
        grad = flat(grad)
        u = posterior.nbeta * loss + 0.5 * posterior.localization * _norm(
            jax.tree.map(jnp.subtract, position, posterior.center)
        ) ** 2
        grad_u = apply_element_mask(posterior.element_mask, potential_grad(posterior, position, grad))
        return u, grad_u

    def mala_probe(position, key, frozen, data, posterior):
        """α of one SGLD proposal from `position` on one minibatch (estimators.md §4); not taken.

        Streaming: `data` is the chain's minibatch of the block's first step."""
        batch_key, noise_key = jax.random.split(key)
        batch = data if plan.streaming else draw_minibatch(batch_key, data, plan)
        like, posterior = posterior.center, flat_posterior(posterior)
        u, grad_u = potential(position, frozen, batch, posterior, like)
        eps = jax.tree.map(lambda _: step_size, position)
        proposal = langevin_update(position, grad_u, tree_normal(noise_key, position), eps, posterior.element_mask)
        u_new, grad_u_new = potential(proposal, frozen, batch, posterior, like)
        return mala_acceptance(position, grad_u, u, proposal, grad_u_new, u_new, step_size)

    def evaluate(states, keys, block_first_draw, frozen, data, eval_sets, posterior):
        """`data`: the full data, or when streaming the block's first-step minibatches (C, B, ...)."""
        positions = batched_shaped(states.position, posterior.center, plan.per_chain_center)
        if plan.streaming or not plan.eval_full_loss:  # streaming: the full data is not on the device
            full = nan_per_chain
        else:
            full = over_chains(full_loss, in_axes=(0, frozen_axis, None))(positions, frozen, data)
        if plan.eval_mala:
            probe_keys = jax.vmap(
                lambda k: jax.random.fold_in(jax.random.fold_in(k, block_first_draw), 0x4D414C41)
            )(keys)
            mala = over_chains(mala_probe, in_axes=(0, 0, frozen_axis, data_axis, posterior_axes))(
                states.position, probe_keys, frozen, data, posterior
            )
        else:
            mala = nan_per_chain
        per_sample = {
            name: over_chains(
                chunked_per_sample(raw_loss, _num_samples(es), plan.eval_chunk), in_axes=(0, frozen_axis, None)
            )(positions, frozen, es).astype(jnp.float32)
            for name, es in eval_sets.items()
        }
        return BlockRecord(full.astype(jnp.float32), mala.astype(jnp.float32), per_sample)

    def over_chains(fn, in_axes):
        return map_over_chains(fn, in_axes, plan, plan.eval_chain_group)

    def draws(states, keys, first_draw, frozen, data, eval_sets, posterior):
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
                lambda s: all_chains_step(s, keys, step, frozen, data_at(step), posterior),
                lambda s: (s, nan_record),
                states,
            )

        def one_draw(states, draw):
            first = plan.num_burnin + draw * plan.thin
            states, records = jax.lax.scan(guarded_step, states, first + jnp.arange(plan.thin))
            return states, jax.tree.map(lambda r: r[0], records)

        def block_data(block_first_draw):
            return data_at(plan.num_burnin + block_first_draw * plan.thin)

        def skipped_block(states):
            shapes = jax.eval_shape(evaluate, states, keys, first_draw, frozen, block_data(first_draw), eval_sets, posterior)
            return jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), shapes)

        def one_block(states, block_first_draw):
            if plan.eval_every is None:
                evaluated = skipped_block(states)
            else:
                in_range = (block_first_draw >= 0) & (block_first_draw < plan.num_draws)
                evaluated = jax.lax.cond(
                    in_range,
                    lambda s: evaluate(s, keys, block_first_draw, frozen, block_data(block_first_draw), eval_sets, posterior),
                    skipped_block,
                    states,
                )
            draw_idx = block_first_draw + jnp.arange(plan.block_draws)
            states, records = jax.lax.scan(one_draw, states, draw_idx)
            return states, (records, evaluated)

        block_starts = first_draw + plan.block_draws * jnp.arange(plan.draw_blocks_per_segment)
        states, (records, evaluated) = jax.lax.scan(one_block, states, block_starts)
        records = jax.tree.map(lambda r: r.reshape((plan.segment_draws, plan.num_chains)), records)
        return states, records, evaluated

    def init(center, num_chains):
        if plan.per_chain_center:
            return jax.vmap(lambda c: kernel.init(flat(c)))(center)
        return jax.vmap(kernel.init)(
            jax.tree.map(lambda x: jnp.broadcast_to(x, (num_chains,) + x.shape), flat(center))
        )

    if mesh is None:
        return Programs(
            init=jax.jit(init, static_argnums=1),
            draws=jax.jit(draws, donate_argnums=0),
            full_loss=jax.jit(full_loss),
            chunk_losses=jax.jit(chunk_losses),
        )
    chains, per_step, replicated = _shardings(mesh)
    frozen_sharding = chains if plan.per_chain_center else replicated
    data_sharding = per_step if plan.streaming else replicated
    posterior_sharding = (
        Posterior(replicated, replicated, chains, replicated) if plan.per_chain_center else replicated
    )
    return Programs(
        init=jax.jit(init, static_argnums=1, out_shardings=chains),
        draws=jax.jit(
            draws,
            donate_argnums=0,
            in_shardings=(chains, chains, replicated, frozen_sharding, data_sharding, replicated, posterior_sharding),
            out_shardings=(chains, per_step, per_step),
        ),
        full_loss=jax.jit(full_loss),
        chunk_losses=jax.jit(chunk_losses),
    )


def put(tree, sharding):
    """Place a pytree of host or device arrays with `sharding`, also across processes.

    Under jax.distributed a mesh spans devices this process cannot address; every process
    holds the full value and hands over the shards that live on its own devices.
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(x):
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(one, tree)


def put_keys(keys: jax.Array, sharding) -> jax.Array:
    """`put` for typed PRNG keys: move the raw key data, re-wrap on the devices."""
    if jax.process_count() == 1:
        return jax.device_put(keys, sharding)
    impl = jax.random.key_impl(keys)
    data = put(jax.random.key_data(keys), sharding)
    return jax.jit(lambda d: jax.random.wrap_key_data(d, impl=impl), out_shardings=sharding)(data)


def to_host(tree):
    """numpy copies of (possibly multi-process, sharded) arrays; every process gets everything."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    return jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree)


def _shardings(mesh):
    """(chain axis first, chain axis second, replicated) shardings over `mesh`."""
    spec = jax.sharding.PartitionSpec
    named = jax.sharding.NamedSharding
    return named(mesh, spec("chain")), named(mesh, spec(None, "chain")), named(mesh, spec())


def map_over_chains(fn: Callable, in_axes: tuple, plan: RunPlan, group: int) -> Callable:
    """Like jax.vmap(fn, in_axes) over the chain axis, in batches of `group` chains run one
    after another (lax.map) on each device; group 1 runs chains singly, group 0 (or ≥ the
    chains per device) is a plain vmap. The chain axis is viewed as (devices, batches, group)
    and only the device axis is split, so no chain crosses a device and no collective appears.
    Smaller batches keep a step's working set in cache and bound an evaluation's memory."""
    devices = plan.num_devices
    per_device = plan.num_chains // devices
    if group <= 0 or group >= per_device:
        return jax.vmap(fn, in_axes=in_axes)
    if per_device % group:
        raise ValueError(f"chain batch {group} does not divide the {per_device} chains per device")
    batches = per_device // group
    run_batch = fn if group == 1 else jax.vmap(fn, in_axes=in_axes)

    def mapped(*args):
        shape = (devices, batches) + ((group,) if group > 1 else ())
        split = lambda x: x.reshape(shape + x.shape[1:])  # noqa: E731
        args = [_on_mapped(a, ax, split) for a, ax in zip(args, in_axes)]

        def on_device(*dev_args):
            def one_batch(i):
                return run_batch(*[_on_mapped(a, ax, lambda x: x[i]) for a, ax in zip(dev_args, in_axes)])

            return jax.lax.map(one_batch, jnp.arange(batches))

        out = jax.vmap(on_device, in_axes=in_axes)(*args)
        return jax.tree.map(lambda x: x.reshape((plan.num_chains,) + x.shape[len(shape):]), out)

    return mapped


def _on_mapped(arg, axes, fn):
    """Apply fn to the leaves of `arg` that vmap's in_axes entry `axes` maps (axis 0)."""
    if axes is None:
        return arg
    return jax.tree.map(
        lambda ax, sub: sub if ax is None else jax.tree.map(fn, sub), axes, arg, is_leaf=lambda x: x is None
    )


def flat(tree):
    """Every leaf as a vector. Sampler states hold the sampled leaves this way: XLA CPU runs
    the fused noise-and-update of a leaf whose last axis is short (a 48×4 output layer) at
    half the speed per value of the same values in one vector (MLP workload: 5.0 vs 2.5 ns).
    Reshaping a row-major array is free, so the loss still sees the user's shapes."""
    return jax.tree.map(jnp.ravel, tree)


def shaped(flat_tree, like):
    """Undo `flat`: each leaf takes the shape of the matching leaf of `like`."""
    return jax.tree.map(lambda x, ref: x.reshape(jnp.shape(ref)), flat_tree, like)


def batched_shaped(flat_tree, center, per_chain_center: bool):
    """`shaped` for flat leaves with a leading chain axis; `center` carries that axis too
    when each chain has its own w*."""
    if per_chain_center:
        return shaped(flat_tree, center)
    return jax.tree.map(lambda x, ref: x.reshape((x.shape[0],) + jnp.shape(ref)), flat_tree, center)


def flat_posterior(posterior: Posterior) -> Posterior:
    return posterior._replace(center=flat(posterior.center), element_mask=flat(posterior.element_mask))


def _norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def _num_samples(data) -> int:
    return jax.tree.leaves(data)[0].shape[0]


@dataclass
class RunOutput:
    """Host-side record of a run (numpy arrays, chains on axis 0)."""

    draws: DrawRecord  # each (chains, draws): at the post-burn-in draws
    burnin: DrawRecord  # each (chains, burn-in draws): on the draws' thinning grid
    blocks: BlockRecord  # full_loss, mala: (chains, evals); per_sample[name]: (chains, evals, m, ...)
    eval_draws: np.ndarray  # (evals,): the draw index of each evaluation
    first_bad_draw: list  # per chain: first draw (negative: burn-in) with a non-finite loss, or None
    compile_s: float
    sampling_s: float
    final_states: Any

    def select_chains(self, chains: slice) -> "RunOutput":
        """A contiguous range of chains (one checkpoint's, or all but the padding)."""
        pick = lambda tree: jax.tree.map(lambda r: r[chains], tree)  # noqa: E731
        return RunOutput(
            pick(self.draws), pick(self.burnin),
            BlockRecord(self.blocks.full_loss[chains], self.blocks.mala[chains], {}),
            self.eval_draws, self.first_bad_draw[chains], self.compile_s, self.sampling_s,
            pick(self.final_states),
        )


def run_chains(
    programs: Programs,
    plan: RunPlan,
    *,
    center: list,
    frozen: list,
    data: Any,
    eval_sets: dict,
    posterior: Posterior,
    seed: int,
    per_sample_sink: Any = None,
    mesh: jax.sharding.Mesh | None = None,
    keys: jax.Array | None = None,
    progress: bool = True,
) -> RunOutput:
    """Drive the compiled draw program segment by segment: the orchestration edge.

    Between segments the progress bar advances; results move to host memory. The program is
    compiled ahead of time so that compile and sampling time are reported separately.
    """
    import time

    from tqdm.auto import tqdm

    if keys is None:
        keys = chain_keys(seed, plan.num_chains)
    stream = data if plan.streaming else None
    if mesh is not None:
        # Place inputs once; otherwise every segment call would copy them again.
        chains, _, replicated = _shardings(mesh)
        keys = put_keys(keys, chains)
        eval_sets = put(eval_sets, replicated)
        if stream is None:
            data = put(data, replicated)
        if plan.per_chain_center:
            center, frozen = put((center, frozen), chains)
            posterior = posterior._replace(
                nbeta=put(posterior.nbeta, replicated),
                localization=put(posterior.localization, replicated),
                center=put(posterior.center, chains),
                element_mask=put(posterior.element_mask, replicated),
            )
        else:
            center, frozen, posterior = put((center, frozen, posterior), replicated)
    states = programs.init(center, plan.num_chains)
    start = first_draw_index(plan)
    per_sample_sink = per_sample_sink if per_sample_sink is not None else MemorySink()

    fetch = _segment_fetcher(stream, plan, keys, mesh) if stream is not None else None
    t0 = time.perf_counter()
    if fetch is not None:
        fetch.indices(start)
        first_data = fetch.batches()
    else:
        first_data = data
    draw_exec = programs.draws.lower(
        states, keys, jnp.int32(start), frozen, first_data, eval_sets, posterior
    ).compile()
    compile_s = time.perf_counter() - t0

    bar = tqdm(total=plan.total_steps, disable=not progress, unit="step", desc="sampling", leave=False)
    draw_parts, block_parts, block_starts = [], [], []
    t0 = time.perf_counter()
    draw, data = start, first_data
    while draw < plan.num_draws:
        prefetch = fetch is not None and draw + plan.segment_draws < plan.num_draws
        if prefetch:
            fetch.indices(draw + plan.segment_draws)  # dispatched before this segment, so it is ready first
        states, records, evaluated = draw_exec(states, keys, jnp.int32(draw), frozen, data, eval_sets, posterior)
        if prefetch:
            data = fetch.batches()  # host gather overlaps the segment running on the device
        take = min(plan.segment_draws, plan.num_draws - draw)
        records, evaluated = to_host((records, evaluated))
        draw_parts.append(jax.tree.map(lambda r: r[:take].T, records))
        starts = draw + plan.block_draws * np.arange(plan.draw_blocks_per_segment)
        valid = (starts >= 0) & (starts < plan.num_draws) & (plan.eval_every is not None)
        block_parts.append(BlockRecord(
            evaluated.full_loss.T[:, valid], evaluated.mala.T[:, valid], {}
        ))
        for name, losses in evaluated.per_sample.items():
            if valid.any():  # (blocks, chains, m, ...) -> (chains, valid blocks, m, ...)
                per_sample_sink.add(name, np.swapaxes(losses[valid], 0, 1))
        block_starts.append(starts[valid])
        steps_before = plan.num_burnin + draw * plan.thin
        draw += take
        bar.update(min(plan.total_steps, plan.num_burnin + draw * plan.thin) - max(0, steps_before))
    jax.block_until_ready(states)
    sampling_s = time.perf_counter() - t0
    bar.close()

    records = jax.tree.map(lambda *r: np.concatenate(r, axis=1), *draw_parts)
    draw_index = np.arange(start, plan.num_draws)
    # Burn-in "draws" whose first step is negative were skipped entirely: drop them.
    real = plan.num_burnin + draw_index * plan.thin >= 0
    records = jax.tree.map(lambda r: r[:, real], records)
    draw_index = draw_index[real]
    blocks = BlockRecord(
        np.concatenate([b.full_loss for b in block_parts], axis=1),
        np.concatenate([b.mala for b in block_parts], axis=1),
        {},
    )
    return RunOutput(
        draws=jax.tree.map(lambda r: r[:, draw_index >= 0], records),
        burnin=jax.tree.map(lambda r: r[:, draw_index < 0], records),
        blocks=blocks,
        eval_draws=np.concatenate(block_starts),
        first_bad_draw=_first_bad(records.loss, draw_index),
        compile_s=compile_s,
        sampling_s=sampling_s,
        final_states=states,
    )


class _segment_fetcher:
    """Streaming: the indices of a segment's minibatches from the device, rows from the host."""

    def __init__(self, stream, plan: RunPlan, keys, mesh):
        self.stream, self.plan, self.keys, self.mesh = stream, plan, keys, mesh
        steps = plan.segment_draws * plan.thin
        per_chain = lambda k, first: jax.vmap(  # noqa: E731
            lambda s: minibatch_indices(step_batch_key(k, s), plan)
        )(first + jnp.arange(steps))
        self._index_fn = jax.jit(jax.vmap(per_chain, in_axes=(0, None)))
        self._pending = None

    def indices(self, first_draw: int):
        """Start computing segment `first_draw`'s indices (asynchronously)."""
        first_step = self.plan.num_burnin + first_draw * self.plan.thin
        self._pending = self._index_fn(self.keys, jnp.int32(first_step))
        return True

    def batches(self):
        """Gather the pending segment's rows on the host and place them: (steps, chains, B, ...)."""
        idx = to_host(self._pending)  # (chains, steps, B)
        rows = self.stream.gather(np.swapaxes(idx, 0, 1))
        if self.mesh is None:
            return jax.device_put(rows)
        return put(rows, _shardings(self.mesh)[1])


class MemorySink:
    """Keeps every evaluation's per-sample losses: (chains, evaluations, samples[, tokens])."""

    mode = "memory"

    def __init__(self):
        self.parts: dict[str, list] = {}

    def add(self, name: str, losses: np.ndarray) -> None:
        self.parts.setdefault(name, []).append(losses)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts, axis=1) for name, parts in self.parts.items()}

    def select_chains(self, chains: slice) -> "MemorySink":
        sink = MemorySink()
        sink.parts = {name: [p[chains] for p in parts] for name, parts in self.parts.items()}
        return sink


class MomentsSink:
    """Keeps per-chain running moments of the per-sample losses instead of the losses.

    Token losses are averaged per sample first. Memory: chains × samples × 3 floats, whatever
    the number of evaluations; enough for V_n, ν̂, Bayes/Gibbs training loss and WAIC, not for
    BIFs or susceptibilities (those need the joint draws).
    """

    mode = "moments"

    def __init__(self):
        self.acc: dict[str, list] = {}

    def add(self, name: str, losses: np.ndarray) -> None:
        from slt_jax.observables import PerSampleMoments

        per_sample = losses.reshape(losses.shape[:3] + (-1,)).mean(-1) if losses.ndim > 3 else losses
        accs = self.acc.setdefault(name, [PerSampleMoments.init(per_sample.shape[2]) for _ in per_sample])
        for c, chain_losses in enumerate(per_sample):
            accs[c] = accs[c].update(chain_losses)

    def select_chains(self, chains: slice) -> "MomentsSink":
        sink = MomentsSink()
        sink.acc = {name: accs[chains] for name, accs in self.acc.items()}
        return sink


def per_sample_bytes(num_chains: int, num_evals: int, losses_per_eval: dict[str, int]) -> int:
    """Host memory that storing every evaluation's per-sample losses takes (float32).

    losses_per_eval: eval set name -> number of loss values per evaluation (samples × tokens).
    """
    return 4 * num_chains * num_evals * sum(losses_per_eval.values())


def _first_bad(losses: np.ndarray, draw_index: np.ndarray) -> list:
    """Per chain: the first draw index (negative during burn-in) with a non-finite loss, or None."""
    bad = ~np.isfinite(losses)
    return [int(draw_index[row.argmax()]) if row.any() else None for row in bad]
