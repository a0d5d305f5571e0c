"""What each signature scheme costs a request, in process: the signing step alone.

    python -m bench.signing [--signatures 20000] [--rounds 5] [--quick]

For each scheme (gateway.signing) it times `signer_for(hook).headers(...)`, the call the
sender makes for every delivery and test send, over a typical 300-byte body and a 10 KB one,
with one secret (or key) signing; and once more with two, as during a secret rotation. Each
figure is the best of `--rounds` runs of `--signatures` signatures; the baseline is
StandardWebhooks (v1) at the same size, timed in the same run, rounds interleaved so that a
change of the machine's speed falls on every scheme alike. No targets: these explain what a
scheme adds to S1's CPU per notification, they are not among the scenarios.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta

from bench.common import Report
from gateway import signing
from gateway.models import SignatureScheme, Webhook
from tests.factories import make_webhook

SIZES = {"300 B": 300, "10 KB": 10 * 1024}
TIMESTAMP = 1_700_000_000
GRACE = datetime.fromtimestamp(TIMESTAMP, UTC)  # when the rows signing with 2 secrets sign


def body(size: int) -> bytes:
    """A notification body of about `size` bytes, shaped like the ones the gateway sends."""
    records: list[dict[str, object]] = []
    total = 0
    while total < size:
        record = {"id": str(len(records)), "total": 10 * len(records), "note": "x" * 40}
        records.append(record)
        total += len(json.dumps(record)) + 1
    envelope = {"tableKey": "Invoice", "eventType": "U", "records": records}
    return json.dumps(envelope, separators=(",", ":")).encode()[:size]


def webhook(scheme: SignatureScheme) -> Webhook:
    """A webhook of this scheme with what the API stores beside it (its key pair, its header),
    and a previous secret and key for the rotation rows."""
    hook = make_webhook(
        signature_scheme=scheme,
        previous_secret=signing.generate_secret(),
        previous_secret_expires=GRACE + timedelta(hours=1),
    )
    fields = signing.scheme_fields(scheme, None)
    fields["previous_signing_key"] = signing.generate_key_pair()[0]
    return dataclasses.replace(hook, **fields)


def seconds_each(hook: Webhook, payload: bytes, secrets: list[str], count: int) -> float:
    """Seconds per signature over `count` signatures of `payload`."""
    start = time.perf_counter()
    for i in range(count):
        signing.signer_for(hook).headers(secrets, f"msg_{i}", TIMESTAMP, payload)
    return (time.perf_counter() - start) / count


def measure(args: argparse.Namespace) -> dict[tuple[str, str, int], float]:
    """Best seconds per signature by (scheme, size label, secrets signing)."""
    hooks = {scheme: webhook(scheme) for scheme in SignatureScheme}
    best: dict[tuple[str, str, int], float] = {}
    for _ in range(args.rounds):
        for label, size in SIZES.items():
            payload = body(size)
            for scheme, hook in hooks.items():
                secrets = signing.signing_secrets(hook, GRACE)
                for signers in (1, 2):
                    took = seconds_each(hook, payload, secrets[:signers], args.signatures)
                    key = (scheme.value, label, signers)
                    best[key] = min(best.get(key, took), took)
    return best


def main(args: argparse.Namespace) -> None:
    report = Report(
        f"Signing cost per request, in process, best of {args.rounds} x {args.signatures:,}"
    )
    best = measure(args)
    us = 1e6
    for (scheme, label, signers), seconds in best.items():
        base = best[(SignatureScheme.STANDARD_WEBHOOKS.value, label, signers)]
        rotation = ", 2 secrets (rotation)" if signers == 2 else ""
        report.add(
            f"{scheme}, {label}{rotation}",
            f"{seconds * us:.2f} µs/signature",
            f"StandardWebhooks {base * us:.2f} µs",
            f"{seconds / base:.2f}x",
        )
    report.print()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signatures", type=int, default=20_000, help="signatures per run")
    parser.add_argument("--rounds", type=int, default=5, help="runs; the best is kept")
    parser.add_argument("--quick", action="store_true", help="2,000 signatures, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.signatures, args.rounds = 2_000, 2
    return args


if __name__ == "__main__":
    main(parse_args())
