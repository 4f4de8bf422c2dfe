#!/usr/bin/env bash
# Put the four gzipped IDX files of Fashion-MNIST in datasets/fashion-mnist/ (called by `bash kit.sh setup`).
#
# In order: nothing to do when they are already there; else link Debian's copy (package
# dataset-fashion-mnist, installed with apt-get when we are root on Debian); else download the official
# files and check them against their published MD5 checksums. Then decode them and check shapes and labels.
# Overrides: ASGN3_DATASETS_DIR, ASGN3_FASHION_MNIST_URL (base URL), ASGN3_FASHION_MNIST_SYSTEM_DIR.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/download_lib.sh"

SYSTEM_DEFAULT=/usr/share/datasets/fashion-mnist
SYSTEM_DIR="${ASGN3_FASHION_MNIST_SYSTEM_DIR:-$SYSTEM_DEFAULT}"
BASE_URL="${ASGN3_FASHION_MNIST_URL:-http://fashion-mnist.s3-website.eu-central-1.amazonaws.com}"
TARGET="$DATASETS_DIR/fashion-mnist"

# name and MD5 as published in Fashion-MNIST's README (github.com/zalandoresearch/fashion-mnist)
FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
published_md5() {  # a case, not an associative array: macOS still ships bash 3.2
  case "$1" in
    train-images-idx3-ubyte.gz) echo 8d4fb7e6c68d591d4c3dfef9ec88bf0d ;;
    train-labels-idx1-ubyte.gz) echo 25c81989df183df01b3e8a0aad5dffbe ;;
    t10k-images-idx3-ubyte.gz) echo bef4ecab320f06d8554ea6380940ec79 ;;
    t10k-labels-idx1-ubyte.gz) echo bb300cfdad3c16e7a12a480ee83cd310 ;;
  esac
}

all_present() {
  local f
  for f in "${FILES[@]}"; do [ -e "$1/$f" ] || return 1; done
}

check_decoded() {
  local py; py="$(dl_python)"
  if "$py" -c 'import numpy' 2>/dev/null; then
    "$py" "$DL_HERE/fashion_mnist.py" "$TARGET" || dl_die "the files in $TARGET do not decode as Fashion-MNIST: delete the folder and run this script again"
  else
    dl_say "(numpy is not installed for $py: skipped decoding the files; kit.sh setup installs it)"
  fi
}

verify_md5() {
  local want; want="$(published_md5 "$(basename "${1%.part}")")"
  "$(dl_python)" - "$1" "$want" <<'PY'
import hashlib, sys
path, want = sys.argv[1], sys.argv[2]
with open(path, "rb") as f:
    got = hashlib.md5(f.read()).hexdigest()
if got != want:
    sys.exit(f"{path}: MD5 {got} differs from the published {want}")
PY
}

if all_present "$TARGET"; then
  dl_say "Fashion-MNIST is already in $TARGET."
  check_decoded
  exit 0
fi
mkdir -p "$TARGET" || dl_die "cannot create $TARGET"

if ! all_present "$SYSTEM_DIR" && [ "$SYSTEM_DIR" = "$SYSTEM_DEFAULT" ] && [ "$(id -u)" = 0 ] &&
   command -v apt-get >/dev/null 2>&1; then
  dl_say "Installing Debian's package dataset-fashion-mnist"
  apt-get install -y dataset-fashion-mnist ||
    { apt-get update && apt-get install -y dataset-fashion-mnist; } ||
    dl_say "apt-get could not install dataset-fashion-mnist; trying the official download instead."
fi

if all_present "$SYSTEM_DIR"; then
  dl_say "Linking Debian's copy of Fashion-MNIST from $SYSTEM_DIR into $TARGET"
  for f in "${FILES[@]}"; do
    ln -sfn "$SYSTEM_DIR/$f" "$TARGET/$f" || dl_die "cannot link $SYSTEM_DIR/$f into $TARGET"
  done
else
  dl_say "Downloading Fashion-MNIST from $BASE_URL"
  for f in "${FILES[@]}"; do
    [ -e "$TARGET/$f" ] || dl_install "$BASE_URL/$f" "$TARGET/$f" verify_md5
  done
fi
check_decoded
