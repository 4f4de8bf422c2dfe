#!/usr/bin/env bash
# Download the classic COCO captioning data (features, captions, vocabulary, urls) into datasets/coco_captioning/.
# Overrides for testing or mirrors: ASGN3_COCO_URL, ASGN3_DATASETS_DIR (see download_lib.sh).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/download_lib.sh"
dl_get_zip_folder coco_captioning "${ASGN3_COCO_URL:-http://cs231n.stanford.edu/coco_captioning.zip}"
