#!/usr/bin/env bash
# Download the classic TinyImageNet-100-A (100 classes of 64x64 images) into datasets/tiny-imagenet-100-A/.
# Overrides for testing or mirrors: ASGN3_TINY_IMAGENET_URL, ASGN3_DATASETS_DIR (see download_lib.sh).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/download_lib.sh"
dl_get_zip_folder tiny-imagenet-100-A "${ASGN3_TINY_IMAGENET_URL:-http://cs231n.stanford.edu/tiny-imagenet-100-A.zip}"
