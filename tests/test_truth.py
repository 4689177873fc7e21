"""Exact learning coefficients (estimators.md §5) and the toy problems built on them."""

import itertools
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax.truth import (
    ToyProblem,
    dln_learning_coefficient,
    make_dln,
    make_normal_crossing,
    make_regular,
    make_rrr,
    normal_crossing_learning_coefficient,
    normal_crossing_multiplicity,
    regular_learning_coefficient,
    rrr_learning_coefficient,
)

# ----------------------------------------------------------------------------- unit values

DLN_UNIT_VALUES = [
    ((5, 3, 5), 0, Fraction(13, 2)),
    ((5, 4, 5), 0, Fraction(8)),
    ((4, 3, 8), 0, Fraction(6)),
    ((5, 3, 5), 3, Fraction(21, 2)),
    ((10, 10, 10), 0, Fraction(75, 2)),
    ((10, 10, 10, 10), 0, Fraction(67, 2)),
    ((4, 6, 2, 8), 1, Fraction(7)),
    ((3, 5, 7, 9, 11), 2, Fraction(27, 2)),
    ((20, 15, 10, 15, 20), 5, Fraction(219, 2)),
    ((6, 6, 6, 6, 6), 0, Fraction(23, 2)),
]


@pytest.mark.parametrize("widths, rank, expected", DLN_UNIT_VALUES)
def test_dln_unit_values(widths, rank, expected):
    value = dln_learning_coefficient(widths, rank)
    assert isinstance(value, Fraction)
    assert value == expected


@pytest.mark.parametrize(
    "powers, expected, multiplicity",
    [((0, 1), Fraction(1, 2), 1), ((1, 1), Fraction(1, 2), 2), ((1, 2), Fraction(1, 4), 1),
     ((2, 2), Fraction(1, 4), 2), ((1, 3), Fraction(1, 6), 1)],
)
def test_normal_crossing_unit_values(powers, expected, multiplicity):
    assert normal_crossing_learning_coefficient(powers) == expected
    assert normal_crossing_multiplicity(powers) == multiplicity


def test_normal_crossing_with_prior_powers():
    # (h+1)/(2k): coordinate 0 gives 2/2 = 1, coordinate 1 gives 1/4, coordinate 2 gives 3/12.
    assert normal_crossing_learning_coefficient((1, 2, 6), (1, 0, 2)) == Fraction(1, 4)
    assert normal_crossing_multiplicity((1, 2, 6), (1, 0, 2)) == 2
    assert normal_crossing_learning_coefficient((1,), (Fraction(-1, 2),)) == Fraction(1, 4)


def test_regular_value():
    assert regular_learning_coefficient(7) == Fraction(7, 2)
    assert isinstance(regular_learning_coefficient(4), Fraction)


# ----------------------------------------------------------------------------- properties


def test_single_layer_is_regular():
    for h0, h1 in itertools.product(range(1, 13), repeat=2):
        for rank in range(min(h0, h1) + 1):
            assert dln_learning_coefficient((h0, h1), rank) == Fraction(h0 * h1, 2)


def _rrr_branch(m, h, n, r):
    if n + r <= m + h and m + r <= n + h and h + r <= m + n:
        return "odd" if (m + h + n + r) % 2 else "even"
    if m + h < n + r:
        return "M+H<N+r"
    if n + h < m + r:
        return "N+H<M+r"
    return "M+N<H+r"


def test_two_layers_equal_reduced_rank_regression_in_every_branch():
    branches = set()
    for m, h, n in itertools.product(range(1, 7), repeat=3):
        for r in range(min(m, h, n) + 1):
            assert dln_learning_coefficient((m, h, n), r) == rrr_learning_coefficient(m, h, n, r), (m, h, n, r)
            branches.add(_rrr_branch(m, h, n, r))
    assert branches == {"odd", "even", "M+H<N+r", "N+H<M+r", "M+N<H+r"}


def _random_width_lists(count=400, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        num_layers = int(rng.integers(1, 6))
        widths = tuple(int(w) for w in rng.integers(1, 13, size=num_layers + 1))
        yield widths, int(rng.integers(0, min(widths) + 1))


def test_reversal_symmetry_and_bounds():
    for widths, rank in _random_width_lists():
        value = dln_learning_coefficient(widths, rank)
        assert value == dln_learning_coefficient(widths[::-1], rank), (widths, rank)
        lower = Fraction(rank * (widths[0] + widths[-1] - rank), 2)
        upper = Fraction(sum(a * b for a, b in zip(widths[:-1], widths[1:])), 2)
        assert lower <= value <= upper, (widths, rank, value)


def test_bounds_on_the_rrr_grid():
    for m, h, n in itertools.product(range(1, 7), repeat=3):
        for r in range(min(m, h, n) + 1):
            value = rrr_learning_coefficient(m, h, n, r)
            assert Fraction(r * (m + n - r), 2) <= value <= Fraction(m * h + h * n, 2)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "widths, rank, match",
    [((5,), 0, "at least 2"), ((5, 0, 3), 0, r"widths\[1\]"), ((5, 3.0), 0, r"widths\[1\]"),
     ((5, True), 0, r"widths\[1\]"), ("53", 0, "sequence"), ((5, 3, 5), -1, "rank"),
     ((5, 3, 5), 4, "min"), ((5, 3, 5), 1.0, "rank")],
)
def test_dln_rejects_bad_inputs(widths, rank, match):
    with pytest.raises(ValueError, match=match):
        dln_learning_coefficient(widths, rank)


def test_numpy_widths_are_accepted():
    assert dln_learning_coefficient(np.array([5, 3, 5]), np.int64(0)) == Fraction(13, 2)


