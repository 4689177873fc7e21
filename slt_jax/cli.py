"""Command line: `slt-jax demo` (the README's main job), `llc`, `susceptibilities`, `truth` (exact λ).

Input errors end the command before anything is sampled or written: one line on stderr that
names the flag, the value and the fix, exit status 2.

A run folder (--out) holds one run at a time, and status.json says whether that run
finished. Once sampling is done (so an input error or a kill while sampling leaves an
older run's files untouched), status.json is set to "running" and the outputs of any
older run there are removed. Every file is then written atomically (slt_jax.atomic), and
status.json becomes "complete", with the size and SHA-256 of every output, only after
the last one. `verify_run(folder)` checks all that before you trust a folder.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path


class UsageError(Exception):
    """A bad input found after parsing; `main` prints it as one line and exits with status 2."""


class RunFolderError(ValueError):
    """A --out folder that does not hold one complete run (unfinished, failed or altered)."""


def _demo(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    import slt_jax
    from slt_jax import adapters, truth
    from slt_jax.plots import plot_trace

    out = Path(args.out)
    scale = 0.2 if args.quick else 1.0
    steps = lambda k: max(200, int(k * scale))  # noqa: E731
    print(f"slt_jax {slt_jax.__version__} on {jax.default_backend()} ({len(jax.devices())} device(s)); results in {out}/")

    # 1. A deep linear network whose learning coefficient is known exactly.
    widths, rank = (10, 10, 10), 0
    prob = truth.make_dln(args.seed, widths, rank, num_samples=10_000, noise_std=0.0)
    print(f"\n[1/2] {prob.description}")
    t0 = time.perf_counter()
    dln = slt_jax.estimate_llc(
        prob.loss_fn, prob.params, prob.data, step_size=3e-5, localization=1.0,
        num_chains=args.chains, num_draws=steps(8000), num_burnin=steps(8000), batch_size=500,
        seed=args.seed, progress=not args.no_progress,
    )
    wall = time.perf_counter() - t0
    lam = prob.learning_coefficient
    err = (dln.llc_mean - float(lam)) / float(lam)
    print(f"exact λ = {lam} = {float(lam):.4g}   estimate λ̂ = {dln.llc_mean:.4g} ± {dln.llc_se:.2g} "
          f"(MCSE; std across chains {dln.llc_std:.3g})   error {err:+.1%}")
    print(f"wall {wall:.1f}s = compile {dln.attrs['compile_s']:.1f}s + sampling {dln.attrs['sampling_s']:.1f}s "
          f"({dln.attrs['chain_steps_per_s']:.3g} chain-steps/s)")
    with run_folder(out, "demo", args.argv):
        dln.to_netcdf(out / "dln.nc")
        plot_trace(dln, out / "dln_trace.png", title=prob.name, truth=float(lam))

        # 2. A small MLP trained with optax, then sampled around its trained weights.
        class MLP(nnx.Module):
            def __init__(self, rngs):
                self.l1 = nnx.Linear(16, 48, rngs=rngs)
                self.l2 = nnx.Linear(48, 4, rngs=rngs)

            def __call__(self, x):
                return self.l2(jnp.tanh(self.l1(x)))

        key_x, key_t, key_n = jax.random.split(jax.random.key(args.seed), 3)
        teacher = MLP(nnx.Rngs(args.seed + 1))
        x = jax.random.normal(key_x, (1000, 16))
        y = teacher(x) + 0.1 * jax.random.normal(key_n, (1000, 4))
        model = adapters.from_nnx(MLP(nnx.Rngs(args.seed + 2)), "squared_error")
        params = _train(model.loss_fn, model.params, (x, y), num_steps=steps(3000), optimizer=optax.adam(3e-3))
        num_params = sum(int(np.size(p)) for p in jax.tree.leaves(params))
        print(f"\n[2/2] MLP 16→48→4 (d = {num_params}) trained on n = 1000 teacher samples "
              f"(train loss {float(jnp.mean(model.loss_fn(params, (x, y)))):.4g})")
        t0 = time.perf_counter()
        mlp = slt_jax.estimate_llc(
            model.loss_fn, params, (x, y), step_size=1e-4, localization=100.0,
            num_chains=args.chains, num_draws=steps(2000), num_burnin=steps(500), batch_size=100,
            seed=args.seed, progress=not args.no_progress,
        )
        wall = time.perf_counter() - t0
        _print_summary(mlp)
        print(f"wall {wall:.1f}s; for scale, a regular model of this size would have λ = d/2 = {num_params / 2:g}")
        mlp.to_netcdf(out / "mlp.nc")
        plot_trace(mlp, out / "mlp_trace.png", title="MLP 16→48→4")
    print(f"\nsaved {out / 'dln.nc'}, {out / 'mlp.nc'} (reload: slt_jax.LLCResult.from_netcdf) "
          f"and trace plots {out / 'dln_trace.png'}, {out / 'mlp_trace.png'}")
    return 0


def _train(loss_fn, params, data, *, num_steps, optimizer):
    """Full-batch training to a (local) minimum: w* for the LLC."""
    import jax
    import jax.numpy as jnp
    import optax

    def mean_loss(p):
        return jnp.mean(loss_fn(p, data))

    @jax.jit
    def run(params):
        def step(carry, _):
            p, s = carry
            g = jax.grad(mean_loss)(p)
            updates, s = optimizer.update(g, s, p)
            return (optax.apply_updates(p, updates), s), None

        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=num_steps)
        return params

    return run(params)


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


# =========================================================================================
# Commands that sample
# =========================================================================================


def _llc(args: argparse.Namespace) -> int:
    import slt_jax

    wanted = _observables(args.observables)
    _check_sampler(args.sampler)
    problem = _load_problem(args.problem) if args.problem else _toy_problem(args)
    n = _num_samples(problem)
    batch_size = _at_most_n("--batch-size", args.batch_size, n, default=500)
    eval_sets = _eval_sets_for(problem, wanted, _at_most_n("--eval-samples", args.eval_samples, n, default=1000))
    with _library_checks("estimate_llc"):
        result = slt_jax.estimate_llc(
            problem["loss_fn"], problem["params"], problem["data"],
            step_size=args.step_size, localization=args.localization, nbeta=args.nbeta,
            num_chains=args.chains, num_draws=args.draws, num_burnin=args.burnin, thin=args.thin,
            batch_size=batch_size, sampler=args.sampler, seed=args.seed,
            eval_sets=eval_sets, eval_every=args.eval_every or "auto",
            diagnostics=_diagnostics_for(wanted), eval_batching=args.eval_batching,
            progress=not args.no_progress,
        )
    _print_summary(result)
    if "truth" in problem:
        print(f"exact λ = {problem['truth']} = {float(problem['truth']):.6g}")
    out = Path(args.out)
    with run_folder(out, "llc", args.argv) as run:
        # The draws first: every observable can be recomputed from result.nc if a later step fails.
        result.to_netcdf(out / "result.nc")
        summary = {"name": problem.get("name", args.problem), "run_id": run.run_id, "num_chains_used": result.num_healthy}
        if "truth" in problem:
            summary["exact_llc"] = float(problem["truth"])
        summary.update(_llc_observables(result, wanted, eval_sets, out, run))
        _write_summary(out, summary, run)
        if not args.no_plots:
            from slt_jax.plots import save_standard_plots

            run.attempt("plots", lambda: save_standard_plots(result, out))
    print(f"wrote {', '.join(run.files)} to {out}/")
    return 0


def _eval_sets_for(problem: dict, wanted: list[str], eval_samples: int) -> dict:
    import jax

    eval_sets = dict(problem.get("eval_sets") or {})
    if {"nu", "waic", "bif"} & set(wanted) and not eval_sets:
        # Per-sample observables need per-sample losses: a subset of the training data.
        eval_sets["train"] = jax.tree.map(lambda x: x[:eval_samples], problem["data"])
    return eval_sets


def _llc_observables(result, wanted: list[str], eval_sets: dict, out: Path, run: "RunFolder") -> dict:
    """Each requested observable, or None when it fails (the failure goes to run.errors): a run
    whose chains all diverged still gets its result and summary written."""
    values = {
        "llc": lambda: {"mean": result.llc_mean, "std": result.llc_std, "se": result.llc_se, "rhat": result.rhat},
        "llc_var": lambda: result.llc_var,
        "wbic": lambda: result.wbic,
        "free_energy": lambda: result.free_energy,
        "reweighting": lambda: dict(zip(("llc", "intercept", "llc_se"), map(float, result.reweighting_llc()[:3]))),
        "mala": lambda: [float(a) for a in result.mala_acceptance],
        "nu": lambda: {name: result.singular_fluctuation(name) for name in eval_sets},
        "waic": lambda: {name: result.waic(name) for name in eval_sets},
        "health": lambda: [str(h) for h in result.health],
        "bif": lambda: [_save_npy(out / f"bif_{es}.npy", result.bif(es)).name for es in eval_sets],
    }
    return {name: run.attempt(name, values[name]) for name in wanted}


def _susceptibilities(args: argparse.Namespace) -> int:
    from slt_jax.susceptibility import estimate_susceptibilities

    problem = _load_problem(args.problem)
    if not problem.get("probes"):
        raise UsageError(f"--problem {args.problem} must also return probes ({{name: data}}) for susceptibilities")
    n = _num_samples(problem)
    batch_size = _at_most_n("--batch-size", args.batch_size, n, default=100)
    with _library_checks("estimate_susceptibilities"):
        result = estimate_susceptibilities(
            problem["loss_fn"], problem["params"], problem["data"], probes=problem["probes"],
            components=problem.get("components"), convention=args.convention, eval_every=args.eval_every,
            step_size=args.step_size, localization=args.localization, num_chains=args.chains,
            num_draws=args.draws, num_burnin=args.burnin, batch_size=batch_size, seed=args.seed,
            progress=not args.no_progress,
        )
    out = Path(args.out)
    with run_folder(out, "susceptibilities", args.argv) as run:
        result.to_netcdf(out / "susceptibilities.nc")
        aggregate = run.attempt("aggregate_chi", result.aggregate) or {}
        summary = {
            "run_id": run.run_id,
            "aggregate_chi": {f"{c}|{p}": v for (c, p), v in aggregate.items()},
            "llc": dict(zip(result.components, map(float, result.dataset["llc"].values))),
        }
        _write_summary(out, summary, run)
        for (component, probe), value in aggregate.items():
            print(f"χ[{component}, {probe}] = {value:.4g}")
        if len(result.components) >= 2 and not args.no_plots:
            run.attempt("plots", lambda: _susceptibility_plot(result, out))
    print(f"wrote {', '.join(run.files)} to {out}/")
    return 0


def _susceptibility_plot(result, out: Path) -> Path:
    from slt_jax.plots import plot_susceptibility_pca

    return plot_susceptibility_pca(result.matrix, out / "susceptibility_pca.png", component_names=result.components,
                                   probe_names=list(result.probe_sets))


def _print_summary(result) -> None:
    try:
        print(result.summary())
    except Exception as e:  # a failed statistic must not lose the run: it is written next
        print(f"(no summary: {type(e).__name__}: {e})", file=sys.stderr)


def _save_npy(path: Path, array) -> Path:
    import numpy as np

    from slt_jax.atomic import atomic_path

    with atomic_path(path) as tmp:  # tmp ends in .npy, so np.save adds no suffix
        np.save(tmp, np.asarray(array), allow_pickle=False)
    return path


def _write_summary(out: Path, summary: dict, run: "RunFolder") -> None:
    from slt_jax.atomic import write_json

    if run.errors:
        summary["errors"] = dict(run.errors)
    # Strict JSON (NaN is not JSON): a non-finite value is written as null.
    write_json(out / "summary.json", _json_safe(summary), allow_nan=False)


def _json_safe(value):
    """Plain JSON values: numpy scalars to Python numbers, NaN/±inf to None, tuples to lists."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value if value is None or isinstance(value, str) else str(value)


