"""`slt-jax sweep CONFIG` and `slt-jax calibrate CONFIG`: the checkpoint workflow from a
sweep config (slt_jax.workflows.sweep_config). A config error ends the command with one line
naming the key and the fix (exit status 2), before anything is compiled."""

from __future__ import annotations

import argparse
import math

from slt_jax.cli.problems import UsageError

__all__ = ["add_workflow_commands"]


def _sweep(args: argparse.Namespace) -> int:
    from slt_jax.workflows.sweep import SweepConfigError, sweep

    try:
        table = sweep(args.config, new=args.new, shard=args.shard, progress=not args.no_progress,
                      plots=not args.no_plots)
    except (SweepConfigError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    a = table.attrs
    settings = ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in a["settings"].items())
    print(f"settings: {settings} (from {a['settings_source']})")
    columns = ["step", "llc", "llc_mcse", "llc_var", "mala_mean", "chains_used", "chains_excluded", "init_loss"]
    if len(table):
        print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"sampled {len(a['computed'])} checkpoint(s), {len(a['skipped'])} already done; "
          f"{a['compilations']} compilation(s); wall {a['wall_s']:.1f}s, sampling {a['sampling_s']:.1f}s")
    flagged = table[table["verdicts"] != ""] if len(table) else table
    for _, row in flagged.iterrows():
        print(f"step {row['step']}: {row['verdicts']}")
    if a["pending"]:
        print(f"{len(a['pending'])} checkpoint(s) pending in other shards; the last shard to finish writes the full summary")
    stages = a["stages"]
    if isinstance(stages, list):
        print(f"stage boundaries at steps {', '.join(f'{b:.4g}' for b in stages) or '(none: one stage)'}")
    elif stages:
        print(f"stages: {stages}")
    print(f"results in {a['out']}/ (summary.csv, sweep.nc, {'llc_vs_step.png' if not args.no_plots else 'no plots'})")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from slt_jax.workflows.calibrate_config import calibrate_from_config
    from slt_jax.workflows.sweep_config import SweepConfigError, calibration_file, load_config

    try:
        path = calibration_file(load_config(args.config))
        result = calibrate_from_config(args.config, progress=not args.no_progress, plots=not args.no_plots)
    except (SweepConfigError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    rec = result.recommended
    print("recommended: " + ", ".join(f"{k} = {v:g}" if isinstance(v, float) and math.isfinite(v) else f"{k} = {v}"
                                      for k, v in rec.items()))
    for reason in result.reasons:
        print(f"  - {reason}")
    print(f"wrote {path} (the sweep reads it for settings its [sampler] table leaves out)")
    return 0


def _shard(text: str) -> str:
    from slt_jax.workflows.sweep import SweepConfigError, resolve_shard

    try:
        resolve_shard(text, {})
    except SweepConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def add_workflow_commands(sub) -> None:
    sw = sub.add_parser(
        "sweep", help="λ̂ at every checkpoint of a training run, resumable, with a summary table and stages",
        description="Runs the sweep a TOML config describes (factory, checkpoints, out, [sampler]; see "
        "slt_jax.workflows.sweep_config). Resumes an interrupted sweep; refuses a changed config unless --new. "
        "Writes ckpt_<step>.nc, summary.csv/.parquet, sweep.nc, stages and llc_vs_step.png to the config's out.",
    )
    sw.add_argument("config", help="the sweep's TOML file")
    sw.add_argument("--new", action="store_true", help="start over: move the old results to <out>.old-<time>")
    sw.add_argument("--shard", type=_shard, default=None, metavar="i/N",
                    help="run every N-th checkpoint from the i-th (a job array; default: SLURM_ARRAY_* when set)")
    sw.add_argument("--no-plots", action="store_true")
    sw.add_argument("--no-progress", action="store_true")
    sw.set_defaults(func=_sweep)
    cal = sub.add_parser(
        "calibrate", help="choose ε, γ and nβ for a sweep on a few checkpoints, with reasons",
        description="Runs the config's [calibrate] grid (default grids when absent) on its first, middle and "
        "last checkpoints as one program, scores every cell (slt_jax.calibration) and writes the recommendation "
        "to <out>/calibration/calibration.json, which `slt-jax sweep` reads.",
    )
    cal.add_argument("config", help="the sweep's TOML file")
    cal.add_argument("--no-plots", action="store_true")
    cal.add_argument("--no-progress", action="store_true")
    cal.set_defaults(func=_calibrate)
