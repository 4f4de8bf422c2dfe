"""A seccomp filter for untrusted code: the system calls a numpy program never needs answer EPERM.

Refused: every socket (no network, no local daemons), System V and POSIX message-queue IPC and kernel
keyrings (objects that outlive the process), namespaces, mounts and ptrace-like access to other
processes, io_uring (its operations would bypass this filter), and file handles (open_by_handle_at
reaches files by inode, around path checks). clone3 answers ENOSYS so that the C library falls back
to clone, whose flags can be inspected: a clone that asks for a new namespace is refused.

The filter is a classic BPF program installed with prctl; it cannot be removed and is inherited by
every child. Only x86_64 is described here (`supported()` says whether this machine is one).
"""

import ctypes
import errno
import platform

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_RET_ALLOW, _RET_ERRNO, _RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_CLONE_NEW = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
_CLONE = 56
_CLONE3 = 435

REFUSED_X86_64 = {
    "socket": 41, "socketpair": 53,
    "shmget": 29, "shmat": 30, "shmctl": 31, "semget": 64, "semop": 65, "semctl": 66,
    "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71, "semtimedop": 220,
    "mq_open": 240, "mq_unlink": 241, "add_key": 248, "request_key": 249, "keyctl": 250,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "pidfd_getfd": 438,
    "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "bpf": 321, "perf_event_open": 298,
    "userfaultfd": 323, "fanotify_init": 300, "kexec_load": 246, "init_module": 175,
    "finit_module": 313, "delete_module": 176,
}  # fmt: skip


class _Instruction(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Instruction))]


def supported():
    """Whether this filter describes the machine's system calls (Linux on x86_64)."""
    return platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64")


def program():
    """The filter as a list of (code, jump if true, jump if false, constant) BPF instructions."""
    deny = _RET_ERRNO | errno.EPERM
    code = [
        (_LD_W_ABS, 0, 0, 4),  # the architecture
        (_JEQ, 1, 0, _AUDIT_ARCH_X86_64),
        (_RET, 0, 0, _RET_KILL_PROCESS),
        (_LD_W_ABS, 0, 0, 0),  # the system call number
        (_JGE, 0, 1, _X32_BIT),  # the x32 ABI numbers the same calls differently: refuse it whole
        (_RET, 0, 0, deny),
        (_JEQ, 0, 1, _CLONE3),
        (_RET, 0, 0, _RET_ERRNO | errno.ENOSYS),
    ]
    for number in sorted(REFUSED_X86_64.values()):
        code += [(_JEQ, 0, 1, number), (_RET, 0, 0, deny)]
    code += [
        (_JEQ, 0, 3, _CLONE),
        (_LD_W_ABS, 0, 0, 16),  # clone's flags: the low half of its first argument
        (_JSET, 0, 1, _CLONE_NEW),
        (_RET, 0, 0, deny),
        (_RET, 0, 0, _RET_ALLOW),
    ]
    return code


def install():
    """Install the filter on this process (and all it will start). Raises OSError if refused."""
    if not supported():
        raise OSError(errno.ENOSYS, f"no seccomp filter for {platform.system()} on {platform.machine()}")
    code = program()
    instructions = (_Instruction * len(code))(*[_Instruction(*step) for step in code])
    prog = _Program(len(code), instructions)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp: no_new_privs refused")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"seccomp: filter refused ({errno.errorcode.get(number, number)})")
