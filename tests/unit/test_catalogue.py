"""The event-type catalogue as enforced (gateway.catalogue): which schemas may be saved, what a
refused publish names, and how long a process keeps a group's catalogue."""

from __future__ import annotations

import dataclasses
from typing import Any, cast
from uuid import UUID, uuid4

import pytest

from gateway import catalogue, config
from gateway.catalogue import Catalogue, schema_problem
from gateway.errors import ValidationError
from gateway.models import EventType, EventTypeDefinition
from gateway.store import Store
from tests.factories import T0, make_event, make_event_type

INVOICE = {
    "type": "object",
    "required": ["id", "total"],
    "properties": {
        "id": {"type": "string"},
        "total": {"type": "integer", "minimum": 0},
        "lines": {"type": "array", "items": {"type": "object", "required": ["sku"]}},
        "a/b~c": {"type": "string"},
    },
}


class FakeStore:
    """The one store call a Catalogue makes, counting the reads."""

    def __init__(self) -> None:
        self.entries: list[EventTypeDefinition] = []
        self.reads = 0

    async def event_types_of_group(self, group_key: UUID) -> list[EventTypeDefinition]:
        self.reads += 1
        return [e for e in self.entries if e.group_key == group_key]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


GROUP = uuid4()


@pytest.fixture
def fake() -> FakeStore:
    return FakeStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cat(fake: FakeStore, clock: Clock) -> Catalogue:
    return Catalogue(cast(Store, fake), ttl=5.0, clock=clock)


# -- Saving a schema ---------------------------------------------------------------------------
def test_a_valid_schema_of_any_draft_can_be_saved() -> None:
    assert schema_problem(INVOICE) is None
    assert schema_problem({}) is None
    for draft in sorted(catalogue.DRAFTS):
        assert schema_problem({"$schema": draft + "#", "type": "object"}) is None, draft


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": 5}, "at /type"),
        ({"properties": {"total": {"minimum": "zero"}}}, "at /properties/total/minimum"),
        ({"required": "id"}, "at /required"),
        ({"type": "object", "pattern": "("}, "cannot be used"),
        ({"$ref": "https://example.com/invoice.json"}, "cannot be used"),
        ({"$ref": "#/$defs/missing"}, "cannot be used"),
        # Its meta-schema would be fetched: never.
        ({"$schema": "http://127.0.0.1:9/meta"}, "a draft the gateway does not know"),
        ({"$schema": 4}, "a draft the gateway does not know"),
    ],
)
def test_an_invalid_schema_is_refused_naming_the_problem(schema: Any, named: str) -> None:
    problem = schema_problem(schema)
    assert problem is not None and named in problem, problem


def test_a_schema_too_large_or_too_deep_is_refused() -> None:
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(catalogue.MAX_SCHEMA_DEPTH):
        inner["not"] = {}
        inner = inner["not"]
    assert "nest" in (schema_problem(deep) or "")
    large = {"description": "x" * catalogue.MAX_SCHEMA_BYTES}
    assert "bytes" in (schema_problem(large) or "")


# -- Enforcing ---------------------------------------------------------------------------------
async def test_declared_events_whose_records_pass_are_let_through(
    fake: FakeStore, cat: Catalogue
) -> None:
    fake.entries = [make_event_type(GROUP, record_schema=INVOICE)]
    event = make_event(GROUP, records=({"id": "1", "total": 3}, {"id": "2", "total": 0}))
    await cat.check_events(GROUP, [event])


async def test_a_refusal_names_the_event_the_record_and_the_path(
    fake: FakeStore, cat: Catalogue
) -> None:
    fake.entries = [make_event_type(GROUP, record_schema=INVOICE)]
    good = make_event(GROUP, records=({"id": "1", "total": 1},))
    bad = make_event(
        GROUP,
        records=(
            {"id": "1", "total": 1},
            {"id": "2", "total": -1},
            {"id": "3", "total": 1, "lines": [{"sku": "a"}, {}]},
            {"id": "4", "total": 1, "a/b~c": 7},
            {"id": "5"},
        ),
    )
    with pytest.raises(ValidationError) as caught:
        await cat.check_events(GROUP, [good, bad])
    errors = caught.value.errors
    assert set(errors) == {
        "[1].records[1]", "[1].records[2]", "[1].records[3]", "[1].records[4]"
    }  # fmt: skip
    assert "Invoice.U at /total:" in errors["[1].records[1]"][0]
    assert " at /lines/1:" in errors["[1].records[2]"][0]
    assert " at /a~1b~0c:" in errors["[1].records[3]"][0]
    # The record itself fails (a required property is missing): no path is named.
    assert errors["[1].records[4]"][0].startswith("fails the schema of Invoice.U: ")
    assert "[1].records[1]: fails the schema" in caught.value.detail


