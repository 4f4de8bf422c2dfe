"""What the kernel says about processes and System V IPC objects, read from /proc (standard library only).

Shared by the sandbox's supervisor (staff/jail.py, which also runs from a copy inside the namespaces
sandbox) and the uid allocator (staff/uids.py).
"""

import os

IPC_KINDS = {"shm": "shmid", "sem": "semid", "msg": "msqid"}


def processes_of_uid(uid):
    """The pids whose real, effective, saved or filesystem uid is uid."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                line = next(line for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if str(uid) in line.split()[1:]:
            pids.append(int(entry))
    return pids


def ipc_objects():
    """[(kind, id, owner uid, creator uid)] of every System V IPC object ('shm', 'sem', 'msg')."""
    found = []
    for kind, id_column in IPC_KINDS.items():
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                header, *rows = f.read().splitlines()
        except (OSError, ValueError):
            continue
        columns = header.split()
        for row in rows:
            fields = dict(zip(columns, row.split(), strict=False))
            found.append((kind, int(fields[id_column]), int(fields["uid"]), int(fields["cuid"])))
    return found


def ipc_objects_of_uid(uid):
    """[(kind, id)] of the System V IPC objects that uid owns or created."""
    return [(kind, ipc) for kind, ipc, owner, creator in ipc_objects() if uid in (owner, creator)]


def descendants(pid):
    """Every process below pid (its children, theirs, ...), as a list of pids."""
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                continue
            found += children
            stack += children
    return found
