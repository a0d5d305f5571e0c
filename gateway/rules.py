"""Managing webhook rules: creating and changing one as an owner asks, with the checks every
caller makes (the webhook is the group's; with the catalogue enforced, the event type is
declared), callable without HTTP: the API and the portal both use them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

from gateway.errors import ValidationError
from gateway.models import WebhookRule

if TYPE_CHECKING:
    from gateway.catalogue import Catalogue
    from gateway.config import Settings
    from gateway.schemas import RuleCreate, RuleFields, RulePatch
    from gateway.store import Store


@dataclass(frozen=True, slots=True)
class Rules:
    """A group's rules as one of its users (an API key, a portal link) changes them."""

    settings: Settings
    store: Store
    catalogue: Catalogue

    async def new(
        self, group_key: UUID, user_id: UUID, spec: RuleFields, webhook_id: UUID, now: datetime,
        *, where: str,
    ) -> WebhookRule:  # fmt: skip
        """The rule a create asks for, of this webhook (one of the group's, or one its create
        is making), not yet stored; with enforcement on, its event type must be declared (a
        400 naming `where` + eventType)."""
        if self.settings.enforce_event_types:
            field = f"{where}eventType"
            await self.catalogue.check_declared(group_key, spec.table_key, spec.event_type, field)
        return WebhookRule(
            webhook_id=webhook_id,
            table_key=spec.table_key,
            event_type=spec.event_type,
            filter=spec.filter or None,
            webhook_rule_id=uuid4(),
            group_key=group_key,
            created=now,
            created_user_id=user_id,
            modified=now,
            modified_user_id=user_id,
        )

    async def create(
        self, group_key: UUID, user_id: UUID, specs: Sequence[RuleCreate], now: datetime
    ) -> list[WebhookRule]:
        """Store new rules, all or none, each of a webhook of the group (else a 400 naming
        "[i].webhookId", worded as for one that never existed)."""
        rules = []
        for i, spec in enumerate(specs):
            if await self.store.get_webhook(group_key, spec.webhook_id) is None:
                raise ValidationError.field(f"[{i}].webhookId", f"no webhook {spec.webhook_id}")
            rules.append(
                await self.new(group_key, user_id, spec, spec.webhook_id, now, where=f"[{i}].")
            )
        await self.store.add_rules(rules)
        return rules

    async def update(
        self, rule: WebhookRule, user_id: UUID, spec: RulePatch, given: set[str], now: datetime
    ) -> WebhookRule | None:
        """The rule with the properties `given` (attribute names) changed to the PATCH's, and
        stored; None if it is gone. An empty filter is none; with enforcement on, a changed
        table or event type must be declared (a 400 naming eventType)."""
        changes = {name: getattr(spec, name) for name in given}
        if "filter" in changes:
            changes["filter"] = spec.filter or None
        changed = dataclasses.replace(rule, **changes, modified=now, modified_user_id=user_id)
        if self.settings.enforce_event_types and {"table_key", "event_type"} & given:
            await self.catalogue.check_declared(
                rule.group_key, changed.table_key, changed.event_type, "eventType"
            )
        return changed if await self.store.update_rule(changed) else None
