"""What a phone may read (CommandApi's GET routes, and the command a POST answers with): its boxes,
a box's latest alarms, a command. Only a client bound to a box sees it (`bindings.require_bound`);
another bound client sees a command's status, never who asked."""

from __future__ import annotations

from typing import Any

from boxwatch.bindings import get_box, require_bound
from boxwatch.errors import NotFound
from boxwatch.models import COMMAND_ID, AlarmRecord, BindingItem, BoxItem, CommandItem


def latest_alarms(box_id: str, limit: int) -> list[dict[str, Any]]:
    records = AlarmRecord.query(f"BOX#{box_id}", AlarmRecord.sk.startswith("SEQ#"), scan_index_forward=False,
                                limit=limit)
    return [{"seq": int(r.seq), "cause": r.cause, "alarm_time": int(r.alarm_time), "value": r.value,
             "threshold": r.threshold, "unit": r.unit} for r in records]


def command_view(cmd: CommandItem, viewer: str | None = None) -> dict[str, Any]:
    """The command as `viewer` may see it: another client bound to the box sees its status, never
    who asked (their `sub`); None = the requester's own view (replay, audit)."""
    def ms(value: Any) -> int | None:
        return None if value is None else int(value)

    mine = viewer is None or viewer == cmd.client_id
    view = {"command_id": cmd.command_id, "box_id": cmd.box_id, "client_id": cmd.client_id if mine else None,
            "requested_by_me": mine, "status": cmd.status,
            "requested_at": int(cmd.requested_at), "expires_at": int(cmd.expires_at), "alarm": cmd.alarm,
            "settled_at": ms(cmd.settled_at), "reason": cmd.reason}
    if cmd.late:  # succeeded after it had expired: both times
        view.update(late=True, expired_at=ms(cmd.expired_at))
    if cmd.late_report is not None:  # a failure/refusal reported after expiry, recorded only
        view.update(late_report=cmd.late_report, late_reported_at=ms(cmd.late_reported_at))
    return view


def get_command(client_id: str, box_id: str, command_id: str) -> CommandItem:
    require_bound(client_id, box_id)
    if not COMMAND_ID.match(command_id):
        raise NotFound("no such command", command_id=command_id[:64])  # never a key DynamoDB would refuse
    try:
        cmd = CommandItem.get(*CommandItem.key(command_id), consistent_read=True)
    except CommandItem.DoesNotExist:
        raise NotFound("no such command", command_id=command_id) from None
    if cmd.box_id != box_id:
        raise NotFound("no such command for this box", command_id=command_id)
    return cmd


def my_boxes(client_id: str, alarms_per_box: int = 3) -> list[dict[str, Any]]:
    bindings = list(BindingItem.by_client.query(client_id))
    boxes = {b.box_id: b for b in BoxItem.batch_get([b.box_id for b in bindings])} if bindings else {}
    out = []
    for binding in bindings:
        box = boxes.get(binding.box_id)
        if box is None:
            continue
        out.append({"box_id": box.box_id, "name": box.name, "address": box.address, "lat": box.lat, "lng": box.lng,
                    "online": bool(box.online), "status_since": int(box.status_since),
                    "status_reason": box.status_reason, "latest_alarms": latest_alarms(box.box_id, alarms_per_box)})
    return out


def box_alarms(client_id: str, box_id: str, limit: int, state: str | None = None) -> dict[str, Any]:
    """The box's latest alarm logs; with `state` (active | all), its alarms with their life."""
    require_bound(client_id, box_id)
    box = get_box(box_id)
    if state is None:
        return {"box_id": box.box_id, "name": box.name, "alarms": latest_alarms(box_id, limit)}
    from boxwatch.alarm_life import box_alarms as lives

    return {"box_id": box.box_id, "name": box.name, "state": state, "alarms": lives(box_id, state, limit)}
