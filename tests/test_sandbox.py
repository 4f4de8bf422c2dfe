"""The sandbox (staff/sandbox.py) and its parts: Landlock, the seccomp filter, fresh uids, the supervisor.

The probes run at every level this machine provides (tests/hostile/levels.py): the full level in this
process, the weak ones through a driver started as root without CAP_SYS_ADMIN or as a non-root user.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from asgn3.data_paths import KIT_DIR
from staff import landlock, sandbox, seccomp, uids
from tests.hostile.levels import (
    FIRST_UID,
    LEVELS,
    UID_COUNT,
    grader_command,
    leftovers,
    open_folder,
    private_uids,
)

DRIVER = KIT_DIR / "tests" / "hostile" / "probe_driver.py"


def in_child(code):
    """Run Python code in a fresh interpreter (the restrictions are for good); returns its JSON output."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=KIT_DIR
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(autouse=True, scope="module")
def _private_uids():
    with private_uids():
        yield


# -- the parts ------------------------------------------------------------------------------------------


@pytest.mark.skipif(landlock.abi() == 0, reason="this kernel has no Landlock")
def test_landlock_limits_a_process_to_its_allowlist(tmp_path):
    (tmp_path / "allowed").mkdir()
    (tmp_path / "allowed" / "a.txt").write_text("a")
    (tmp_path / "denied.txt").write_text("d")
    code = f"""
import json, os, sys
sys.path.insert(0, {str(KIT_DIR / "staff")!r})
import landlock
read = [sys.base_prefix, sys.prefix, "/usr", "/lib", "/lib64"]
landlock.restrict(read=read, write=[{str(tmp_path / "allowed")!r}])
found = {{}}
for name, path, mode in [("allowed", {str(tmp_path / "allowed" / "a.txt")!r}, "r"),
                         ("write", {str(tmp_path / "allowed" / "b.txt")!r}, "w"),
                         ("denied", {str(tmp_path / "denied.txt")!r}, "r"),
                         ("master", {str(KIT_DIR / "asgn3" / "rnn_layers.py")!r}, "r"),
                         ("proc", "/proc/1/status", "r")]:
    try:
        open(path, mode).close()
        found[name] = "ok"
    except OSError as error:
        found[name] = error.errno
print(json.dumps(found))
"""
    found = in_child(code)
    print(found)
    assert found == {"allowed": "ok", "write": "ok", "denied": 13, "master": 13, "proc": 13}


@pytest.mark.skipif(not seccomp.supported(), reason="the filter describes x86_64 only")
def test_the_seccomp_filter_refuses_sockets_ipc_and_namespaces_but_not_fork_or_threads():
    code = f"""
import ctypes, json, os, socket, sys, threading
sys.path.insert(0, {str(KIT_DIR / "staff")!r})
import seccomp
seccomp.install()
libc = ctypes.CDLL(None, use_errno=True)
found = {{}}
def attempt(name, call):
    try:
        result = call()
        found[name] = "refused" if result == -1 else "allowed"
    except OSError as error:
        found[name] = "refused" if error.errno == 1 else f"errno {{error.errno}}"
attempt("socket", lambda: socket.socket())
attempt("unix socket", lambda: socket.socket(socket.AF_UNIX))
attempt("shmget", lambda: libc.shmget(0, 4096, 0o1666))
attempt("unshare user", lambda: libc.unshare(0x10000000))
pid = os.fork()
if pid == 0:
    os._exit(7)
found["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
thread = threading.Thread(target=lambda: found.setdefault("thread", "ran"))
thread.start(); thread.join()
print(json.dumps(found))
"""
    found = in_child(code)
    print(found)
    assert found == {
        "socket": "refused",
        "unix socket": "refused",
        "shmget": "refused",
        "unshare user": "refused",
        "fork": 7,
        "thread": "ran",
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="uids are allocated for root levels only")
def test_a_fresh_uid_is_never_one_that_a_process_still_runs_under(monkeypatch):
    with uids.fresh_uid() as first:
        holder = subprocess.Popen(
            ["setpriv", f"--reuid={first}", f"--regid={first}", "--clear-groups", "sleep", "30"]
        )
    try:
        time.sleep(0.2)
        assert uids.in_use(first)
        picks = iter([first, first + 1])  # the allocator draws the busy uid first
        monkeypatch.setattr(uids._RANDOM, "randrange", lambda count: next(picks) - FIRST_UID)
        with uids.fresh_uid() as second:
            assert second == first + 1
            monkeypatch.setattr(uids._RANDOM, "randrange", lambda count: second - FIRST_UID)
            with pytest.raises(uids.UidError):  # a held uid is not handed out twice either
                with uids.fresh_uid(attempts=3):
                    pass
        assert not (uids.LOCK_DIR / f"{second}.lock").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_level_that_cannot_keep_a_guarantee_refuses_until_the_risk_is_accepted(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "_MACHINE", {**sandbox.machine(), "landlock": 0})
    monkeypatch.setattr(sandbox, "_ACCEPTED", set())
    assert "readable-files" in sandbox.risks()
    with pytest.raises(sandbox.SandboxRefused, match="--accept-risk readable-files"):
        sandbox.run_untrusted(tmp_path, tmp_path, "x.py")
    with pytest.raises(ValueError, match="not a risk of this machine"):
        sandbox.accept_risks(["no-such-risk"])
    sandbox.accept_risks(sandbox.risks())
    sandbox.require_safe()  # accepted: no refusal


