"""Run the grader at each sandbox level this machine can provide, and look for what a run left behind.

- 'namespaces': the grader as it is (root with CAP_SYS_ADMIN).
- 'uid': root without CAP_SYS_ADMIN, as in a default Docker container (`setpriv --bounding-set=-sys_admin`).
- 'user': a non-root user (`asgn3-tester`, created with useradd when missing).
The weak levels need a Python that other users can run: the grader's own if it can, else a virtual
environment made from the system's Python of the same version with the grader's packages on its path.
A level is skipped only when the machine cannot provide it, with the reason.
"""

import contextlib
import hashlib
import os
import pwd
import random
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from asgn3.data_paths import KIT_DIR
from staff import sandbox
from staff.procs import ipc_objects, ipc_objects_of_uid, processes_of_uid
from staff.uids import RANGE_VARIABLE

LEVELS = ("namespaces", "uid", "user")
TESTER = "asgn3-tester"
# The runs of these tests draw their uids from a range of their own, so that what they leave behind is
# told apart from the runs of other graders on the machine.
FIRST_UID, UID_COUNT = 3_000_000 + random.SystemRandom().randrange(900) * 1000, 1000


def _shared_python_dir(packages):
    """Where the interpreter for these site-packages lives: one folder per venv, so that a folder made
    for another checkout's venv (with other packages) is never taken for this one."""
    key = hashlib.sha256("\n".join(packages).encode()).hexdigest()[:12]
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return Path(tempfile.gettempdir()) / f"asgn3-shared-python-{version}-{key}"


def _reachable_by_others(path):
    return all(folder.stat().st_mode & 0o001 for folder in Path(path).resolve().parents)


def shared_python():
    """A Python interpreter other users can run, with the grader's packages; pytest.skip if none."""
    if not sandbox._unreachable_python():
        return sys.executable
    packages = [p for p in site.getsitepackages() if os.path.isdir(p)]
    if not all(_reachable_by_others(p) for p in packages):
        pytest.skip(f"the grader's packages ({packages}) cannot be read by other users")
    shared = _shared_python_dir(packages)
    python = shared / "bin" / "python"
    if python.exists():
        return str(python)
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    system = next(
        (p for p in (f"/usr/bin/{version}", f"/usr/local/bin/{version}") if os.access(p, os.X_OK)), None
    )
    if system is None or not _reachable_by_others(system):
        pytest.skip(f"no {version} that other users can run (the grader's is under a closed folder)")
    building = Path(tempfile.mkdtemp(prefix="asgn3-shared-python-"))
    os.chmod(building, 0o755)
    subprocess.run([system, "-m", "venv", "--without-pip", str(building)], check=True)
    site_dir = next(building.glob("lib/python*/site-packages"))
    (site_dir / "asgn3-grader-packages.pth").write_text("\n".join(packages) + "\n")
    try:
        building.rename(shared)
    except OSError:  # another test process made it first
        shutil.rmtree(building)
    return str(python)


def tester():
    """(uid, gid) of the non-root user the 'user' level runs as (created when missing)."""
    try:
        entry = pwd.getpwnam(TESTER)
    except KeyError:
        if not shutil.which("useradd"):
            pytest.skip("no useradd to create the non-root user of the 'user' level")
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TESTER], check=True
        )
        entry = pwd.getpwnam(TESTER)
    return entry.pw_uid, entry.pw_gid


def grader_command(level):
    """(argv prefix that runs python -m staff.grade at level, the uid the grader runs as)."""
    if os.geteuid() != 0:
        if level != "user":
            pytest.skip(f"the '{level}' level needs root; these tests run as uid {os.geteuid()}")
        return [sys.executable, "-m", "staff.grade"], os.geteuid()
    if level == "namespaces":
        if not sandbox.machine()["namespaces"]:
            pytest.skip("the 'namespaces' level needs CAP_SYS_ADMIN and util-linux's unshare")
        return [sys.executable, "-m", "staff.grade"], 0
    if not shutil.which("setpriv"):
        pytest.skip("no setpriv (util-linux) to drop CAP_SYS_ADMIN or become another user")
    python = shared_python()
    if level == "uid":
        drop = ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin"]
        return [*drop, python, "-m", "staff.grade"], 0
    uid, gid = tester()
    become = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    return [*become, python, "-m", "staff.grade"], uid


_OPEN_FOLDERS = []


def open_folder(owner_uid, prefix):
    """A fresh folder the grader at this level can read and write (owned by owner_uid), removed by
    remove_open_folders (pytest's own temporary folders are closed to other users)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    _OPEN_FOLDERS.append(folder)
    os.chmod(folder, 0o755)
    if os.geteuid() == 0:
        os.chown(folder, owner_uid, -1)
    return folder


def remove_open_folders():
    while _OPEN_FOLDERS:
        shutil.rmtree(_OPEN_FOLDERS.pop(), ignore_errors=True)


def grade_at(level, target, args, timeout=1200):
    """Run `python -m staff.grade target *args` at level, with its own TMPDIR; returns (process, tmpdir).

    target and every output path must be readable/writable by the level's user (see open_folder).
    """
    command, uid = grader_command(level)
    tmpdir = open_folder(uid, "asgn3-grader-tmp-")
    env = {**os.environ, "TMPDIR": str(tmpdir), "OPENBLAS_NUM_THREADS": "1"}
    process = subprocess.run(
        [*command, str(target), *args], cwd=KIT_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )
    return process, tmpdir


@contextlib.contextmanager
def private_uids():
    """Within the block, sandbox runs (here and in the graders started here) use this module's uids;
    the open folders made meanwhile are removed at its end."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(RANGE_VARIABLE, f"{FIRST_UID}:{UID_COUNT}")
        try:
            yield
        finally:
            remove_open_folders()


def sandbox_uid(uid):
    return FIRST_UID <= uid < FIRST_UID + UID_COUNT


def leftovers(level_uid):
    """What runs of the sandbox left on the machine: processes and IPC objects of sandbox uids (or of the
    non-root grader's uid), as a list of descriptions (empty: nothing)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        if sandbox_uid(uid):
            found.append(f"process {entry} of sandbox uid {uid}")
    if level_uid != 0:
        found += [f"process {pid} of uid {level_uid}" for pid in processes_of_uid(level_uid)]
        found += [f"IPC {kind} {ipc} of uid {level_uid}" for kind, ipc in ipc_objects_of_uid(level_uid)]
    found += [
        f"IPC {kind} {ipc} of uid {owner} (created by {creator})"
        for kind, ipc, owner, creator in ipc_objects()
        if sandbox_uid(owner) or sandbox_uid(creator)
    ]
    return found
