"""Run one untrusted Python program in a fresh, isolated, resource-limited interpreter.

Why not an in-process guard (``reliability_guard``-style monkeypatching): generated code can undo any Python-level
guard. Here every program gets its own interpreter (``sys.executable -I``) in a new session with hard rlimits, an
allow-listed environment, a fresh work directory wiped afterwards, bounded output capture and a parent-death signal.
Where the kernel allows unprivileged namespaces (probed once, :func:`probe_isolation`), the program additionally runs
in new user+pid+net+mount+ipc+uts namespaces via util-linux ``unshare``: it sees no network (only a downed loopback),
no host processes, a read-only view of the file system except a size-capped tmpfs work directory, and every process
it starts dies with the sandbox's pid 1 (so double-forked ``setsid`` daemons are reaped too).

This module is stdlib-only on purpose: it is also the in-sandbox bootstrap (``python -I sandbox.py --inner ...``),
which must not import the project package.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

ISOLATION_LEVELS = {"none": 0, "rlimits": 1, "namespaces": 2}
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_SYS_MOUNT_SETATTR = 442  # same number in the generic and x86_64 syscall tables
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY = 0x1
_AT_FDCWD = -100
_SAFE_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
}
_UNSHARE_FLAGS = [
    "--user",
    "--map-root-user",
    "--pid",
    "--kill-child",
    "--net",
    "--mount",
    "--mount-proc",
    "--ipc",
    "--uts",
]


class SandboxUnavailable(RuntimeError):
    """The host cannot provide the configured minimum isolation level."""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-program limits. ``timeout_s`` is wall clock; ``cpu_s`` is RLIMIT_CPU (defaults to the timeout)."""

    timeout_s: float = 20.0
    cpu_s: int | None = None
    memory_bytes: int = 4 << 30  # EvalPlus uses min(4 GiB, system); RLIMIT_AS counts virtual memory
    fsize_bytes: int = 64 << 20
    tmpfs_bytes: int = 128 << 20
    nofile: int = 256
    nproc: int = 64
    pid_max: int = 512  # per-pid-namespace cap on process count (kernels >= 6.14); >= 301 required by the kernel
    output_cap_bytes: int = 1 << 20


@dataclass
class SandboxResult:
    returncode: int | None  # None when killed by the harness (timeout / output limit)
    stdout: str
    stderr: str
    timed_out: bool
    output_limited: bool
    wall_s: float
    isolation: str
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.output_limited


# ---------------------------------------------------------------------------------------------------------------------
# parent side
# ---------------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _unshare_cmd() -> list[str] | None:
    exe = shutil.which("unshare", path=os.defpath + ":/usr/bin:/bin")
    return [exe, *_UNSHARE_FLAGS, "--"] if exe else None


def _inner_cmd(level: str, limits: SandboxLimits, main: str, result_fd: int, collect: tuple[str, ...]) -> list[str]:
    return [
        sys.executable,
        "-I",
        str(Path(__file__).resolve()),
        "--inner",
        level,
        str(limits.nproc),
        str(limits.pid_max),
        str(limits.tmpfs_bytes),
        str(limits.fsize_bytes),
        str(result_fd),
        main,
        *collect,
    ]


def _child_env() -> dict[str, str]:
    """Allow-list: PATH and LANG from the parent (nothing else: no tokens, no HOME), plus fixed thread settings."""
    env = {k: os.environ[k] for k in ("PATH", "LANG") if k in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update(_SAFE_ENV)
    return env


def _make_preexec(limits: SandboxLimits, level: str):
    """Build the post-fork hook. Everything it needs is resolved before fork (no imports or dlopen in the child)."""
    prctl = _libc().prctl
    cpu = int(limits.cpu_s if limits.cpu_s is not None else max(1, round(limits.timeout_s)) + 1)
    rl = [
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_FSIZE, limits.fsize_bytes),
        (resource.RLIMIT_NOFILE, limits.nofile),
        (resource.RLIMIT_CORE, 0),
    ]
    if level != "namespaces":
        # In namespace mode NPROC is set inside the new user namespace (counted per namespace there); set here it
        # would also be checked against every process the host user owns.
        rl.append((resource.RLIMIT_NPROC, _host_nproc_budget(limits.nproc)))

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        for which, value in rl:
            resource.setrlimit(which, (value, value))

    return preexec


