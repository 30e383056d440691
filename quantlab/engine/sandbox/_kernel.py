"""Kernel mechanisms for the sandboxed process (Linux): seccomp, Landlock, namespaces.

Each function reports whether it took effect, so the zygote can say which layers
this machine gives (``quantlab.engine.sandbox.mechanisms()``) and the docs can
state exactly what is promised where. Everything here is prepared in the zygote
(ctypes is used there, before any strategy code exists) and applied in each
forked child before the audit hook is armed.
"""
from __future__ import annotations

import errno
import os
import platform
import struct
import sys
from typing import Iterable

__all__ = ["Kernel"]

# -- constants (x86_64 / aarch64 syscall numbers) ---------------------------------
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
CLONE_THREAD = 0x00010000
CLONE_NEWNET = 0x40000000
O_WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000 | 0o20000000  # WRONLY RDWR CREAT TRUNC APPEND TMPFILE-ish

_ARCH = {
    "x86_64": dict(
        audit=0xC000003E, x32=True,
        nr=dict(
            socket=41, connect=42, accept=43, bind=49, listen=50, socketpair=53, accept4=288,
            clone=56, fork=57, vfork=58, execve=59, execveat=322, clone3=435,
            kill=62, tkill=200, tgkill=234, rt_sigqueueinfo=129, rt_tgsigqueueinfo=297, pidfd_send_signal=424,
            pidfd_open=434, pidfd_getfd=438, ptrace=101, process_vm_readv=310, process_vm_writev=311, kcmp=312,
            mount=165, umount2=166, pivot_root=155, chroot=161, unshare=272, setns=308, swapon=167, swapoff=168,
            reboot=169, sethostname=170, setdomainname=171, init_module=175, finit_module=313, delete_module=176,
            kexec_load=246, kexec_file_load=320, bpf=321, perf_event_open=298, userfaultfd=323, keyctl=250,
            add_key=248, request_key=249, acct=163, settimeofday=164, clock_settime=227, adjtimex=159, iopl=172,
            ioperm=173, quotactl=179, name_to_handle_at=303, open_by_handle_at=304, fanotify_init=300, syslog=103,
            vhangup=153, setuid=105, setgid=106, setreuid=113, setregid=114, setresuid=117, setresgid=119,
            setfsuid=122, setfsgid=123, setgroups=116, capset=126, setrlimit=160, prlimit64=302,
            io_uring_setup=425, io_uring_enter=426, io_uring_register=427,
            open=2, openat=257, openat2=437, creat=85, truncate=76, rename=82, renameat=264, renameat2=316,
            mkdir=83, mkdirat=258, rmdir=84, link=86, linkat=265, unlink=87, unlinkat=263, symlink=88,
            symlinkat=266, chmod=90, fchmod=91, fchmodat=268, chown=92, fchown=93, lchown=94, fchownat=260,
            mknod=133, mknodat=259, utime=132, utimes=235, utimensat=280, futimesat=261, setxattr=188,
            lsetxattr=189, fsetxattr=190, removexattr=197, lremovexattr=198, fremovexattr=199,
            landlock_create_ruleset=444, landlock_add_rule=445, landlock_restrict_self=446,
        ),
    ),
    "aarch64": dict(
        audit=0xC00000B7, x32=False,
        nr=dict(
            socket=198, connect=203, accept=202, bind=200, listen=201, socketpair=199, accept4=242,
            clone=220, execve=221, execveat=281, clone3=435,
            kill=129, tkill=130, tgkill=131, rt_sigqueueinfo=138, rt_tgsigqueueinfo=240, pidfd_send_signal=424,
            pidfd_open=434, pidfd_getfd=438, ptrace=117, process_vm_readv=270, process_vm_writev=271, kcmp=272,
            mount=40, umount2=39, pivot_root=41, chroot=51, unshare=97, setns=268, swapon=224, swapoff=225,
            reboot=142, sethostname=161, setdomainname=162, init_module=105, finit_module=273, delete_module=106,
            kexec_load=104, kexec_file_load=294, bpf=280, perf_event_open=241, userfaultfd=282, keyctl=219,
            add_key=217, request_key=218, acct=89, settimeofday=170, clock_settime=112, adjtimex=171,
            quotactl=60, name_to_handle_at=264, open_by_handle_at=265, fanotify_init=262, syslog=116,
            vhangup=58, setuid=146, setgid=144, setreuid=145, setregid=143, setresuid=147, setresgid=149,
            setfsuid=151, setfsgid=152, setgroups=159, capset=91, setrlimit=164, prlimit64=261,
            io_uring_setup=425, io_uring_enter=426, io_uring_register=427,
            openat=56, openat2=437, truncate=45, renameat=38, renameat2=276, mkdirat=34, linkat=37,
            unlinkat=35, symlinkat=36, fchmod=52, fchmodat=53, fchown=55, fchownat=54, mknodat=33,
            utimensat=88, setxattr=5, lsetxattr=6, fsetxattr=7, removexattr=14, lremovexattr=15, fremovexattr=16,
            landlock_create_ruleset=444, landlock_add_rule=445, landlock_restrict_self=446,
        ),
    ),
}

