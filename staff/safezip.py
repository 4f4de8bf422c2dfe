"""Open a submitted zip without trusting it: refuse unsafe entries, extract only inside one folder.

Refused with a clear message (SubmissionError): a file that is not a zip, absolute paths, `..` components,
backslashes or drive letters, links and other special entries, encrypted or duplicate entries, too many
entries, and zip bombs (a declared size or a compression ratio beyond the limits). Extraction streams
each entry and stops at its declared size, so a header that lies about sizes cannot fill the disk.
"""

import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MB = 1 << 20


class SubmissionError(Exception):
    """A submission that cannot be graded; the message says why and what to do."""


@dataclass(frozen=True)
class ZipLimits:
    """What a submission zip may hold."""

    max_entries: int = 2000
    max_file_bytes: int = 50 * MB
    max_total_bytes: int = 200 * MB
    max_ratio: float = 200.0  # uncompressed / compressed, for entries over ratio_floor_bytes
    ratio_floor_bytes: int = 1 * MB


def _entry_kind(info):
    """'dir', 'file', or the name of a special kind (link, device...) from the Unix mode in the entry."""
    mode = info.external_attr >> 16
    if info.is_dir():
        return "dir"
    kind = stat.S_IFMT(mode)
    if kind in (0, stat.S_IFREG):  # zips made on Windows, or by writestr, carry no file type
        return "file"
    return {
        stat.S_IFLNK: "symbolic link",
        stat.S_IFCHR: "device",
        stat.S_IFBLK: "device",
        stat.S_IFIFO: "pipe",
        stat.S_IFSOCK: "socket",
        stat.S_IFDIR: "dir",
    }.get(kind, "special file")


def _safe_name(name):
    """The entry name as a relative PurePosixPath, or a SubmissionError saying why it is unsafe."""
    if "\\" in name:
        raise SubmissionError(f"zip entry {name!r} contains a backslash: zip with collectSubmission.sh")
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        raise SubmissionError(f"zip entry {name!r} has an absolute path: entries must be relative")
    if ".." in path.parts:
        raise SubmissionError(f"zip entry {name!r} climbs out of the folder with '..' (zip-slip)")
    if path.parts and ":" in path.parts[0]:
        raise SubmissionError(f"zip entry {name!r} starts with a drive letter: entries must be relative")
    if not path.parts or any(part in ("", ".") for part in path.parts):
        raise SubmissionError(f"zip entry {name!r} has an empty path")
    return path


def check_zip(zip_path, limits=ZipLimits()):
    """Validate every entry of a zip without extracting it.

    Inputs:
    - zip_path: the submission.
    - limits: a ZipLimits.

    Returns a list of (ZipInfo, PurePosixPath) for the regular files to extract. Raises SubmissionError
    naming the first unsafe entry.
    """
    if not zipfile.is_zipfile(zip_path):
        raise SubmissionError(f"{Path(zip_path).name} is not a zip file: make it with collectSubmission.sh")
    with zipfile.ZipFile(zip_path) as archive:
        infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise SubmissionError(
            f"the zip has {len(infos)} entries, more than {limits.max_entries}: "
            "submit only the notebooks and asgn3 (collectSubmission.sh does)"
        )
    files, seen, total = [], set(), 0
    for info in infos:
        path = _safe_name(info.filename)
        kind = _entry_kind(info)
        if kind not in ("file", "dir"):
            raise SubmissionError(f"zip entry {info.filename!r} is a {kind}: only regular files are accepted")
        if info.flag_bits & 0x1:
            raise SubmissionError(f"zip entry {info.filename!r} is encrypted: submit an unencrypted zip")
        key = path.as_posix().rstrip("/").lower()
        if key in seen:
            raise SubmissionError(f"zip entry {info.filename!r} appears twice: rebuild the zip")
        seen.add(key)
        if kind == "dir":
            continue
        if info.file_size > limits.max_file_bytes:
            raise SubmissionError(
                f"zip entry {info.filename!r} unpacks to {info.file_size / MB:.0f} MB, "
                f"more than {limits.max_file_bytes / MB:.0f} MB (zip bomb or a data file)"
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > limits.ratio_floor_bytes and ratio > limits.max_ratio:
            raise SubmissionError(
                f"zip entry {info.filename!r} has a compression ratio of {ratio:.0f}, more "
                f"than {limits.max_ratio:.0f} (zip bomb)"
            )
        total += info.file_size
        if total > limits.max_total_bytes:
            raise SubmissionError(
                f"the zip unpacks to more than {limits.max_total_bytes / MB:.0f} MB "
                "(zip bomb, or datasets included): submit only the notebooks and asgn3"
            )
        files.append((info, path))
    return files


def extract_zip(zip_path, dest, limits=ZipLimits()):
    """Check a zip (check_zip) and extract its regular files under dest; returns the extracted paths.

    Nothing is written outside dest: every target is resolved and checked to lie inside it, links are
    never created, and each entry's data is cut at its declared size (a lying header is refused).
    """
    dest = Path(dest).resolve()
    entries = check_zip(zip_path, limits)
    written = []
    with zipfile.ZipFile(zip_path) as archive:
        for info, path in entries:
            target = dest.joinpath(*path.parts)
            if dest not in target.resolve().parents:
                raise SubmissionError(f"zip entry {info.filename!r} would land outside the grading folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            size = 0
            try:
                with archive.open(info) as source, open(target, "xb") as sink:
                    while chunk := source.read(1 << 16):
                        size += len(chunk)
                        if size > info.file_size:
                            raise SubmissionError(
                                f"zip entry {info.filename!r} holds more data than its "
                                "header declares (zip bomb)"
                            )
                        sink.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
                raise SubmissionError(
                    f"zip entry {info.filename!r} is damaged ({error}): rebuild the zip"
                ) from None
            written.append(target)
    return written
