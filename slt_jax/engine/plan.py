"""The static shape of a run: everything that is part of a compiled program's identity."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["BATCH_SAMPLING", "RunPlan", "plan_segments", "first_draw_index"]

BATCH_SAMPLING = ("with_replacement", "without_replacement")


@dataclass(frozen=True)
class RunPlan:
    """Static shape of a run; every field is part of the compiled programs' identity (and of
    the program cache's key), so nothing here may vary between calls that should share one
    compilation. Per-chain values (ε, γ, nβ, w*, keys, sampler constants) are data instead."""

    num_chains: int  # chains in the program (all configurations, padded to the device count)
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
    # Each chain has its own element mask (every sampled leaf an array with a chain axis):
    # several weight restrictions (components) in one program.
    per_chain_mask: bool = False
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
    # Gradient matmuls re-laid out for XLA CPU's fast dot path (slt_jax.backends.cpu_dots).
    cpu_dot_layout: bool = False
    # Clamp each coordinate to w* ± the chain's box after every step (devinterp's bounding box).
    bounding_box: bool = False
    # dtypes the loss sees for the sampled leaves (chains hold float32; bf16/f16 params are
    # cast at the loss), as numpy dtype names.
    loss_dtypes: tuple = ()

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


def first_draw_index(plan: RunPlan) -> int:
    """Burn-in runs through the draw program as draws with negative indices.

    Draw d covers steps num_burnin + d·thin + [0, thin); steps below 0 are skipped. Starting at
    a multiple of the block length keeps every block's evaluation aligned with draw 0.
    """
    burn_draws = math.ceil(plan.num_burnin / plan.thin)
    return -math.ceil(burn_draws / plan.block_draws) * plan.block_draws
