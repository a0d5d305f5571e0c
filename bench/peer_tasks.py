"""The Celery peer's worker side (bench/peer_celery.py starts it): one task per notification,
which signs the body (Standard Webhooks v1, as the gateway signs) and posts it with httpx.

    celery -A bench.peer_tasks -b redis://127.0.0.1:6379/0 worker -P threads -c 32 -Q <queue>

Written as a Python team would write it by hand, and tuned as a competent one would: late
acknowledgement (a notification is taken off the queue only once posted, so a worker that dies
mid-send loses nothing), no result backend, non-2xx raised so Celery retries with backoff, and
one pooled httpx.Client per worker thread (why: `_client`). It imports nothing of the gateway:
this is the peer, not the product. The run's key prefix and signing secret come from the
environment the driver starts it with (PEER_CELERY_PREFIX, PEER_CELERY_SECRET).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
from typing import Any

import httpx
from celery import Celery

SECRET = base64.b64decode(os.environ.get("PEER_CELERY_SECRET", "whsec_")[len("whsec_") :])
TIMEOUT = 30.0
app = Celery("peer")
app.conf.update(
    # Every key of the run (its queue, kombu's unacked hash and bindings, the pidbox) under
    # one prefix: runs sharing a Redis database never meet, and cleanup deletes the prefix.
    broker_transport_options={"global_keyprefix": os.environ.get("PEER_CELERY_PREFIX", "")},
    broker_connection_retry_on_startup=True,
    task_acks_late=True,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)
# One TLS context for every thread's client: making one loads the CA bundle (25 ms of CPU
# here), which 32 clients would otherwise each pay. https is not used on loopback, but
# httpx.Client makes its context when it is made.
TLS = httpx.create_ssl_context()
_local = threading.local()


def _client() -> httpx.Client:
    """This thread's client. One per thread rather than one shared by the 32: a shared client's
    pool is one lock and one list of connections that every thread scans on every request
    (httpcore), the contention that slows httpx's pooled client as more are in flight
    (gateway/outbound.py); a client per thread keeps its one connection alive, uncontended."""
    client: httpx.Client | None = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(verify=TLS, timeout=TIMEOUT)
    return client


def signed_headers(msg_id: str, payload: bytes) -> dict[str, str]:
    """Standard Webhooks v1 headers, signed now: a retry hours later needs a fresh timestamp."""
    stamp = str(int(time.time()))
    mac = hmac.new(SECRET, f"{msg_id}.{stamp}.".encode() + payload, hashlib.sha256)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode(),
        "content-type": "application/json",
    }


def _deliver(url: str, msg_id: str, body: str) -> None:
    payload = body.encode()
    _client().post(url, content=payload, headers=signed_headers(msg_id, payload)).raise_for_status()


# Transport errors and non-2xx answers (HTTPStatusError) are retried, 5 times, with backoff.
deliver: Any = app.task(
    name="peer.deliver",
    autoretry_for=(httpx.HTTPError,),
    retry_backoff=True,
    max_retries=5,
)(_deliver)
