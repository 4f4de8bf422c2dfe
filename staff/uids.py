"""Fresh uids for sandbox runs: each run gets a uid no live process has, held until the run is cleaned up.

A uid is taken by locking its file in a folder only root can enter (flock: every grader process on the
machine, batch workers included, sees the same locks, and a crashed grader's locks vanish with it), then
checking that no process runs under it and no System V IPC object belongs to it. The lock is held until
the run's supervisor has killed everything of the uid, so a uid is never reused while anything of it
lives. Uids are drawn at random from a range far above the system's users; $ASGN3_SANDBOX_UIDS=FIRST:COUNT
moves it (e.g. where a user namespace maps fewer uids, or to keep two graders' runs apart).
"""

import contextlib
import fcntl
import os
import random
import stat
from pathlib import Path

from staff.procs import ipc_objects_of_uid, processes_of_uid

FIRST, COUNT = 2_000_000, 1_000_000  # far above the users of common distributions
RANGE_VARIABLE = "ASGN3_SANDBOX_UIDS"  # FIRST:COUNT, e.g. for graders that must not share uids
_RANDOM = random.SystemRandom()
# One folder for the whole machine (never under $TMPDIR, which differs between grader processes)
LOCK_DIR = Path("/run" if os.access("/run", os.W_OK) else "/tmp") / "asgn3-sandbox-uids"


class UidError(RuntimeError):
    """No fresh uid could be taken."""


def _lock_dir():
    """The lock folder, made root-only; refused if someone else made it first (or made it a link)."""
    try:
        LOCK_DIR.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = LOCK_DIR.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise UidError(
            f"{LOCK_DIR} is not a folder of uid {os.geteuid()} with mode 700: remove it "
            "(someone else made it) and grade again"
        )
    return LOCK_DIR


def uid_range():
    """(first uid, how many) that sandbox runs draw from."""
    text = os.environ.get(RANGE_VARIABLE, "")
    if not text:
        return FIRST, COUNT
    try:
        first, count = (int(part) for part in text.split(":"))
    except ValueError:
        first = count = 0
    if first < 65536 or count < 1:
        raise UidError(
            f"{RANGE_VARIABLE}={text!r}: expected FIRST:COUNT with FIRST >= 65536, e.g. 2000000:1000000"
        )
    return first, count


def in_use(uid):
    """Whether a process runs under uid, or a System V IPC object belongs to it."""
    return bool(processes_of_uid(uid) or ipc_objects_of_uid(uid))


@contextlib.contextmanager
def fresh_uid(attempts=200):
    """Hold a fresh uid for the duration of the block (its lock file is removed afterwards)."""
    folder = _lock_dir()
    first, count = uid_range()
    for _ in range(attempts):
        uid = first + _RANDOM.randrange(count)
        path = folder / f"{uid}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        # the file may have been removed by its previous holder after we opened it: then try another
        if not _holding(fd, path) or in_use(uid):
            os.close(fd)
            continue
        try:
            yield uid
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)
        return
    raise UidError(f"no fresh uid found in {attempts} tries: too many sandbox runs, or stale processes")


def _holding(fd, path):
    """Whether fd is the live lock file at path (still linked there)."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except OSError:
        return False
