"""Calibration (issue 10 item 5): choose ε, γ and nβ for a sweep from a grid run on a few
checkpoints, by documented rules (docs/calibration.md).

    from slt_jax.calibration import calibrate, load_recommendation
    cal = calibrate(loss_fn, checkpoints, data, batch_size=64)
    cal.recommended, cal.reasons, cal.table      # the setting, why, every cell scored
    cal.write("results/run1")                     # results/run1/calibration.json
    cal.plot("results/run1")                      # λ̂ / MALA over the grid, candidate traces
    load_recommendation("results/run1")           # {"step_size", "localization", "nbeta"}
"""

from slt_jax.calibration import rules
from slt_jax.calibration.run import (
    CALIBRATION_FILE,
    DEFAULT_LOCALIZATIONS,
    DEFAULT_NBETA_FACTORS,
    DEFAULT_STEP_FACTORS,
    WHICH,
    Calibration,
    calibrate,
    choose_checkpoints,
    load_calibration,
    load_recommendation,
    score,
)

__all__ = [
    "CALIBRATION_FILE",
    "DEFAULT_LOCALIZATIONS",
    "DEFAULT_NBETA_FACTORS",
    "DEFAULT_STEP_FACTORS",
    "WHICH",
    "Calibration",
    "calibrate",
    "choose_checkpoints",
    "load_calibration",
    "load_recommendation",
    "rules",
    "score",
]
