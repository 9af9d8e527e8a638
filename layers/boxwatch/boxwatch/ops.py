"""The operators' side (`/ops/...`, docs/operator-api.md): an operator of an organisation sees and
acts on that organisation's boxes only; anything of another organisation is answered exactly as an
unknown one (`CrossOrg`, a `NotFound`, logged and counted with its real reason).

Every list is a Query on an index (the map: `by_org_cell`; alarms: the org's month partitions;
commands: `by_box` / `by_org`; changes: the org's change-log minutes), paginated with an opaque
cursor. Times are event time: the API request's time, IoT's receive time, lifecycle timestamps.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from boxwatch.changes import record_change
from boxwatch.errors import InvalidInput, NotFound
from boxwatch.models import (
    CHANGE_BUCKET_MS,
    AlarmLifeItem,
    AlarmRecord,
    BindingItem,
    BoxItem,
    ChangeItem,
    CommandItem,
    IncidentItem,
    IncidentMemberItem,
    OrgAlarmItem,
    OrgIncidentItem,
    month_of,
)
from boxwatch.registry import BindingSpec, BoxSpec
from boxwatch.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_iot_data import IoTDataPlaneClient
    from mypy_boto3_sns import SNSClient

    from boxwatch.power_off import PowerOffOutcome

OPERATORS_GROUP = "operators"
# a change is written with the time of the event that caused it (IoT's receive time, the request's):
# two writers a moment apart may commit out of order, so a poll re-reads this much before its cursor
# and the console drops what it has seen (changes are keyed)
CHANGE_OVERLAP_MS = 5_000
CHANGE_MAX_BACK_MS = 10 * 60_000  # a console away longer reloads (`reset`) rather than replay the log
MAX_LIMIT = 200


class CrossOrg(NotFound):
    """Another organisation's box (alarm, command...): answered as unknown, logged and counted as what it is."""

    reason = "cross_org"


class ConfirmationRequired(InvalidInput):
    code = "confirmation_required"


@dataclass(frozen=True)
class Operator:
    sub: str
    org: str


# ------------------------------------------------------------------------------ paging
def page_limit(raw: str | None, default: int = 50) -> int:
    if raw in (None, ""):
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be 1..{MAX_LIMIT}", limit=raw[:20])
    return int(raw)


def encode_cursor(doc: dict[str, Any] | None) -> str | None:
    return None if doc is None else base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()


