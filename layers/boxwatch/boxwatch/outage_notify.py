"""Telling an incident's neighbours (fourth alarm): who hears (the clients of the online boxes
within the radius of a member), what (`neighbour_outage`, or one `area_outage` in storm mode), each
client once (a claim before the push), what is owed after a failure, and one area part of a large
incident for an OutageNotify worker (`warn_part`). The sweep (boxwatch.outage) decides;
docs/network-status.md, docs/claims.md "Fourth alarm"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pynamodb.exceptions import UpdateError

from boxwatch import alarm_life, geo, storm
from boxwatch.bindings import bindings_of_box
from boxwatch.changes import note_alarm
from boxwatch.devices import devices_of
from boxwatch.incidents import (
    INCIDENT_DAYS,
    WRITE_CHUNK,
    Candidate,
    Extent,
    Incident,
    Member,
    SweepResult,
    boxes_of,
    chunked,
    content_hash,
    group_of,
    nearest_member,
    read_all,
    still_open,
)
from boxwatch.models import (
    BindingItem,
    BoxItem,
    IncidentClientItem,
    IncidentItem,
    IncidentMemberItem,
    condition_failed,
)
from boxwatch.notify import LISTED_IN_DATA, NAMED_IN_TEXT, Notification, SendReport, send
from boxwatch.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

    from boxwatch.events import OutagePart


def online_neighbours(group: Sequence[Candidate], settings: Settings) -> dict[str, tuple[BoxItem, float]]:
    """Online boxes within the outage radius of any member: box id -> (box, distance to nearest member).

    One Query of the area-cell index per cell covering a member (cells shared by members once).
    """
    members = {c.box_id for c in group}
    cells: dict[str, None] = {}
    for c in group:
        cells.update(dict.fromkeys(geo.covering_cells(c.lat, c.lng, settings.outage_radius_m, settings.area_res)))
    nearest = nearest_member(group, settings)
    out: dict[str, tuple[BoxItem, float]] = {}
    for cell in cells:
        for item in BoxItem.by_area_cell.query(cell):
            if item.box_id in members or not item.online:
                continue
            d = nearest(float(item.lat), float(item.lng))
            if d is not None:
                out[item.box_id] = (item, d)
    return out


def neighbour_outage_notification(box: BoxItem, distance_m: float, group: Sequence[Candidate],
                                  incident: IncidentItem, extent: Extent | None = None) -> Notification:
    # nearest first; a push (4 KB) lists the nearest LISTED_IN_DATA, the incident holds them all
    named = sorted(
        ({"id": c.box_id, "name": c.name, "distance_m": round(geo.distance_m((box.lat, box.lng), (c.lat, c.lng)), 1)}
         for c in group),
        key=lambda b: (b["distance_m"], b["id"]),
    )
    offline = sorted(str(b["id"]) for b in named[:LISTED_IN_DATA])
    extent = extent or Extent.of(group)
    first, last = extent.first, extent.last
    area = {"lat": incident.center_lat, "lng": incident.center_lng, "radius_m": incident.radius_m}
    return Notification(
        kind="neighbour_outage",
        box_id=box.box_id,
        at_ms=last,
        data={"offline_boxes": offline, "boxes": offline, "offline_count": extent.count,
              "incident": incident.incident_id, "area": area, "first_offline_at": first, "last_offline_at": last,
              "distance_m": round(distance_m, 1)},
        context={"count": extent.count, "box_name": box.name, "boxes_named": named[:NAMED_IN_TEXT],
                 "span_s": (last - first) / 1000},
    )


def recipients(group: Sequence[Candidate], settings: Settings,
                only: Sequence[BoxItem] | None) -> dict[str, tuple[BindingItem, BoxItem, float]]:
    """The clients of the online non-member boxes within the radius of a member (of `only`, if
    given): client -> (binding, its nearest such box, distance). A client hears once, about its nearest box."""
    members = {c.box_id for c in group}
    if only is None:
        neighbours = online_neighbours(group, settings)
    else:
        neighbours = {}
        nearest = nearest_member(group, settings)
        for box in only:
            if box.box_id in members or not box.online:
                continue
            d = nearest(float(box.lat), float(box.lng))
            if d is not None:
                neighbours[box.box_id] = (box, d)
    chosen: dict[str, tuple[BindingItem, BoxItem, float]] = {}
    for box_id, (box, d) in sorted(neighbours.items(), key=lambda kv: (kv[1][1], kv[0])):
        for binding in bindings_of_box(box_id):
            if binding.enabled and binding.client_id not in chosen:
                chosen[binding.client_id] = (binding, box, d)
    return chosen


def area_all_clear(inc: Incident, at_ms: int, boxes: dict[str, BoxItem], sns: SNSClient, result: SweepResult) -> bool:
    """Before a storm incident resolves, its clients are told the area is back; True when it may
    resolve (no storm, or every all-clear sent)."""
    if not inc.item.storm:
        return True
    back_at = max((int(boxes[b].status_since) for b in inc.members if b in boxes and boxes[b].online), default=at_ms)
    return storm.all_clear(inc.item, back_at, at_ms, sns, result.all_clears.setdefault(inc.incident_id, []),
                           result.failed)


def warn(inc: Incident, group: Sequence[Candidate], at_ms: int, settings: Settings, sns: SNSClient,
          result: SweepResult, boxes: dict[str, BoxItem], only: Sequence[BoxItem] | None = None,
          extent: Extent | None = None, open_count: int | None = None, seq: int | None = None) -> bool:
    """Tell each client of an online neighbour what it was not told yet; True when nothing failed.

    The highest member number is the content: a client told up to it knows every box of the cluster
    (members only join, and a box back in a new episode joins with a new number). `only`: just
    these boxes' clients (boxes that came online next to a live incident). `extent`, `open_count`,
    `seq` (its highest member number): of the whole incident when `inc.members` and `group` are
    only the members near one part of it (warn_part).
    """
    incident = inc.item
    group_seq = max(m.seq for m in inc.members.values()) if seq is None else seq
    chosen = recipients(group, settings, only)
    if not chosen:
        return True
    extent = extent or Extent.of(group)  # once, not per client: a blackout has 100,000 members
    if incident.storm:
        # an area outage: one `area_outage` per client, however the cluster grows
        if open_count is None:
            open_count = sum(still_open(inc.members[c.box_id], boxes.get(c.box_id)) for c in group)
        return storm.warn_area(incident, (extent.first, extent.last), open_count, chosen, at_ms, sns,
                               result.notified.setdefault(incident.incident_id, []), result.failed)
    devices = devices_of(chosen)  # every chosen client's phones in one read, not one per client
    told_before = IncidentClientItem.some(incident.incident_id, chosen)  # the chosen clients' rows only
    ok = True
    warned: dict[str, BoxItem] = {}
    for client_id, (binding, box, d) in sorted(chosen.items()):
        old = told_before.get(client_id)
        note = neighbour_outage_notification(box, d, group, incident, extent)
        # the news as this client reads it: the count and the boxes listed (the nearest ones). A
        # member box back in a later episode, or one member for another far from the client, is
        # no news: never the same push twice
        content = content_hash([*note.data["offline_boxes"], f"#{note.data['offline_count']}"])
        if storm.confirmed(old) and old is not None and (int(old.told_upto) >= group_seq
                                                         or old.content_hash == content):
            continue
        if storm.leased(old, at_ms):
            ok = False  # an overlapping sweep is telling it (or this schedule, delivered twice)
            continue
        record = IncidentClientItem(
            *IncidentClientItem.key(incident.incident_id, client_id), client_id=client_id, box_id=box.box_id,
            told_upto=group_seq, content_hash=content, sends=(old.sends if old else 0) + 1,
            updated_at=at_ms, expires_at=at_ms // 1000 + INCIDENT_DAYS * 86_400)
        if incident.owed_since is None:
            incident.update(actions=[IncidentItem.owed_since.set(at_ms)])  # before any claim (see send_owed)
        # claim before sending, so that two overlapping sweeps cannot both send this update
        if not storm.claim_told(record, old):
            continue
        report: SendReport = send(sns, [binding], note, devices=devices)
        if report.failed:
            ok = False
            result.failed.extend(report.failed)
            storm.release(record)  # owed, see send_owed
        elif report.sent:
            storm.confirm_told(record)
            result.notified.setdefault(incident.incident_id, []).append(client_id)
            warned[box.box_id] = box
    # each warned box has a fourth alarm with a life (ack, reminder, SMS) until the incident is over
    for box_id, box in sorted(warned.items()):
        alarm_id = alarm_life.open_outage_alarm(box_id, incident.incident_id, at_ms, settings)
        if alarm_id is not None:
            note_alarm(box, alarm_id, at_ms, settings)
    return ok


def send_owed(inc: Incident, group: Sequence[Candidate], at_ms: int, sns: SNSClient, result: SweepResult,
          boxes: dict[str, BoxItem], clean: bool = False) -> bool:
    """Warnings an earlier sweep decided and did not confirm (its push failed, or it died after the
    claim: owed once the claim's lease is over) are sent now, with the boxes decided then, whether
    or not the client is still a recipient and the incident still live: a safety push is never
    traded for silence. True when nothing is owed any more (the incident may resolve). `clean`:
    this sweep's warnings all went out.

    Only an incident whose `owed_since` is set can owe anything, so a quiet sweep reads no clients.
    """
    item = inc.item
    if item.storm or item.owed_since is None:
        return True  # (an area outage's pending claims are sent again by storm.warn_area)
    if clean and int(item.owed_since) == at_ms:
        _nothing_owed(item)  # set by this sweep, whose every claim was confirmed
        return True
    ok = True
    rows = [r for r in IncidentClientItem.rows(item.pk) if r.pending_at is not None]
    need = sorted({r.box_id for r in rows} - set(boxes))
    if need:
        boxes.update({b.box_id: b for b in boxes_of(need)})
    for old in rows:
        if storm.leased(old, at_ms):
            ok = False  # claimed by this sweep or an overlapping one: sent by it, or owed after the lease
            continue
        box = boxes.get(old.box_id)
        binding = None if box is None else next(
            (b for b in bindings_of_box(old.box_id) if b.client_id == old.client_id and b.enabled), None)
        if box is None or binding is None or not group:
            storm.confirm_told(old)  # unbound since: nobody to tell
            continue
        # what was decided: the members up to the claim's number (not one that joined since)
        owed = [c for c in group if c.box_id in inc.members and inc.members[c.box_id].seq <= int(old.told_upto)]
        owed = owed or list(group)
        d = min(geo.distance_m((box.lat, box.lng), (c.lat, c.lng)) for c in owed)
        record = IncidentClientItem(
            *IncidentClientItem.key(inc.incident_id, old.client_id), client_id=old.client_id, box_id=old.box_id,
            told_upto=old.told_upto, content_hash=old.content_hash, sends=int(old.sends) + 1,
            updated_at=at_ms, expires_at=old.expires_at)
        if not storm.claim_told(record, old):
            ok = False  # an overlapping sweep took it
            continue
        report = send(sns, [binding], neighbour_outage_notification(box, d, owed, item))
        if report.failed:
            ok = False
            result.failed.extend(report.failed)
            storm.release(record)
            continue
        storm.confirm_told(record)
        if report.sent:
            result.notified.setdefault(inc.incident_id, []).append(old.client_id)
    if ok:
        _nothing_owed(item)
    return ok


def _nothing_owed(item: IncidentItem) -> None:
    try:
        item.update(actions=[IncidentItem.owed_since.remove()])  # optimistic lock on `revision`
    except UpdateError as exc:
        if not condition_failed(exc):
            raise  # changed by another sweep meanwhile: the next sweep looks again


def warn_part(part: OutagePart, settings: Settings, sns: SNSClient) -> SweepResult:
    """OutageNotify: tell the clients of the online boxes in one part of a large incident, as the
    sweep at `part.at_ms` decided it (the same warnings, claims and fourth-alarm lives as _warn).

    Reads the incident, the boxes of the part's cells, then of the member cells within reach of its
    online boxes (one Query a cell, in parallel): the nearest member of every online box in the
    part is among those (a part inside a blackout, with no box online, reads no more); then
    the member rows of just those boxes that may be members (offline, or back since the incident
    began). What it reads grows with the part, not with the incident. A part whose incident is
    resolved meanwhile tells nobody (its all-clear was decided)."""
    result = SweepResult(part.at_ms)
    try:
        item = IncidentItem.get(*IncidentItem.key(part.incident), consistent_read=True)
    except IncidentItem.DoesNotExist:
        return result
    if item.state != "open":
        return result
    def cells(keys: set[str]) -> list[BoxItem]:
        return read_all(sorted(keys), lambda cell: list(BoxItem.by_area_cell.query(cell)))

    own = set(part.cells)
    found = cells(own)
    # then the member cells within reach of its online boxes: none inside a blackout, where no box is online
    near = {c for b in found if b.online for ring in geo.reach(b.area_cell, settings.outage_radius_m) for c in ring}
    found += cells((near & set(part.member_cells)) - own)
    boxes = {b.box_id: b for b in found}
    maybe = [b.box_id for b in found if not b.online or int(b.status_since or 0) >= int(item.opened_at)]
    rows = read_all(chunked(sorted(maybe), WRITE_CHUNK),
                    lambda chunk: list(IncidentMemberItem.some(part.incident, chunk).values()))
    members = {r.box_id: Member(int(r.t), int(r.seq), None if r.version is None else int(r.version),
                                {int(v) for v in (r.versions or [])}) for r in rows}
    inc = Incident(item, members)
    only = [b for b in found if b.area_cell in own and b.online and b.box_id not in members]
    group = group_of(inc, boxes)
    if not only or not group:
        return result
    warn(inc, group, part.at_ms, settings, sns, result, boxes, only=only,
          extent=Extent(part.count, part.first_offline_at, part.last_offline_at), open_count=part.open_count,
          seq=part.seq)
    return result
