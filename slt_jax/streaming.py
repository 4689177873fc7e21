"""Data that stays on the host: minibatches are gathered per segment and fed to the program.

For data sets larger than device memory. The program still derives every minibatch's indices
from (seed, chain, step) exactly as in memory, so a streamed run samples the same minibatches
and gives the same λ̂ as an in-memory one. While the device runs segment i, the host gathers
segment i+1's rows (double buffering): host memory holds two segments of minibatches,
2 × steps_per_segment × chains × batch_size rows.
"""

from __future__ import annotations

from typing import Any, Iterator

import jax
import numpy as np

__all__ = ["StreamingData"]


class StreamingData:
    """A pytree of host arrays with a shared leading sample axis n: numpy arrays, or arrays
    opened lazily from disk (`np.load(path, mmap_mode="r")`, `np.memmap`, h5py datasets that
    support integer-array indexing)."""

    def __init__(self, data: Any):
        self.data = data
        leaves = jax.tree.leaves(data)
        if not leaves:
            raise ValueError("StreamingData needs a pytree with at least one array leaf.")
        sizes = {int(x.shape[0]) for x in leaves}
        if len(sizes) != 1:
            raise ValueError(f"the leaves of StreamingData disagree on the number of samples: {sorted(sizes)}.")
        self.num_samples = sizes.pop()

    def gather(self, idx: np.ndarray) -> Any:
        """Rows `idx` (any integer shape) of every leaf, shaped idx.shape + row shape."""
        flat = np.asarray(idx).reshape(-1)
        order = np.argsort(flat, kind="stable")  # sorted reads are far faster on memmaps
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)

        def one(x):
            rows = np.asarray(x[flat[order]])[inverse]
            return rows.reshape(np.shape(idx) + rows.shape[1:])

        return jax.tree.map(one, self.data)

    def head(self, count: int) -> Any:
        """The first `count` rows as numpy arrays (for tracing the loss on a batch's shape)."""
        return jax.tree.map(lambda x: np.asarray(x[:count]), self.data)

    def chunks(self, size: int) -> Iterator[tuple[Any, int]]:
        """(rows, number of real rows) chunks of exactly `size` rows; the last one padded."""
        for start in range(0, self.num_samples, size):
            stop = min(start + size, self.num_samples)
            idx = np.arange(start, start + size).clip(max=self.num_samples - 1)
            yield self.gather(idx), stop - start