async def test_an_undeclared_event_is_refused_by_its_index(fake: FakeStore, cat: Catalogue) -> None:
    fake.entries = [make_event_type(GROUP)]  # Invoice.U, no schema: any record passes
    events = [make_event(GROUP), make_event(GROUP, event_type=EventType.DELETE)]
    with pytest.raises(ValidationError) as caught:
        await cat.check_events(GROUP, events)
    assert list(caught.value.errors) == ["[1].eventType"]
    assert "Invoice.D is not a declared event type" in caught.value.errors["[1].eventType"][0]
    # Another group's declaration declares nothing here.
    with pytest.raises(ValidationError):
        await cat.check_events(uuid4(), [make_event()])


async def test_a_refusal_names_at_most_a_few(fake: FakeStore, cat: Catalogue) -> None:
    fake.entries = [make_event_type(GROUP, record_schema=INVOICE)]
    event = make_event(GROUP, records=tuple({"id": str(i)} for i in range(50)))
    with pytest.raises(ValidationError) as caught:
        await cat.check_events(GROUP, [event] * 3)
    assert len(caught.value.errors) == catalogue.MAX_NAMED
    assert f"only the first {catalogue.MAX_NAMED}" in caught.value.detail


async def test_check_declared_names_the_field(fake: FakeStore, cat: Catalogue) -> None:
    fake.entries = [make_event_type(GROUP)]
    await cat.check_declared(GROUP, "Invoice", EventType.UPDATE, "[0].eventType")
    with pytest.raises(ValidationError) as caught:
        await cat.check_declared(GROUP, "invoice", EventType.UPDATE, "[2].eventType")
    assert list(caught.value.errors) == ["[2].eventType"]


# -- Freshness ---------------------------------------------------------------------------------
async def test_a_groups_catalogue_is_read_again_after_the_ttl(
    fake: FakeStore, cat: Catalogue, clock: Clock
) -> None:
    assert await cat.declared(GROUP) == {}
    fake.entries = [make_event_type(GROUP)]  # declared through another process
    clock.now += 4.9
    assert await cat.declared(GROUP) == {}  # still the copy read before
    clock.now += 0.2
    assert set(await cat.declared(GROUP)) == {("Invoice", EventType.UPDATE)}
    assert fake.reads == 2


async def test_forget_makes_a_change_through_this_process_seen_at_once(
    fake: FakeStore, cat: Catalogue
) -> None:
    assert await cat.declared(GROUP) == {}
    fake.entries = [make_event_type(GROUP)]
    cat.forget(GROUP)
    assert set(await cat.declared(GROUP)) == {("Invoice", EventType.UPDATE)}


async def test_a_schema_is_compiled_once_until_its_type_changes(
    fake: FakeStore, cat: Catalogue, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[Any] = []
    compile_schema = catalogue.compile_schema

    def counting(schema: dict[str, Any]) -> Any:
        compiled.append(schema)
        return compile_schema(schema)

    monkeypatch.setattr(catalogue, "compile_schema", counting)
    entry = make_event_type(GROUP, record_schema=INVOICE, modified=T0)
    fake.entries = [entry]
    first = (await cat.declared(GROUP))[("Invoice", EventType.UPDATE)].validator
    clock.now += 10
    again = (await cat.declared(GROUP))[("Invoice", EventType.UPDATE)].validator
    assert again is first and len(compiled) == 1
    changed = {**INVOICE, "required": ["id"]}
    later = T0.replace(second=1)
    fake.entries = [dataclasses.replace(entry, record_schema=changed, modified=later)]
    cat.forget(GROUP)
    now = (await cat.declared(GROUP))[("Invoice", EventType.UPDATE)].validator
    assert now is not first and compiled == [INVOICE, changed]
    assert now is not None and now.is_valid({"id": "1"})


def test_enforcement_is_a_setting_off_by_default() -> None:
    assert not config.Settings().enforce_event_types
    assert config.load(env={"GATEWAY_ENFORCE_EVENT_TYPES": "true"}).enforce_event_types
