"""Run untrusted Python in a separate process with limits, no network, and the reference out of sight.

Two levels, chosen by `isolation()`:

- 'namespaces' (Linux, as root, with util-linux's `unshare` and `setpriv`): the child runs in new mount,
  PID and network namespaces. Before it starts, a private mount table hides the staff checkout (the
  reference code, the hidden checks, .git) and /tmp (the grader's own files) behind empty tmpfs mounts;
  only the sandbox kit (read-only) and the job folder are mounted back, at /tmp/kit and /tmp/job, plus
  the Python environment read-only. The child then drops to an unprivileged uid of its own (no groups,
  no capabilities, no_new_privs), so it cannot undo the mounts, and its network namespace has no
  interface but a down loopback. When the run ends or times out, killing the namespace's first process
  kills every process the submission forked.
- 'rlimits' (elsewhere): the same resource limits and a new session, and the runner replaces socket
  creation before the submission is imported, which a determined submission can undo; the reference
  stays readable. The grade output says which level was used.

Both levels set resource limits (CPU seconds, address space, processes, file size, open files) and a
wall-clock timeout. Output goes to files (never pipes the child could hold open).
"""

import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from itertools import count
from pathlib import Path

from asgn3.data_paths import KIT_DIR

MB = 1 << 20
_uids = count()


@dataclass(frozen=True)
class Limits:
    """Resource limits of one untrusted run."""

    cpu_seconds: int = 15
    wall_seconds: float = 25.0
    memory_mb: int = 3072
    file_mb: int = 64
    processes: int = 32
    open_files: int = 256
    job_mb: int = 256  # size of the job folder (a tmpfs) in the namespaces sandbox


@dataclass
class RunResult:
    """What happened to an untrusted run: exit code (negative: killed by a signal), timeout, output tail."""

    returncode: int
    timed_out: bool
    seconds: float
    output: str


_ISOLATION = None
_ISOLATION_LOCK = threading.Lock()


def isolation():
    """'namespaces' when the full sandbox works on this machine (probed once), else 'rlimits'."""
    global _ISOLATION
    with _ISOLATION_LOCK:  # checks run in threads: all must wait for the one probe
        if _ISOLATION is None:
            level = "rlimits"
            if (
                sys.platform.startswith("linux")
                and os.geteuid() == 0
                and shutil.which("unshare")
                and shutil.which("setpriv")
            ):
                probe = subprocess.run(
                    [
                        "unshare",
                        "--net",
                        "--mount",
                        "--pid",
                        "--fork",
                        "--kill-child",
                        "--mount-proc",
                        "true",
                    ],
                    capture_output=True,
                    timeout=60,
                )
                if probe.returncode == 0:
                    level = "namespaces"
            _ISOLATION = level
    return _ISOLATION


def _python_dirs():
    """(folder to mount at /tmp/py, python path inside the sandbox) for the running environment."""
    if sys.prefix != sys.base_prefix:  # a virtual environment: mount it, run its python
        return Path(sys.prefix), "/tmp/py/bin/" + Path(sys.executable).name
    return None, sys.executable


def _closed_ancestor():
    """(base Python folder, its first ancestor others cannot enter) when Python sits in such a folder.

    E.g. a pyenv Python under /root (mode 700): the sandbox replaces /root by an empty folder and mounts
    the Python installation back at its own path, so the unprivileged child can run it. ("", "") if
    the installation is reachable as it is.
    """
    base = Path(sys.base_prefix).resolve()
    for folder in reversed(base.parents):
        if folder != Path("/") and not folder.stat().st_mode & 0o001:
            return str(base), str(folder)
    return "", ""


def _hidden_dirs():
    """Folders the child must not see: this checkout, and the shared temporary folders.

    /tmp itself is replaced by the sandbox's own mount table; a folder holding the Python installation
    (e.g. a venv inside the checkout is mounted separately, but a base Python under /home) stays visible.
    """
    python_home = Path(sys.base_prefix).resolve()
    hide = [str(KIT_DIR), "/var/tmp", "/dev/shm", "/home"]
    return [d for d in hide if Path(d) != python_home and Path(d) not in python_home.parents]


