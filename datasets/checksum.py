"""SHA-256 checksums of shipped files, as sha256sum writes them: `<digest>  <name>` in `<file>.sha256`."""

import hashlib
from pathlib import Path


def sha256_of(path):
    """Hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksum(path):
    """Write `<digest>  <name>` (the format of sha256sum) to path + '.sha256'; return the digest."""
    path = Path(path)
    digest = sha256_of(path)
    Path(str(path) + ".sha256").write_text(f"{digest}  {path.name}\n")
    return digest


def read_checksum(path):
    """The digest recorded in path + '.sha256' (as written by write_checksum)."""
    return Path(str(path) + ".sha256").read_text().split()[0]
