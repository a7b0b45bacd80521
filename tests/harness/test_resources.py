"""Tests for harness/resources.py: CPU and memory accounting of process groups."""

from __future__ import annotations

import sys
import time

from harness.processes import start_process, stop_process, wait_until
from harness.resources import MemorySampler, cpu_delta, cpu_snapshot, tree_cpu_seconds


def test_cpu_snapshot_has_every_category_and_deltas_are_never_negative():
    """Named groups plus postgres, redis-server and this process; a delta of two snapshots is >= 0."""
    before = cpu_snapshot({"nobody": [2**22 + 1]})
    sum(i * i for i in range(200_000))  # some CPU of our own
    after = cpu_snapshot({"nobody": [2**22 + 1]})
    assert set(after) == {"nobody", "postgres", "redis-server", "bench"}
    delta = cpu_delta(before, after)
    assert all(value >= 0 for value in delta.values())
    assert delta["nobody"] == 0


def test_memory_sampler_sees_a_running_group(tmp_path):
    """The sampler sums the resident memory of the groups it watches and counts their processes."""
    proc = start_process("resident", [sys.executable, "-c", "import time; time.sleep(30)"], {}, log_dir=tmp_path)
    try:
        with MemorySampler(lambda: [proc], interval=0.05) as sampler:
            time.sleep(0.3)
        assert sampler.peak_processes == 1
        assert sampler.peak_rss_kb > 1000 and 0 < sampler.peak_pss_kb <= sampler.peak_rss_kb
    finally:
        stop_process(proc, timeout=2)


def test_tree_cpu_seconds_keep_a_child_that_ended(tmp_path):
    """A child's CPU is still counted once it has exited and been reaped (in its parent's reaped time)."""
    burn = ("import subprocess, sys, time; "
            "subprocess.run([sys.executable, '-c', 'import time; t = time.process_time() + 0.3\\n"
            "while time.process_time() < t: pass'], start_new_session=True); "
            "print('done', flush=True); time.sleep(30)")
    proc = start_process("burner", [sys.executable, "-c", burn], {}, log_dir=tmp_path)
    try:
        wait_until(lambda: "done" in proc.output(), timeout=20, message="the child to finish")
        assert tree_cpu_seconds({proc.pid}) >= 0.3
        assert tree_cpu_seconds({2**22 + 1}) == 0
    finally:
        stop_process(proc, timeout=2)