def _host_nproc_budget(extra: int) -> int:
    """Without a user namespace RLIMIT_NPROC counts all processes of the uid, so allow the current count + extra."""
    uid = os.getuid()
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except FileNotFoundError:  # process ended while scanning
                continue
    return count + extra


def _read_capped(streams: dict, deadline: float) -> tuple[dict, bool, bool]:
    """Drain pipes until EOF or deadline, keeping at most ``cap`` bytes of each; never buffers unbounded.

    ``streams`` maps pipe -> cap. Returns (pipe -> bytes, timed_out, output_limited). Output beyond a cap ends the
    run (the process is killed): a program flooding its output will not pass, and reading on would only burn time.
    """
    bufs = {f: bytearray() for f in streams}
    sel = selectors.DefaultSelector()
    for f in bufs:
        os.set_blocking(f.fileno(), False)
        sel.register(f, selectors.EVENT_READ)
    timed_out = limited = False
    try:
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in sel.select(timeout=min(remaining, 0.5)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = bufs[key.fileobj]
                room = streams[key.fileobj] - len(buf)
                buf.extend(chunk[: max(room, 0)])
                if len(chunk) > room:
                    limited = True
            if limited:
                break
    finally:
        sel.close()
    return {f: bytes(b) for f, b in bufs.items()}, timed_out, limited


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone: nothing left to kill


def _parse_collected(blob: bytes) -> dict[str, bytes]:
    """Frames written by the bootstrap on the result pipe: ``<name> <length>\\n<bytes>`` repeated."""
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(blob):
        nl = blob.index(b"\n", pos)
        name, length = blob[pos:nl].decode().rsplit(" ", 1)
        start = nl + 1
        end = start + int(length)
        if end > len(blob):
            break  # truncated by the cap: drop the partial file rather than return corrupt bytes
        out[name] = blob[start:end]
        pos = end
    return out


_PROBE = (
    "import os, socket\n"
    "assert os.getppid() == 1, 'not under namespace init'\n"
    "s = socket.socket()\n"
    "try:\n    s.connect(('127.0.0.1', 9)); raise SystemExit('network reachable')\n"
    "except OSError:\n    pass\n"
    "try:\n    open('/probe_ro', 'w'); raise SystemExit('root writable')\n"
    "except OSError:\n    pass\n"
    "open('w.txt', 'w').write('x')\n"
    "print('ISOLATION-OK')\n"
)


@functools.lru_cache(maxsize=None)
def isolation_details() -> dict[str, Any]:
    """Probe once what this host provides; {"level", "pid_max_cap", "reason"} (reason: why not stronger).

    The probe runs the real bootstrap in namespace mode and checks from inside that it is pid 1's child in its
    namespace, that the network is unreachable, that ``/`` is read-only and that the work directory is writable.
    The per-namespace ``pid_max`` process cap needs Linux >= 6.14; without it namespaces still apply and
    RLIMIT_NPROC (per user namespace) bounds process count for non-root users.
    """
    try:
        resource.getrlimit(resource.RLIMIT_AS)
        _ = _libc().prctl
    except (AttributeError, OSError) as exc:
        return {"level": "none", "pid_max_cap": False, "reason": f"rlimits/prctl unavailable: {exc!r}"}
    if _unshare_cmd() is None:
        return {"level": "rlimits", "pid_max_cap": False, "reason": "util-linux `unshare` not found"}
    reason = ""
    for pid_max in (SandboxLimits.pid_max, 0):
        try:
            res = _run(_PROBE, "namespaces", SandboxLimits(timeout_s=30.0, pid_max=pid_max), {}, ())
        except OSError as exc:
            return {"level": "rlimits", "pid_max_cap": False, "reason": f"namespace launch failed: {exc!r}"}
        if res.returncode == 0 and "ISOLATION-OK" in res.stdout:
            return {"level": "namespaces", "pid_max_cap": pid_max > 0, "reason": reason}
        reason = f"namespace probe failed (rc={res.returncode}): {res.stderr.strip()[-300:]}"
    return {"level": "rlimits", "pid_max_cap": False, "reason": reason}


def probe_isolation() -> str:
    """Strongest isolation this host provides: "namespaces", "rlimits" or "none" (probed once per process)."""
    return isolation_details()["level"]


def _run(
    main_source: str, level: str, limits: SandboxLimits, files: Mapping[str, str | bytes], collect: tuple[str, ...]
) -> SandboxResult:
    workdir = Path(tempfile.mkdtemp(prefix="cpqs-sbx-"))
    try:
        for name, content in {**files, "__main__.py": main_source}.items():
            if "/" in name or name in ("", ".", ".."):
                raise ValueError(f"sandbox file names must be plain names, got {name!r}")
            (workdir / name).write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        result_r, result_w = os.pipe()  # bootstrap -> parent: files named in `collect`, read before the wipe
        cmd = _inner_cmd(level, limits, "__main__.py", result_w, collect)
        if level == "namespaces":
            cmd = _unshare_cmd() + cmd  # type: ignore[operator]
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=workdir,
                env=_child_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_make_preexec(limits, level),
                close_fds=True,
                pass_fds=(result_w,),
            )
        except BaseException:
            os.close(result_r)
            raise
        finally:
            os.close(result_w)
        result_pipe = os.fdopen(result_r, "rb", buffering=0)
        assert proc.stdout is not None and proc.stderr is not None  # both are pipes (stdout/stderr=PIPE)
        caps = {
            proc.stdout: limits.output_cap_bytes,
            proc.stderr: limits.output_cap_bytes,
            result_pipe: (limits.fsize_bytes + 4096) * max(1, len(collect)),
        }
        try:
            data, timed_out, limited = _read_capped(caps, start + limits.timeout_s)
            if not (timed_out or limited):
                try:
                    proc.wait(timeout=max(0.1, start + limits.timeout_s - time.monotonic()))
                except subprocess.TimeoutExpired:
                    timed_out = True
        finally:
            # Kill the whole group in every case: on a limit it ends the run; otherwise it sweeps stragglers (in
            # namespace mode the pid namespace already died with its init).
            _kill_group(proc)
            proc.wait()
            for f in caps:
                f.close()
        wall = time.monotonic() - start
        rc = None if (timed_out or limited) else proc.returncode
        return SandboxResult(
            rc,
            data[proc.stdout].decode("utf-8", "replace"),
            data[proc.stderr].decode("utf-8", "replace"),
            timed_out,
            limited,
            wall,
            level,
            _parse_collected(data[result_pipe]),
        )
    finally:
        shutil.rmtree(workdir, onerror=_rmtree_onerror)