# -- the probe at every level -----------------------------------------------------------------------

PROBE = r"""
import ctypes, json, os, socket, sys, time
kit, job = sys.argv[1], sys.argv[2]
found = {"uid": os.getuid(), "env": sorted(os.environ.items())}
def attempt(name, call):
    try:
        call()
        found[name] = "allowed"
    except OSError as error:
        found[name] = f"refused: {error.strerror}"
attempt("network", lambda: socket.create_connection(("1.1.1.1", 53), timeout=2))
attempt("read master", lambda: open(MASTER).read())
attempt("list checkout", lambda: os.listdir(CHECKOUT))
attempt("read grader's files", lambda: open(GRADER_FILE).read())
attempt("read /proc of others", lambda: open("/proc/1/environ").read())
attempt("read the supervisor's memory map", lambda: open(f"/proc/{os.getppid()}/maps").read())
found["own memory map lines"] = len(open("/proc/self/maps").readlines())  # allowed: threadpoolctl reads it
attempt("write kit", lambda: open(os.path.join(kit, "x"), "w").write("x"))
attempt("write /tmp", lambda: open("/tmp/asgn3-probe", "w").write("x"))
attempt("write /var/tmp", lambda: open("/var/tmp/asgn3-probe", "w").write("x"))
attempt("signal the supervisor", lambda: os.kill(os.getppid(), 0))
libc = ctypes.CDLL(None, use_errno=True)
found["shmget"] = "refused" if libc.shmget(0, 1 << 20, 0o1666) == -1 else "allowed"
children = 0
try:
    for _ in range(100):
        if os.fork() == 0:
            os.setsid()
            time.sleep(60)
            os._exit(0)
        children += 1
except OSError:
    pass
found["children"] = children
open(os.path.join(job, "status_probe.json"), "w").write(json.dumps(found))
"""


