"""The argparse parser: one-line input errors, and flag types that check their range."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from slt_jax.cli.commands import _demo, _llc, _susceptibilities, _truth
from slt_jax.cli.problems import OBSERVABLES
from slt_jax.cli.workflow_commands import add_workflow_commands

__all__ = [
    "GAMMA",
    "NON_NEGATIVE",
    "POSITIVE",
    "STEP_SIZE",
    "_Parser",
    "_check_truth_args",
    "_folder",
    "_integer",
    "_nbeta",
    "_number",
    "build_parser",
]


# =========================================================================================
# Parsing: every flag's type checks its range, so a bad value is refused with its flag named
# =========================================================================================


class _Parser(argparse.ArgumentParser):
    """One-line input errors (flag, value, fix) instead of the usage block; exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _integer(minimum: int):
    """argparse type: a whole number ≥ minimum ('3.5', 'ten' and smaller numbers are refused)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number ≥ {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be ≥ {minimum}, got {value}")
        return value

    return parse


def _number(minimum: float, *, strict: bool):
    """argparse type: a finite number ≥ minimum (> minimum when strict)."""
    bound = f"{'>' if strict else '≥'} {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text!r}")
        return value

    return parse


def _nbeta(text: str) -> str | float:
    if text in ("n_log_n", "batch_log_batch"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, n_log_n or batch_log_batch, got {text!r}")
    return value


def _folder(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("expected a folder path, got ''")
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is an existing file; pass a folder (it is created if missing)")
    return text


POSITIVE, NON_NEGATIVE = _integer(1), _integer(0)
STEP_SIZE, GAMMA = _number(0.0, strict=True), _number(0.0, strict=False)


def _add_demo(sub) -> None:
    demo = sub.add_parser(
        "demo",
        help="the whole workflow on a deep linear network: train, calibrate, sweep, stages (a few minutes)",
        description="Trains a deep linear network from small initialization with optax (orbax checkpoints), "
        "calibrates ε, γ, nβ, sweeps λ̂ over every checkpoint and detects the stages of development; "
        "compares the stage boundaries with the steps where the learned rank rises and the final λ̂ with "
        "Aoyagi's exact learning coefficient (slt_jax.examples.dln).",
    )
    demo.add_argument("--out", type=_folder, default="slt_jax_results/demo", help="output folder (default slt_jax_results/demo)")
    demo.add_argument("--full", action="store_true", help="the example at its full settings (more calibration chains; slower)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)


def _add_llc(sub) -> None:
    llc = sub.add_parser(
        "llc",
        help="estimate λ̂ and other observables for a built-in toy model or your own problem",
        description="Estimates the LLC with many chains and any of the observables "
        f"({', '.join(OBSERVABLES)}); writes result.nc, summary.json, plots and status.json to --out. "
        "Your own problem: --problem FILE.py:FUNCTION, where FUNCTION() returns a dict with loss_fn, "
        "params, data and optionally eval_sets ({name: data}).",
    )
    src = llc.add_mutually_exclusive_group(required=True)
    src.add_argument("--problem", help="FILE.py:FUNCTION or MODULE:FUNCTION returning {loss_fn, params, data[, eval_sets]}")
    src.add_argument("--toy", choices=["dln", "rrr", "regular", "normal-crossing"], help="a built-in model with exact λ")
    llc.add_argument("--widths", type=POSITIVE, nargs="+", help="toy widths, input first")
    llc.add_argument("--rank", type=NON_NEGATIVE, default=0, help="toy rank (dln, rrr)")
    llc.add_argument("--powers", type=NON_NEGATIVE, nargs="+", help="toy normal-crossing exponents")
    llc.add_argument("--num-samples", type=_integer(2), default=10_000, help="toy data size n ≥ 2 (default 10000)")
    llc.add_argument("--noise-std", type=GAMMA, default=0.0, help="toy label noise (default 0: noise-free)")
    llc.add_argument("--step-size", type=STEP_SIZE, default=3e-5, help="SGLD ε > 0 (default 3e-5)")
    llc.add_argument("--localization", type=GAMMA, default=1.0, help="γ ≥ 0 (default 1)")
    llc.add_argument("--nbeta", type=_nbeta, default=None, help="nβ: a number > 0, n_log_n (default) or batch_log_batch")
    llc.add_argument("--chains", type=POSITIVE, default=8, help="chains (default 8)")
    llc.add_argument("--draws", type=POSITIVE, default=2000, help="draws per chain after burn-in (default 2000)")
    llc.add_argument("--burnin", type=NON_NEGATIVE, default=1000, help="burn-in draws per chain (default 1000)")
    llc.add_argument("--thin", type=POSITIVE, default=1, help="steps per draw (default 1)")
    llc.add_argument("--batch-size", type=POSITIVE, default=None, help="minibatch size, 1..n (default min(500, n))")
    llc.add_argument("--sampler", default="sgld", help="sgld, rmsprop_sgld, adam_sgld, sghmc, sgnht, ...")
    llc.add_argument("--eval-every", type=POSITIVE, default=None, help="draws between evaluations (default auto)")
    llc.add_argument("--eval-samples", type=POSITIVE, default=None,
                     help="training samples used for nu/waic/bif when the problem has no eval_sets (default min(1000, n))")
    llc.add_argument("--observables", default="llc,llc_var,wbic,free_energy,mala,health",
                     help=f"comma-separated, from: {', '.join(OBSERVABLES)}")
    llc.add_argument("--eval-batching", choices=["auto", "vmap", "map"], default="auto",
                     help="auto: CPU batches of ~4k rows; vmap: all chains side by side; map: one after another per device")
    llc.add_argument("--seed", type=NON_NEGATIVE, default=0)
    llc.add_argument("--out", type=_folder, default="slt_jax_results/llc", help="output folder")
    llc.add_argument("--no-plots", action="store_true")
    llc.add_argument("--no-progress", action="store_true")
    llc.set_defaults(func=_llc)


def _add_susceptibilities(sub) -> None:
    sus = sub.add_parser(
        "susceptibilities",
        help="per-component, per-probe-sample susceptibilities for your own problem",
        description="--problem FILE.py:FUNCTION returns {loss_fn, params, data, probes: {name: data}, "
        "components: {name: mask} (optional; default all weights)}. Writes susceptibilities.nc "
        "(chi per component × probe sample), summary.json, a PCA plot and status.json.",
    )
    sus.add_argument("--problem", required=True, help="FILE.py:FUNCTION or MODULE:FUNCTION")
    sus.add_argument("--convention", choices=["slt_jax", "devinterp"], default="slt_jax")
    sus.add_argument("--step-size", type=STEP_SIZE, default=1e-4, help="ε > 0 (default 1e-4)")
    sus.add_argument("--localization", type=GAMMA, default=100.0, help="γ ≥ 0 (default 100)")
    sus.add_argument("--chains", type=POSITIVE, default=8)
    sus.add_argument("--draws", type=POSITIVE, default=1000)
    sus.add_argument("--burnin", type=NON_NEGATIVE, default=200)
    sus.add_argument("--batch-size", type=POSITIVE, default=None, help="minibatch size, 1..n (default min(100, n))")
    sus.add_argument("--eval-every", type=POSITIVE, default=1)
    sus.add_argument("--seed", type=NON_NEGATIVE, default=0)
    sus.add_argument("--out", type=_folder, default="slt_jax_results/susceptibilities")
    sus.add_argument("--no-plots", action="store_true")
    sus.add_argument("--no-progress", action="store_true")
    sus.set_defaults(func=_susceptibilities)


def _add_truth(sub) -> None:
    tr = sub.add_parser(
        "truth",
        help="print an exact learning coefficient (regular, normal crossing, RRR, deep linear network)",
        description="Exact learning coefficients as fractions. Examples: `slt-jax truth dln --widths 5 3 5 "
        "--rank 0`, `slt-jax truth normal-crossing --powers 1 2`, `slt-jax truth regular --num-params 12`.",
    )
    tr.add_argument("model", choices=["regular", "normal-crossing", "rrr", "dln"])
    tr.add_argument("--widths", type=POSITIVE, nargs="+", help="layer widths, input first (rrr: M H N)")
    tr.add_argument("--rank", type=NON_NEGATIVE, default=0, help="rank of the true map (rrr, dln)")
    tr.add_argument("--powers", type=NON_NEGATIVE, nargs="+", help="normal-crossing exponents k_i")
    tr.add_argument("--num-params", type=POSITIVE, help="d for a regular model")
    tr.set_defaults(func=_truth)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="slt-jax",
        description="JAX-accelerated SGMCMC for Singular Learning Theory: local learning coefficients "
        "from many vmapped, jit-compiled chains.",
    )
    parser.add_argument(
        "--compile-cache", default=None, metavar="DIR",
        help="persistent XLA compilation cache: a folder, or 'off' (default ~/.cache/slt_jax/xla or "
        "$SLT_JAX_COMPILATION_CACHE); a repeated job with the same shapes then skips compilation",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_llc, _add_susceptibilities, _add_truth, add_workflow_commands):
        add(sub)
    return parser


def _check_truth_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    need = {"dln": "widths", "rrr": "widths", "normal-crossing": "powers", "regular": "num_params"}[args.model]
    if getattr(args, need) is None:
        parser.error(f"truth {args.model} needs --{need.replace('_', '-')}")
    if args.model == "rrr" and len(args.widths) != 3:
        parser.error("truth rrr needs exactly three --widths: M H N")
