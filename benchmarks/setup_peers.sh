#!/usr/bin/env bash
# The peers' virtualenvs for the MLP comparisons (benchmarks/run_peer_comparison.py,
# benchmarks/run_mlp_comparison.py). Idempotent: an existing venv with the right versions is
# left as it is; a venv with other versions is brought to these pins. Torch never enters the
# core venv (.venv): each peer has its own, both ignored by .gitignore (.venv-*/).
#
#   bash benchmarks/setup_peers.sh            # both
#   bash benchmarks/setup_peers.sh canonical  # or: devinterp
#
#   .venv-bench      python 3.11, torch==2.13.0, devinterp==1.3.2   (devinterp_mlp.py)
#   .venv-canonical  python 3.12, torch==2.13.0, canonical-interp==0.1.5 (canonical_mlp.py;
#                    canonical-interp needs python >= 3.12 for itertools.batched)
#
# Where the torch wheel comes from: on the 2-core VM, torch==2.13.0 for cp311 is the local
# CPU build (+cpu); for cp312 the only torch 2.13.0 on PyPI is the CUDA (cu130) build, with
# nvidia-* and triton wheels (the venv is ~5.6 GB; ~4 min to install from scratch). It runs on
# the CPU all the same; `import torch` takes ~1.1 s against the CPU build's ~0.9 s, which counts
# in canonical-interp's "to first λ̂".
# torch is pinned in the same pip command as the peer, because canonical-interp's unpinned
# `torch>=2.11, torchvision>=0.26` would otherwise upgrade it to the newest torch (2.14.1) with
# torchvision 0.29; pinned, pip picks torchvision 0.28.0, which matches torch 2.13.0.
#
# Environment overrides: PY311 / PY312 (interpreters), VENV_DEVINTERP / VENV_CANONICAL (paths).
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_PIN="torch==2.13.0"
DEVINTERP_PIN="devinterp==1.3.2"
CANONICAL_PIN="canonical-interp==0.1.5"

find_python() {  # find_python 3.12 -> an interpreter of that minor version
    local want=$1 c
    for c in "${2:-}" "python$want" "$HOME/.pyenv/versions/$want"*/bin/python "/usr/bin/python$want" "/usr/local/bin/python$want"; do
        [ -n "$c" ] || continue
        if command -v "$c" >/dev/null 2>&1 && "$c" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$want'.split('.'))))" 2>/dev/null; then
            command -v "$c"
            return 0
        fi
    done
    echo "no python $want found (set PY${want/./} to one)" >&2
    return 1
}

have() {  # have VENV 'pkg==ver' ... : all installed at exactly these versions
    local venv=$1
    shift
    [ -x "$venv/bin/python" ] || return 1
    "$venv/bin/python" - "$@" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        got = version(name)
    except PackageNotFoundError:
        sys.exit(1)
    if got.split("+")[0] != want:
        sys.exit(1)
EOF
}

make_venv() {  # make_venv VENV PYTHON_MINOR
    local venv=$1 minor=$2 py
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$minor'.split('.'))))"; then
        return 0
    fi
    [ -e "$venv" ] && { echo "$venv: not a python $minor venv, recreating" >&2; rm -rf "$venv"; }
    py=$(find_python "$minor" "${3:-}")
    echo "creating $venv with $py" >&2
    "$py" -m venv "$venv"
}

setup_devinterp() {
    local venv=${VENV_DEVINTERP:-.venv-bench}
    make_venv "$venv" 3.11 "${PY311:-}"
    if have "$venv" "$TORCH_PIN" "$DEVINTERP_PIN"; then
        echo "$venv: $TORCH_PIN, $DEVINTERP_PIN already there" >&2
    else
        "$venv/bin/pip" install --quiet "$TORCH_PIN"  # first, so devinterp does not pick a torch itself
        "$venv/bin/pip" install --quiet "$TORCH_PIN" "$DEVINTERP_PIN"
    fi
    "$venv/bin/python" -c "import torch, devinterp; from importlib.metadata import version as v; \
print('$venv:', 'torch', torch.__version__, 'devinterp', v('devinterp'))"
}

setup_canonical() {
    local venv=${VENV_CANONICAL:-.venv-canonical}
    make_venv "$venv" 3.12 "${PY312:-}"
    if have "$venv" "$TORCH_PIN" "$CANONICAL_PIN"; then
        echo "$venv: $TORCH_PIN, $CANONICAL_PIN already there" >&2
    else
        "$venv/bin/pip" install --quiet "$TORCH_PIN"
        "$venv/bin/pip" install --quiet "$TORCH_PIN" "$CANONICAL_PIN"
    fi
    "$venv/bin/pip" check >&2
    "$venv/bin/python" -c "import torch, torchvision, canonical_interp; from importlib.metadata import version as v; \
print('$venv:', 'torch', torch.__version__, 'torchvision', torchvision.__version__, 'canonical-interp', v('canonical-interp'))"
}

case "${1:-all}" in
    all) setup_devinterp; setup_canonical ;;
    devinterp) setup_devinterp ;;
    canonical) setup_canonical ;;
    *) echo "usage: $0 [all|devinterp|canonical]" >&2; exit 2 ;;
esac
