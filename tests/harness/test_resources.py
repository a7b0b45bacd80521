"""Tests for harness/resources.py: CPU and memory accounting of process groups."""

from __future__ import annotations

import sys
import time

from harness.processes import start_process, stop_process
from harness.resources import MemorySampler, cpu_delta, cpu_snapshot


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