# =========================================================================================
# Run folders: status.json says whether the files beside it are one complete run
# =========================================================================================

STATUS_FILE = "status.json"
# What the commands write (globs). All are cleared when a run starts in a folder, so the
# outputs of an older run, of any command, never sit beside a newer run's.
_OUTPUTS = (
    "result.nc", "summary.json", "bif_*.npy", "bif_*.png", "trace.png", "mala.png", "loss_histograms.png",
    "diagnostics.png", "susceptibilities.nc", "susceptibility_pca.png", "dln.nc", "mlp.nc", "dln_trace.png",
    "mlp_trace.png",
)


class RunFolder:
    """One run's bookkeeping in its --out folder (see the module docstring)."""

    def __init__(self, folder: Path, command: str):
        import uuid

        self.folder, self.command = Path(folder), command
        self.run_id = uuid.uuid4().hex
        self.errors: dict[str, str] = {}
        self.files: list[str] = []
        self.status: dict = {}

    def start(self, argv: list[str]) -> None:
        """Mark the folder "running" first, then remove what an older run left there."""
        from slt_jax.atomic import fsync_dir, remove_temporaries

        import slt_jax

        stale = self._outputs() + self._listed_in_old_status()
        self.status = dict(status="running", run_id=self.run_id, command=self.command, argv=list(argv),
                           started=_now(), slt_jax_version=slt_jax.__version__)
        self._write_status()
        for p in stale:
            p.unlink(missing_ok=True)
        remove_temporaries(self.folder)
        fsync_dir(self.folder)

    def attempt(self, name: str, fn):
        """fn(), or None when it raises: the error is recorded and the run goes on."""
        try:
            return fn()
        except Exception as e:
            self.errors[name] = f"{type(e).__name__}: {e}"
            print(f"warning: {name} failed ({self.errors[name]}); the run's other outputs are still written",
                  file=sys.stderr)
            return None

    def finish(self) -> None:
        """Written last: every output's size and SHA-256, so a reader can check the set."""
        from slt_jax.atomic import file_digest

        self.files = sorted(p.name for p in self._outputs())
        self.status.update(status="complete", finished=_now(), errors=dict(self.errors),
                           files={name: file_digest(self.folder / name) for name in self.files})
        self._write_status()

    def fail(self, error: BaseException) -> None:
        self.status.update(status="failed", finished=_now(), error=f"{type(error).__name__}: {error}")
        self._write_status()

    def _outputs(self) -> list[Path]:
        found = {p for pattern in _OUTPUTS for p in self.folder.glob(pattern) if p.is_file()}
        return sorted(found)

    def _listed_in_old_status(self) -> list[Path]:
        try:
            old = _read_status(self.folder) or {}
        except RunFolderError:
            return []
        names = old.get("files") or {}
        return [self.folder / name for name in names if isinstance(name, str) and Path(name).name == name
                and name != STATUS_FILE]

    def _write_status(self) -> None:
        from slt_jax.atomic import write_json

        write_json(self.folder / STATUS_FILE, self.status)