def decode_cursor(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except ValueError:
        raise InvalidInput("cursor: not one of ours") from None
    if not isinstance(doc, dict):
        raise InvalidInput("cursor: not one of ours")
    return doc


# ------------------------------------------------------------------------------ boxes
def require_box(op: Operator, box_id: str) -> BoxItem:
    """The box, if it is of the operator's organisation; otherwise the answer of an unknown box."""
    try:
        box = BoxItem.get(box_id)
    except BoxItem.DoesNotExist:
        exc = NotFound("no such box", operator=op.sub, box=box_id)
        exc.reason = "unknown_box"
        raise exc from None
    if (box.org or "default") != op.org:
        raise CrossOrg("no such box", operator=op.sub, org=op.org, box=box_id)
    return box


def active_lives(boxes: Iterable[BoxItem]) -> dict[str, AlarmLifeItem]:
    """The active alarms of these boxes (their `active` maps), in one BatchGetItem: reads ~ active alarms."""
    keys = [AlarmLifeItem.key(b.box_id, i) for b in boxes for i in (b.active or {}).values()]
    return {x.alarm_id + "#" + x.box_id: x for x in AlarmLifeItem.batch_get(keys)} if keys else {}


def box_view(box: BoxItem, lives: dict[str, AlarmLifeItem]) -> dict[str, Any]:
    """The box as the map shows it; its worst active alarm (unacknowledged first, then the oldest)."""
    mine = [lives[k] for k in (f"{i}#{box.box_id}" for i in (box.active or {}).values()) if k in lives]
    mine = [x for x in mine if x.state == "active"]
    mine.sort(key=lambda x: (x.acked_by is not None, x.alarm_id))
    alarm = mine[0] if mine else None
    online = bool(box.online)
    if alarm is not None and alarm.acked_by is None:
        state = "alarm_unacked"
    elif not online:
        state = "offline"
    elif alarm is not None:
        state = "alarm_acked"
    else:
        state = "normal"
    return {"box_id": box.box_id, "org": box.org or "default", "name": box.name, "address": box.address,
            "lat": float(box.lat), "lng": float(box.lng), "timezone": box.timezone, "online": online,
            "status_since": int(box.status_since), "status_reason": box.status_reason, "contactor": box.contactor,
            "alarm": None if alarm is None else {"alarm_id": alarm.alarm_id, "cause": alarm.cause,
                                                 "acked": alarm.acked_by is not None},
            "active_alarms": len(mine), "state": state}


def boxes_in_view(op: Operator, bbox: str, limit: int, cursor: str | None, now_ms: int) -> dict[str, Any]:
    """`south,west,north,east`: a few Queries on by_org_cell, each a sort-key range (geo.map_cover)."""
    from boxwatch.geo import map_cover  # h3: only the map needs it

    try:
        south, west, north, east = (float(v) for v in bbox.split(","))
    except ValueError:
        raise InvalidInput("bbox: south,west,north,east in degrees", bbox=bbox[:100]) from None
    if not all(math.isfinite(v) for v in (south, west, north, east)) or not (
            -90 <= south < north <= 90 and -180 <= west <= 180 and -180 <= east <= 180):
        raise InvalidInput("bbox: south < north within -90..90, west and east within -180..180", bbox=bbox[:100])
    cover = map_cover(south, west, north, east)
    state = decode_cursor(cursor) or {"q": 0}
    qi, last = int(state.get("q", 0)), state.get("k")
    found: list[BoxItem] = []
    read = 0
    while qi < len(cover) and len(found) < limit:
        q = cover[qi]
        page = BoxItem.by_org_cell.query(f"{op.org}#{q.part_cell}", BoxItem.map_cell.between(q.lo, q.hi),
                                         limit=limit - len(found), last_evaluated_key=last)
        for box in page:
            read += 1
            if south <= float(box.lat) <= north and (west <= float(box.lng) <= east if west <= east
                                                     else (float(box.lng) >= west or float(box.lng) <= east)):
                found.append(box)
        last = page.last_evaluated_key
        if last is None:
            qi += 1
    more = qi < len(cover)
    lives = active_lives(found)
    out: dict[str, Any] = {"boxes": [box_view(b, lives) for b in found], "read": read, "queries": len(cover)}
    if more:
        out["next_cursor"] = encode_cursor({"q": qi, "k": last})
    return out


def box_alarms(box_id: str, limit: int) -> list[dict[str, Any]]:
    records = AlarmRecord.query(f"BOX#{box_id}", AlarmRecord.sk.startswith("SEQ#"), scan_index_forward=False,
                                limit=limit)
    return [{"alarm_id": f"{r.box_id}#{r.sk}", "seq": int(r.seq), "cause": r.cause, "alarm_time": int(r.alarm_time),
             "received_at": int(r.received_at), "value": r.value, "threshold": r.threshold, "unit": r.unit,
             "circuit": r.circuit} for r in records]


def box_detail(op: Operator, box_id: str, now_ms: int) -> dict[str, Any]:
    from boxwatch import alarm_life

    box = require_box(op, box_id)
    view = box_view(box, active_lives([box]))
    view["alarms"] = alarm_life.box_alarms(box_id, "all", 20)  # its alarms (lives), newest first
    view["logs"] = box_alarms(box_id, 20)  # the alarm logs the box sent: readings
    view["commands"] = commands(op, box_id, 20, None)["commands"]
    view["bindings"] = [{"client_id": b.client_id, "target_kind": b.target_kind, "locale": b.locale,
                         "enabled": bool(b.enabled)} for b in BindingItem.query(box_id)]
    return view


# ------------------------------------------------------------------------------ changes
def changes(op: Operator, since: str | None, now_ms: int) -> dict[str, Any]:
    """What changed in the operator's organisation after `since` (the cursor of the previous answer):
    one Query per change-log minute it covers (one or two at a 2 s poll). Boxes are read back as they
    are now (one BatchGetItem for those that changed)."""
    if since in (None, ""):
        return {"cursor": str(now_ms), "changes": []}
    assert since is not None
    if not since.isdigit():
        raise InvalidInput("since: the cursor of a previous answer", since=since[:40])
    cursor = int(since)
    if cursor < now_ms - CHANGE_MAX_BACK_MS:
        return {"cursor": str(now_ms), "changes": [], "reset": True}
    start = cursor - CHANGE_OVERLAP_MS
    items: list[ChangeItem] = []
    for bucket in range(start // CHANGE_BUCKET_MS, max(now_ms, cursor) // CHANGE_BUCKET_MS + 1):
        items += ChangeItem.query(f"CHG#{op.org}#{bucket}", ChangeItem.sk >= f"{start:013d}")
    box_ids = sorted({c.id for c in items if c.type == "box"})
    boxes = {b.box_id: b for b in BoxItem.batch_get(box_ids)} if box_ids else {}
    from boxwatch.alarm_life import alarm_view

    lives = active_lives(boxes.values())
    # an alarm row without entity (a repeat joined the alarm) shows the alarm as it is now
    unread = sorted({tuple(c.id.split("/", 1)) for c in items if c.type == "alarm" and c.entity is None})
    alarms_now = {f"{x.box_id}/{x.alarm_id}": alarm_view(x)
                  for x in AlarmLifeItem.batch_get([AlarmLifeItem.key(b, a) for b, a in unread])} if unread else {}
    out = []
    for c in items:
        entity = c.entity
        if c.type == "alarm" and entity is None:
            entity = alarms_now.get(c.id)
            if entity is None:
                continue
        if c.type == "box":
            box = boxes.get(c.id)
            if box is None or (box.org or "default") != op.org:
                continue  # moved to another organisation since
            entity = box_view(box, lives)
        out.append({"key": c.sk, "type": c.type, "id": c.id, "at": int(c.at), "entity": entity})
    newest = max([cursor, *(int(c.at) for c in items)])
    return {"cursor": str(newest), "changes": out}


# ------------------------------------------------------------------------------ alarms
def _months_back(newest: str, oldest: str) -> Iterator[str]:
    y, m = (int(v) for v in newest.split("-"))
    while f"{y:04d}-{m:02d}" >= oldest:
        yield f"{y:04d}-{m:02d}"
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)


def alarm_month(alarm_id: str) -> str:
    return month_of(int(alarm_id[:13]))  # an alarm id begins with its first receive time (alarm_life)


def alarms(op: Operator, state: str, cause: str | None, from_ms: int | None, to_ms: int | None, limit: int,
           cursor: str | None, now_ms: int) -> dict[str, Any]:
    """The organisation's alarms, newest first: its month partitions from `to` back to `from` (alarms
    by the time they opened), each pointer's life read in one BatchGetItem per page."""
    from boxwatch.alarm_life import alarm_view

    if state not in ("active", "all"):
        raise InvalidInput("state: active | all", state=state[:20])
    to_ms = now_ms if to_ms is None else to_ms
    from_ms = max(from_ms or 0, to_ms - 366 * 86_400_000)
    cond = OrgAlarmItem.sk.between(f"{from_ms:013d}", f"{to_ms:013d}\uffff")
    flt = None if not cause else OrgAlarmItem.cause == cause

    def query(month: str, n: int, last: Any) -> Any:
        return OrgAlarmItem.query(f"ALARM#{op.org}#{month}", cond, filter_condition=flt,
                                  scan_index_forward=False, limit=n, last_evaluated_key=last)

    def resolve(pointers: list[OrgAlarmItem]) -> list[dict[str, Any]]:
        lives = {(x.box_id, x.alarm_id): x for x in AlarmLifeItem.batch_get(
            [AlarmLifeItem.key(p.box_id, p.alarm_id) for p in pointers])}
        return [alarm_view(life) for p in pointers if (life := lives.get((p.box_id, p.alarm_id))) is not None
                and (state == "all" or life.state == "active")]

    return _monthly_pages("alarms", month_of(to_ms), month_of(from_ms), cursor, query, resolve, limit)


def ack(op: Operator, box_id: str, alarm_id: str, doc: Any, now_ms: int, settings: Settings,
        sns: SNSClient) -> dict[str, Any]:
    """Acknowledge on behalf of the organisation (idempotent): the box's clients get `acknowledged`."""
    from boxwatch.alarm_life import acknowledge, alarm_view

    box = require_box(op, box_id)
    if not isinstance(doc, dict):
        raise InvalidInput("a JSON object {disposition, comment}")
    out = acknowledge(box_id, alarm_id, doc.get("disposition"), doc.get("comment"), op.sub, "operator", now_ms,
                      settings, sns)
    view = alarm_view(out.alarm)
    if out.changed:
        record_change(op.org, "alarm", f"{box_id}/{alarm_id}", now_ms, view)
        record_change(op.org, "box", box.box_id, now_ms)
    return {**view, "changed": out.changed, "notified": len(out.report.sent) if out.report else 0}


# ------------------------------------------------------------------------------ incidents
def incidents(op: Operator, state: str, limit: int, cursor: str | None = None, now_ms: int = 0) -> dict[str, Any]:
    """Incidents touching the organisation's boxes, paginated. `open`: the sparse open_incidents
    index; `resolved`: the organisation's month partitions of resolved incidents (newest first, a
    year back from now), each pointer's incident read in one BatchGetItem per page. Either way an
    incident's members are read per incident and only the organisation's boxes are shown."""
    if state == "open":
        return _open_incidents(op, limit, cursor)
    if state == "resolved":
        return _resolved_incidents(op, limit, cursor, now_ms)
    raise InvalidInput("state: open | resolved", state=state[:20])


def _mine(op: Operator, inc: IncidentItem) -> list[str]:
    members = [m.box_id for m in IncidentMemberItem.rows(inc.pk)]
    return sorted(b.box_id for b in BoxItem.batch_get(members, attributes_to_get=["box_id", "org"])
                  if (b.org or "default") == op.org) if members else []


def incident_view(inc: IncidentItem, mine: list[str]) -> dict[str, Any]:
    return {"incident_id": inc.incident_id, "state": inc.state, "members": mine, "member_count": len(mine),
            "kind": "area_outage" if inc.storm else "neighbour_outage",
            "area": {"lat": inc.center_lat, "lng": inc.center_lng, "radius_m": inc.radius_m},
            "opened_at": int(inc.opened_at), "resolved_at": None if inc.resolved_at is None else int(inc.resolved_at)}


def _query_pages(name: str, query: Callable[[int, Any], Any], view: Callable[[Any], dict[str, Any] | None],
                 limit: int, cursor: str | None) -> dict[str, Any]:
    """One Query read page after page until `limit` items pass `view` (None = not shown) or it ends;
    the cursor is the Query's own last key."""
    last = (decode_cursor(cursor) or {}).get("k")
    out: list[dict[str, Any]] = []
    while True:
        page = query(limit - len(out), last)
        out += [v for v in map(view, page) if v is not None]
        last = page.last_evaluated_key
        if last is None or len(out) >= limit:
            break
    result: dict[str, Any] = {name: out}
    if last is not None:
        result["next_cursor"] = encode_cursor({"k": last})
    return result


def _open_incidents(op: Operator, limit: int, cursor: str | None) -> dict[str, Any]:
    def view(inc: IncidentItem) -> dict[str, Any] | None:
        mine = _mine(op, inc)
        return incident_view(inc, mine) if mine else None

    return _query_pages("incidents", lambda n, last: IncidentItem.open_incidents.query(
        "OPEN", limit=n, last_evaluated_key=last), view, limit, cursor)


def _resolved_incidents(op: Operator, limit: int, cursor: str | None, now_ms: int) -> dict[str, Any]:
    def query(month: str, n: int, last: Any) -> Any:
        return OrgIncidentItem.query(f"INCIDENTS#{op.org}#{month}", scan_index_forward=False, limit=n,
                                     last_evaluated_key=last)

    def resolve(pointers: list[OrgIncidentItem]) -> list[dict[str, Any]]:
        found = {i.incident_id: i for i in IncidentItem.batch_get([IncidentItem.key(p.incident_id) for p in pointers])}
        out = []
        for p in pointers:
            inc = found.get(p.incident_id)
            if inc is None or inc.state != "resolved" or int(inc.resolved_at or 0) != int(p.sk[:13]):
                continue  # reopened since (or resolved again later: that pointer lists it)
            mine = _mine(op, inc)
            if mine:
                out.append(incident_view(inc, mine))
        return out

    return _monthly_pages("incidents", month_of(now_ms), month_of(now_ms - 366 * 86_400_000), cursor, query,
                          resolve, limit)


def _monthly_pages(name: str, newest: str, oldest: str, cursor: str | None, query: Callable[[str, int, Any], Any],
                   resolve: Callable[[list[Any]], list[dict[str, Any]]], limit: int) -> dict[str, Any]:
    """A list kept in month partitions, newest first: each month's pointer Query page after page, each
    page's pointers resolved to views in one read (`resolve`), until `limit` views or `oldest` is done."""
    pos = decode_cursor(cursor) or {}
    last = pos.get("k")
    out: list[dict[str, Any]] = []
    for month in _months_back(pos.get("m") or newest, oldest):
        while True:
            page = query(month, limit - len(out), last)
            pointers = list(page)
            last = page.last_evaluated_key
            out += resolve(pointers) if pointers else []
            if last is None or len(out) >= limit:
                break
        if len(out) >= limit:
            return _full_page(name, out, month, last, oldest)
        last = None
    return {name: out}


def _full_page(name: str, out: list[dict[str, Any]], month: str, last: Any, oldest: str) -> dict[str, Any]:
    """A full page of a month-partitioned list: its cursor resumes in this month, or the one before."""
    result: dict[str, Any] = {name: out}
    if last is not None:
        result["next_cursor"] = encode_cursor({"m": month, "k": last})
    elif _prev_month(month) >= oldest:
        result["next_cursor"] = encode_cursor({"m": _prev_month(month), "k": None})
    return result


def _prev_month(month: str) -> str:
    y, m = (int(v) for v in month.split("-"))
    return f"{y:04d}-{m - 1:02d}" if m > 1 else f"{y - 1:04d}-12"


# ------------------------------------------------------------------------------ commands
def command_view(cmd: CommandItem) -> dict[str, Any]:
    def ms(v: Any) -> int | None:
        return None if v is None else int(v)

    return {"command_id": cmd.command_id, "box_id": cmd.box_id, "requested_by": cmd.client_id,
            "requested_by_role": cmd.requested_by_role or "client", "status": cmd.status,
            "requested_at": int(cmd.requested_at), "expires_at": int(cmd.expires_at),
            "settled_at": ms(cmd.settled_at), "reason": cmd.reason}


def commands(op: Operator, box_id: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
    """The org's command audit (by_org), newest first; one box's: the same Query, filtered."""
    if box_id:
        require_box(op, box_id)
    flt = None if not box_id else CommandItem.box_id == box_id
    return _query_pages("commands", lambda n, last: CommandItem.by_org.query(
        op.org, scan_index_forward=False, limit=n, filter_condition=flt, last_evaluated_key=last),
        command_view, limit, cursor)


def power_off(op: Operator, box_id: str, confirm: Any, key: str, now_ms: int, settings: Settings,
              iotdata: IoTDataPlaneClient) -> PowerOffOutcome:
    """An operator's power-off: the typed box id is the second confirmation; then the same path as a
    client's (recorded first, the shadow's desired state, expiry, audit)."""
    from boxwatch.power_off import request_power_off

    box = require_box(op, box_id)
    if confirm != box_id:
        raise ConfirmationRequired("type the box id to confirm the power-off", box=box_id)
    out = request_power_off(op.sub, box_id, key, now_ms, settings, iotdata, operator_org=box.org or "default")
    if out.created:
        record_change(op.org, "command", out.command.command_id, now_ms, command_view(out.command))
    return out


# ------------------------------------------------------------------------------ registry
def register(op: Operator, doc: Any, settings: Settings, now_ms: int) -> BoxItem:
    """Register or move a box of the operator's organisation (a box of another one: unknown)."""
    from boxwatch.registry import register_box

    if not isinstance(doc, dict):
        raise InvalidInput("a JSON object {id, name, address, lat, lng, timezone}")
    if doc.get("org") not in (None, op.org):
        raise InvalidInput("org: only your own organisation", org=str(doc.get("org"))[:64])
    try:
        spec = BoxSpec.model_validate({**doc, "org": op.org})
    except ValidationError as exc:
        raise InvalidInput(_first_error(exc)) from None
    _not_taken(op, spec.id)
    item = register_box(spec, settings)
    record_change(op.org, "box", spec.id, now_ms)
    return item


def _not_taken(op: Operator, box_id: str) -> None:
    try:
        existing = BoxItem.get(box_id, attributes_to_get=["box_id", "org"])
    except BoxItem.DoesNotExist:
        return
    if (existing.org or "default") != op.org:
        raise CrossOrg("this box id cannot be registered", operator=op.sub, org=op.org, box=box_id)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "row"
    return f"{where}: {err.get('msg', 'invalid')}"


MAX_IMPORT_ROWS = 5_000
CSV_FIELDS = ("id", "name", "address", "lat", "lng", "timezone", "org")


def import_csv(op: Operator, text: str, settings: Settings, now_ms: int) -> dict[str, Any]:
    """Bulk registration from CSV (header: id,name,address,lat,lng[,timezone][,org]). Each refused row
    is listed with its line and reason; the others are written (BatchWriteItem)."""
    from boxwatch.registry import import_boxes

    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"id", "name", "lat", "lng"} <= {f.strip() for f in reader.fieldnames}:
        raise InvalidInput("CSV header must name at least id,name,lat,lng")
    refused: list[dict[str, Any]] = []
    specs: list[BoxSpec] = []
    seen: dict[str, int] = {}
    for n, row in enumerate(reader, start=2):
        if n - 1 > MAX_IMPORT_ROWS:
            raise InvalidInput(f"at most {MAX_IMPORT_ROWS} rows per import")
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k}
        box_id = row.get("id", "")
        org = row.pop("org", "") or op.org
        if org != op.org:
            refused.append({"line": n, "id": box_id, "reason": "org: not your organisation"})
            continue
        if not row.get("timezone"):
            row.pop("timezone", None)
        try:
            spec = BoxSpec.model_validate({**row, "org": op.org})
        except ValidationError as exc:
            refused.append({"line": n, "id": box_id, "reason": _first_error(exc)})
            continue
        if spec.id in seen:
            refused.append({"line": n, "id": box_id, "reason": f"duplicate of line {seen[spec.id]}"})
            continue
        seen[spec.id] = n
        specs.append(spec)
    existing = {b.box_id: b for b in _batch_get_ids([s.id for s in specs])}
    ok: list[BoxSpec] = []
    for s in specs:
        other = existing.get(s.id)
        if other is not None and (other.org or "default") != op.org:
            refused.append({"line": seen[s.id], "id": s.id, "reason": "id: in use"})
        else:
            ok.append(s)
    # a box already registered is moved (register_box keeps its status); new ones are written in batches
    moved = [s for s in ok if s.id in existing]
    new = [s for s in ok if s.id not in existing]
    from boxwatch.registry import register_box

    for s in moved:
        register_box(s, settings)
    imported = len(moved) + sum(1 for _ in import_boxes(new, settings))
    for s in ok:
        record_change(op.org, "box", s.id, now_ms)
    refused.sort(key=lambda r: int(r["line"]))
    return {"imported": imported, "refused": refused}