def test_other_formulas_reject_bad_inputs():
    with pytest.raises(ValueError, match="all zero"):
        normal_crossing_learning_coefficient((0, 0))
    with pytest.raises(ValueError, match="non-negative"):
        normal_crossing_learning_coefficient((1, -1))
    with pytest.raises(ValueError, match="Fraction"):
        normal_crossing_learning_coefficient((1, 2), (0.5, 0))
    with pytest.raises(ValueError, match="> -1"):
        normal_crossing_multiplicity((1,), (-1,))
    with pytest.raises(ValueError, match="2 rationals"):
        normal_crossing_learning_coefficient((1, 2), (0,))
    with pytest.raises(ValueError, match="rank"):
        rrr_learning_coefficient(3, 2, 4, 3)
    with pytest.raises(ValueError, match="hidden"):
        rrr_learning_coefficient(3, 0, 4, 0)
    with pytest.raises(ValueError, match="num_params"):
        regular_learning_coefficient(-1)


def test_generators_reject_bad_inputs():
    with pytest.raises(ValueError, match="num_samples"):
        make_dln(0, (3, 2, 3), 1, num_samples=0)
    with pytest.raises(ValueError, match="noise_std"):
        make_regular(0, 3, 2, num_samples=10, noise_std=-1.0)
    with pytest.raises(ValueError, match="rank"):
        make_rrr(0, 3, 2, 4, 3, num_samples=10)
    with pytest.raises(ValueError, match="key"):
        make_normal_crossing("seed", (1, 2), num_samples=10)


def test_noise_free_data_is_exactly_realizable():
    prob = make_dln(0, (4, 3, 5), 2, num_samples=64, noise_std=0.0)
    np.testing.assert_allclose(prob.loss_fn(prob.params, prob.data), 0.0, atol=1e-10)


# ----------------------------------------------------------------------------- generators

NUM_SAMPLES = 20_000


def _check_contract(problem: ToyProblem, input_dim: int, output_dim: int):
    leaves = jax.tree.leaves(problem.data)
    assert {leaf.shape[0] for leaf in leaves} == {NUM_SAMPLES}
    assert problem.data["x"].shape == (NUM_SAMPLES, input_dim)
    assert problem.data["y"].shape == (NUM_SAMPLES, output_dim)
    assert sum(p.size for p in jax.tree.leaves(problem.params)) == problem.num_params

    @jax.jit  # one compiled program: op-by-op dispatch dominates the run time otherwise
    def evaluate(params, data):
        batch = jax.tree.map(lambda a: a[:7], data)
        grads = jax.grad(lambda p: problem.loss_fn(p, batch).mean())(params)
        return problem.loss_fn(params, batch), grads, problem.loss_fn(params, data).mean()

    batch_losses, grads, mean_loss = evaluate(problem.params, problem.data)
    assert batch_losses.shape == (7,)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert abs(float(mean_loss) - output_dim / 2) < 5 * math.sqrt(output_dim / (2 * NUM_SAMPLES))


@pytest.mark.parametrize("widths, rank", [((5, 3, 5), 0), ((5, 3, 5), 2), ((4, 6, 2, 8), 1), ((3, 5, 7, 9, 11), 2),
                                          ((6, 6, 6, 6, 6), 6), ((2, 7), 1)])
def test_dln_teacher(widths, rank):
    problem = make_dln(jax.random.key(3), widths, rank, num_samples=NUM_SAMPLES)
    _check_contract(problem, widths[0], widths[-1])
    assert problem.learning_coefficient == dln_learning_coefficient(widths, rank)
    assert problem.num_params == sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    layers = [np.asarray(problem.params[f"W{i}"], np.float64) for i in range(1, len(widths))]
    assert [w.shape for w in layers] == list(zip(widths[:-1], widths[1:]))
    # By construction the nonzero singular values are exactly 1; float32 rounding leaves the
    # others near 1e-6, so 1e-3 separates the two without a data-dependent threshold.
    product = np.linalg.multi_dot(layers) if len(layers) > 1 else layers[0]
    assert np.linalg.matrix_rank(product, tol=1e-3) == rank
    # Every layer at the minimal rank: the most singular point of the true set.
    assert all(np.linalg.matrix_rank(w, tol=1e-3) == rank for w in layers)


def test_rrr_regular_and_normal_crossing_generators():
    rrr = make_rrr(1, 4, 3, 5, 2, num_samples=NUM_SAMPLES)
    _check_contract(rrr, 4, 5)
    assert rrr.learning_coefficient == rrr_learning_coefficient(4, 3, 5, 2)
    assert rrr.name.startswith("rrr")

    for bias, d in ((True, 4 * 3 + 3), (False, 4 * 3)):
        regular = make_regular(2, 4, 3, num_samples=NUM_SAMPLES, bias=bias)
        _check_contract(regular, 4, 3)
        assert regular.num_params == d and regular.learning_coefficient == Fraction(d, 2)

    crossing = make_normal_crossing(jax.random.key(4), (0, 1, 2), num_samples=NUM_SAMPLES)
    _check_contract(crossing, 1, 1)
    assert np.all(np.asarray(crossing.params["w"]) == 0)
    assert crossing.learning_coefficient == Fraction(1, 4) and crossing.num_params == 3


def test_keys_int_typed_and_legacy_agree():
    by_int = make_dln(7, (3, 2, 3), 1, num_samples=50)
    by_key = make_dln(jax.random.key(7), (3, 2, 3), 1, num_samples=50)
    by_legacy = make_dln(jax.random.PRNGKey(7), (3, 2, 3), 1, num_samples=50)
    for other in (by_key, by_legacy):
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(by_int.data), jax.tree.leaves(other.data)))
