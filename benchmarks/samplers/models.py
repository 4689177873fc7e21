"""Benchmark models with exact λ (CPU tier): normal crossings, a regular model, RRR, a DLN."""

from __future__ import annotations

import dataclasses
import math

import jax

from slt_jax import truth


@dataclasses.dataclass(frozen=True)
class Model:
    family: str  # the model family the recommendation is grouped by
    problem: truth.ToyProblem

    @property
    def name(self) -> str:
        return self.problem.name

    @property
    def exact(self) -> float:
        return float(self.problem.learning_coefficient)


def models(num_samples: int, quick: bool = False, seed: int = 0) -> list[Model]:
    keys = iter(jax.random.split(jax.random.key(seed), 16))
    n = num_samples
    out = [
        Model("normal_crossing", truth.make_normal_crossing(next(keys), p, num_samples=n))
        for p in ((0, 1), (1, 1), (2, 2), (1, 2))
    ]
    out += [
        Model("regular", truth.make_regular(next(keys), 4, 2, num_samples=n)),  # d = 10
        Model("rrr", truth.make_rrr(next(keys), 6, 4, 6, 2, num_samples=n)),  # d = 48
        Model("dln", truth.make_dln(next(keys), (16, 16, 16, 16, 16), 2, num_samples=n)),  # d = 1024
    ]
    if quick:
        keep = {"normal_crossing(1,1)", "normal_crossing(1,2)"}
        out = [m for m in out if m.family != "normal_crossing" or m.name in keep]
    return out


def default_nbeta(n: int) -> float:
    return n / math.log(n)
