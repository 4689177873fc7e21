"""The chain runner: many chains as one compiled program, run as a host loop of segments.

Layout of one compiled draw segment (all static shapes, so a run compiles at most twice:
one burn-in program and one draw program):

    scan over blocks of `eval_every` draws            (unbatched block index)
      ├─ full-data loss at the block's first draw      (a real `lax.cond`, skipped past the end)
      └─ scan over draws in the block
           └─ scan over `thin` steps
                └─ vmap over chains: minibatch → value_and_grad → kernel.step

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


def draw_minibatch(key: jax.Array, data: Any, plan: RunPlan) -> Any:
    """Minibatch indices are drawn inside the program; data stays where it is.

    batch_size == n uses the whole data set in order (exact gradient, no gather).
    """
    if plan.batch_size == plan.num_samples:
        return data
    if plan.batch_sampling == "with_replacement":
        idx = jax.random.randint(key, (plan.batch_size,), 0, plan.num_samples)
    else:  # distinct indices within a batch; costs a permutation of n per step
        idx = jax.random.choice(key, plan.num_samples, (plan.batch_size,), replace=False)
    return jax.tree.map(lambda x: x[idx], data)


def full_data_mean_loss(per_sample_loss: Callable, plan: RunPlan) -> Callable:
    """L_n(w) over all of `data`, in chunks of plan.eval_chunk to bound activation memory.

    The last chunk is padded (repeating the final sample) and the padding weighted out.
    """
    n, chunk = plan.num_samples, plan.eval_chunk
    num_chunks = math.ceil(n / chunk)
    pad = num_chunks * chunk - n

    def loss_at(sampled, frozen, data):
        if num_chunks == 1:
            return jnp.mean(per_sample_loss(sampled, frozen, data))

        def chunked(x):
            x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]) if pad else x
            return x.reshape((num_chunks, chunk) + x.shape[1:])

        weights = (jnp.arange(num_chunks * chunk) < n).reshape(num_chunks, chunk)

        def chunk_sum(args):
            batch, w = args
            return jnp.sum(jnp.where(w, per_sample_loss(sampled, frozen, batch), 0.0))

        return jnp.sum(jax.lax.map(chunk_sum, (jax.tree.map(chunked, data), weights))) / n

    return loss_at


class Programs(NamedTuple):
    """The compiled pieces of one run. States are batched over chains on axis 0."""

    init: Callable  # (center_sampled, num_chains) -> kernel states
    draws: Callable  # (states, keys, first_draw, frozen, data, posterior) -> (states, losses[D, C], eval[B, C])
    full_loss: Callable  # (sampled, frozen, data) -> L_n


def first_draw_index(plan: RunPlan) -> int:
    """Burn-in runs through the draw program as draws with negative indices.

    Draw d covers steps num_burnin + d·thin + [0, thin); steps below 0 are skipped. Starting at
    a multiple of the block length keeps every block's evaluation aligned with draw 0.
    """
    burn_draws = math.ceil(plan.num_burnin / plan.thin)
    return -math.ceil(burn_draws / plan.block_draws) * plan.block_draws


def build_programs(per_sample_loss: Callable, kernel: Kernel, plan: RunPlan) -> Programs:
    """Jitted programs for `plan`. Pure: nothing here touches files, progress bars or devices."""
    full_loss = full_data_mean_loss(per_sample_loss, plan)
    value_and_grad = jax.value_and_grad(
        lambda sampled, frozen, batch: jnp.mean(per_sample_loss(sampled, frozen, batch))
    )
    stop = plan.num_burnin + plan.num_draws * plan.thin
    nan_per_chain = jnp.full((plan.num_chains,), jnp.nan, jnp.float32)

    def one_chain_step(state, key, step, frozen, data, posterior):
        batch_key, kernel_key = jax.random.split(jax.random.fold_in(key, step))
        batch = draw_minibatch(batch_key, data, plan)
        # The loss is recorded at the position *before* this step's update (estimators.md §3).
        loss, grad = value_and_grad(state.position, frozen, batch)
        state, _ = kernel.step(kernel_key, state, grad, posterior)
        return state, loss.astype(jnp.float32)

    all_chains_step = jax.vmap(one_chain_step, in_axes=(0, 0, None, None, None, None))

    def draws(states, keys, first_draw, frozen, data, posterior):
        def guarded_step(states, step):
            # Steps outside [0, stop) (before a burn-in that is not a multiple of thin, or
            # past the end in the last segment) leave the states untouched.
            return jax.lax.cond(
                (step >= 0) & (step < stop),
                lambda s: all_chains_step(s, keys, step, frozen, data, posterior),
                lambda s: (s, nan_per_chain),
                states,
            )

        def one_draw(states, draw):
            first = plan.num_burnin + draw * plan.thin
            states, losses = jax.lax.scan(guarded_step, states, first + jnp.arange(plan.thin))
            return states, losses[0]

        def evaluate(states):
            return jax.vmap(full_loss, in_axes=(0, None, None))(states.position, frozen, data).astype(
                jnp.float32
            )

        def one_block(states, block_first_draw):
            if plan.eval_every is None:
                evaluated = nan_per_chain
            else:
                in_range = (block_first_draw >= 0) & (block_first_draw < plan.num_draws)
                evaluated = jax.lax.cond(in_range, evaluate, lambda s: nan_per_chain, states)
            draw_idx = block_first_draw + jnp.arange(plan.block_draws)
            states, losses = jax.lax.scan(one_draw, states, draw_idx)
            return states, (losses, evaluated)

        block_starts = first_draw + plan.block_draws * jnp.arange(plan.draw_blocks_per_segment)
        states, (losses, evaluated) = jax.lax.scan(one_block, states, block_starts)
        return states, losses.reshape((plan.segment_draws, plan.num_chains)), evaluated

    def init(center, num_chains):
        return jax.vmap(kernel.init)(
            jax.tree.map(lambda x: jnp.broadcast_to(x, (num_chains,) + x.shape), center)
        )

    return Programs(
        init=jax.jit(init, static_argnums=1),
        draws=jax.jit(draws, donate_argnums=0),
        full_loss=jax.jit(full_loss),
    )


@dataclass
class RunOutput:
    """Host-side record of a run (numpy arrays, chains on axis 0)."""

    draw_loss: np.ndarray  # (chains, draws): minibatch loss at each draw, before its update
    burnin_loss: np.ndarray  # (chains, burn-in draws): same during burn-in, thinned alike
    eval_loss: np.ndarray  # (chains, num_evals): full-data loss L_n at evaluated draws
    eval_draws: np.ndarray  # (num_evals,): draw index of each evaluation
    first_bad_draw: np.ndarray  # (chains,): first draw (negative: burn-in) with a non-finite loss, or None
    compile_s: float
    sampling_s: float
    final_states: Any


def run_chains(
    programs: Programs,
    plan: RunPlan,
    *,
    center: list,
    frozen: list,
    data: Any,
    posterior: Posterior,
    seed: int,
    progress: bool = True,
) -> RunOutput:
    """Drive the compiled draw program segment by segment: the orchestration edge.

    Between segments the progress bar advances and non-finite chains are noted. The program
    is compiled ahead of time so that compile and sampling time are reported separately.
    """
    import time

    from tqdm.auto import tqdm

    keys = chain_keys(seed, plan.num_chains)
    states = programs.init(center, plan.num_chains)
    start = first_draw_index(plan)

    t0 = time.perf_counter()
    draw_exec = programs.draws.lower(states, keys, jnp.int32(start), frozen, data, posterior).compile()
    compile_s = time.perf_counter() - t0

    bar = tqdm(total=plan.total_steps, disable=not progress, unit="step", desc="sampling", leave=False)
    first_bad = np.full(plan.num_chains, np.iinfo(np.int64).min, np.int64)
    losses_out, evals = [], []
    t0 = time.perf_counter()
    draw = start
    while draw < plan.num_draws:
        states, losses, evaluated = draw_exec(states, keys, jnp.int32(draw), frozen, data, posterior)
        take = min(plan.segment_draws, plan.num_draws - draw)
        losses_out.append(np.asarray(losses)[:take].T)
        evals.append(np.asarray(evaluated).T)
        steps_before = plan.num_burnin + draw * plan.thin
        draw += take
        bar.update(min(plan.total_steps, plan.num_burnin + draw * plan.thin) - max(0, steps_before))
    jax.block_until_ready(states)
    sampling_s = time.perf_counter() - t0
    bar.close()

    all_losses = np.concatenate(losses_out, axis=1)  # draws start..num_draws-1
    draw_index = np.arange(start, plan.num_draws)
    # Burn-in "draws" whose first step is negative were skipped entirely: drop them.
    real = plan.num_burnin + draw_index * plan.thin >= 0
    all_losses, draw_index = all_losses[:, real], draw_index[real]
    first_bad = _first_bad(all_losses, draw_index)
    block_index = start + plan.block_draws * np.arange(sum(e.shape[1] for e in evals))
    eval_all = np.concatenate(evals, axis=1)
    kept = (block_index >= 0) & (block_index < plan.num_draws) & (plan.eval_every is not None)
    return RunOutput(
        draw_loss=all_losses[:, draw_index >= 0],
        burnin_loss=all_losses[:, draw_index < 0],
        eval_loss=eval_all[:, kept],
        eval_draws=block_index[kept],
        first_bad_draw=first_bad,
        compile_s=compile_s,
        sampling_s=sampling_s,
        final_states=states,
    )


def _first_bad(losses: np.ndarray, draw_index: np.ndarray) -> list:
    """Per chain: the first draw index (negative during burn-in) with a non-finite loss, or None."""
    bad = ~np.isfinite(losses)
    return [int(draw_index[row.argmax()]) if row.any() else None for row in bad]
