"""Handshake codes: signed, time-limited, single-use, bound to one webhook (used nonces kept in
a memory:// store here; tests/integration/test_handshake.py shares them between processes),
and the URL that carries them. The exchange itself is in test_handshake.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit
from uuid import UUID, uuid4

import pytest
from itsdangerous import URLSafeTimedSerializer

from gateway.errors import HandshakeFailed
from gateway.handshake import CLOCK_MARGIN, SALT, HandshakeCodes, with_code
from gateway.store import Store, store_for_url
from tests.throwaway import rows


class Clock:
    """A settable clock, so expiry needs no sleeping."""

    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def new_codes(key: str = "key", store: Store | None = None, **kwargs: object) -> HandshakeCodes:
    """Codes whose used nonces go to `store`; without one, to a store never opened, which
    fails if a code reaches it."""
    return HandshakeCodes(key, store or store_for_url("memory://"), **kwargs)  # type: ignore[arg-type]


async def rejects(codes: HandshakeCodes, code: str, webhook_id: UUID, detail: str) -> None:
    with pytest.raises(HandshakeFailed) as caught:
        await codes.verify(code, webhook_id)
    assert caught.value.detail == detail
    assert caught.value.status == 400


async def test_valid_code_passes_once(store: Store) -> None:
    codes = new_codes(store=store)
    hook = uuid4()
    code = codes.issue(hook)
    await codes.verify(code, hook)
    await rejects(codes, code, hook, "code was already used")


def test_every_code_is_different() -> None:
    codes, hook = new_codes(), uuid4()
    assert codes.issue(hook) != codes.issue(hook)


def test_code_is_safe_in_a_query_string() -> None:
    code = new_codes().issue(uuid4())
    assert with_code("http://h/p", code) == f"http://h/p?code={code}"


def flip(code: str, index: int) -> str:
    """The code with one character changed (one that carries signature or payload bits)."""
    return code[:index] + ("A" if code[index] != "A" else "B") + code[index + 1 :]


@pytest.mark.parametrize(
    "forge",
    [
        lambda code: flip(code, -5),  # the signature
        lambda code: flip(code, 3),  # the payload
        lambda code: "x" + code,
        lambda code: code.rsplit(".", 1)[0],  # signature cut off
        lambda code: "",
        lambda code: "not a code",
    ],
)
async def test_forged_or_tampered_code_is_invalid(forge: Callable[[str], str]) -> None:
    codes, hook = new_codes(), uuid4()
    await rejects(codes, forge(codes.issue(hook)), hook, "code signature is invalid")


async def test_code_signed_with_another_key_is_invalid() -> None:
    hook = uuid4()
    await rejects(new_codes("key"), new_codes("other").issue(hook), hook,
                  "code signature is invalid")  # fmt: skip


async def test_code_expires_after_max_age(store: Store) -> None:
    clock = Clock()
    codes, hook = new_codes(store=store, max_age=600, clock=clock), uuid4()
    fresh, stale = codes.issue(hook), codes.issue(hook)
    clock.now += 600
    await codes.verify(fresh, hook)
    clock.now += 1
    await rejects(codes, stale, hook, "code expired")


async def test_a_code_lives_ten_minutes_by_default(store: Store) -> None:
    clock = Clock()
    codes, hook = new_codes(store=store, clock=clock), uuid4()
    fresh, stale = codes.issue(hook), codes.issue(hook)
    clock.now += 600
    await codes.verify(fresh, hook)
    clock.now += 1
    await rejects(codes, stale, hook, "code expired")


@pytest.mark.parametrize(
    "payload",
    [
        lambda hook: {"w": hook},  # no nonce
        lambda hook: {"w": hook, "n": 7},
        lambda hook: [hook, "nonce"],
        lambda hook: None,
    ],
)
async def test_a_code_signed_with_our_key_but_not_one_we_issue_is_invalid(
    payload: Callable[[str], object],
) -> None:
    # Whatever else the key may ever sign under this salt, only our own shape of code passes.
    hook = uuid4()
    forged = URLSafeTimedSerializer("key", salt=SALT).dumps(payload(str(hook)))
    await rejects(new_codes("key"), forged, hook, "code signature is invalid")


async def test_code_for_another_webhook_is_refused() -> None:
    codes = new_codes()
    hook = uuid4()
    code = codes.issue(uuid4())
    await rejects(codes, code, hook, "code was issued for another webhook")


async def test_refused_code_is_not_used_up(store: Store) -> None:
    codes = new_codes(store=store)
    mine, theirs = uuid4(), uuid4()
    code = codes.issue(theirs)
    await rejects(codes, code, mine, "code was issued for another webhook")
    await codes.verify(code, theirs)


async def test_a_used_nonce_is_kept_while_its_code_could_pass_and_then_pruned(
    store: Store,
) -> None:
    clock = Clock()
    codes, hook = HandshakeCodes("key", store, max_age=10, clock=clock), uuid4()
    code = codes.issue(hook)
    clock.now += 5
    await codes.verify(code, hook)
    # Kept for the code's whole life (max_age + 1 s from issue), and a margin for other clocks.
    [(kept,)] = rows(store, "SELECT expires FROM handshake_nonces")
    expires = datetime.fromisoformat(kept)
    assert expires == datetime.fromtimestamp(1_900_000_000 + 10 + 1 + CLOCK_MARGIN, UTC)
    assert await store.prune_handshake_nonces(expires - timedelta(microseconds=1)) == 0
    await rejects(codes, code, hook, "code was already used")
    assert await store.prune_handshake_nonces(expires) == 1
    clock.now += 12
    await rejects(codes, code, hook, "code expired")  # forgotten, and still it cannot pass


@pytest.mark.parametrize(
    ("url", "expected_query"),
    [
        ("https://partner.example/hook", [("code", "C")]),
        ("https://partner.example/hook?tenant=7", [("tenant", "7"), ("code", "C")]),
        ("https://p.example/h?a=1&b=x%20y&flag", [("a", "1"), ("b", "x y"), ("flag", ""),
                                                 ("code", "C")]),
        ("https://p.example/h?code=theirs&a=1", [("a", "1"), ("code", "C")]),
        ("https://p.example/h?", [("code", "C")]),
    ],
)  # fmt: skip
def test_with_code_keeps_existing_parameters(
    url: str, expected_query: list[tuple[str, str]]
) -> None:
    result = urlsplit(with_code(url, "C"))
    assert parse_qsl(result.query, keep_blank_values=True) == expected_query
    assert (result.scheme, result.netloc, result.path) == urlsplit(url)[:3]


def test_with_code_sends_any_code_as_one_query_value() -> None:
    assert with_code("http://h/p?a=1", "a/b&c=d+e f") == "http://h/p?a=1&code=a%2Fb%26c%3Dd%2Be%20f"


def test_with_code_keeps_the_partners_query_byte_for_byte() -> None:
    url = "http://127.0.0.1:8000/cb/?x=a%2Fb&y=%7E#frag"
    assert with_code(url, "C") == "http://127.0.0.1:8000/cb/?x=a%2Fb&y=%7E&code=C#frag"
