"""What the operators' console reads, written by the paths that change things: the change log
(`ChangeItem`, docs/operator-api.md "changes": whatever changes a box, an alarm or a command
writes one row keyed by its organisation and the minute it happened, event time, read back by
the console's poll; rows live a day) and the organisation's alarm log (`OrgAlarmItem`). Here, not
in `ops`, so that the alarm paths do not load the operator API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from boxwatch.models import BoxItem, ChangeItem, OrgAlarmItem, month_of
from boxwatch.settings import Settings

if TYPE_CHECKING:
    from pynamodb.transactions import TransactWrite

CHANGE_TTL_S = 86_400


def change_item(org: str, type_: str, id_: str, at_ms: int, entity: dict[str, Any] | None = None) -> ChangeItem:
    return ChangeItem(*ChangeItem.key(org, at_ms, type_, id_), type=type_, id=id_, at=at_ms, entity=entity,
                      expires_at=at_ms // 1000 + CHANGE_TTL_S)


def record_change(org: str, type_: str, id_: str, at_ms: int, entity: dict[str, Any] | None = None) -> ChangeItem:
    item = change_item(org, type_, id_, at_ms, entity)
    item.save()
    return item


def note_alarm(box: BoxItem, alarm_id: str | None, at_ms: int, settings: Settings) -> None:
    """An alarm's life changed outside an alarm log's transaction (a clear, a third alarm): its
    organisation lists the alarm (a pointer keyed by the alarm) and the change log shows it as it is
    now (one GetItem). A retry rewrites the same items."""
    from boxwatch.alarm_life import alarm_view, get_life

    if alarm_id is None:
        return
    org = box.org or "default"
    life = get_life(box.box_id, alarm_id)
    if life is None:
        return
    org_alarm_item(org, box.box_id, alarm_id, life.cause, settings).save()
    record_change(org, "alarm", f"{box.box_id}/{alarm_id}", at_ms, alarm_view(life))
    record_change(org, "box", box.box_id, at_ms)


def org_alarm_item(org: str, box_id: str, alarm_id: str, cause: str, settings: Settings) -> OrgAlarmItem:
    first_at = int(alarm_id[:13])  # an alarm id begins with its first receive time (alarm_life)
    return OrgAlarmItem(*OrgAlarmItem.key(org, month_of(first_at), alarm_id, box_id), alarm_id=alarm_id,
                        box_id=box_id, cause=cause,
                        expires_at=first_at // 1000 + settings.alarm_retention_days * 86_400)


def add_alarm_to_transaction(tx: TransactWrite, box: BoxItem, alarm_id: str, cause: str,
                             view: dict[str, Any] | None, at_ms: int, settings: Settings) -> None:
    """The operators' side of an alarm log, in its transaction (no request more): the org's pointer
    when the alarm opens, and the change log's alarm and box rows. A joined alarm's row carries no
    entity: `changes` reads its life as it is then."""
    org = box.org or "default"
    if view is not None:
        tx.save(org_alarm_item(org, box.box_id, alarm_id, cause, settings))
    tx.save(change_item(org, "alarm", f"{box.box_id}/{alarm_id}", at_ms, view))
    tx.save(change_item(org, "box", box.box_id, at_ms))
