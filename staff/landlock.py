"""Landlock (Linux 5.13+): an unprivileged process limits itself, and all it starts, to an allowlist of paths.

Once `restrict(read=..., write=...)` has run, the process can open only what lies beneath the listed
folders (or is a listed file), with the listed rights; everything else on the filesystem, including /proc
of other processes, answers EACCES. With ABI 4+ it also refuses TCP bind/connect, with ABI 6+ it cannot
signal processes outside its domain or reach abstract unix sockets outside it. The restriction cannot be
undone, is inherited across fork and execve, and needs no privilege (only no_new_privs, set here).

Pure ctypes on the three system calls; `abi()` says what the kernel offers (0: none).
"""

import ctypes
import os
import platform

# System call numbers are the same on every architecture (Landlock came after the unified table).
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Filesystem rights (ABI 1, then REFER in 2, TRUNCATE in 3, IOCTL_DEV in 5).
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # what a rule on a file may grant
READ = EXECUTE | READ_FILE | READ_DIR
WRITE = READ | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | TRUNCATE
# Network (ABI 4) and scopes (ABI 6).
_NET_ALL = (1 << 0) | (1 << 1)  # bind and connect TCP
_SCOPE_ALL = (1 << 0) | (1 << 1)  # abstract unix sockets and signals outside the domain


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class LandlockError(OSError):
    """The kernel refused a Landlock call."""


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def abi():
    """The Landlock ABI version the kernel offers: 0 when it has none (old kernel, disabled, not Linux)."""
    if platform.system() != "Linux":
        return 0
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(ctypes.c_long(_CREATE_RULESET), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(version), 0)


def _fail(what):
    errno = ctypes.get_errno()
    raise LandlockError(errno, f"landlock {what}: {os.strerror(errno)}")


def restrict(read=(), write=(), read_files=(), write_files=()):
    """Limit this process (and its future children) to the given paths; returns the ABI used.

    Inputs:
    - read: folders whose whole tree may be read and executed.
    - write: folders whose tree may also be written (files and folders made, removed, truncated).
    - read_files, write_files: single files (e.g. /etc/ld.so.cache, /dev/null).
    Paths that do not exist are skipped. Raises LandlockError when the kernel has no Landlock.
    """
    version = abi()
    if version == 0:
        raise LandlockError(
            38, "landlock: the kernel does not offer Landlock (Linux 5.13+, enabled in the LSM list)"
        )
    handled_fs = _FS_BY_ABI.get(version, _FS_BY_ABI[5])
    attr = _RulesetAttr(handled_fs, _NET_ALL if version >= 4 else 0, _SCOPE_ALL if version >= 6 else 0)
    size = 8 if version < 4 else 16 if version < 6 else 24
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(
        ctypes.c_long(_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)
    )
    if fd < 0:
        _fail("create_ruleset")
    try:
        rules = [(p, READ) for p in read] + [(p, WRITE | REFER) for p in write]
        rules += [(p, READ & FILE_RIGHTS) for p in read_files]
        rules += [(p, (READ | WRITE_FILE | TRUNCATE) & FILE_RIGHTS) for p in write_files]
        for path, rights in rules:
            _allow(libc, fd, path, rights & handled_fs)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            _fail("no_new_privs")
        if libc.syscall(ctypes.c_long(_RESTRICT_SELF), ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            _fail("restrict_self")
    finally:
        os.close(fd)
    return version


def _allow(libc, ruleset_fd, path, rights):
    """Add one path-beneath rule (a file gets only the rights a file can have)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not os.path.isdir(path):
            rights &= FILE_RIGHTS
        rule = _PathBeneath(rights, fd)
        if libc.syscall(
            ctypes.c_long(_ADD_RULE),
            ctypes.c_int(ruleset_fd),
            ctypes.c_int(_RULE_PATH_BENEATH),
            ctypes.byref(rule),
            ctypes.c_uint32(0),
        ):
            _fail(f"add_rule {path}")
    finally:
        os.close(fd)