def _batch_get_ids(ids: Iterable[str]) -> Iterator[BoxItem]:
    ids = list(dict.fromkeys(ids))
    return BoxItem.batch_get(ids, attributes_to_get=["box_id", "org"]) if ids else iter(())


def bind_client(op: Operator, box_id: str, client_id: str, doc: Any) -> BindingItem:
    from boxwatch.registry import bind

    require_box(op, box_id)
    if not isinstance(doc, dict):
        raise InvalidInput("a JSON object {target, target_kind?, locale?}")
    try:
        spec = BindingSpec.model_validate({**doc, "client_id": client_id, "box_id": box_id})
    except ValidationError as exc:
        raise InvalidInput(_first_error(exc)) from None
    return bind(spec)


def unbind_client(op: Operator, box_id: str, client_id: str) -> bool:
    require_box(op, box_id)
    try:
        BindingItem.get(box_id, client_id).delete()
    except BindingItem.DoesNotExist:
        return False
    return True


# ------------------------------------------------------------------------------ monthly report
def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p * len(s)) - 1))]


def monthly_report(op: Operator, month: str) -> dict[str, Any]:
    """Per box and cause: alarms (opened in the month), acknowledged, false alarms and their rate
    among the acknowledged, time to acknowledge p50/p90 (s, from the first alarm), offline hours of
    the month (lifecycle log). One Query of the month's alarm pointers, their lives in BatchGetItems,
    one lifecycle Query per box in it."""
    from boxwatch.models import PresenceLogItem

    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput("month: YYYY-MM", month=month[:20]) from None
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    t0, t1 = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    pointers = list(OrgAlarmItem.query(f"ALARM#{op.org}#{month}"))
    lives: list[AlarmLifeItem] = []
    for i in range(0, len(pointers), 100):
        lives += AlarmLifeItem.batch_get([AlarmLifeItem.key(p.box_id, p.alarm_id) for p in pointers[i:i + 100]])
    for life in lives:
        row = rows.setdefault((life.box_id, life.cause), {"box_id": life.box_id, "box_name": life.box_name or "",
                                                          "cause": life.cause, "alarms": 0, "acked": 0,
                                                          "false_alarms": 0, "ack_s": []})
        row["alarms"] += 1
        if life.acked_at is not None:
            row["acked"] += 1
            row["ack_s"].append(round((int(life.acked_at) - int(life.first_at)) / 1000, 1))
        if life.disposition == "false_alarm":
            row["false_alarms"] += 1
    offline: dict[str, float] = {}
    for box_id in sorted({b for b, _ in rows}):
        events = sorted(((int(r.timestamp), r.kind) for r in PresenceLogItem.query(
            f"BOX#{box_id}", PresenceLogItem.sk.startswith("V#"))), key=lambda e: e[0])
        down_at: int | None = None
        total = 0
        for ts, kind in events:
            if kind == "D" and down_at is None:
                down_at = ts
            elif kind == "C" and down_at is not None:
                total += max(0, min(ts, t1) - max(down_at, t0))
                down_at = None
        if down_at is not None:
            total += max(0, t1 - max(down_at, t0))
        offline[box_id] = round(total / 3_600_000, 2)
    out = []
    for (box_id, _cause), row in sorted(rows.items()):
        acks = row.pop("ack_s")
        # the false-alarm rate among the alarms given a disposition
        out.append({**row, "false_alarm_rate": round(row["false_alarms"] / row["acked"], 3) if row["acked"] else 0.0,
                    "ack_p50_s": _pct(acks, 0.5), "ack_p90_s": _pct(acks, 0.9),
                    "offline_hours": offline.get(box_id, 0.0)})
    return {"org": op.org, "month": month, "rows": out}


REPORT_COLUMNS = ("box_id", "box_name", "cause", "alarms", "acked", "false_alarms", "false_alarm_rate", "ack_p50_s",
                  "ack_p90_s", "offline_hours")


def report_csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(REPORT_COLUMNS)
    for row in report["rows"]:
        w.writerow(["" if row.get(c) is None else row.get(c) for c in REPORT_COLUMNS])
    return buf.getvalue()
