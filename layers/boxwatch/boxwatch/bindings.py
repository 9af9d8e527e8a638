"""A box and the clients bound to it, as every path that tells someone reads them (alarms,
network status, power-off, the phones' views): reads only. Registering and binding, with their
validation, is `boxwatch.registry`."""

from __future__ import annotations

from typing import Any

from boxwatch.errors import Forbidden, NotFound, UnknownBox
from boxwatch.models import BindingItem, BoxItem


def get_box(box_id: str) -> BoxItem:
    try:
        return BoxItem.get(box_id)
    except BoxItem.DoesNotExist:
        raise UnknownBox(f"box {box_id!r} is not registered", box=box_id) from None


# A box's bindings as copied onto its alarm's cell entry (AlarmCellEntry.clients), for the
# nearby_update of later neighbours: one list per binding; entries of an older version hold the
# first four fields only.
SNAPSHOT_FIELDS = ("client_id", "target", "target_kind", "locale", "sms", "topic", "role")


def snapshot_of(binding: BindingItem) -> list[str | None]:
    return [getattr(binding, name) for name in SNAPSHOT_FIELDS]


def binding_from_snapshot(box_id: str, row: list[Any]) -> BindingItem:
    values = dict(zip(SNAPSHOT_FIELDS, row, strict=False))
    client_id = str(values.pop("client_id"))
    values = {k: v for k, v in values.items() if v is not None}
    return BindingItem(box_id, client_id, enabled=True, **values)


def bindings_of_box(box_id: str) -> list[BindingItem]:
    return list(BindingItem.query(box_id))


def boxes_of_client(client_id: str) -> list[BindingItem]:
    return list(BindingItem.by_client.query(client_id))


def is_bound(client_id: str, box_id: str) -> bool:
    try:
        BindingItem.get(box_id, client_id, attributes_to_get=["box_id"])
        return True
    except BindingItem.DoesNotExist:
        return False


def require_bound(client_id: str, box_id: str) -> None:
    """Only a client bound to a box may read or command it; anyone else gets the answer of an
    unknown box (same status, same body). The box is looked up only on refusal, for the log and
    in both cases (same cost), so the common (bound) path costs one GetItem."""
    if is_bound(client_id, box_id):
        return
    try:
        get_box(box_id)
    except UnknownBox:
        exc = NotFound("no such box", client=client_id, box=box_id)
        exc.reason = "unknown_box"
        raise exc from None
    raise Forbidden("no such box", client=client_id, box=box_id)
