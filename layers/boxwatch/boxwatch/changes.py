"""The operators' change log (`ChangeItem`, docs/operator-api.md "changes"): whatever changes a
box, an alarm or a command writes one row keyed by its organisation and the minute it happened
(event time), read back by the console's poll. Rows live a day."""

from __future__ import annotations

from typing import Any

from boxwatch.models import ChangeItem

CHANGE_TTL_S = 86_400


def change_item(org: str, type_: str, id_: str, at_ms: int, entity: dict[str, Any] | None = None) -> ChangeItem:
    return ChangeItem(*ChangeItem.key(org, at_ms, type_, id_), type=type_, id=id_, at=at_ms, entity=entity,
                      expires_at=at_ms // 1000 + CHANGE_TTL_S)


def record_change(org: str, type_: str, id_: str, at_ms: int, entity: dict[str, Any] | None = None) -> ChangeItem:
    item = change_item(org, type_, id_, at_ms, entity)
    item.save()
    return item