#: syscalls that stop the process at once (SIGSYS): nothing a strategy needs, every one an escape
KILL = (
    "socket connect accept bind listen socketpair accept4 fork vfork execve execveat ptrace process_vm_readv "
    "process_vm_writev kcmp mount umount2 pivot_root chroot unshare setns swapon swapoff reboot sethostname "
    "setdomainname init_module finit_module delete_module kexec_load kexec_file_load bpf perf_event_open "
    "userfaultfd keyctl add_key request_key acct settimeofday clock_settime adjtimex iopl ioperm quotactl "
    "name_to_handle_at open_by_handle_at fanotify_init syslog vhangup setuid setgid setreuid setregid setresuid "
    "setresgid setfsuid setfsgid setgroups capset setrlimit io_uring_setup io_uring_enter io_uring_register "
    "rt_sigqueueinfo rt_tgsigqueueinfo pidfd_send_signal pidfd_open pidfd_getfd"
).split()
#: file changes: refused with EPERM (a library may probe; nothing is written)
DENY = (
    "creat truncate rename renameat renameat2 mkdir mkdirat rmdir link linkat unlink unlinkat symlink symlinkat "
    "chmod fchmod fchmodat chown fchown lchown fchownat mknod mknodat utime utimes utimensat futimesat setxattr "
    "lsetxattr fsetxattr removexattr lremovexattr fremovexattr"
).split()

# BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JSET_K = 0x45
_RET_K = 0x06


