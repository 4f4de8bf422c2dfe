#!/usr/bin/env bash
# Make assignment3.zip, the file you submit: the assignment's notebooks and your asgn3 code.
#
#   bash collectSubmission.sh
#
# Run it from anywhere; it works in the folder that holds it. It refuses (and says why) when a notebook
# is missing or was never run: execute every notebook (and save it) before you collect. Left out:
# datasets, build outputs (*.so, *.c, build/), checkpoints, virtual environments, caches and .git.
# The list of notebooks is the assignment's manifest (asgn3/assignment.py), read with Python: the kit's
# .venv/bin/python when there is one, else python3 or python. Works with bash 3.2 (macOS) and newer, with
# the `zip` program or, without it, with Python's zipfile.
set -eu

cd "$(dirname "$0")"
OUT=assignment3.zip

fail() {
  echo "collectSubmission: $*" >&2
  exit 1
}

[ -d asgn3 ] || fail "no asgn3 folder next to collectSubmission.sh: run it from the assignment folder"

PYTHON=""
for candidate in .venv/bin/python python3 python; do
  if command -v "$candidate" >/dev/null 2>&1; then PYTHON=$candidate; break; fi
done
[ -n "$PYTHON" ] || fail "Python is needed to read the list of notebooks (asgn3/assignment.py) and none was found: \
run \`bash kit.sh setup\` (it makes .venv), or install python3"
NOTEBOOKS=$("$PYTHON" -m asgn3.assignment notebooks) ||
  fail "$PYTHON could not read the list of notebooks from asgn3/assignment.py (see the message above)"

problems=""
for notebook in $NOTEBOOKS; do
  if [ ! -f "$notebook" ]; then
    problems="$problems
  - $notebook is missing: it must be in $(pwd)"
  elif ! grep -q '"execution_count": *[0-9]' "$notebook"; then
    problems="$problems
  - $notebook was never executed: run all its cells, save it, then collect again"
  fi
done
if [ -n "$problems" ]; then
  if [ -f "$OUT" ]; then
    rm -f "$OUT"
    problems="$problems
  (the old $OUT was removed, so that it cannot be submitted by mistake)"
  fi
  fail "cannot collect your submission:$problems"
fi

# The asgn3 files to submit, one per line, without build outputs, caches, checkpoints or data.
list_code() {
  find asgn3 \( -name build -o -name __pycache__ -o -name .ipynb_checkpoints -o -name checkpoints \
                -o -name datasets -o -name .git -o -name '.venv*' -o -name '*.egg-info' \) -prune -o \
       -type f ! -name '*.so' ! -name '*.pyd' ! -name '*.c' ! -name '*.o' ! -name '*.pyc' \
       ! -name '*.h5' ! -name '*.npz' ! -name '*.pkl' ! -name '.DS_Store' -print | LC_ALL=C sort
}

rm -f "$OUT"
if command -v zip >/dev/null 2>&1; then
  { for notebook in $NOTEBOOKS; do echo "$notebook"; done; list_code; } | zip -q "$OUT" -@ ||
    fail "zip could not write $OUT (see the message above)"
else
  { for notebook in $NOTEBOOKS; do echo "$notebook"; done; list_code; } | "$PYTHON" -c '
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as archive:
    for name in sys.stdin.read().splitlines():
        archive.write(name, name)
' "$OUT" || fail "$PYTHON could not write $OUT (see the message above)"
fi

count=$( { for notebook in $NOTEBOOKS; do echo "$notebook"; done; list_code; } | wc -l | tr -d ' ')
echo "Wrote $(pwd)/$OUT ($count files: the notebooks and your asgn3 code). Submit this file."
