"""`python -m slt_jax.cli`: the same as the `slt-jax` command."""

import sys

from slt_jax.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
