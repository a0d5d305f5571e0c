"""An example partner endpoint: answers the gateway's handshake and verifies every notification.

    python scripts/example_receiver.py --port 9001 [--secret whsec_...]

- Any request carrying a `code` query parameter is the verification handshake: the code goes
  back as plain text.
- Every other request is a notification: it is verified and printed; a bad signature answers
  401. A body (POST, PUT, PATCH) is verified with the `standardwebhooks` package. A GET carries
  no body: its signed payload is the query string exactly as sent, which is not JSON, so the
  package's `verify` (which parses the payload as JSON) cannot take it; `verify_query` checks
  the same signature over the raw query string with the package's `sign`.
- `GET /healthz` answers once it is up.
- `POST /secret` with a `whsec_...` body sets the secret (it is known only once the webhook
  has been created).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

# How far webhook-timestamp may be from this machine's clock (the Standard Webhooks default).
TOLERANCE_SECONDS = 300


def verify_query(secret: str, query: bytes, headers: Mapping[str, str]) -> None:
    """Verify a GET notification: the `webhook-signature` over `id.timestamp.query`, where
    `query` is the raw query string as received (everything after '?', undecoded, in the order
    sent). Raises WebhookVerificationError as `Webhook.verify` does."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("Missing required headers")
    try:
        sent_at = int(stamp)
        text = query.decode("ascii")  # a query string on the wire is ASCII (percent-encoded)
    except ValueError as exc:
        raise WebhookVerificationError("Invalid Signature Headers or query string") from exc
    if abs(time.time() - sent_at) > TOLERANCE_SECONDS:
        raise WebhookVerificationError("Message timestamp too old or too new")
    expected = Webhook(secret).sign(msg_id, datetime.fromtimestamp(sent_at, UTC), text)
    # Several signatures, space-separated, while an old secret still signs beside a new one.
    if not any(
        hmac.compare_digest(expected.encode(), sent.encode()) for sent in signatures.split()
    ):
        raise WebhookVerificationError("No matching signature found")


class Receiver:
    """Holds the secret and handles requests."""

    def __init__(self, secret: str | None, record: str | None = None, delay: float = 0) -> None:
        self.secret = secret
        self.delay = delay
        # One JSON line per verified notification, for tests that count arrivals.
        self.record = open(record, "a", buffering=1) if record else None

    async def set_secret(self, request: Request) -> Response:
        """Set the client secret that notifications are verified with."""
        self.secret = (await request.body()).decode().strip()
        return PlainTextResponse("secret set\n")

    async def hook(self, request: Request) -> Response:
        """Answer a handshake, or verify and print a notification."""
        code = request.query_params.get("code")
        if code is not None:
            print(f"handshake: echoing code for {request.method} {request.url.path}")
            return PlainTextResponse(code)
        body = await request.body()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.secret is None:
            print("notification received, but no secret set yet: POST it to /secret")
            return PlainTextResponse("no secret configured", status_code=503)
        headers = dict(request.headers)
        try:
            if request.method == "GET":
                verify_query(self.secret, request.scope["query_string"], headers)
            else:
                Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as exc:
            print(f"REJECTED {request.headers.get('webhook-id')}: {exc}")
            return PlainTextResponse("bad signature", status_code=401)
        shown = json.loads(body) if body else dict(request.query_params)
        if self.record is not None:
            line = {"webhookId": request.headers["webhook-id"], "payload": shown}
            self.record.write(json.dumps(line) + "\n")
        else:
            print(f"verified {request.headers['webhook-id']}: {json.dumps(shown, indent=2)}")
        return PlainTextResponse("ok")


async def healthz(request: Request) -> Response:
    """Answer once the receiver is up (the Quickstart waits for it)."""
    return PlainTextResponse("ok")


def main() -> None:
    """Run the example receiver."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--secret", help="the webhook's clientSecret (whsec_...)")
    parser.add_argument("--record", help="append verified notifications to this file (JSON lines)")
    parser.add_argument("--delay", type=float, default=0, help="seconds to wait before answering")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # each line at once
    receiver = Receiver(args.secret, args.record, args.delay)
    methods = ["GET", "POST", "PUT", "PATCH"]
    app = Starlette(
        routes=[
            Route("/secret", receiver.set_secret, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/{path:path}", receiver.hook, methods=methods),
        ]
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
