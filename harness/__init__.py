"""The harness the benchmarks (``bench/``) and the tests (``tests/``) share.

Not a Django app, and never imported by app code: it sits beside the project and drives it from the
outside, the way production runs it. One module per concern:

- :mod:`harness.processes`: start, signal and stop process groups (gunicorn, ``manage.py
  rqworker``, redis-server), ``PR_SET_PDEATHSIG``, waiting for HTTP, for rq workers, for a condition;
- :mod:`harness.fake_graph`: the one fake Graph API (and OpenAI-compatible chat server) on loopback,
  with the fault modes both users need (latency, HTTP 5xx, hangs) and what it received;
- :mod:`harness.webhooks`: the one body builder, signer and keep-alive poster of webhooks;
- :mod:`harness.stats`: percentiles, by the project's one definition;
- :mod:`harness.resources`: memory and CPU accounting of process groups;
- :mod:`harness.db`, :mod:`harness.redis_db`: PostgreSQL and Redis databases of a run;
- :mod:`harness.procfs`: the one reader of Linux ``/proc/<pid>/stat``.

Importing any of them needs no Django settings (a bench process never sets Django up); what they
borrow from the apps (``messenger.signature``, ``observability.stats``) is plain Python.
"""
