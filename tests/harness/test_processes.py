"""Tests for harness/processes.py: process groups started, signalled and stopped, and the waits."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from harness import processes
from harness.processes import WaitTimeout, start_process, stop_process, wait_until


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_started_process_writes_to_its_log_and_is_reaped(tmp_path):
    """Output goes to ``<log_dir>/<name>.log``; a finished process is no longer alive."""
    proc = start_process("hello", _python("print('hello from the child')"), {}, log_dir=tmp_path)
    assert proc.wait(10) == 0
    assert not proc.alive()
    assert proc.log_path == tmp_path / "hello.log"
    assert "hello from the child" in proc.output()
    stop_process(proc)


def test_process_runs_in_a_group_of_its_own(tmp_path):
    """The leader's process group is its own pid, so a signal to the group spares the caller."""
    proc = start_process("sleeper", _python("import time; time.sleep(30)"), {}, log_dir=tmp_path)
    try:
        assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
    finally:
        stop_process(proc, timeout=2)
    assert not proc.alive()


def test_stop_process_kills_what_ignores_sigterm(tmp_path):
    """SIGTERM first; a process that ignores it is SIGKILLed after the timeout."""
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
        "time.sleep(30)"
    )
    proc = start_process("stubborn", _python(code), {}, log_dir=tmp_path)
    wait_until(lambda: "ready" in proc.output(), 10, message="the child to ignore SIGTERM")
    stop_process(proc, timeout=0.5)
    assert proc.popen.returncode == -signal.SIGKILL


def test_kill_hard_sigkills_the_group(tmp_path):
    """kill_hard is SIGKILL at once, for the leader and its group."""
    proc = start_process("victim", _python("import time; time.sleep(30)"), {}, log_dir=tmp_path)
    proc.kill_hard(with_horse=False)
    assert proc.popen.returncode == -signal.SIGKILL


def test_stop_all_stops_every_registered_process(tmp_path):
    """What install_cleanup runs at exit: nothing started is left running."""
    started = [start_process(f"s{i}", _python("import time; time.sleep(30)"), {}, log_dir=tmp_path) for i in range(2)]
    processes.stop_all()
    assert not any(proc.alive() for proc in started)


def test_wait_until_fails_like_an_assertion():
    """A condition that never comes true is a WaitTimeout, which a test reports as a failure."""
    with pytest.raises(AssertionError, match="waiting for the impossible"):
        wait_until(lambda: False, 0.1, message="the impossible")
    assert issubclass(WaitTimeout, AssertionError)


def test_wait_http_fails_early_when_the_server_died(tmp_path):
    """A server that exits is reported at once with its log, not after the whole timeout."""
    proc = start_process("dead", _python("raise SystemExit(3)"), {}, log_dir=tmp_path)
    proc.wait(10)
    with pytest.raises(RuntimeError, match="dead exited"):
        processes.wait_http(processes.free_port(), timeout=10, proc=proc)
