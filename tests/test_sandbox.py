"""Adversarial programs must be contained by the sandbox and fail cleanly (each attack is its own test)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cpqs_bench.evaluate import sandbox as sbx
from cpqs_bench.evaluate.sandbox import Sandbox, SandboxLimits, SandboxUnavailable

LEVEL = sbx.probe_isolation()
needs_ns = pytest.mark.skipif(LEVEL != "namespaces", reason=f"host isolation is {LEVEL!r}, not namespaces")


@pytest.fixture()
def box(tmp_path, monkeypatch) -> Sandbox:
    # Work dirs go under tmp_path so a test can prove they were wiped.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return Sandbox(SandboxLimits(timeout_s=20.0), allow_weaker=True)


def _procs_with_comm(comm: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == comm:
                    found.append(int(entry))
            except OSError:
                continue  # process ended while scanning
    return found


_SET_COMM = "import ctypes\nctypes.CDLL(None).prctl(15, ctypes.c_char_p({comm!r}.encode()), 0, 0, 0)\n"  # PR_SET_NAME


def test_plain_program_runs_with_allowlisted_env_and_collects_files(box, tmp_path):
    res = box.run(
        "import os, json\nprint(json.dumps(sorted(os.environ)))\nopen('out.txt','w').write('hi')\n",
        collect=("out.txt",),
    )
    assert res.returncode == 0 and res.ok, res.stderr
    env_keys = set(eval(res.stdout))
    assert "HOME" not in env_keys and {"PATH"} <= env_keys
    assert env_keys <= {"PATH", "LANG", *sbx._SAFE_ENV}
    assert res.files == {"out.txt": b"hi"}
    assert list(tmp_path.iterdir()) == []  # work dir wiped


def test_nonzero_exit_is_reported(box):
    res = box.run("raise ValueError('boom')\n")
    assert res.returncode == 1 and not res.ok and "ValueError: boom" in res.stderr


def test_infinite_loop_times_out(box):
    t0 = time.monotonic()
    res = box.run("while True:\n    pass\n", timeout_s=2.0)
    assert res.timed_out and not res.ok and res.returncode is None
    assert time.monotonic() - t0 < 15


def test_fork_bomb_is_contained_and_reaped(box):
    comm = "fb" + secrets.token_hex(5)
    prog = _SET_COMM.format(comm=comm) + (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    res = box.run(prog, timeout_s=3.0, pid_max=320)
    assert not res.ok
    time.sleep(0.5)
    assert _procs_with_comm(comm) == []


def test_memory_blowup_fails_cleanly(box):
    prog = "chunks = []\nwhile True:\n    chunks.append(bytearray(50 << 20))\n"
    res = box.run(prog, memory_bytes=512 << 20, timeout_s=15.0)
    assert res.returncode not in (0, None) and "MemoryError" in res.stderr


def test_disk_fill_is_capped_and_wiped(box, tmp_path):
    prog = (
        "chunk = b'x' * (1 << 20)\n"
        "with open('big.bin', 'wb') as fh:\n"
        "    for _ in range(4096):\n        fh.write(chunk)\n"
    )
    res = box.run(prog, fsize_bytes=16 << 20, timeout_s=15.0)
    assert res.returncode not in (0, None)
    assert "File too large" in res.stderr or "No space" in res.stderr
    assert list(tmp_path.iterdir()) == []


@needs_ns
def test_many_files_fill_a_capped_tmpfs(box):
    prog = (
        "chunk = b'x' * (1 << 20)\n"
        "for i in range(2048):\n"
        "    with open(f'f{i}.bin', 'wb') as fh:\n        fh.write(chunk * 4)\n"
    )
    res = box.run(prog, tmpfs_bytes=32 << 20, timeout_s=15.0)
    assert res.returncode not in (0, None) and "No space left" in res.stderr


def test_huge_output_is_capped(box):
    res = box.run("while True:\n    print('x' * 10000)\n", output_cap_bytes=64 << 10, timeout_s=15.0)
    assert res.output_limited and not res.ok and not res.timed_out
    assert len(res.stdout) <= 64 << 10


@needs_ns
def test_network_is_unreachable(box):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        prog = (
            "import socket\ns = socket.socket()\ns.settimeout(3)\n"
            f"try:\n    s.connect(('127.0.0.1', {port}))\n    print('CONNECTED')\n"
            "except OSError as e:\n    print('REFUSED', e)\n"
        )
        res = box.run(prog)
        assert res.returncode == 0 and "REFUSED" in res.stdout and "CONNECTED" not in res.stdout
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()


@needs_ns
def test_canary_token_in_parent_env_is_not_visible(box, monkeypatch):
    token = "canary-" + secrets.token_hex(12)
    monkeypatch.setenv("CPQS_TEST_CANARY", token)
    prog = (
        "import os\nprint(dict(os.environ))\n"
        f"for pid in ('self', str(os.getppid()), '1', '{os.getpid()}', '{os.getppid()}'):\n"
        "    try:\n        print(pid, open(f'/proc/{pid}/environ', 'rb').read())\n"
        "    except OSError as e:\n        print(pid, 'unreadable', e)\n"
    )
    res = box.run(prog)
    assert res.returncode == 0, res.stderr
    assert token not in res.stdout and token not in res.stderr
    assert f"{os.getpid()} unreadable" in res.stdout  # the test process is not even visible


@needs_ns
def test_killing_the_parent_does_not_reach_the_test_process(box):
    prog = (
        "import os, signal\n"
        "for pid in (os.getppid(), 1, %d, %d):\n"
        "    try:\n        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError as e:\n        print(pid, e)\n"
        "print('still here')\n"
    ) % (os.getpid(), os.getppid())
    res = box.run(prog)
    assert res.returncode == 0 and "still here" in res.stdout  # in-namespace init ignores SIGKILL from inside
    assert box.run("print('next run fine')\n").stdout.strip() == "next run fine"


def _daemon_program(comm: str) -> str:
    return _SET_COMM.format(comm=comm) + (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        for _ in range(600):\n            time.sleep(0.1)\n"
        "    os._exit(0)\n"
        "time.sleep(0.3)\n"
        "print('parent done')\n"
    )


def test_setsid_daemon_is_gone_after_the_sample(box):
    comm = "dm" + secrets.token_hex(5)
    t0 = time.monotonic()
    res = box.run(_daemon_program(comm), timeout_s=20.0)
    assert res.returncode == 0 and "parent done" in res.stdout
    assert time.monotonic() - t0 < 15  # did not wait for the daemon's 60 s
    time.sleep(0.3)
    assert _procs_with_comm(comm) == []


def test_rlimits_fallback_reaps_daemon_and_times_out(tmp_path, monkeypatch):
    monkeypatch.setattr(sbx, "probe_isolation", lambda: "rlimits")
    box = Sandbox(SandboxLimits(timeout_s=20.0), allow_weaker=True)
    assert box.isolation == "rlimits"
    comm = "rd" + secrets.token_hex(5)
    res = box.run(_daemon_program(comm))
    assert res.returncode == 0 and res.isolation == "rlimits"
    time.sleep(0.3)
    assert _procs_with_comm(comm) == []
    assert box.run("while True:\n    pass\n", timeout_s=2.0).timed_out


def test_refuses_below_minimum_isolation(monkeypatch):
    monkeypatch.setattr(sbx, "probe_isolation", lambda: "rlimits")
    with pytest.raises(SandboxUnavailable, match="allow_weaker"):
        Sandbox(min_isolation="namespaces")
    assert Sandbox(min_isolation="namespaces", allow_weaker=True).isolation == "rlimits"
    with pytest.raises(ValueError):
        Sandbox(min_isolation="bogus")


@needs_ns
def test_root_filesystem_is_read_only(box, tmp_path):
    outside = tmp_path / f"escape-{secrets.token_hex(4)}"
    prog = (
        f"try:\n    open({str(outside)!r}, 'w').write('x')\n    print('WROTE')\n"
        "except OSError as e:\n    print('DENIED', e)\n"
    )
    res = box.run(prog)
    assert "DENIED" in res.stdout and not outside.exists()


def test_manifest_reports_isolation():
    m = Sandbox(allow_weaker=True).manifest()
    assert m["isolation"] == LEVEL and m["limits"]["memory_bytes"] > 0


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.parametrize("level", ["namespaces", "rlimits"])
def test_sandboxed_program_dies_with_its_parent(level):
    if level == "namespaces" and LEVEL != "namespaces":
        pytest.skip("namespaces unavailable")
    comm = "pd" + secrets.token_hex(5)
    prog = _SET_COMM.format(comm=comm) + "import time\ntime.sleep(60)\n"
    script = (
        "import sys\nfrom cpqs_bench.evaluate import sandbox as s\n"
        f"s.probe_isolation = lambda: {level!r}\n"
        f"s.Sandbox(allow_weaker=True).run({prog!r}, timeout_s=60)\n"
    )
    repo = Path(__file__).resolve().parents[1]
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=repo)
    try:
        assert _wait_for(lambda: _procs_with_comm(comm) != [], 20), "sandboxed program never started"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_for(lambda: _procs_with_comm(comm) == [], 10), "sandboxed program outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