def run_probe(level, script, limits, tmp_path):
    """Run script in the sandbox at level; returns (RunResult as a dict, job folder)."""
    _, uid = grader_command(level)
    kit, jobs = open_folder(0, "asgn3-probe-kit-"), open_folder(uid, "asgn3-probe-jobs-")
    job = jobs / "job"
    job.mkdir()
    if os.geteuid() == 0:
        os.chown(job, uid, -1)
    # stands for the grader's files: readable by file permissions, so only the allowlist keeps it out
    grader_file = open_folder(0, "asgn3-probe-grader-") / "reference.txt"
    grader_file.write_text("secret")
    os.chmod(grader_file, 0o644)
    (kit / "probe.py").write_text(
        script.replace("MASTER", repr(str(KIT_DIR / "asgn3" / "rnn_layers.py")))
        .replace("CHECKOUT", repr(str(KIT_DIR)))
        .replace("GRADER_FILE", repr(str(grader_file)))
    )
    if level == "namespaces":
        result = sandbox.run_untrusted(kit, job, "probe.py", sandbox.Limits(**limits))
        report = {"level": sandbox.isolation(), **result.__dict__}
    else:
        command, _ = grader_command(level)
        python = command[command.index("-m") - 1]
        done = subprocess.run(
            [
                *command[: command.index("-m")],
                str(DRIVER),
                str(kit),
                str(job),
                "probe.py",
                json.dumps(limits),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
        )
        assert done.returncode == 0, (python, done.stderr)
        report = json.loads(done.stdout.strip().splitlines()[-1])
    return report, job, uid


@pytest.mark.parametrize("level", LEVELS)
def test_the_sandbox_keeps_its_guarantees_at_every_level(level, tmp_path):
    limits = {"cpu_seconds": 10, "wall_seconds": 20, "processes": 16}
    report, job, uid = run_probe(level, PROBE, limits, tmp_path)
    found = json.loads((job / "status_probe.json").read_text())
    print(level, report, found)
    assert report["level"] == level
    env = dict(found.pop("env"))
    assert not any(str(KIT_DIR) in value for value in env.values()), env
    assert set(env) == set(sandbox._environment("/tmp/job"))
    assert found.pop("own memory map lines") > 10
    children = found.pop("children")
    assert 0 < children < 16
    uid_seen = found.pop("uid")
    if level == "user":
        assert uid_seen == uid
    else:
        assert FIRST_UID <= uid_seen < FIRST_UID + UID_COUNT
    refused = {name: value for name, value in found.items() if not value.startswith("refused")}
    assert refused == {}
    assert leftovers(uid) == []
    assert not Path("/tmp/asgn3-probe").exists() and not Path("/var/tmp/asgn3-probe").exists()


FLOOD = r"""
import os, sys
job = sys.argv[2]
written = 0
try:
    for index in range(40):  # 40 files of 8 MB: more than the job folder may hold
        with open(os.path.join(job, f"fill{index}"), "wb") as f:
            f.write(bytes(8 << 20))
        written += 8
except OSError:
    pass
print("written", written, flush=True)
import time
time.sleep(5)
"""


@pytest.mark.parametrize("level", LEVELS)
def test_a_run_cannot_fill_the_disk(level, tmp_path):
    limits = {"cpu_seconds": 10, "wall_seconds": 20, "job_mb": 64}
    report, job, uid = run_probe(level, FLOOD, limits, tmp_path)
    print(level, report)
    if level == "namespaces":  # a 64 MB tmpfs: writes fail beyond it
        written = int(report["output"].split("written")[1].split()[0])
        assert written <= 64
    else:  # the supervisor watches the folder and stops the run beyond the cap
        assert report["stopped"].startswith("disk")
    assert leftovers(uid) == []


def test_the_supervisor_reports_the_wall_clock_limit(tmp_path):
    report, _, uid = run_probe("namespaces", "import time\ntime.sleep(60)\n", {"wall_seconds": 2}, tmp_path)
    assert report["timed_out"] and report["seconds"] < 10
    assert leftovers(uid) == []


def test_the_threat_model_is_written_down():
    doc = textwrap.dedent(sandbox.__doc__)
    for words in ("Threat model", "must never reach", "'namespaces'", "'uid'", "'user'", "accept"):
        assert words in doc


def test_a_run_that_prints_too_much_is_stopped(tmp_path):
    flood = "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1 << 20))\n"
    report, _, uid = run_probe("namespaces", flood, {"output_mb": 4}, tmp_path)
    assert report["stopped"].startswith("output: it printed more than 4 MB")
    assert leftovers(uid) == []
