"""The host loop: drive the compiled segment program, move records to host memory.

This is the only engine module with side effects (a progress bar, host transfers); it knows
nothing about files or results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from slt_jax.engine.cache import _Entry
from slt_jax.engine.config import ChainConfig
from slt_jax.engine.data import minibatch_indices, step_batch_key
from slt_jax.engine.plan import RunPlan, first_draw_index
from slt_jax.engine.records import BlockRecord, DrawRecord
from slt_jax.engine.sharding import put, put_keys, shardings, to_host
from slt_jax.engine.sinks import MemorySink

__all__ = ["RunOutput", "run_chains", "place_inputs"]


@dataclass
class RunOutput:
    """Host-side record of a run (numpy arrays, chains on axis 0)."""

    draws: DrawRecord  # each (chains, draws): at the post-burn-in draws
    burnin: DrawRecord  # each (chains, burn-in draws): on the draws' thinning grid
    blocks: BlockRecord  # full_loss, mala: (chains, evals); per_sample lives in the sink
    eval_draws: np.ndarray  # (evals,): the draw index of each evaluation
    first_bad_draw: list  # per chain: first draw (negative: burn-in) with a non-finite loss, or None
    compile_s: float
    sampling_s: float
    cache_hit: bool  # the segment executable came from the in-process cache
    final_states: Any

    def select_chains(self, chains) -> "RunOutput":
        """A subset of chains (slice or index array): one configuration's, or all but the padding."""
        pick = lambda tree: jax.tree.map(lambda r: r[chains], tree)  # noqa: E731
        bad = list(np.asarray(self.first_bad_draw, dtype=object)[chains])
        return RunOutput(
            pick(self.draws), pick(self.burnin),
            BlockRecord(self.blocks.full_loss[chains], self.blocks.mala[chains], {}),
            self.eval_draws, bad, self.compile_s, self.sampling_s, self.cache_hit, None,
        )


def place_inputs(plan: RunPlan, mesh, config: ChainConfig, center, frozen, data, eval_sets, element_mask):
    """Every input with the sharding the compiled program expects, whatever its placement
    (host numpy, a committed single-device array as orbax restores it, a sharded array)."""
    chains, _, replicated = shardings(mesh)
    config = config._replace(key=put_keys(config.key, chains))
    config = put(config._replace(key=None), chains)._replace(key=config.key)
    on = chains if plan.per_chain_center else replicated
    center, frozen = put((center, frozen), on)
    if not plan.streaming:
        data = put(data, replicated)
    eval_sets = put(eval_sets, replicated)
    element_mask = put(element_mask, chains if plan.per_chain_mask else replicated)
    return config, center, frozen, data, eval_sets, element_mask


def run_chains(
    entry: _Entry, plan: RunPlan, mesh, *, config: ChainConfig, center, frozen, data: Any, eval_sets: dict,
    element_mask: list, per_sample_sink: Any = None, progress: bool = True,
) -> RunOutput:
    """Drive the compiled draw program segment by segment: the orchestration edge.

    Between segments the progress bar advances; results move to host memory. The segment
    program comes from the cache entry (compiled ahead of time on a miss, so that compile
    and sampling time are reported separately).
    """
    from tqdm.auto import tqdm

    programs = entry.programs
    config, center, frozen, data, eval_sets, element_mask = place_inputs(
        plan, mesh, config, center, frozen, data, eval_sets, element_mask
    )
    stream = data if plan.streaming else None
    states = programs.init(center, config)
    start = first_draw_index(plan)
    per_sample_sink = per_sample_sink if per_sample_sink is not None else MemorySink()

    fetch = _SegmentFetcher(stream, plan, config.key, mesh) if stream is not None else None
    if fetch is not None:
        fetch.indices(start)
        first_data = fetch.batches()
    else:
        first_data = data
    args = (states, config, jnp.int32(start), center, frozen, first_data, eval_sets, element_mask)
    draw_exec, compile_s, hit = entry.draw_executable(args)

    bar = tqdm(total=plan.total_steps, disable=not progress, unit="step", desc="sampling", leave=False)
    draw_parts, block_parts, block_starts = [], [], []
    t0 = time.perf_counter()
    draw, data = start, first_data
    while draw < plan.num_draws:
        prefetch = fetch is not None and draw + plan.segment_draws < plan.num_draws
        if prefetch:
            fetch.indices(draw + plan.segment_draws)  # dispatched before this segment, so it is ready first
        states, records, evaluated = draw_exec(states, config, jnp.int32(draw), center, frozen, data, eval_sets, element_mask)
        if prefetch:
            data = fetch.batches()  # host gather overlaps the segment running on the device
        take = min(plan.segment_draws, plan.num_draws - draw)
        records, evaluated = to_host((records, evaluated))
        draw_parts.append(jax.tree.map(lambda r: r[:take].T, records))
        starts = draw + plan.block_draws * np.arange(plan.draw_blocks_per_segment)
        valid = (starts >= 0) & (starts < plan.num_draws) & (plan.eval_every is not None)
        block_parts.append(BlockRecord(evaluated.full_loss.T[:, valid], evaluated.mala.T[:, valid], {}))
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
    return _assemble(plan, start, draw_parts, block_parts, block_starts, compile_s, sampling_s, hit, states)


def _assemble(plan, start, draw_parts, block_parts, block_starts, compile_s, sampling_s, hit, states) -> RunOutput:
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
        cache_hit=hit,
        final_states=states,
    )


class _SegmentFetcher:
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

    def batches(self):
        """Gather the pending segment's rows on the host and place them: (steps, chains, B, ...)."""
        idx = to_host(self._pending)  # (chains, steps, B)
        rows = self.stream.gather(np.swapaxes(idx, 0, 1))
        return put(rows, shardings(self.mesh)[1])


def _first_bad(losses: np.ndarray, draw_index: np.ndarray) -> list:
    """Per chain: the first draw index (negative during burn-in) with a non-finite loss, or None."""
    bad = ~np.isfinite(losses)
    return [int(draw_index[row.argmax()]) if row.any() else None for row in bad]