def _rmtree_onerror(func: Callable[[str], object], path: str, exc_info: object) -> None:
    """The program may leave read-only dirs behind; make them writable and retry once, else let the error surface."""
    os.chmod(os.path.dirname(path), 0o700)
    try:
        os.chmod(path, 0o700)
    except FileNotFoundError:
        return
    func(path)


class Sandbox:
    """Runs programs at a guaranteed isolation level (refuses to run below ``min_isolation`` unless allowed)."""

    def __init__(
        self, limits: SandboxLimits | None = None, min_isolation: str = "namespaces", allow_weaker: bool = False
    ) -> None:
        if min_isolation not in ISOLATION_LEVELS:
            raise ValueError(f"min_isolation must be one of {list(ISOLATION_LEVELS)}, got {min_isolation!r}")
        self.limits = limits or SandboxLimits()
        self.isolation = probe_isolation()
        if self.isolation == "namespaces" and not isolation_details()["pid_max_cap"]:
            self.limits = SandboxLimits(**{**self.limits.__dict__, "pid_max": 0})
        if ISOLATION_LEVELS[self.isolation] < ISOLATION_LEVELS[min_isolation] and not allow_weaker:
            raise SandboxUnavailable(
                f"this host provides only {self.isolation!r} isolation, below the required {min_isolation!r} "
                "(unprivileged user namespaces and util-linux `unshare` are needed); pass allow_weaker=True to run "
                "generated code with weaker isolation at your own risk"
            )
        if self.isolation == "none":
            raise SandboxUnavailable("no isolation available at all (rlimits/prctl unsupported on this platform)")

    def run(
        self,
        main_source: str,
        files: Mapping[str, str | bytes] | None = None,
        *,
        timeout_s: float | None = None,
        collect: tuple[str, ...] = (),
        **overrides: float | int | None,
    ) -> SandboxResult:
        """Run ``main_source`` as ``__main__.py`` in a fresh work dir holding ``files``; return files in ``collect``.

        ``timeout_s`` and keyword ``overrides`` (any :class:`SandboxLimits` field) adjust the limits for this run.
        The work-dir tmpfs always has room for the input files plus the configured ``tmpfs_bytes``.
        """
        files = dict(files or {})
        fields = dict(self.limits.__dict__)
        if timeout_s is not None:
            fields.update(timeout_s=timeout_s, cpu_s=None)
        fields.update(overrides)
        payload = sum(len(v) for v in files.values()) + len(main_source)
        fields["tmpfs_bytes"] = int(fields["tmpfs_bytes"]) + payload
        return _run(main_source, self.isolation, SandboxLimits(**fields), files, tuple(collect))

    def manifest(self) -> dict:
        """What the run manifest records about code execution."""
        details = isolation_details() if self.isolation == "namespaces" else {}
        return {
            "isolation": self.isolation,
            "pid_max_cap": bool(details.get("pid_max_cap")),
            "limits": dict(self.limits.__dict__),
            "python": sys.executable,
        }