@contextmanager
def run_folder(folder: str | Path, command: str, argv: list[str]):
    """Open a run in `folder` (status "running"); "complete" on success, "failed" on an error.

    Under jax.distributed only process 0 writes results, so only it keeps the status.
    """
    import jax

    run = RunFolder(Path(folder), command)
    if jax.process_index() != 0:
        yield run
        return
    run.start(argv)
    try:
        yield run
    except BaseException as e:
        run.fail(e)
        raise
    run.finish()


def verify_run(folder: str | Path) -> dict:
    """The status of the complete run in `folder`; RunFolderError when the run did not finish
    (killed or failed), or when an output is missing or differs from the one the run wrote."""
    folder = Path(folder)
    status = _read_status(folder)
    if status is None:
        raise RunFolderError(f"{folder} has no {STATUS_FILE}: no slt-jax run finished there (or it predates run status).")
    if status.get("status") != "complete":
        why = f" ({status['error']})" if status.get("error") else ""
        raise RunFolderError(
            f"{folder}: the {status.get('command')} run {status.get('run_id')} is {status.get('status')!r}, "
            f"not complete{why}; its files are partial. Rerun it."
        )
    from slt_jax.atomic import file_digest

    for name, recorded in status.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise RunFolderError(f"{path} is missing; the run {status['run_id']} wrote it. Rerun or restore it.")
        if file_digest(path) != recorded:
            raise RunFolderError(f"{path} is not the file run {status['run_id']} wrote (size or SHA-256 differ).")
    return status


