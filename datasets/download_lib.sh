# Shared by the get_*.sh scripts (sourced, not run): download a file safely.
#
# A download goes to "<destination>.part" first, resumes a .part left by an interrupted run, is verified,
# and only then is moved to its final name, so a final name never holds half a file. Failures exit non-zero
# with a message saying what happened and what to do.
#
# Environment:
#   ASGN3_DATASETS_DIR  where downloads are installed (default: this folder, datasets/)
#   ASGN3_DOWNLOADER    curl or wget (default: curl when it exists, else wget)
#   PYTHON              the Python used to verify files (default: the kit's .venv, else python3)

DL_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DL_KIT="$(dirname "$DL_HERE")"
DATASETS_DIR="${ASGN3_DATASETS_DIR:-$DL_HERE}"

dl_say() { printf '%s\n' "$*"; }
dl_die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

dl_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"
  elif [ -x "$DL_KIT/.venv/bin/python" ]; then echo "$DL_KIT/.venv/bin/python"
  elif command -v python3 >/dev/null 2>&1; then echo python3
  else dl_die "no Python found to verify the download: install Python 3 or set PYTHON"
  fi
}

dl_downloader() {
  local choice="${ASGN3_DOWNLOADER:-}"
  if [ -z "$choice" ]; then
    if command -v curl >/dev/null 2>&1; then choice=curl
    elif command -v wget >/dev/null 2>&1; then choice=wget
    else dl_die "neither curl nor wget is installed: install one of them"
    fi
  fi
  case "$choice" in
    curl|wget) command -v "$choice" >/dev/null 2>&1 || dl_die "ASGN3_DOWNLOADER=$choice but $choice is not installed" ;;
    *) dl_die "ASGN3_DOWNLOADER must be curl or wget, got '$choice'" ;;
  esac
  echo "$choice"
}

# dl_fetch URL PART: download URL into PART, continuing PART when it already holds the first bytes.
# Returns 0 when the server says the transfer is complete; otherwise prints why and returns non-zero.
dl_fetch() {
  local url="$1" part="$2" tool status
  tool="$(dl_downloader)"
  if [ "$tool" = curl ]; then
    curl -fL --connect-timeout 20 --retry 2 -C - -o "$part" "$url"; status=$?
    if [ "$status" -eq 33 ]; then
      dl_say "The server cannot resume; downloading from the start."
      rm -f "$part"
      curl -fL --connect-timeout 20 --retry 2 -o "$part" "$url"; status=$?
    fi
    case "$status" in
      0) return 0 ;;
      6|7|28) dl_say "Cannot reach the server for $url (curl error $status): are you offline?" ;;
      22) dl_say "The server answered $url with an error (HTTP status 400 or above): the file is not there." ;;
      18) dl_say "The connection closed before the whole file arrived (curl error 18)." ;;
      *) dl_say "curl failed on $url (curl error $status)." ;;
    esac
  else
    wget --tries=3 --timeout=20 -c -O "$part" "$url"; status=$?
    case "$status" in
      0) return 0 ;;
      4) dl_say "Network failure fetching $url (wget error 4): are you offline?" ;;
      8) dl_say "The server answered $url with an error page: the file is not there." ;;
      *) dl_say "wget failed on $url (wget error $status)." ;;
    esac
  fi
  return 1
}

# dl_install URL DEST VERIFY: fetch URL into DEST.part, run `VERIFY DEST.part`, then rename to DEST.
# A transfer cut short keeps DEST.part so that the next run resumes it; a complete transfer that fails
# verification (an error page, a truncated file) is deleted, since resuming it cannot repair it.
dl_install() {
  local url="$1" dest="$2" verify="$3" part="$2.part"
  mkdir -p "$(dirname "$dest")" || dl_die "cannot create $(dirname "$dest")"
  [ -s "$part" ] && dl_say "Resuming the partial download $part"
  dl_say "Downloading $url"
  if ! dl_fetch "$url" "$part"; then
    if [ -s "$part" ] && "$verify" "$part" >/dev/null 2>&1; then
      dl_say "The partial file $part is in fact complete."
    else
      if [ -s "$part" ]; then
        dl_say "Kept the incomplete $part: run this script again to resume it."
      else
        rm -f "$part"
      fi
      dl_die "download of $url failed; nothing was installed at $dest"
    fi
  fi
  if ! "$verify" "$part"; then
    rm -f "$part"
    dl_die "$url arrived but is not a valid file (an error page or a truncated file?); deleted it, nothing was installed at $dest"
  fi
  mv -f "$part" "$dest" || dl_die "cannot move $part to $dest"
  dl_say "Installed $dest"
}

# dl_verify_zip ZIP FOLDER: ZIP must be a zip archive whose members all test clean and live under FOLDER/.
dl_verify_zip() {
  "$(dl_python)" - "$1" "$2" <<'EOF'
import sys, zipfile
path, folder = sys.argv[1], sys.argv[2]
if not zipfile.is_zipfile(path):
    with open(path, "rb") as f:
        head = f.read(60)
    sys.exit(f"{path} is not a zip archive (it starts with {head!r})")
with zipfile.ZipFile(path) as z:
    bad = z.testzip()
    if bad is not None:
        sys.exit(f"{path}: member {bad} fails its CRC check")
    outside = [n for n in z.namelist() if not n.startswith(folder + "/")]
    if outside:
        sys.exit(f"{path}: expected every member under {folder}/, found {outside[0]}")
EOF
}

# dl_verify_hdf5 FILE: FILE must open as HDF5 (with h5py when available, else by its signature).
dl_verify_hdf5() {
  "$(dl_python)" - "$1" <<'EOF'
import sys
path = sys.argv[1]
try:
    import h5py
except ImportError:
    with open(path, "rb") as f:
        if f.read(8) != b"\x89HDF\r\n\x1a\n":
            sys.exit(f"{path} is not an HDF5 file (wrong signature)")
else:
    try:
        with h5py.File(path, "r") as f:
            if len(f.keys()) == 0:
                sys.exit(f"{path} is an empty HDF5 file")
    except OSError as e:
        sys.exit(f"{path} does not open as HDF5: {e}")
EOF
}

# dl_get_zip_folder NAME URL: install the zip at URL, which unpacks to NAME/, as DATASETS_DIR/NAME.
dl_get_zip_folder() {
  local name="$1" url="$2" target="$DATASETS_DIR/$1" zip="$DATASETS_DIR/$1.zip" tmp
  if [ -e "$target" ]; then
    dl_say "$target is already present: nothing to do (delete it to download again)."
    return 0
  fi
  verify_this_zip() { dl_verify_zip "$1" "$name"; }
  dl_install "$url" "$zip" verify_this_zip
  tmp="$(mktemp -d "$DATASETS_DIR/.unpack-$name.XXXXXX")" || dl_die "cannot create a temporary folder in $DATASETS_DIR"
  dl_say "Unpacking $zip"
  if ! "$(dl_python)" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$zip" "$tmp"; then
    rm -rf "$tmp"
    dl_die "unpacking $zip failed (disk full?); nothing was installed at $target"
  fi
  mv "$tmp/$name" "$target" || { rm -rf "$tmp"; dl_die "cannot move the unpacked folder to $target"; }
  rm -rf "$tmp" "$zip"
  dl_say "Ready: $target"
}
