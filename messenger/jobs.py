"""rq jobs of the Messenger channel: thin adapters that take ids and call one service.

Jobs are idempotent (rq's advice): running ``process_inbound`` twice for the same message sends
nothing twice, because the pipeline records each part it sends (see ``messenger.delivery``).
"""

from __future__ import annotations

import os

from rq import get_current_job

from messenger.pipeline import sender_drain
from messenger.staff_reply import staff_reply_send


def process_inbound(inbound_id: int) -> str:
    """Answer inbound message ``inbound_id`` (and its sender's other open messages, in order)."""
    # rq sets RQ_WORKER_ID in the work horse; the worker puts back what its horse left unfinished.
    job = get_current_job()
    worker_name = os.environ.get("RQ_WORKER_ID") or getattr(job, "worker_name", "") or f"pid-{os.getpid()}"
    return sender_drain(inbound_id=inbound_id, worker_name=worker_name)


def send_staff_reply(staff_reply_id: int) -> str:
    """Send one staff reply written in the admin (``messenger.staff_reply``)."""
    return staff_reply_send(staff_reply_id=staff_reply_id)
