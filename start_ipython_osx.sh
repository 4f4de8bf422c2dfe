#!/usr/bin/env bash
# Start Jupyter in the kit's virtual environment, from the kit's folder, so the notebooks find asgn3.
# The classic kit's name is kept; the script works the same on macOS and Linux. When the environment is
# missing it is created first with `bash kit.sh setup`. Extra arguments go to Jupyter, e.g.
#   bash start_ipython_osx.sh --no-browser --port 8899
# Set JUPYTER_APP=lab to start JupyterLab instead of the classic notebook interface.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ ! -x .venv/bin/jupyter ]; then
  echo "start_ipython_osx.sh: no Jupyter in .venv yet; running 'bash kit.sh setup' first"
  bash kit.sh setup
fi
exec .venv/bin/jupyter "${JUPYTER_APP:-notebook}" "$@"
