"""Inputs of the commands: loading `--problem FILE:FN`, the built-in toy problems, and the checks that turn a bad input into a `UsageError` (one line on
stderr, exit status 2) before anything is sampled or written.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "OBSERVABLES",
    "UsageError",
    "_at_most_n",
    "_check_sampler",
    "_diagnostics_for",
    "_import_problem_module",
    "_library_checks",
    "_load_problem",
    "_num_samples",
    "_observables",
    "_toy_problem",
]


class UsageError(Exception):
    """A bad input found after parsing; `main` prints it as one line and exits with status 2."""


OBSERVABLES = ("llc", "llc_var", "wbic", "free_energy", "reweighting", "mala", "nu", "waic", "bif", "health")


# =========================================================================================
# Problems
# =========================================================================================


def _load_problem(spec: str) -> dict:
    """`path/to/file.py:function` or `package.module:function`, called with no arguments.

    The function returns {"loss_fn", "params", "data"} and optionally "eval_sets".
    """
    target, sep, func = spec.rpartition(":")
    if not sep or not target or not func:
        raise UsageError(f"--problem must look like FILE.py:FUNCTION or MODULE:FUNCTION; got {spec!r}")
    module = _import_problem_module(target, spec)
    if not callable(getattr(module, func, None)):
        raise UsageError(f"--problem {spec}: {target} has no function {func!r}")
    try:
        problem = getattr(module, func)()
    except Exception as e:  # the user's code: report it on one line, as for any input
        raise UsageError(f"--problem {spec}: {func}() raised {type(e).__name__}: {e}") from e
    if not isinstance(problem, dict):
        raise UsageError(
            f"--problem {spec}: {func}() returned a {type(problem).__name__}; return a dict with loss_fn, params, data"
        )
    missing = {"loss_fn", "params", "data"} - set(problem)
    if missing:
        raise UsageError(f"--problem {spec} returned a dict without {sorted(missing)}; it needs loss_fn, params, data")
    return problem


def _import_problem_module(target: str, spec: str):
    import importlib
    import importlib.util

    try:
        if not target.endswith(".py"):
            return importlib.import_module(target)
        path = Path(target)
        if not path.is_file():
            raise UsageError(f"--problem file {path} does not exist")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(f"--problem {spec}: importing {target} failed ({type(e).__name__}: {e})") from e


def _toy_problem(args: argparse.Namespace) -> dict:
    from slt_jax import truth

    n, noise = args.num_samples, args.noise_std
    if args.toy in ("dln", "rrr") and not args.widths:
        raise UsageError(f"--toy {args.toy} needs --widths (input first), e.g. --widths 5 3 5")
    if args.toy == "normal-crossing" and not args.powers:
        raise UsageError("--toy normal-crossing needs --powers, e.g. --powers 1 2")
    try:
        if args.toy in ("dln", "rrr"):
            prob = truth.make_dln(args.seed, tuple(args.widths), args.rank, num_samples=n, noise_std=noise)
        elif args.toy == "regular":
            widths = args.widths or [4, 3]
            prob = truth.make_regular(args.seed, widths[0], widths[-1], num_samples=n, noise_std=noise)
        else:
            prob = truth.make_normal_crossing(args.seed, tuple(args.powers), num_samples=n, noise_std=noise)
    except ValueError as e:  # truth's own checks (e.g. rank above the widths) name the toy argument
        raise UsageError(f"--toy {args.toy}: {e}") from e
    return {"loss_fn": prob.loss_fn, "params": prob.params, "data": prob.data, "truth": prob.learning_coefficient,
            "name": prob.name}


def _num_samples(problem: dict, flag: str = "--problem") -> int:
    import jax

    leaves = jax.tree.leaves(problem["data"])
    if not leaves or not getattr(leaves[0], "shape", ()):
        raise UsageError(f"{flag}: data has no array with a leading sample axis")
    return int(leaves[0].shape[0])


def _at_most_n(flag: str, value: int | None, n: int, default: int) -> int:
    """A per-sample count bounded by the data size n: refused above n, never silently lowered;
    the default (no flag) is min(default, n)."""
    if value is None:
        return min(default, n)
    if value > n:
        raise UsageError(
            f"{flag} {value} is larger than the n = {n} samples of the data; pass {flag} between 1 and {n}"
        )
    return value


# In-program evaluations each observable needs (the rest are skipped: cheaper runs).
_NEEDS_FULL_LOSS = {"llc_var", "wbic", "reweighting", "health"}


def _diagnostics_for(wanted) -> tuple:
    needs = set(wanted)
    return tuple(d for d, used in (("full_loss", bool(needs & _NEEDS_FULL_LOSS)), ("mala", "mala" in needs)) if used)


def _observables(text: str) -> list[str]:
    wanted = [o.strip() for o in text.split(",") if o.strip()]
    unknown = sorted(set(wanted) - set(OBSERVABLES))
    if unknown or not wanted:
        what = f"unknown {unknown}" if unknown else "no observable named"
        raise UsageError(f"--observables {text!r}: {what}; choose from {', '.join(OBSERVABLES)}")
    return list(dict.fromkeys(wanted))


def _check_sampler(name: str) -> None:
    import slt_jax

    known = getattr(slt_jax, "SAMPLERS", None)  # the registry, where this version exposes one
    if known is not None and name not in known:
        raise UsageError(f"--sampler {name!r} is not known; choose from {', '.join(sorted(known))}")


@contextmanager
def _library_checks(command: str):
    """The library validates its inputs with ValueErrors naming the argument: for the CLI those
    are input errors too (one line, status 2), raised before anything is written."""
    try:
        yield
    except ValueError as e:
        raise UsageError(f"{command} refused the inputs: {e}") from e
