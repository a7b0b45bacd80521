"""The one reader of Linux ``/proc/<pid>/stat``: process tables for process control and accounting.

``stat`` is ``pid (comm) state ppid pgrp ... utime stime cutime cstime ...``; ``comm`` may hold
spaces and parentheses, so the fields are split after the *last* ``)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    ppid: int
    pgrp: int
    cpu_ticks: int  # utime + stime of the process itself
    reaped_ticks: int  # cutime + cstime: children it waited for


def proc_stat(pid: int) -> ProcStat | None:
    """The stat line of ``pid``; ``None`` when the process is gone (or not readable)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    comm = stat[stat.find("(") + 1 : stat.rfind(")")]
    fields = stat[stat.rfind(")") + 2 :].split()
    # fields[0] is stat field 3 (state): ppid=4, pgrp=5, utime=14, stime=15, cutime=16, cstime=17.
    return ProcStat(
        pid=pid,
        comm=comm,
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
        reaped_ticks=int(fields[13]) + int(fields[14]),
    )


def all_stats() -> Iterator[ProcStat]:
    """Every process readable right now."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = proc_stat(int(entry))
            if info is not None:
                yield info


def group_members(pgids: set[int]) -> list[int]:
    """The pids of every process in the process groups ``pgids``."""
    return [info.pid for info in all_stats() if info.pgrp in pgids]


def tree_members(pgids: set[int]) -> list[ProcStat]:
    """Every process in the process groups ``pgids`` and every descendant of one, wherever its group.

    rq's work horses call ``setpgrp`` (a group of their own), so a worker's footprint is its tree, not
    its group.
    """
    stats = list(all_stats())
    children: dict[int, list[ProcStat]] = {}
    for info in stats:
        children.setdefault(info.ppid, []).append(info)
    found = {info.pid: info for info in stats if info.pgrp in pgids}
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child.pid not in found:
                found[child.pid] = child
                todo.append(child.pid)
    return list(found.values())
