"""Which chosen checkpoints the calibration's consistency requirement applies to.

A cell must pass every rule at every chosen checkpoint, because the sweep uses one setting for
the whole run. That requirement assumes each checkpoint w* is a local minimum of L_n. A
checkpoint of a training run often is not: the first one is the initialization (for a network
trained from a small initialization, a saddle), and a checkpoint taken before training converged
has a descent direction. There the sampler's correct behaviour is to run downhill, so λ̂ < 0 at
every step size that moves the chains, `positive` fails in every cell that mixes, and requiring it
would leave only the cells whose chains barely move (measured on the deep linear network example:
ε = 9.2e-7 won, final λ̂ 37% of λ). Such a checkpoint is reported and excluded from the
requirement; the other checkpoints decide (docs/calibration.md, "Checkpoints that are not minima").
"""

from __future__ import annotations

import math

from slt_jax.calibration import rules as R

__all__ = ["EVIDENCE_RULES", "MIN_DESCENDING_CELLS", "not_a_minimum"]

# A cell is evidence about the checkpoint only if its run is sound as a run: no chain diverged or
# spiked (a diverging chain can leave in any direction, so it says nothing about w*) and MALA
# acceptance ≥ MALA_BAND[0] (a step with a large discretization error is no measurement of the
# posterior). Plateau and agreement are not asked: at a saddle a mixing chain is still descending
# (no plateau) or has settled below L_n(w*) (a negative mean, which "agrees" with no variance).
EVIDENCE_RULES = ("stability", "mala")
# At least this many sound cells must show the descent, so one noisy cell (minibatch λ̂, no
# full-data evaluations) cannot exclude a checkpoint on its own.
MIN_DESCENDING_CELLS = 2


def not_a_minimum(label, per_cell: dict) -> str:
    """Why checkpoint `label` is not a local minimum, or "" when nothing says so.

    per_cell: {(ε, γ, nβ): {rule: RuleResult}} at this checkpoint. The checkpoint is not a
    minimum when, among the cells whose runs are sound (EVIDENCE_RULES), every one that resolves
    λ̂ from 0 (|λ̂| > POSITIVE_Z MCSE, the `positive` rule's value) resolves it *below* 0, and at
    least MIN_DESCENDING_CELLS do. Cells within POSITIVE_Z MCSE of 0 (chains that barely moved:
    too small a step, too few draws) are evidence neither way. At a local minimum the full-data
    loss of a chain that stays in its basin never falls below L_n(w*), so λ̂ there is ≥ 0 whatever
    the step; a single sound cell with λ̂ resolved above 0 keeps the checkpoint (a weak γ whose
    chains escape to a lower basin only fails that γ's cells, since the larger γ stay put)."""
    sound = {cell: res for cell, res in per_cell.items() if all(res[r].passed for r in EVIDENCE_RULES)}
    z = {cell: res["positive"].value for cell, res in sound.items()}
    up = [cell for cell, v in z.items() if _known(v) and v > R.POSITIVE_Z]
    down = [cell for cell, v in z.items() if _known(v) and v < -R.POSITIVE_Z]
    if up or len(down) < MIN_DESCENDING_CELLS:
        return ""
    steps = sorted({cell[0] for cell in down})
    gammas = sorted({cell[1] for cell in down})
    return (f"checkpoint {label}: chains descend below L_n(w*) at every mixing step size ({len(down)} of the "
            f"{len(sound)} stable cells with MALA ≥ {R.MALA_BAND[0]:g} have λ̂ more than {R.POSITIVE_Z:g} SE below 0, "
            f"at ε {steps[0]:.3g}-{steps[-1]:.3g} and γ {', '.join(f'{g:g}' for g in gammas)}; the others barely "
            f"left w*, and none has λ̂ above 0): w* is not a local minimum (a saddle, or training had not converged); "
            "excluded from the consistency requirement")


def _known(x) -> bool:
    return x is not None and not math.isnan(float(x))  # ±inf: λ̂ ≠ 0 with a zero MCSE counts