def _read_status(folder: Path) -> dict | None:
    import json

    path = folder / STATUS_FILE
    if not path.is_file():
        return None
    try:
        status = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFolderError(f"{path} is not valid JSON ({e}); the folder's state is unknown. Rerun.") from e
    if not isinstance(status, dict):
        raise RunFolderError(f"{path} holds a {type(status).__name__}, not a run status. Rerun.")
    return status


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# =========================================================================================
# Exact learning coefficients
# =========================================================================================


def _truth(args: argparse.Namespace) -> int:
    from slt_jax import truth

    if args.model == "dln":
        value = truth.dln_learning_coefficient(args.widths, args.rank)
    elif args.model == "rrr":
        m, h, n = args.widths
        value = truth.rrr_learning_coefficient(m, h, n, args.rank)
    elif args.model == "normal-crossing":
        value = truth.normal_crossing_learning_coefficient(args.powers)
    else:
        value = truth.regular_learning_coefficient(args.num_params)
    print(f"{value} = {float(value):.6g}")
    return 0


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
        help="estimate λ̂ for a deep linear network with known λ and for a small trained MLP",
        description="Builds a deep linear network whose learning coefficient is known exactly and a "
        "small MLP trained with optax; estimates λ̂ with many chains; prints estimate vs truth with "
        "error bars and timing; saves the results (netCDF) and trace plots (PNG).",
    )
    demo.add_argument("--chains", type=POSITIVE, default=16, help="chains per estimate (default 16)")
    demo.add_argument("--seed", type=NON_NEGATIVE, default=0, help="random seed (default 0)")
    demo.add_argument("--out", type=_folder, default="slt_jax_results/demo", help="output folder (default slt_jax_results/demo)")
    demo.add_argument("--quick", action="store_true", help="a fifth of the steps (a smoke test)")
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
    llc.add_argument("--eval-batching", choices=["vmap", "map"], default="vmap",
                     help="evaluate chains side by side (vmap) or one after another per device (map)")
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
    for add in (_add_demo, _add_llc, _add_susceptibilities, _add_truth):
        add(sub)
    return parser


def _check_truth_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    need = {"dln": "widths", "rrr": "widths", "normal-crossing": "powers", "regular": "num_params"}[args.model]
    if getattr(args, need) is None:
        parser.error(f"truth {args.model} needs --{need.replace('_', '-')}")
    if args.model == "rrr" and len(args.widths) != 3:
        parser.error("truth rrr needs exactly three --widths: M H N")


def main(argv: list[str] | None = None) -> int:
    from slt_jax.hostdevices import expose_cpu_cores

    expose_cpu_cores()  # chains on every CPU core (before jax is imported; no-op otherwise)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # recorded in the run folder's status.json
    if args.compile_cache != "off":
        from slt_jax.hostdevices import enable_compilation_cache

        enable_compilation_cache(args.compile_cache or None)
    if args.command == "truth":
        _check_truth_args(parser, args)
    try:
        return args.func(args)
    except UsageError as e:
        parser.exit(2, f"slt-jax {args.command}: error: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
