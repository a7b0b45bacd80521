"""Tests for harness/procfs.py: the one reader of /proc/<pid>/stat."""

from __future__ import annotations

import os
import signal
import sys

from harness import procfs
from harness.processes import start_process, stop_process, wait_until


def test_proc_stat_reads_this_process():
    """Our own stat line: pid, parent, process group and a non-negative CPU count."""
    info = procfs.proc_stat(os.getpid())
    assert (info.pid, info.ppid, info.pgrp) == (os.getpid(), os.getppid(), os.getpgid(0))
    assert info.cpu_ticks >= 0 and info.comm


def test_proc_stat_of_a_gone_process_is_none():
    """A pid that does not exist reads as None, not an error (processes come and go while we read)."""
    assert procfs.proc_stat(2**22 + 12345) is None


def test_all_stats_and_group_members_find_a_started_process(tmp_path):
    """A child started in its own group is listed as our child and is the only member of its group."""
    proc = start_process("child", [sys.executable, "-c", "import time; time.sleep(30)"], {}, log_dir=tmp_path)
    try:
        assert any(info.pid == proc.pid and info.ppid == os.getpid() for info in procfs.all_stats())
        assert procfs.group_members({proc.pid}) == [proc.pid]
    finally:
        stop_process(proc, timeout=2)


def test_tree_members_include_a_descendant_in_a_session_of_its_own(tmp_path):
    """A grandchild in a group of its own (rq's work horse calls setpgrp) is outside the group but in the tree."""
    spawn = ("import subprocess, sys, time; "
             "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'], start_new_session=True); "
             "print(c.pid, flush=True); time.sleep(30)")
    proc = start_process("parent", [sys.executable, "-c", spawn], {}, log_dir=tmp_path)
    grandchild = 0
    try:
        wait_until(lambda: proc.output().strip(), timeout=10, message="the grandchild's pid")
        grandchild = int(proc.output().split()[0])
        assert procfs.group_members({proc.pid}) == [proc.pid]
        assert sorted(info.pid for info in procfs.tree_members({proc.pid})) == sorted([proc.pid, grandchild])
    finally:
        stop_process(proc, timeout=2)
        if grandchild:
            os.kill(grandchild, signal.SIGKILL)
