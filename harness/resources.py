"""Memory and CPU accounting of process groups, read from Linux ``/proc`` (the benches' figures)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from harness import procfs
from harness.processes import Proc

_TICK = os.sysconf("SC_CLK_TCK")


def _mem_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB of one process; PSS splits pages shared after fork among their sharers."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class MemorySampler:
    """Samples the summed RSS and PSS of some process groups and all their descendants (rq's work
    horses, in groups of their own) every ``interval`` s; keeps the peaks."""

    def __init__(self, procs: Callable[[], list[Proc]], interval: float = 0.1) -> None:
        self.procs = procs
        self.interval = interval
        self.peak_rss_kb = 0
        self.peak_pss_kb = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = [info.pid for info in procfs.tree_members({p.pid for p in self.procs()})]
            rss = pss = 0
            for pid in pids:
                r, p = _mem_kb(pid)
                rss += r
                pss += p
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            self.peak_pss_kb = max(self.peak_pss_kb, pss)
            self.peak_processes = max(self.peak_processes, len(pids))
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def cpu_snapshot(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far, per category: each named group of process-group ids, ``postgres``,
    ``redis-server`` and ``bench`` (this process and its children, e.g. the load generator).

    A group counts its live processes plus what its leaders reaped (rq's work horses, exited
    PostgreSQL backends via the postmaster). Differences of two snapshots give the CPU of an interval;
    processes outside the run (another engineer's tests on the same PostgreSQL) are counted in
    ``postgres`` too, so read that figure as an upper bound.
    """
    pg_to_name = {pg: name for name, pgs in groups.items() for pg in pgs}
    totals = dict.fromkeys([*groups, "postgres", "redis-server", "bench"], 0)
    me = os.getpid()
    for info in procfs.all_stats():
        name = pg_to_name.get(info.pgrp)
        if name is not None:
            totals[name] += info.cpu_ticks + (info.reaped_ticks if info.pid == info.pgrp else 0)
        elif info.comm.startswith("postgres"):
            totals["postgres"] += info.cpu_ticks + info.reaped_ticks
        elif info.comm.startswith("redis-server"):
            totals["redis-server"] += info.cpu_ticks
        elif info.pid == me:
            totals["bench"] += info.cpu_ticks + info.reaped_ticks
    return {k: v / _TICK for k, v in totals.items()}


def tree_cpu_seconds(pgids: set[int]) -> float:
    """CPU seconds (user + system) used so far by the process groups ``pgids`` and their descendants,
    counting each process's own time plus what it reaped: a child that ended is counted once, in its
    parent's, and a live one in its own. The difference of two readings is the CPU of an interval."""
    ticks = sum(info.cpu_ticks + info.reaped_ticks for info in procfs.tree_members(pgids))
    return ticks / _TICK


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The CPU seconds of each category between two :func:`cpu_snapshot` calls."""
    return {k: max(0.0, after.get(k, 0.0) - before.get(k, 0.0)) for k in after}