# Runs as root inside the new namespaces, then becomes the sandbox uid. $HIDE is a list of folders.
_SETUP = r"""
set -e
mount --make-rprivate /
mount -t tmpfs -o size=1m,mode=755 tmpfs "$STAGE"
mkdir "$STAGE/kit" "$STAGE/job" "$STAGE/out" "$STAGE/py"
mount --bind "$KIT" "$STAGE/kit"
mount -o remount,bind,ro "$STAGE/kit"
mount -t tmpfs -o "size=${JOB_MB}m,mode=700" tmpfs "$STAGE/job"
find "$JOB" -maxdepth 1 -type f -exec cp {} "$STAGE/job/" \;
chown -R "$SANDBOX_UID:$SANDBOX_UID" "$STAGE/job"
mount --bind "$JOB" "$STAGE/out"
if [ -n "$PYDIR" ]; then mount --bind "$PYDIR" "$STAGE/py"; mount -o remount,bind,ro "$STAGE/py"; fi
if [ -n "$BASE" ]; then
  mkdir "$STAGE/base"
  mount --bind "$BASE" "$STAGE/base"
  mount -t tmpfs -o size=1m,mode=755 tmpfs "$CLOSED"
  mkdir -p "$BASE"
  mount --bind "$STAGE/base" "$BASE"
  mount -o remount,bind,ro "$BASE"
fi
for dir in $HIDE; do
  if [ -d "$dir" ]; then mount -t tmpfs -o ro,size=4k,mode=755 tmpfs "$dir"; fi
done
mount --move "$STAGE" /tmp
mount -o remount,bind,ro /
cd /tmp/job
set +e
setpriv --reuid="$SANDBOX_UID" --regid="$SANDBOX_UID" --clear-groups --no-new-privs \
  --inh-caps=-all --bounding-set=-all env -i PATH=/usr/bin:/bin HOME=/tmp/job LANG=C.UTF-8 \
  MPLBACKEND=Agg MPLCONFIGDIR=/tmp/job OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
  PYTHONDONTWRITEBYTECODE=1 "$@"
status=$?
# Stop whatever the submission left running, then hand back its regular result files only.
setpriv --reuid="$SANDBOX_UID" --regid="$SANDBOX_UID" --clear-groups kill -9 -1 2>/dev/null
find /tmp/job -maxdepth 1 -type f \( -name 'status_*.json' -o -name 'out_*.npz' \) -exec cp {} /tmp/out/ \;
exit $status
"""


def _limit(limits):
    """A preexec function setting the resource limits in the child (inherited by all it starts)."""

    def apply():
        cpu = limits.cpu_seconds
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))
        memory = limits.memory_mb * MB
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * MB, limits.file_mb * MB))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))

    return apply


def run_untrusted(kit_dir, job_dir, script, limits=Limits()):
    """Run `python -I KIT/script KIT JOB` on untrusted code, in the sandbox; returns a RunResult.

    Inputs:
    - kit_dir: host folder with the sandbox kit (the runner, asgn3 with the submission's files); in
      the namespaces sandbox it is seen read-only at /tmp/kit.
    - job_dir: host folder for this run's inputs and outputs, writable by the child (seen at /tmp/job).
    - script: the runner's file name in kit_dir; it gets the kit and job folders as seen by the child.
    - limits: a Limits.
    """
    kit_dir, job_dir = Path(kit_dir).resolve(), Path(job_dir).resolve()
    log = job_dir.parent / f"{job_dir.name}.log"
    if isolation() == "namespaces":
        uid = 100000 + (os.getpid() % 20000) * 64 + next(_uids) % 64
        os.chmod(job_dir, 0o700)  # the child works on its own copy, in a size-limited tmpfs
        stage = job_dir.parent / f"{job_dir.name}.stage"
        stage.mkdir()
        pydir, python = _python_dirs()
        hide = _hidden_dirs()
        base, closed = _closed_ancestor()
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "STAGE": str(stage),
            "KIT": str(kit_dir),
            "BASE": base,
            "CLOSED": closed,
            "JOB": str(job_dir),
            "PYDIR": str(pydir or ""),
            "SANDBOX_UID": str(uid),
            "JOB_MB": str(limits.job_mb),
            "HIDE": " ".join(hide),
        }
        argv = [
            "unshare",
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child=SIGKILL",
            "--mount-proc",
            "sh",
            "-c",
            _SETUP,
            "sandbox",
            python,
            "-I",
            f"/tmp/kit/{script}",
            "/tmp/kit",
            "/tmp/job",
        ]
        new_session = False
    else:
        uid = None
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(job_dir),
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(job_dir),
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "ASGN3_SANDBOX_WEAK": str(KIT_DIR),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        argv = [sys.executable, "-I", str(kit_dir / script), str(kit_dir), str(job_dir)]
        new_session = True
    start = time.monotonic()
    timed_out = False
    with open(log, "wb") as output:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=job_dir,
            preexec_fn=_limit(limits),
            start_new_session=new_session,
        )
        try:
            returncode = process.wait(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(process, new_session)
            returncode = process.wait()
        if uid is not None:
            _kill_uid(uid)
    seconds = time.monotonic() - start
    with open(log, "rb") as output:
        output.seek(max(0, log.stat().st_size - 4000))
        tail = output.read().decode("utf-8", errors="replace")
    return RunResult(returncode, timed_out, seconds, tail)


def _kill(process, new_session):
    """Kill an untrusted run and everything it started."""
    if new_session:
        try:
            os.killpg(process.pid, 9)
        except ProcessLookupError:
            pass
        process.kill()
        return
    # The namespace's first process is unshare's child; when it dies the kernel kills every process of
    # the namespace. (unshare's --kill-child does not reach it: the signal is reset when it changes uid.)
    try:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        try:
            os.kill(int(child), 9)
        except ProcessLookupError:
            pass
    process.kill()


def _kill_uid(uid):
    """Kill every process left under the sandbox's own uid (a fork that outlived its namespace)."""
    pid = os.fork()
    if pid == 0:  # the child becomes the uid and signals everything the uid owns (except itself)
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, 9)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
