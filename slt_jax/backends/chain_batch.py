"""CPU tactics chosen once at the boundary from the devices the chains run on (and recorded)."""

from __future__ import annotations

__all__ = ["resolve_chain_batch", "resolve_eval_batch"]

# Sample-evaluations per vmapped batch of an evaluation on CPU ("auto"): chains × data chunk
# of ~4k rows keeps a small model's activations in cache. Measured on the MLP workload at 256
# chains (n = 1,000, 2 devices; defaults, chain-steps/s): all chains at once 58.8k, batches of
# 16 71.5k, of 4 76.2k, one by one 77.2k (loss only: 117k).
EVAL_ROWS_PER_BATCH = 4_096


def resolve_chain_batch(chain_batch: int | str, per_device: int, platform: str = "cpu") -> int:
    """Chains per vmapped batch in a step (0 = all of a device's chains in one vmap).

    "auto": on CPU, batches of 16 (else the nearest size that divides the chains) once a device
    holds more than 64 chains, which keeps a step's working set in cache; never on GPU/TPU.
    Measured on the MLP workload, loss only, 2 devices (chain-steps/s): 128 chains per device
    115k all at once, 126k in batches of 16; 512 per device 117k in batches of 64, 127k of 16,
    128k of 8; 64 per device: 128k at once, the same in batches."""
    if chain_batch == "auto":
        if platform != "cpu" or per_device <= 64:
            return 0
        fits = [g for g in (16, 8, 32, 24, 12, 48, 64) if per_device % g == 0]
        return fits[0] if fits else 0
    if per_device % chain_batch:
        raise ValueError(
            f"chain_batch={chain_batch} must divide the {per_device} chains per device "
            f"(num_chains × configurations per program, padded to a multiple of the device count)."
        )
    return 0 if chain_batch >= per_device else chain_batch


def resolve_eval_batch(eval_batching, per_device: int, eval_chunk: int, platform: str = "cpu") -> int:
    """Chains per vmapped batch in an evaluation (0 = all of a device's chains at once)."""
    if eval_batching == "vmap":
        return 0
    if eval_batching == "map":
        return 1
    if eval_batching == "auto":
        # A device's whole evaluation within ~4 batches' rows stays one vmap: batching it
        # would buy nothing and cost tracing time (16 chains: 0.35 s more on a first call).
        if platform != "cpu" or per_device * eval_chunk <= 4 * EVAL_ROWS_PER_BATCH:
            return 0
        target = max(1, EVAL_ROWS_PER_BATCH // max(1, eval_chunk))
        fits = [g for g in range(min(target, per_device), 0, -1) if per_device % g == 0]
        group = fits[0]
        return 0 if group >= per_device else group
    if per_device % eval_batching:
        raise ValueError(
            f"eval_batching={eval_batching} must divide the {per_device} chains per device "
            "(num_chains × configurations per program, padded to a multiple of the device count)."
        )
    return 0 if eval_batching >= per_device else eval_batching
