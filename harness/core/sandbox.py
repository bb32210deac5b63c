"""Kernel confinement of a process that runs code the harness does not trust (a submission).

``confine(policy)`` is called by a fresh worker process before it imports anything heavy (torch
starts threads, and Landlock binds only the thread that asks and its later children). In order:

1. namespaces: a new network namespace (no interface but its own, down loopback: no network at
   all) and a new PID namespace (the worker is its init: when it dies, the kernel kills every
   process it started; it sees no process of the driver's);
2. the worker dies with its parent (``PR_SET_PDEATHSIG``), and the process that holds the
   namespace dies with the driver;
3. limits (``setrlimit``): address space, processes, core dumps;
4. no capabilities and ``no_new_privs`` (nothing it runs can gain privileges back);
5. Landlock (Linux 5.13+; ABI 6 for the scopes): reads only under ``policy.read``, writes only
   under ``policy.write``, no TCP, no signal to and no abstract socket of a process outside the
   sandbox;
6. seccomp: no new socket (a named Unix socket such as a container daemon's is reachable by path
   otherwise), no ``ptrace``, no reading another process's memory, no io_uring (it opens
   sockets without the socket system call), no namespaces or mounts, no BPF.

Each step is the kernel's own mechanism through ``ctypes``: the PyPI Landlock binding is an
alpha covering filesystem rules only (no network rules, no scopes), and libseccomp's Python
binding is not packaged on PyPI for every platform. Where a step cannot be taken, ``confine``
raises ``SandboxUnavailable`` saying which and why, before any untrusted code has run: the
sandbox fails closed.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import signal
import struct
from dataclasses import dataclass

from harness.core.errors import HarnessError


class SandboxUnavailable(HarnessError, RuntimeError):
    """The kernel refused a confinement step: untrusted code must not run here."""


@dataclass(frozen=True)
class Policy:
    """What a confined process may touch. Paths must exist; each covers the tree beneath it.

    ``read``: read and execute (the Python environment, the harness, the submissions);
    ``write``: read and write (its scratch folder, its compile cache); ``devices``: device files
    it may read, write and ioctl (``/dev/null``; a GPU's ``/dev/nvidia*``);
    ``memory_bytes``: address-space limit (None: none, as CUDA reserves far more than it uses);
    ``processes``: how many more tasks (processes and threads) its user may start.
    """

    read: tuple[str, ...]
    write: tuple[str, ...] = ()
    devices: tuple[str, ...] = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full")
    memory_bytes: int | None = None
    processes: int = 512


libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_CAPBSET_DROP = 1, 38, 22, 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
SYSCALLS = {  # Linux system call numbers: x86_64 / aarch64 (the generic table)
    "landlock_create_ruleset": (444, 444), "landlock_add_rule": (445, 445), "landlock_restrict_self": (446, 446),
    "socket": (41, 198), "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "bpf": (321, 280), "perf_event_open": (298, 241), "setns": (308, 268), "unshare": (272, 97),
    "mount": (165, 40), "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "kexec_load": (246, 104), "init_module": (175, 105), "finit_module": (313, 273),
}
ARCHES = {"x86_64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7)}  # column in SYSCALLS, AUDIT_ARCH
DENIED = ("socket", "ptrace", "process_vm_readv", "process_vm_writev", "io_uring_setup", "io_uring_enter",
          "io_uring_register", "bpf", "perf_event_open", "setns", "unshare", "mount", "keyctl", "add_key",
          "request_key", "kexec_load", "init_module", "finit_module")


def _arch() -> tuple[int, int]:
    machine = platform.machine()
    if machine not in ARCHES:
        raise SandboxUnavailable(f"no sandbox for {machine} (x86_64 and aarch64 only)")
    return ARCHES[machine]


def _syscall(name: str, *args) -> int:
    result = libc.syscall(SYSCALLS[name][_arch()[0]], *args)
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def _checked(step: str, call, *args) -> int:
    result = call(*args)
    if result != 0:
        err = ctypes.get_errno()
        raise SandboxUnavailable(f"{step} failed: {os.strerror(err)} (errno {err})")
    return result


# --- namespaces --------------------------------------------------------------------------------

def enter_namespaces(network: bool = False) -> None:
    """New PID (and, unless ``network``, network) namespaces; a non-root user gets a user
    namespace too, mapping it to itself. The PID namespace takes effect for the next child."""
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWPID | (0 if network else CLONE_NEWNET) | (CLONE_NEWUSER if os.geteuid() != 0 else 0)
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise SandboxUnavailable(f"cannot create the sandbox's namespaces (unshare: {os.strerror(err)}); "
                                 f"unprivileged user namespaces may be disabled here (a container, or "
                                 f"kernel.apparmor_restrict_unprivileged_userns=1)")
    if flags & CLONE_NEWUSER:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        for name, real in (("uid_map", uid), ("gid_map", gid)):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(f"{real} {real} 1")


def die_with_parent() -> None:
    _checked("prctl(PR_SET_PDEATHSIG)", libc.prctl, PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# --- limits and privileges -----------------------------------------------------------------------

def user_tasks() -> int:
    """Tasks (processes and threads) of this real user now: RLIMIT_NPROC counts them all."""
    uid, count = os.getuid(), 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                count += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            continue
    return count


def set_limits(policy: Policy) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    tasks = user_tasks() + policy.processes
    resource.setrlimit(resource.RLIMIT_NPROC, (tasks, tasks))
    if policy.memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (policy.memory_bytes, policy.memory_bytes))


def drop_privileges() -> None:
    """No capability now or later (so RLIMIT_NPROC binds root too), and no way to gain one."""
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break  # past the last capability this kernel knows
    header = struct.pack("II", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    _checked("capset", libc.capset, header, b"\0" * 24)
    _checked("prctl(PR_SET_NO_NEW_PRIVS)", libc.prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


# --- Landlock ----------------------------------------------------------------------------------

FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_WRITE_TREE = sum(1 << b for b in range(4, 13))  # remove, make dir/file/socket/fifo/..., symlink
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
MIN_ABI = 6  # scopes: a sandboxed root could otherwise signal the driver


def landlock_abi() -> int:
    try:
        return _syscall("landlock_create_ruleset", None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    except OSError as err:
        return 0 if err.errno in (errno.ENOSYS, errno.EOPNOTSUPP) else -err.errno


def _fs_rights(abi: int) -> int:
    rights = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_READ_DIR | FS_WRITE_TREE
    return rights | (FS_REFER if abi >= 2 else 0) | (FS_TRUNCATE if abi >= 3 else 0) | (FS_IOCTL_DEV if abi >= 5 else 0)


def _allow(ruleset: int, path: str, rights: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not os.path.isdir(path):  # a file takes file rights only
            rights &= FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
        rule = struct.pack("=Qi", rights, fd)  # struct landlock_path_beneath_attr, packed
        _syscall("landlock_add_rule", ruleset, 1, rule, 0)
    finally:
        os.close(fd)


def apply_landlock(policy: Policy) -> None:
    abi = landlock_abi()
    if abi < MIN_ABI:
        raise SandboxUnavailable(f"Landlock ABI {abi} here, the sandbox needs {MIN_ABI} (Linux 6.12 or later, "
                                 f"with landlock in the kernel's lsm= list)" if abi >= 0 else
                                 f"Landlock is not available here ({os.strerror(-abi)})")
    handled = _fs_rights(abi)
    attr = struct.pack("QQQ", handled, NET_BIND_TCP | NET_CONNECT_TCP, SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL)
    try:
        ruleset = _syscall("landlock_create_ruleset", attr, len(attr), 0)
    except OSError as err:
        raise SandboxUnavailable(f"landlock_create_ruleset failed: {err.strerror}") from None
    try:
        read = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
        for path in policy.read:
            _allow(ruleset, path, read)
        for path in policy.write:
            _allow(ruleset, path, handled & ~FS_IOCTL_DEV)
        for path in policy.devices:
            _allow(ruleset, path, FS_READ_FILE | FS_WRITE_FILE | (FS_IOCTL_DEV if abi >= 5 else 0))
        _checked("landlock_restrict_self", lambda: libc.syscall(SYSCALLS["landlock_restrict_self"][_arch()[0]],
                                                                ruleset, 0))
    except OSError as err:
        raise SandboxUnavailable(f"a Landlock rule could not be added ({err})") from None
    finally:
        os.close(ruleset)


# --- seccomp ------------------------------------------------------------------------------------

def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def seccomp_program(names: tuple[str, ...] = DENIED) -> bytes:
    """A classic BPF filter: another architecture (or the x32 ABI) is killed, ``names`` fail with
    EPERM, everything else is allowed."""
    column, audit_arch = _arch()
    numbers = [SYSCALLS[n][column] for n in names]
    ld_abs, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    kill, allow, eperm = 0x80000000, 0x7FFF0000, 0x00050000 | errno.EPERM
    prog = [_bpf(ld_abs, 0, 0, 4), _bpf(jeq, 1, 0, audit_arch), _bpf(ret, 0, 0, kill), _bpf(ld_abs, 0, 0, 0)]
    if column == 0:
        prog += [_bpf(jge, 0, 1, 0x40000000), _bpf(ret, 0, 0, kill)]
    for i, nr in enumerate(numbers):
        prog.append(_bpf(jeq, len(numbers) - i, 0, nr))  # to the EPERM return after the ALLOW
    return b"".join(prog + [_bpf(ret, 0, 0, allow), _bpf(ret, 0, 0, eperm)])


def apply_seccomp() -> None:
    program = seccomp_program()
    filters = ctypes.create_string_buffer(program, len(program))
    fprog = ctypes.create_string_buffer(struct.pack("HxxxxxxP", len(program) // 8, ctypes.addressof(filters)))
    _checked("seccomp filter", libc.prctl, PR_SET_SECCOMP, 2, ctypes.addressof(fprog), 0, 0)


def restrict(policy: Policy) -> None:
    """Steps 3-6 on this process (its namespaces entered, its parent set): after this it can
    only read, write and do what ``policy`` and the filter allow."""
    set_limits(policy)
    drop_privileges()
    apply_landlock(policy)
    apply_seccomp()
