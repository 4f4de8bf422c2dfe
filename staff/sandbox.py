"""Run untrusted Python (a student's submission) in a separate process that can harm nothing.

Threat model
------------
Student code runs with the grader's runner (staff/runner.py) in its process and may do anything a Python
program can: read and write any path it names, start processes (fork, exec, posix_spawn, ctypes), open
sockets, signal processes, create System V IPC objects, fill the disk, sleep, loop, allocate, inspect its
own frames and the garbage collector, and forge the result files it hands back. What it must never reach,
at any level the grader accepts to run at:
- the master checkout (the reference implementation, the hidden checks, .git), and copies of it
  elsewhere on the machine (other checkouts, caches);
- the reference results the grader computed for this submission, and other submissions and their files;
- the host: the network, other processes (signals, ptrace), anything left behind after its run
  (processes, IPC objects, files outside its job folder), more disk, memory, CPU or time than its limits.
It may read the sandbox kit (the master's infrastructure with its own regions spliced in), the Python
installation, system libraries, and its own job folder (the inputs of its jobs), and write only there.
Whatever it hands back is untrusted input to the grader (staff/grade.py reads it with limits).

How each level keeps that
-------------------------
Every run has a supervisor (staff/jail.py) outside the run's confinement: it is the subreaper of all the
run starts, enforces the wall-clock limit, and after the run kills every process the run left. The run
itself gets resource limits (CPU, memory, file size, open files, processes, no core dumps), a minimal
environment (nothing names the checkout), the seccomp filter (staff/seccomp.py: no sockets, no System V or
POSIX message-queue IPC, no keyrings, namespaces, mounts, ptrace or io_uring) and Landlock's filesystem
allowlist (staff/landlock.py: read the kit, Python and system libraries; write its job folder; nothing
else, /proc of other processes included; no signals outside its domain).

- 'namespaces' (root with CAP_SYS_ADMIN): also new mount, PID, network, IPC and UTS namespaces. The
  mount table hides the checkout and /tmp behind empty tmpfs mounts, the job folder is a size-limited
  tmpfs copy, and the run drops to a fresh uid (staff/uids.py) with no capabilities.
- 'uid' (root without CAP_SYS_ADMIN, as in a default Docker container): the run drops to a fresh uid
  (never reused while anything of it lives), so file permissions keep it out of the grader's 0700
  folders and other runs' job folders; the supervisor kills every process of that uid and removes its
  IPC objects; the job folder's size and file count are watched (4 times a second) and the run stopped
  beyond the cap. The Python installation must be readable by other users.
- 'user' (a non-root user): the run keeps the grader's uid; Landlock and seccomp carry the isolation
  (Landlock 6+ also stops it signalling the grader), the subreaper kills what it leaves. What it cannot
  keep: its process limit counts the user's other processes too, so while a fork bomb runs (the
  supervisor stops a run with more processes than its limit within a quarter of a second), another run
  started at the same time cannot fork either; honest runs never fork, so they are not affected.

Where the machine lacks a mechanism (no Landlock, an older Landlock without signal scoping, no seccomp
filter for its architecture), the level cannot keep a guarantee: `risks()` names each such gap, and
`run_untrusted` refuses to run until staff accept them by name (`accept_risks`, the grader's
--accept-risk). Files the run writes are capped per file (RLIMIT_FSIZE) and per job folder.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from asgn3.data_paths import KIT_DIR
from staff.procs import processes_of_uid
from staff.uids import fresh_uid

MB = 1 << 20
JAIL_DIR = Path(__file__).resolve().parent
JAIL_FILES = ("jail.py", "landlock.py", "seccomp.py", "procs.py")
SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/dev/urandom", "/dev/random")
# The run's own memory map (threadpoolctl finds the BLAS libraries there): /proc/self is resolved when
# the run confines itself, so this is its own process only, never the grader's or another run's.
OWN_PROC_FILES = ("/proc/self/maps",)
DEVICE_FILES = ("/dev/null", "/dev/zero")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one untrusted run."""

    cpu_seconds: int = 15
    wall_seconds: float = 25.0
    memory_mb: int = 3072
    file_mb: int = 64
    processes: int = 32
    open_files: int = 256
    job_mb: int = 256  # what the job folder may hold (a tmpfs in the namespaces sandbox, watched elsewhere)
    job_files: int = 2000
    output_mb: int = 8  # what the run may print (its log lives outside the job folder)


