"""The supervisor of one sandbox run: start the command confined, watch it, and leave nothing of it behind.

    python -I jail.py supervise CONFIG.json    (started by staff/sandbox.py, one per run)
    python -I jail.py confine CONFIG.json      (the last step inside the namespaces sandbox: drop and exec)
    python -I jail.py probe                    (prints what this machine offers, as JSON)

`supervise` makes itself the subreaper of everything the run starts (an orphan, even one that called
setsid and forked twice, becomes its child, never init's), forks the child, which confines itself
(`confine`: resource limits, the run's own uid if one is given, Landlock's filesystem allowlist, the
seccomp filter) and executes the command. It waits for the wall-clock limit, stops the run if its job
folder grows beyond the cap, then kills every process left (its descendants, and every process of the
run's uid), removes the System V IPC objects of that uid, and writes what happened to CONFIG's `result`.
The supervisor stays outside the child's Landlock domain, which (ABI 6+) cannot signal it.

This file, landlock.py, seccomp.py and procs.py use only the standard library: inside the namespaces
sandbox they run from a copy, with the sandbox's Python.
"""

import ctypes
import json
import os
import resource
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import landlock  # noqa: E402
import seccomp  # noqa: E402
from procs import descendants, ipc_objects_of_uid, processes_of_uid  # noqa: E402

_PR_SET_CHILD_SUBREAPER = 36
RLIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "fsize": resource.RLIMIT_FSIZE,
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "core": resource.RLIMIT_CORE,
}
CONFINE_FAILED = 125  # exit status of a child that could not confine itself (never runs the command)


# -- the child: confine, then exec --------------------------------------------------------------------


def confine(config):
    """Apply config's limits, uid, filesystem allowlist and filter to this process, then exec its argv.

    config keys: argv, env, cwd; rlimits {name: (soft, hard)}; uid, gid (None: keep); landlock {read,
    write, read_files, write_files} or None; seccomp (bool). Never returns.
    """
    try:
        for name, (soft, hard) in config["rlimits"].items():
            resource.setrlimit(RLIMITS[name], (soft, hard))
        if config.get("uid") is not None:
            os.setgroups([])
            os.setresgid(config["gid"], config["gid"], config["gid"])
            os.setresuid(config["uid"], config["uid"], config["uid"])
        if config.get("landlock") is not None:
            landlock.restrict(**config["landlock"])
        if config.get("seccomp"):
            seccomp.install()
        os.chdir(config["cwd"])
        os.execve(config["argv"][0], config["argv"], config["env"])
    except BaseException as error:  # noqa: BLE001 - say why, and never run the command unconfined
        os.write(2, f"sandbox: could not confine the run: {error}\n".encode())
    os._exit(CONFINE_FAILED)


# -- the supervisor -----------------------------------------------------------------------------------


def _signal_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _reap():
    """Collect every finished child (the run's orphans are ours, as the subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_everything(uid):
    """SIGKILL every descendant of this supervisor and every process of uid, until none is left."""
    me = os.getpid()
    for _ in range(200):
        pids = descendants(me) + (processes_of_uid(uid) if uid is not None else [])
        pids = [pid for pid in pids if pid != me]
        if not pids:
            return True
        _signal_all(pids)
        time.sleep(0.02)
        _reap()
    return False


def remove_ipc_objects(uid):
    """Remove the System V shared memory, semaphores and message queues uid owns or created."""
    libc = ctypes.CDLL(None, use_errno=True)
    remove = {"shm": lambda i: libc.shmctl(i, 0, None), "sem": lambda i: libc.semctl(i, 0, 0)}
    remove["msg"] = lambda i: libc.msgctl(i, 0, None)  # 0 is IPC_RMID
    return sum(remove[kind](ipc_id) == 0 for kind, ipc_id in ipc_objects_of_uid(uid))


def directory_usage(path, stop_bytes, stop_files):
    """(bytes on disk, entries) of a folder tree, counted up to the first limit passed."""
    total, entries, stack = 0, 0, [path]
    while stack and total <= stop_bytes and entries <= stop_files:
        try:
            with os.scandir(stack.pop()) as listing:
                for entry in listing:
                    entries += 1
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += info.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    return total, entries


def over_limits(config, log):
    """Why the run must stop now ('' if it may go on): too much output, or (config['watch']) a job folder
    beyond its size or file count, or more processes than allowed."""
    if os.fstat(log).st_size > config["max_output_bytes"]:
        return f"output: it printed more than {config['max_output_bytes'] >> 20} MB"
    watch = config.get("watch")
    if not watch:
        return ""
    used, entries = directory_usage(watch["path"], watch["max_bytes"], watch["max_files"])
    if used > watch["max_bytes"]:
        return f"disk: the job folder grew beyond {watch['max_bytes'] >> 20} MB"
    if entries > watch["max_files"]:
        return f"disk: the job folder holds more than {watch['max_files']} files"
    if len(descendants(os.getpid())) > watch["max_processes"]:
        return f"processes: more than {watch['max_processes']} at once"
    return ""


def supervise(config):
    """Run config's command confined; returns the result dict (also written to config['result'])."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    log = os.open(config["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        if config.get("confine", True):
            confine(config)
        os.execve(config["argv"][0], config["argv"], config["env"])
    stopped, status, next_watch = "", None, 0.0
    while status is None:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done:
            status = wait_status
            break
        now = time.monotonic() - start
        if now > config["wall_seconds"]:
            stopped = "time"
        elif now >= next_watch:
            next_watch = now + 0.25
            stopped = over_limits(config, log)
        if stopped:
            _signal_all([pid, *descendants(os.getpid())])
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.02)
    if not stopped:  # one last look: a flood faster than the watch's quarter second is judged all the same
        stopped = over_limits(config, log)
    seconds = time.monotonic() - start
    clean = kill_everything(config.get("uid"))
    ipc = remove_ipc_objects(config["uid"]) if config.get("uid") is not None else 0
    code = os.waitstatus_to_exitcode(status)
    result = {
        "returncode": code,
        "timed_out": stopped == "time",
        "stopped": stopped,
        "seconds": seconds,
        "clean": clean,
        "ipc_removed": ipc,
        "confine_failed": code == CONFINE_FAILED,
    }
    with open(config["result"], "w") as f:
        json.dump(result, f)
    return result


def probe():
    """What this machine offers the sandbox: Landlock's ABI, the seccomp filter, setuid."""
    found = {"landlock": landlock.abi(), "seccomp": False, "setuid": False}
    for key, attempt in (("seccomp", seccomp.install), ("setuid", _try_setuid)):
        pid = os.fork()
        if pid == 0:
            try:
                attempt()
                os._exit(0)
            except BaseException:  # noqa: BLE001
                os._exit(1)
        found[key] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    return found


def _try_setuid():
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)


def main(argv):
    if argv[:1] == ["probe"]:
        print(json.dumps(probe()))
        return 0
    with open(argv[1]) as f:
        config = json.load(f)
    if argv[0] == "confine":
        confine(config)
    supervise(config)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
