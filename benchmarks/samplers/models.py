"""Benchmark models with exact λ: the CPU tier (normal crossings, a regular model, RRR, a DLN)
and the size tier (DLNs from ~1e3 to ~1e7 parameters; above 1e6 only on an accelerator)."""

from __future__ import annotations

import dataclasses
import math

import jax

from slt_jax import truth


@dataclasses.dataclass(frozen=True)
class Model:
    family: str  # the model family the recommendation is grouped by
    problem: truth.ToyProblem
    powers: tuple[int, ...] | None = None  # normal crossings: the exponents (quadrature reference)

    @property
    def name(self) -> str:
        return self.problem.name

    @property
    def exact(self) -> float:
        return float(self.problem.learning_coefficient)

    @property
    def d(self) -> int:
        return int(self.problem.num_params)


CROSSINGS = ((0, 1), (1, 1), (2, 2), (1, 2))  # (1,1) and (2,2) have multiplicity 2


def models(num_samples: int, quick: bool = False, seed: int = 0, noise_std: float = 1.0) -> list[Model]:
    """noise_std = 0: noise-free realizable data, so w* (the teacher) is also the minimizer of L_n
    and the estimator's teacher-vs-minimizer offset (≈ λ/log n, README "Accuracy") vanishes."""
    keys = iter(jax.random.split(jax.random.key(seed), 16))
    n, kw = num_samples, dict(noise_std=noise_std)
    out = [Model("normal_crossing", truth.make_normal_crossing(next(keys), p, num_samples=n, **kw), powers=p)
           for p in CROSSINGS]
    out += [
        Model("regular", truth.make_regular(next(keys), 4, 2, num_samples=n, **kw)),  # d = 10
        Model("rrr", truth.make_rrr(next(keys), 6, 4, 6, 2, num_samples=n, **kw)),  # d = 48
        Model("dln", truth.make_dln(next(keys), (16, 16, 16, 16, 16), 2, num_samples=n, **kw)),  # d = 1024
    ]
    if quick:
        keep = {"normal_crossing(1,1)", "normal_crossing(1,2)"}
        out = [m for m in out if m.family != "normal_crossing" or m.name in keep]
    return out


# Size tier: 4-layer DLNs of equal width H (d = 4 H²), teacher rank 2, n = 10 d rows (at
# least 1000, at most 1e6: the data sit on the device), so the posterior stays local as d grows.
SIZE_WIDTHS = (16, 50, 158, 500, 1581)  # d ≈ 1e3, 1e4, 1e5, 1e6, 1e7
CPU_MAX_PARAMS = 10_000  # the default CPU run (15-minute budget); --max-params raises it to 1e6
ACCELERATOR_ONLY_ABOVE = 1_000_000


def size_tier(max_params: int, seed: int = 0) -> list[Model]:
    out = []
    for i, h in enumerate(SIZE_WIDTHS):
        d = 4 * h * h
        if d > max_params:
            break
        n = min(max(1000, 10 * d), 1_000_000)
        prob = truth.make_dln(jax.random.key(1000 + 100 * seed + i), (h,) * 5, 2, num_samples=n)
        out.append(Model("dln", prob))
    return out


def default_nbeta(n: int) -> float:
    return n / math.log(n)