# ---------------------------------------------------------------------------------------------------------------------
# inside the sandbox (bootstrap; stdlib only)
# ---------------------------------------------------------------------------------------------------------------------


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _harden_namespace(pid_max: int, tmpfs_bytes: int) -> None:
    """As pid 1 of fresh namespaces: cap process count, make ``/`` read-only, give cwd a size-capped tmpfs.

    Each step raises on failure: a sandbox that silently lost a protection would be reported as stronger than it is.
    """
    libc = _libc()
    if pid_max > 0:
        with open("/proc/sys/kernel/pid_max", "w") as fh:
            fh.write(str(pid_max))
    cwd = os.getcwd()
    saved = {n: Path(n).read_bytes() for n in os.listdir(cwd) if Path(n).is_file()}
    attr = _MountAttr(_MOUNT_ATTR_RDONLY, 0, 0, 0)
    if libc.syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, b"/", _AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
        raise OSError(ctypes.get_errno(), "mount_setattr(/, RDONLY) failed")
    opts = f"size={tmpfs_bytes},mode=0700".encode()
    if libc.mount(b"tmpfs", cwd.encode(), b"tmpfs", 0, opts) != 0:
        raise OSError(ctypes.get_errno(), f"mount tmpfs on {cwd} failed")
    os.chdir(cwd)  # re-enter: the old cwd handle points below the new mount
    for name, data in saved.items():
        Path(name).write_bytes(data)


def _kill_orphans() -> None:
    """Without a pid namespace: we are a subreaper, so orphaned descendants (daemons) are our children; kill them."""
    me = str(os.getpid())
    for _ in range(50):
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == me:
                found = True
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except ProcessLookupError:
                    pass  # exited on its own
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    break
            except ChildProcessError:
                break
        if not found:
            return
        time.sleep(0.02)


def _send_collected(fd: int, names: list[str], cap: int) -> None:
    with os.fdopen(fd, "wb") as out:
        for name in names:
            p = Path(name)
            if p.is_file() and not p.is_symlink() and p.stat().st_size <= cap:
                data = p.read_bytes()
                out.write(f"{name} {len(data)}\n".encode() + data)


def _inner_main(argv: list[str]) -> int:
    level, nproc, pid_max, tmpfs_bytes, fsize = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), int(argv[4])
    result_fd, main, collect = int(argv[5]), argv[6], argv[7:]
    os.set_inheritable(result_fd, False)  # the untrusted program must not be able to forge collected files
    if level == "namespaces":
        _harden_namespace(pid_max, tmpfs_bytes)
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))  # counted inside this user namespace
    else:
        _libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    child = os.fork()
    if child == 0:
        try:
            _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with the bootstrap (fallback mode)
            os.execv(sys.executable, [sys.executable, "-I", main])
        finally:
            os._exit(127)
    status = None
    while status is None:
        try:
            pid, st = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == child:
            status = st
    if level != "namespaces":
        _kill_orphans()
    _send_collected(result_fd, collect, fsize)
    # As pid 1 of the namespace, returning here makes the kernel SIGKILL every remaining process in it.
    if status is None:
        return 125
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--inner":
    sys.stdout.flush()
    raise SystemExit(_inner_main(sys.argv[2:]))
