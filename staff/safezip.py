"""Open a submitted zip without trusting it: refuse unsafe entries, extract only inside one folder.

Refused with a clear message (SubmissionError): a file that is not a zip, absolute paths, `..` components,
backslashes or drive letters, links and other special entries, encrypted or duplicate entries, too many
entries, names too long for a filesystem, a file where another entry needs a folder of that name, and zip
bombs (a declared size or a compression ratio beyond the limits). Extraction streams each entry and stops
at its declared size, so a header that lies about sizes cannot fill the disk.

`locate_package` then finds the submission's asgn3 package when the zip does not hold it at its root
(a nested folder, loose student files, a zip inside the zip), says what it found and what to do, and
hands back the obvious fix when there is exactly one.
"""

import shutil
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
    max_name_bytes: int = 255  # one folder or file name (the common filesystem limit)
    max_path_bytes: int = 1024


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


def _safe_name(name, limits):
    """The entry name as a relative PurePosixPath, or a SubmissionError saying why it is unsafe."""
    if len(name.encode("utf-8", "surrogateescape")) > limits.max_path_bytes or any(
        len(part.encode("utf-8", "surrogateescape")) > limits.max_name_bytes for part in name.split("/")
    ):
        raise SubmissionError(
            f"zip entry {name[:80]!r}... has a name longer than a filesystem allows "
            f"({limits.max_name_bytes} bytes a part, {limits.max_path_bytes} in all): rename it"
        )
    if "\x00" in name:
        raise SubmissionError(f"zip entry {name[:80]!r} has a NUL character in its name: rename it")
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
    try:
        with zipfile.ZipFile(zip_path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as error:
        raise SubmissionError(f"{Path(zip_path).name} is a damaged zip ({error}): rebuild it") from None
    if len(infos) > limits.max_entries:
        raise SubmissionError(
            f"the zip has {len(infos)} entries, more than {limits.max_entries}: "
            "submit only the notebooks and asgn3 (collectSubmission.sh does)"
        )
    files, seen, total = [], set(), 0
    for info in infos:
        path = _safe_name(info.filename, limits)
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
    _check_folders(files)
    return files


def _check_folders(files):
    """A SubmissionError when a file's name is also a folder other entries need (cannot extract both)."""
    names = {path.as_posix().lower(): info.filename for info, path in files}
    for info, path in files:
        for folder in path.parents:
            clash = names.get(folder.as_posix().lower())
            if clash is not None:
                raise SubmissionError(
                    f"zip entry {clash!r} is a file, but {info.filename!r} needs a folder of that name: "
                    "rebuild the zip with collectSubmission.sh"
                )


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
            try:
                if dest not in target.resolve().parents:
                    raise SubmissionError(
                        f"zip entry {info.filename!r} would land outside the grading folder"
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                _extract_entry(archive, info, target)
            except (
                zipfile.BadZipFile,
                OSError,
                EOFError,
                ValueError,
                RuntimeError,
                NotImplementedError,
            ) as error:
                raise SubmissionError(
                    f"zip entry {info.filename!r} cannot be extracted ({error}): rebuild the zip"
                ) from None
            written.append(target)
    return written


def _extract_entry(archive, info, target):
    """Stream one entry into target, refusing more data than its header declares."""
    size = 0
    with archive.open(info) as source, open(target, "xb") as sink:
        while chunk := source.read(1 << 16):
            size += len(chunk)
            if size > info.file_size:
                raise SubmissionError(
                    f"zip entry {info.filename!r} holds more data than its header declares (zip bomb)"
                )
            sink.write(chunk)


# -- where the submission's asgn3 is ----------------------------------------------------------------------

COLLECT = "make the zip with collectSubmission.sh, which puts the notebooks and the asgn3 folder at its root"


def _listing(paths, root, count=5):
    names = sorted(p.relative_to(root).as_posix() for p in paths)
    return ", ".join(names[:count]) + (f" and {len(names) - count} more" if len(names) > count else "")


def locate_package(root, student_files, scratch, limits=ZipLimits(), nested=False):
    """The asgn3 folder to grade in an extracted submission, and a note on what was found (or '').

    Inputs:
    - root: the folder the zip was extracted to.
    - student_files: the files students write, as paths like 'asgn3/rnn_layers.py'.
    - scratch: an empty folder of the grader's, for a rebuilt package (loose files, a zip in the zip);
      None: those fixes are only described.
    - limits: ZipLimits for a zip inside the zip.
    - nested: True inside a zip of the zip (whose own zips are not opened).
    Returns (folder or None, note). The obvious fix is graded when there is one: the one shallowest asgn3
    folder, the asgn3 of the only zip inside the zip, loose student files each found once; otherwise
    None, and the note says what the zip holds and what to do.
    """
    root = Path(root)
    if (root / "asgn3").is_dir():
        return root / "asgn3", ""
    folders = sorted((p for p in root.rglob("asgn3") if p.is_dir()), key=lambda p: len(p.parts))
    if folders:
        shallowest = [p for p in folders if len(p.parts) == len(folders[0].parts)]
        if len(shallowest) > 1:
            return None, (
                f"the zip holds several asgn3 folders ({_listing(shallowest, root)}) and none at its root: "
                f"graded none of them; {COLLECT}"
            )
        where = folders[0].relative_to(root).as_posix()
        return folders[0], f"asgn3 found at {where}/, not at the zip's root: graded it; next time {COLLECT}"
    files = [p for p in root.rglob("*") if p.is_file()]
    if not files:
        return None, f"the zip is empty: {COLLECT}"
    inner = [p for p in files if p.suffix.lower() == ".zip"]
    if len(inner) == 1 and not nested and scratch is not None:
        return _inner_zip(inner[0], root, student_files, Path(scratch), limits)
    loose = _loose_student_files(files, student_files)
    if loose and scratch is not None:
        return _rebuild(loose, root, Path(scratch))
    if len(inner) > 1:
        return (
            None,
            f"the zip holds {len(inner)} zips ({_listing(inner, root)}) and no asgn3 folder: submit one",
        )
    wanted = ", ".join(sorted({PurePosixPath(f).name for f in student_files}))
    return None, (
        f"the zip holds {len(files)} files ({_listing(files, root)}) but no asgn3 folder and none of the "
        f"files you write ({wanted}): {COLLECT}"
    )


def _inner_zip(path, root, student_files, scratch, limits):
    """The package inside the one zip the submission holds (one level deep only)."""
    name = path.relative_to(root).as_posix()
    inside = scratch / "inner"
    try:
        extract_zip(path, inside, limits)
    except SubmissionError as error:
        return None, f"the zip holds another zip, {name}, and no asgn3 folder; {name} cannot be used: {error}"
    package, note = locate_package(inside, student_files, scratch / "inner-scratch", limits, nested=True)
    if package is None:
        return None, f"the zip holds another zip, {name}, and no asgn3 folder; in {name}: {note}"
    return package, (
        f"the zip holds another zip, {name}, and no asgn3 folder: graded the asgn3 in {name}"
        + (f" ({note})" if note else "")
        + "; next time submit that zip itself"
    )


def _loose_student_files(files, student_files):
    """{student file: the submitted file} for loose files named like a student file, each found once."""
    by_name = {}
    for wanted in student_files:
        by_name.setdefault(PurePosixPath(wanted).name, []).append(wanted)
    found = {}
    for path in files:
        candidates = by_name.get(path.name, [])
        if len(candidates) == 1:
            found.setdefault(candidates[0], []).append(path)
    if not found or any(len(paths) > 1 for paths in found.values()):
        return {}
    return {wanted: paths[0] for wanted, paths in found.items()}


def _rebuild(loose, root, scratch):
    """A package made of loose student files, each copied to its place under scratch/asgn3."""
    for wanted, path in loose.items():
        target = scratch / wanted
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    placed = ", ".join(
        f"{path.relative_to(root).as_posix()} as {wanted}" for wanted, path in sorted(loose.items())
    )
    return (
        scratch / "asgn3",
        f"no asgn3 folder in the zip, but loose files you write: graded {placed}; next time {COLLECT}",
    )