def _ins(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _bpf(arch: dict, pid: int) -> bytes:
    """The filter program: allow by default, kill on :data:`KILL`, EPERM on :data:`DENY`,
    EPERM on opening files for writing, ENOSYS on clone3/openat2, signals only to itself."""
    nr = arch["nr"]
    prog: list[bytes] = []
    allow = _ins(_RET_K, 0, 0, SECCOMP_RET_ALLOW)
    kill = _ins(_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS)
    eperm = _ins(_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM)
    enosys = _ins(_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS)
    # architecture check
    prog += [_ins(_LD_W_ABS, 0, 0, 4), _ins(_JEQ_K, 1, 0, arch["audit"]), kill]
    prog += [_ins(_LD_W_ABS, 0, 0, 0)]  # A = syscall nr
    if arch["x32"]:
        prog += [_ins(0x35, 0, 1, 0x40000000), kill]  # JGE: x32 ABI
    arg = lambda i: 16 + 8 * i  # low 32 bits of args[i] (little endian)

    def on(name: str, body: list[bytes]) -> None:
        if name not in nr:
            return
        prog.append(_ins(_JEQ_K, 0, len(body), nr[name]))
        prog.extend(body)

    reload_nr = _ins(_LD_W_ABS, 0, 0, 0)
    for name in KILL:
        on(name, [kill])
    for name in DENY:
        on(name, [eperm])
    on("clone3", [enosys])
    on("openat2", [enosys])
    # clone: threads only
    on("clone", [_ins(_LD_W_ABS, 0, 0, arg(0)), _ins(_JSET_K, 1, 0, CLONE_THREAD), kill, allow])
    # open/openat for writing: EPERM
    on("open", [_ins(_LD_W_ABS, 0, 0, arg(1)), _ins(_JSET_K, 0, 1, O_WRITE_FLAGS), eperm, allow])
    on("openat", [_ins(_LD_W_ABS, 0, 0, arg(2)), _ins(_JSET_K, 0, 1, O_WRITE_FLAGS), eperm, allow])
    # signals: only to this process
    for name in ("kill", "tgkill", "tkill"):
        on(name, [_ins(_LD_W_ABS, 0, 0, arg(0)), _ins(_JEQ_K, 1, 0, pid), kill, allow])
    # prlimit64: reading is fine, setting is not
    on("prlimit64", [_ins(_LD_W_ABS, 0, 0, arg(2)), _ins(_JEQ_K, 0, 3, 0),
                     _ins(_LD_W_ABS, 0, 0, arg(2) + 4), _ins(_JEQ_K, 0, 1, 0), allow, kill])
    del reload_nr
    prog.append(allow)
    return b"".join(prog)


class Kernel:
    """What this machine offers, prepared once in the zygote; :meth:`apply` in each child."""

    def __init__(self, read_roots: Iterable[str]):
        self.arch = _ARCH.get(platform.machine())
        self.errors: dict[str, str] = {}
        self.netns = False
        self.landlock_abi = 0
        self._ruleset_fd: int | None = None
        self._libc = None
        if sys.platform != "linux" or self.arch is None:
            self.errors["seccomp"] = f"not available on {sys.platform}/{platform.machine()}"
            self.errors["landlock"] = self.errors["seccomp"]
            return
        import ctypes

        self._ctypes = ctypes
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        self._prepare_landlock(list(read_roots))

    # -- network namespace (zygote, once) -----------------------------------------------
    def enter_netns(self) -> bool:
        """Move the zygote (and so every child) into a new, empty network namespace (needs CAP_SYS_ADMIN)."""
        if self._libc is None:
            return False
        if self._libc.unshare(CLONE_NEWNET) == 0:
            self.netns = True
        else:
            self.errors["netns"] = os.strerror(self._ctypes.get_errno())
        return self.netns

    # -- Landlock ------------------------------------------------------------------------
    def _prepare_landlock(self, roots: list[str]) -> None:
        ctypes, libc, nr = self._ctypes, self._libc, self.arch["nr"]
        abi = libc.syscall(nr["landlock_create_ruleset"], None, 0, 1)
        if abi < 0:
            self.errors["landlock"] = os.strerror(ctypes.get_errno())
            return
        abi = int(abi)
        fs = (1 << 13) - 1  # EXECUTE..MAKE_SYM (ABI 1)
        if abi >= 2:
            fs |= 1 << 13  # REFER
        if abi >= 3:
            fs |= 1 << 14  # TRUNCATE
        if abi >= 5:
            fs |= 1 << 15  # IOCTL_DEV
        net = 3 if abi >= 4 else 0  # BIND_TCP | CONNECT_TCP: handled, never granted
        scoped = 3 if abi >= 6 else 0  # abstract unix sockets, signals outside the domain
        attr = struct.pack("QQQ", fs, net, scoped)
        size = 8 if abi < 4 else (16 if abi < 6 else 24)
        buf = ctypes.create_string_buffer(attr[:size], size)
        fd = libc.syscall(nr["landlock_create_ruleset"], buf, size, 0)
        if fd < 0:
            self.errors["landlock"] = os.strerror(ctypes.get_errno())
            return
        read = 1 | 4 | 8  # EXECUTE | READ_FILE | READ_DIR
        for root in roots:
            try:
                pfd = os.open(root, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                is_dir = os.path.isdir(root)
                rule = ctypes.create_string_buffer(struct.pack("=Qi", read if is_dir else (1 | 4), pfd), 12)
                if libc.syscall(nr["landlock_add_rule"], int(fd), 1, rule, 0) != 0:
                    self.errors.setdefault("landlock_rules", f"{root}: {os.strerror(ctypes.get_errno())}")
            finally:
                os.close(pfd)
        self._ruleset_fd = int(fd)
        os.set_inheritable(self._ruleset_fd, False)
        self.landlock_abi = abi

    # -- in the child ------------------------------------------------------------------------
    def apply(self) -> dict[str, bool]:
        """Lock this (forked) process down: no_new_privs, Landlock, seccomp. Returns what took effect."""
        done = {"no_new_privs": False, "landlock": False, "seccomp": False}
        if self._libc is None:
            return done
        ctypes, libc = self._ctypes, self._libc
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        done["no_new_privs"] = libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
        if self._ruleset_fd is not None:
            done["landlock"] = libc.syscall(self.arch["nr"]["landlock_restrict_self"], self._ruleset_fd, 0) == 0
            os.close(self._ruleset_fd)
            self._ruleset_fd = None
        prog = _bpf(self.arch, os.getpid())
        n = len(prog) // 8
        filt = ctypes.create_string_buffer(prog, len(prog))

        class _Prog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        fprog = _Prog(n, ctypes.cast(filt, ctypes.c_void_p))
        done["seccomp"] = libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0
        return done

    def set_pdeathsig(self, sig: int) -> None:
        if self._libc is not None:
            self._libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)

    def describe(self) -> dict[str, object]:
        return {
            "seccomp": self._libc is not None,
            "landlock_abi": self.landlock_abi,
            "netns": self.netns,
            "errors": dict(self.errors),
        }
