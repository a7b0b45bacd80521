"""Process control: the project's processes (gunicorn, ``manage.py rqworker``, redis-server) as
production runs them, each in a process group of its own, and the waits that go with them.

Contracts:

- Every process is started in its own process group (``start_new_session``), so a signal to the
  group reaches the process and everything it forked (rq's scheduler; gunicorn's workers), and is
  registered until stopped: :func:`stop_all` (installed at exit and on SIGTERM/SIGINT/SIGHUP by
  :func:`install_cleanup`) kills whatever is left. A run never leaves a gunicorn, worker or
  redis-server behind.
- With ``die_with_parent`` the child also gets SIGKILL when its parent dies (Linux
  ``PR_SET_PDEATHSIG``), so a test run that is itself killed never leaves a worker behind to sweep the
  next run's database. The signal fires when the *thread* that started the child ends: use it from
  the main thread (the tests do); the benches, which restart workers from a supervisor thread, rely on
  :func:`install_cleanup` instead.
- Output goes to ``<log_dir>/<name>.log`` (rq's work horses and gunicorn's workers write there too).
- Only loopback: every server binds 127.0.0.1.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import procfs

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# Two workers, four threads each: one process per core, and threads so that a request waiting on
# PostgreSQL or Redis does not leave its core idle. See docs/performance.md for the sweep.
GUNICORN_WORKERS = 2
GUNICORN_THREADS = 4


class WaitTimeout(AssertionError):
    """A condition did not come true in time (an AssertionError, so a test reads it as a failure)."""


@dataclass(eq=False)
class Proc:
    """One started process (the leader of its process group) and its log."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """``sig`` to the leader only (rq and gunicorn pass a shutdown on to their children themselves)."""
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def output(self) -> str:
        """Everything the process group wrote so far."""
        return self.log_path.read_text(errors="replace")

    def horse_pid(self) -> int | None:
        """rq's work horse: the child the worker forked into a process group of its own."""
        for child in procfs.all_stats():
            if child.ppid == self.pid and child.pgrp == child.pid:
                return child.pid
        return None

    def kill_hard(self, *, with_horse: bool = True) -> None:
        """SIGKILL the process group (worker and scheduler); with ``with_horse`` rq's work horse too."""
        horse = self.horse_pid() if with_horse else None
        kill_group(self, signal.SIGKILL)
        if horse:
            with contextlib.suppress(ProcessLookupError):
                os.kill(horse, signal.SIGKILL)
        self.popen.wait(10)
        _forget(self)


_procs: set[Proc] = set()
_procs_lock = threading.Lock()


def _forget(proc: Proc) -> None:
    with _procs_lock:
        _procs.discard(proc)


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the thread that started it dies (``PR_SET_PDEATHSIG``)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def start_process(name: str, cmd: list[str], env: dict[str, str], *, log_dir: Path,
                  die_with_parent: bool = False) -> Proc:
    """Start ``cmd`` in the repository root, in its own process group, output to ``<log_dir>/<name>.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as out:
        popen = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent if die_with_parent else None,
        )
    proc = Proc(name=name, popen=popen, log_path=log_path)
    with _procs_lock:
        _procs.add(proc)
    return proc


def kill_group(proc: Proc, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group of ``proc`` (the process and every child it forked)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop_process(proc: Proc, *, timeout: float = 5.0) -> None:
    """SIGTERM the group, wait up to ``timeout``, then SIGKILL it; reap the process."""
    if proc.alive():
        kill_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=timeout)
    kill_group(proc, signal.SIGKILL)  # children (work horses) may outlive the leader
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(timeout=5)
    _forget(proc)


def stop_all() -> None:
    """Stop every process started with :func:`start_process` and not stopped yet."""
    with _procs_lock:
        procs = list(_procs)
    for proc in procs:
        stop_process(proc, timeout=3.0)


def _on_signal(signum, frame) -> None:
    stop_all()
    sys.exit(128 + signum)


def install_cleanup() -> None:
    """Stop all started processes at exit and on SIGTERM/SIGINT/SIGHUP (for a script, not a test run)."""
    atexit.register(stop_all)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the usual small race is acceptable here)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05,
               message: str = "condition") -> None:
    """Poll ``predicate`` until it is true; :class:`WaitTimeout` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        threading.Event().wait(interval)
    raise WaitTimeout(f"timed out after {timeout}s waiting for {message}")


def wait_http(port: int, path: str = "/healthz", *, timeout: float = 30.0, proc: Proc | None = None) -> None:
    """Wait until ``GET path`` answers 200 on 127.0.0.1:``port``; fail early when ``proc`` exits."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited (code {proc.popen.returncode}); see {proc.log_path}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status == 200:
                return
            last = f"HTTP {response.status}"
        except OSError as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise RuntimeError(f"127.0.0.1:{port}{path} did not answer 200 within {timeout} s ({last})")


def start_gunicorn(env: dict[str, str], *, log_dir: Path, name: str = "gunicorn", port: int | None = None,
                   workers: int = GUNICORN_WORKERS, threads: int = GUNICORN_THREADS,
                   die_with_parent: bool = False) -> tuple[Proc, int]:
    """gunicorn serving ``chatbot.wsgi`` on 127.0.0.1 (gthread workers, keep-alive); waits for /healthz."""
    port = port or free_port()
    cmd = [
        PYTHON, "-m", "gunicorn", "chatbot.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
        "--worker-class", "gthread", "--threads", str(threads), "--keep-alive", "30",
        "--backlog", "512", "--log-level", "warning", "--graceful-timeout", "5",
    ]
    proc = start_process(name, cmd, env, log_dir=log_dir, die_with_parent=die_with_parent)
    wait_http(port, proc=proc)
    return proc, port


def start_worker(env: dict[str, str], *, name: str, log_dir: Path, scheduler: bool = True,
                 rq_name: str | None = None, die_with_parent: bool = False) -> Proc:
    """``manage.py rqworker messenger_fast messenger_slow [--with-scheduler] [--name rq_name]``, as ops run it.

    The worker class is the one ``RQ_WORKER_CLASS`` in ``env`` names, else the settings' default.
    Without ``rq_name`` rq names the worker itself (host and pid).
    """
    cmd = [PYTHON, "manage.py", "rqworker", "messenger_fast", "messenger_slow"]
    if rq_name:
        cmd += ["--name", rq_name]
    if scheduler:
        cmd.append("--with-scheduler")
    return start_process(name, cmd, env, log_dir=log_dir, die_with_parent=die_with_parent)


def wait_workers(redis_conn, count: int, *, timeout: float = 30.0, procs: list[Proc] | None = None) -> None:
    """Wait until ``count`` rq workers are registered in Redis; fail early when one of ``procs`` exits."""
    from rq import Worker

    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        for proc in procs or []:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited (code {proc.popen.returncode}); see {proc.log_path}")
        try:
            if Worker.count(connection=redis_conn) >= count:
                return
        except Exception as exc:  # noqa: BLE001 - Redis may be restarting: keep waiting, say why at the end
            last_error = type(exc).__name__
        time.sleep(0.1)
    raise RuntimeError(f"{count} rq workers did not register within {timeout} s {last_error}")