@dataclass
class RunResult:
    """What happened to an untrusted run: exit code (negative: killed by a signal), timeout, output tail."""

    returncode: int
    timed_out: bool
    seconds: float
    output: str
    stopped: str = ""  # why the supervisor stopped the run early ('time', 'disk: ...'), or ''


class SandboxRefused(RuntimeError):
    """This machine cannot give the guarantees the grader needs, and staff did not accept the risk."""


# -- what the machine offers ------------------------------------------------------------------------

_MACHINE = None
_MACHINE_LOCK = threading.Lock()
_ACCEPTED = set()


def machine():
    """What this machine offers, probed once: {'root', 'namespaces', 'setuid', 'landlock', 'seccomp'}."""
    global _MACHINE
    with _MACHINE_LOCK:  # checks run in threads: all wait for the one probe
        if _MACHINE is None:
            probe = subprocess.run(
                [sys.executable, "-I", str(JAIL_DIR / "jail.py"), "probe"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            found = json.loads(probe.stdout) if probe.returncode == 0 else {}
            found = {"landlock": 0, "seccomp": False, "setuid": False, **found}
            found["root"] = sys.platform.startswith("linux") and os.geteuid() == 0
            found["namespaces"] = found["root"] and _namespaces_work()
            _MACHINE = found
    return _MACHINE


def _namespaces_work():
    if not (shutil.which("unshare") and shutil.which("setpriv")):
        return False
    probe = subprocess.run(
        [
            "unshare",
            "--net",
            "--mount",
            "--pid",
            "--ipc",
            "--uts",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "true",
        ],
        capture_output=True,
        timeout=60,
    )
    return probe.returncode == 0


def isolation():
    """The level this machine runs untrusted code at: 'namespaces', 'uid' or 'user' (see the docstring)."""
    found = machine()
    if found["namespaces"]:
        return "namespaces"
    if found["root"] and found["setuid"]:
        return "uid"
    return "user"


def risks():
    """{risk name: what could happen} for the guarantees this machine's level cannot keep (empty: none)."""
    found, level = machine(), isolation()
    gaps = {}
    if not found["landlock"]:
        gaps["readable-files"] = (
            "no Landlock in this kernel (Linux 5.13+, 'landlock' in the LSM list): the filesystem view is "
            + (
                "a denylist of mounts, and copies of the master elsewhere on the machine stay readable"
                if level == "namespaces"
                else "not limited: student code can read the master, the reference results and other "
                "submissions wherever file permissions let its uid"
            )
        )
    if not found["seccomp"]:
        gaps["no-syscall-filter"] = (
            "no seccomp filter for this machine: sockets, System V IPC and keyrings stay open to student code"
            + ("" if level == "namespaces" else " (the network included)")
        )
    if level == "user":
        if found["landlock"] < 6:
            gaps["signals"] = (
                f"Landlock ABI {found['landlock']} (< 6) cannot stop student code, running as the grader's "
                "user, from signalling or killing the grader's processes"
            )
    problem = _unreachable_python() if level == "uid" else ""
    if problem:
        gaps["python-unreachable"] = problem
    if _checkout_exposed():
        gaps["readable-files"] = (
            f"the master checkout {KIT_DIR} lies inside a folder the sandbox must let students read "
            f"({_checkout_exposed()}): move the checkout elsewhere"
        )
    return gaps


def accept_risks(names):
    """Accept the named risks (staff's explicit choice); an unknown name is a ValueError."""
    known = set(risks())
    unknown = set(names) - known
    if unknown:
        raise ValueError(
            f"--accept-risk {', '.join(sorted(unknown))}: not a risk of this machine "
            f"(its risks: {', '.join(sorted(known)) or 'none'})"
        )
    _ACCEPTED.update(names)


def accepted_risks():
    """The risks of this machine that staff accepted, sorted."""
    return sorted(set(risks()) & _ACCEPTED)


def require_safe():
    """Raise SandboxRefused naming every risk of this level that staff did not accept."""
    open_risks = {name: why for name, why in risks().items() if name not in _ACCEPTED}
    if open_risks:
        listed = "\n".join(f"- {name}: {why}" for name, why in sorted(open_risks.items()))
        flags = " ".join(f"--accept-risk {name}" for name in sorted(open_risks))
        raise SandboxRefused(
            f"the sandbox at level '{isolation()}' cannot keep these guarantees on this machine:\n{listed}\n"
            f"Grade on a machine that can (see staff/sandbox.py), or accept them explicitly: {flags}"
        )


def _python_paths():
    """The folders of the Python installation the run needs to read (prefixes and package folders)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths |= {p for p in sys.path if ("site-packages" in p or "dist-packages" in p) and os.path.isdir(p)}
    return sorted({str(Path(p).resolve()) for p in paths})


def _readable_paths():
    return [*_python_paths(), *SYSTEM_DIRS]


def _checkout_exposed():
    """A path the run may read that holds the master checkout, or ''."""
    for path in _readable_paths():
        if Path(path).exists() and (KIT_DIR == Path(path) or Path(path) in KIT_DIR.parents):
            return path
    return ""


def _unreachable_python():
    """Why another uid cannot run this Python ('' if it can): a folder on the way others cannot enter."""
    for path in [Path(sys.executable).resolve(), *map(Path, _python_paths())]:
        for folder in reversed(path.parents):
            if folder.exists() and not folder.stat().st_mode & 0o001:
                return (
                    f"the sandbox uid cannot reach Python at {path}: {folder} is closed to other users. "
                    "Run the grader with a Python others can read (as in python Docker images, under /usr)"
                )
    return ""


# -- one run --------------------------------------------------------------------------------------


def _rlimits(limits, level):
    """The run's resource limits as {name: (soft, hard)}."""
    processes = limits.processes
    if level == "user":  # RLIMIT_NPROC counts every process of the user: leave room for this many more
        processes += len(processes_of_uid(os.getuid()))
    memory, file_size = limits.memory_mb * MB, limits.file_mb * MB
    return {
        "cpu": (limits.cpu_seconds, limits.cpu_seconds + 2),
        "as": (memory, memory),
        "fsize": (file_size, file_size),
        "nofile": (limits.open_files, limits.open_files),
        "nproc": (processes, processes),
        "core": (0, 0),
    }


def _environment(home):
    """The run's whole environment: nothing in it names the checkout or the grader's folders."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": home,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _landlock_rules(read, write):
    """Landlock's allowlist for a run (None when the kernel has no Landlock)."""
    if not machine()["landlock"]:
        return None
    return {
        "read": [*read, *SYSTEM_DIRS],
        "write": list(write),
        "read_files": [*SYSTEM_FILES, *OWN_PROC_FILES],
        "write_files": list(DEVICE_FILES),
    }


def run_untrusted(kit_dir, job_dir, script, limits=Limits()):
    """Run `python -I KIT/script KIT JOB` on untrusted code, in the sandbox; returns a RunResult.

    Inputs:
    - kit_dir: host folder with the sandbox kit (the runner, asgn3 with the submission's files), read-only
      for the run (seen at /tmp/kit in the namespaces sandbox).
    - job_dir: host folder for this run's inputs and outputs, the only place the run may write (seen at
      /tmp/job in the namespaces sandbox, where result files are copied back after the run).
    - script: the runner's file name in kit_dir; it gets the kit and job folders as the run sees them.
    - limits: a Limits.
    Raises SandboxRefused when the machine's level has risks staff did not accept (see risks()).
    """
    require_safe()
    kit_dir, job_dir = Path(kit_dir).resolve(), Path(job_dir).resolve()
    level = isolation()
    if level == "user":
        return _supervised(_direct_config(kit_dir, job_dir, script, limits, level), job_dir, limits)
    with fresh_uid() as uid:
        if level == "uid":
            config = _uid_config(kit_dir, job_dir, script, limits, uid)
        else:
            config = _namespaces_config(kit_dir, job_dir, script, limits, uid)
        return _supervised(config, job_dir, limits)


def _direct_config(kit_dir, job_dir, script, limits, level):
    """The supervisor's config for a run confined without namespaces (levels 'uid' and 'user')."""
    return {
        "argv": [sys.executable, "-I", str(kit_dir / script), str(kit_dir), str(job_dir)],
        "env": _environment(str(job_dir)),
        "cwd": str(job_dir),
        "rlimits": _rlimits(limits, level),
        "uid": None,
        "gid": None,
        "landlock": _landlock_rules([str(kit_dir), *_python_paths()], [str(job_dir)]),
        "seccomp": machine()["seccomp"],
        "wall_seconds": limits.wall_seconds,
        "watch": {
            "path": str(job_dir),
            "max_bytes": limits.job_mb * MB,
            "max_files": limits.job_files,
            "max_processes": limits.processes,
        },
    }


def _uid_config(kit_dir, job_dir, script, limits, uid):
    """As the user level, as a fresh uid that owns only its job folder."""
    os.chown(job_dir, uid, uid)
    os.chmod(job_dir, 0o700)
    for path in job_dir.iterdir():
        os.chown(path, uid, uid)
    return {**_direct_config(kit_dir, job_dir, script, limits, "uid"), "uid": uid, "gid": uid}


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
    """Folders hidden behind empty mounts: this checkout, and the shared temporary folders.

    /tmp itself is replaced by the sandbox's own mount table; a folder holding the Python installation
    stays visible (Landlock still keeps the run to its allowlist inside it).
    """
    python_home = Path(sys.base_prefix).resolve()
    hide = [str(KIT_DIR), "/var/tmp", "/dev/shm", "/home"]
    return [d for d in hide if Path(d) != python_home and Path(d) not in python_home.parents]


# Runs as root inside the new namespaces, then confines itself (jail.py confine) and becomes the run.
_SETUP = r"""
set -e
mount --make-rprivate /
mount -t tmpfs -o size=2m,mode=755 tmpfs "$STAGE"
mkdir "$STAGE/kit" "$STAGE/job" "$STAGE/out" "$STAGE/py" "$STAGE/jail"
mount --bind "$KIT" "$STAGE/kit"
mount -o remount,bind,ro "$STAGE/kit"
mount -t tmpfs -o "size=${JOB_MB}m,nr_inodes=${JOB_FILES},mode=700" tmpfs "$STAGE/job"
find "$JOB" -maxdepth 1 -type f -exec cp {} "$STAGE/job/" \;
chown -R "$SANDBOX_UID:$SANDBOX_UID" "$STAGE/job"
mount --bind "$JOB" "$STAGE/out"
for name in $JAIL_FILES; do cp "$JAIL_DIR/$name" "$STAGE/jail/"; done
cp "$CONFINE" "$STAGE/jail/confine.json"
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
"$PYTHON" -I /tmp/jail/jail.py confine /tmp/jail/confine.json
status=$?
# Stop whatever the run left in the namespace, then hand back its regular result files only.
setpriv --reuid="$SANDBOX_UID" --regid="$SANDBOX_UID" --clear-groups kill -9 -1 2>/dev/null
find /tmp/job -maxdepth 1 -type f \( -name 'status_*.json' -o -name 'out_*.npz' \) -size -"${FILE_MB}M" \
  -exec cp {} /tmp/out/ \;
exit $status
"""


def _namespaces_config(kit_dir, job_dir, script, limits, uid):
    """The supervisor runs unshare (as root, unconfined); the setup script confines the run inside."""
    os.chmod(job_dir, 0o700)  # the run works on its own copy, in a size-limited tmpfs
    stage = job_dir.parent / f"{job_dir.name}.stage"
    stage.mkdir()
    pydir, python = _python_dirs()
    base, closed = _closed_ancestor()
    inside_python = ["/tmp/py"] if pydir else []
    inside_python += [base or str(Path(sys.base_prefix).resolve())]
    inside_python += [p for p in _python_paths() if not (pydir and Path(p).is_relative_to(pydir))]
    confine = {
        "argv": [python, "-I", f"/tmp/kit/{script}", "/tmp/kit", "/tmp/job"],
        "env": _environment("/tmp/job"),
        "cwd": "/tmp/job",
        "rlimits": _rlimits(limits, "namespaces"),
        "uid": uid,
        "gid": uid,
        "landlock": _landlock_rules(["/tmp/kit", *inside_python], ["/tmp/job"]),
        "seccomp": machine()["seccomp"],
    }
    confine_path = job_dir.parent / f"{job_dir.name}.confine.json"
    confine_path.write_text(json.dumps(confine))
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "STAGE": str(stage),
        "KIT": str(kit_dir),
        "BASE": base,
        "CLOSED": closed,
        "JOB": str(job_dir),
        "PYDIR": str(pydir or ""),
        "PYTHON": python,
        "SANDBOX_UID": str(uid),
        "JOB_MB": str(limits.job_mb),
        "JOB_FILES": str(limits.job_files),
        "FILE_MB": str(limits.file_mb),
        "HIDE": " ".join(_hidden_dirs()),
        "JAIL_DIR": str(JAIL_DIR),
        "JAIL_FILES": " ".join(JAIL_FILES),
        "CONFINE": str(confine_path),
    }
    argv = ["unshare", "--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child=SIGKILL"]
    argv += ["--mount-proc", "sh", "-c", _SETUP, "sandbox"]
    return {
        "argv": [shutil.which("unshare"), *argv[1:]],
        "env": env,
        "cwd": str(job_dir),
        "confine": False,  # unshare and the setup need root; the run confines itself inside
        "uid": uid,
        "wall_seconds": limits.wall_seconds,
        "watch": None,
    }


def _supervised(config, job_dir, limits):
    """Start the supervisor (staff/jail.py) on config, wait for it, and read what it reports."""
    log = job_dir.parent / f"{job_dir.name}.log"
    config = {
        **config,
        "log": str(log),
        "result": str(job_dir.parent / f"{job_dir.name}.result.json"),
        "max_output_bytes": limits.output_mb * MB,
    }
    config_path = job_dir.parent / f"{job_dir.name}.jail.json"
    config_path.write_text(json.dumps(config))
    start = time.monotonic()
    supervisor = subprocess.Popen(
        [sys.executable, "-I", str(JAIL_DIR / "jail.py"), "supervise", str(config_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        cwd=job_dir.parent,
    )
    try:  # the supervisor enforces the wall clock itself; this is the backstop if it hangs
        _, errors = supervisor.communicate(timeout=limits.wall_seconds + 60)
    except subprocess.TimeoutExpired:
        supervisor.kill()
        _, errors = supervisor.communicate()
    seconds = time.monotonic() - start
    try:
        report = json.loads(Path(config["result"]).read_text())
    except (OSError, ValueError):
        report = {"returncode": -9, "timed_out": True, "stopped": "the supervisor failed", "seconds": seconds}
        report["stopped"] += f": {errors.decode(errors='replace')[-500:]}"
    if report.get("stopped") == "time":
        report["stopped"] = ""  # timed_out says it
    tail = _tail(log)
    return RunResult(
        report["returncode"], report["timed_out"], report["seconds"], tail, report.get("stopped", "")
    )


def _tail(log, size=4000):
    """The last `size` bytes of the run's output, as text."""
    try:
        with open(log, "rb") as output:
            output.seek(max(0, os.fstat(output.fileno()).st_size - size))
            return output.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
