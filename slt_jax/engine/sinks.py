"""Where per-sample evaluation losses go on the host: every evaluation, or running moments."""

from __future__ import annotations

import numpy as np

__all__ = ["MemorySink", "MomentsSink", "per_sample_bytes"]


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
