"""Counting what a piece of work costs: SQL statements, Redis round trips, Graph API calls.

The message-cost test (``tests/messenger/test_message_cost.py``) pins these figures for one message and
``bench/message_cost.py`` prints them with the CPU time; both count the same way, here.

- **SQL**: every statement Django sends on the default connection of every thread (Django's own
  ``execute_wrapper``, installed on each thread's connection as it is first used in the block), as
  ``CaptureQueriesContext`` counts them; and the commits of transactions (each transaction also costs
  PostgreSQL a ``BEGIN`` and a ``COMMIT``, which neither counts as a statement).
- **Redis round trips**: one per ``send_packed_command`` of any redis-py connection, whatever the
  client (the channel's, django-redis's, the metrics'): a single command or a whole pipeline is one
  write followed by its replies. The command names are kept too, so a failing count says which.
  Count on warm connections: a new connection's handshake (``HELLO``, ``SELECT``) counts as well.
- **Graph API calls**: ``responses``' calls, or the fake Graph's counters, read by the caller.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field


@dataclass
class Cost:
    """What a block cost: the SQL statements (in order) and the Redis round trips (their commands)."""

    sql: list[str] = field(default_factory=list)
    redis: list[tuple[str, ...]] = field(default_factory=list)
    commits: int = 0

    @property
    def statements(self) -> int:
        return len(self.sql)

    @property
    def round_trips(self) -> int:
        return len(self.redis)

    def report(self) -> str:
        """The statements and round trips, one a line, for a failing assertion or a bench run."""
        lines = [f"{self.statements} SQL statements, {self.commits} commits:"]
        lines += [f"  {sql[:160]}" for sql in self.sql]
        lines.append(f"{self.round_trips} Redis round trips:")
        lines += [f"  {' '.join(names)}" for names in self.redis]
        return "\n".join(lines)


def _command_names(packed) -> tuple[str, ...]:
    """The command names in a packed RESP write (one for a command, several for a pipeline)."""
    raw = b"".join(bytes(chunk) if not isinstance(chunk, str) else chunk.encode() for chunk in packed)
    names, lines, i = [], raw.split(b"\r\n"), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(b"*") and line[1:].isdigit() and i + 2 < len(lines) and lines[i + 1].startswith(b"$"):
            names.append(lines[i + 2].decode(errors="replace").upper())
            i += 1 + 2 * int(line[1:])
        else:
            i += 1
    return tuple(names)


@contextmanager
def cost_counted() -> Iterator[Cost]:
    """Count the SQL statements and Redis round trips of the block, in every thread (module docstring)."""
    import redis.connection
    from django.db import connections
    from django.db.backends.base.base import BaseDatabaseWrapper

    cost = Cost()
    guard = threading.Lock()
    wrapped: set[int] = set()
    stack = ExitStack()

    def on_sql(execute, sql, params, many, context):
        with guard:
            cost.sql.append(sql)
        return execute(sql, params, many, context)

    def wrap_current_thread() -> None:
        conn = connections["default"]
        if id(conn) not in wrapped:
            with guard:
                wrapped.add(id(conn))
            stack.enter_context(conn.execute_wrapper(on_sql))

    original_send = redis.connection.AbstractConnection.send_packed_command
    original_cursor = BaseDatabaseWrapper.cursor
    original_commit = BaseDatabaseWrapper.commit

    def send_packed_command(self, command, check_health=True):
        names = _command_names(command if isinstance(command, list | tuple) else [command])
        with guard:
            cost.redis.append(names)
        return original_send(self, command, check_health)

    def commit(self):
        if self.alias == "default":
            with guard:
                cost.commits += 1
        return original_commit(self)

    def cursor(self):
        if self.alias == "default":
            wrap_current_thread()
        return original_cursor(self)

    wrap_current_thread()
    redis.connection.AbstractConnection.send_packed_command = send_packed_command
    BaseDatabaseWrapper.cursor = cursor
    BaseDatabaseWrapper.commit = commit
    try:
        yield cost
    finally:
        redis.connection.AbstractConnection.send_packed_command = original_send
        BaseDatabaseWrapper.cursor = original_cursor
        BaseDatabaseWrapper.commit = original_commit
        stack.close()
