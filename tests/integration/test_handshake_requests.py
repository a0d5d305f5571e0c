"""The handshake's request and what of the answer it reads, against a real receiver on loopback:
a GET announces no body, only the first 4 KiB of an answer are judged, and a group's
handshakes wait for that group's outbound slots without holding up other groups.
"""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from gateway.errors import HandshakeFailed
from gateway.handshake import HandshakeCodes, verify_callback
from gateway.outbound import Outbound
from tests.integration.conftest import LOOPBACK
from tests.receiver import Answer, Receiver

MAX_BODY = 4096  # contract §4: "at most a few KiB of the body is read"


async def test_a_get_handshake_announces_no_body(
    outbound: Outbound, codes: HandshakeCodes, receiver: Receiver
) -> None:
    # RFC 9110 §8.6: no Content-Length on a request without content whose method gives a body
    # no meaning; some servers refuse a GET that announces one.
    await verify_callback(outbound, codes, uuid4(), "GET", receiver.plan("/hook"))
    [seen] = receiver.seen
    announced = {"content-length", "content-type", "transfer-encoding"} & set(seen.headers)
    assert (seen.method, seen.body, announced) == ("GET", b"", set())


def padded(code: str, length: int, tail: str) -> str:
    """The code, spaces up to `length` characters, then `tail`."""
    return code.ljust(length) + tail


async def test_what_follows_the_first_4_kib_of_the_answer_is_never_read(
    outbound: Outbound, codes: HandshakeCodes, receiver: Receiver
) -> None:
    url = receiver.plan("/hook", Answer(echo=lambda code: padded(code, MAX_BODY, "not read")))
    await verify_callback(outbound, codes, uuid4(), "POST", url)


async def test_within_the_first_4_kib_anything_but_the_code_fails(
    outbound: Outbound, codes: HandshakeCodes, receiver: Receiver
) -> None:
    url = receiver.plan("/hook", Answer(echo=lambda code: padded(code, MAX_BODY - 1, "x")))
    with pytest.raises(HandshakeFailed, match=r"^body did not match the code$"):
        await verify_callback(outbound, codes, uuid4(), "POST", url)


async def test_a_groups_handshakes_wait_for_its_slots_and_other_groups_do_not(
    codes: HandshakeCodes, receiver: Receiver
) -> None:
    group, other = uuid4(), uuid4()
    slow = receiver.plan("/slow", Answer(delay=1))
    async with Outbound(policy=LOOPBACK, per_group=1) as capped:
        results = await asyncio.gather(
            verify_callback(capped, codes, uuid4(), "POST", slow, group=group, timeout=5),
            verify_callback(capped, codes, uuid4(), "POST", receiver.plan("/same"),
                            group=group, timeout=0.3),
            verify_callback(capped, codes, uuid4(), "POST", receiver.plan("/other"),
                            group=other, timeout=0.3),
            return_exceptions=True,
        )  # fmt: skip
    passed_late, busy, passed = results
    assert passed_late is None and passed is None
    assert isinstance(busy, HandshakeFailed)
    assert "waiting for one of this group's 1 outbound request slots" in busy.detail
    assert sorted(s.path for s in receiver.seen) == ["/other", "/slow"]
