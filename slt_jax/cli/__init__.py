"""Command line: `slt-jax demo` (the README's main job), `llc`, `susceptibilities`, `truth` (exact λ), `sweep` and `calibrate` (a checkpoint sweep from a TOML config).

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

import sys

from slt_jax.cli.parser import (
    GAMMA,
    NON_NEGATIVE,
    POSITIVE,
    STEP_SIZE,
    _check_truth_args,
    build_parser,
)
from slt_jax.cli.problems import OBSERVABLES, UsageError
from slt_jax.cli.run_folder import (
    STATUS_FILE,
    RunFolder,
    RunFolderError,
    run_folder,
    verify_run,
)

__all__ = [
    "GAMMA",
    "NON_NEGATIVE",
    "OBSERVABLES",
    "POSITIVE",
    "STATUS_FILE",
    "STEP_SIZE",
    "RunFolder",
    "RunFolderError",
    "UsageError",
    "build_parser",
    "main",
    "run_folder",
    "verify_run",
]


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
