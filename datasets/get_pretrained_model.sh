#!/usr/bin/env bash
# Download the classic pretrained CNN (trained on TinyImageNet-100-A) to datasets/pretrained_model.h5.
# Overrides for testing or mirrors: ASGN3_PRETRAINED_URL, ASGN3_DATASETS_DIR (see download_lib.sh).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/download_lib.sh"
target="$DATASETS_DIR/pretrained_model.h5"
if [ -e "$target" ]; then
  dl_say "$target is already present: nothing to do (delete it to download again)."
  exit 0
fi
dl_install "${ASGN3_PRETRAINED_URL:-http://cs231n.stanford.edu/pretrained_model.h5}" "$target" dl_verify_hdf5
