"""Offline clusters (fourth alarm): boxes near each other dropping together warn the neighbours.

A sweep runs at event time T (the scheduled event's own `time`). It reads only what changed:
the offline index for [T - lookback, T] (one Query per minute bucket), the open incidents (a sparse
index) and the current status of those boxes (BatchGetItem). Boxes still offline are clustered:
two belong together when they are within `outage_radius_m` and their offline times differ by at
most `outage_max_gap_s`, transitively; the still-offline members of an open incident stay linked,
so an incident grows but never splits while it is open.

A cluster of two or more boxes is an incident. The clients of every online box within the radius
of any member are warned once; when the cluster grows, each gets at most one update per sweep
that names at least one box it was not told about (so never the same content twice). An incident
resolves once none of its members is still offline in the outage it recorded.
See docs/network-status.md.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.update import Action

from boxwatch import geo
from boxwatch.errors import InvalidInput
from boxwatch.models import (
    OFFLINE_BUCKET_MS,
    BindingItem,
    BoxItem,
    IncidentClientItem,
    IncidentItem,
    IncidentMemberItem,
    OfflineEntry,
)
from boxwatch.network import offline_after_alarm
from boxwatch.notify import LISTED_IN_DATA, NAMED_IN_TEXT, Notification, SendReport, send
from boxwatch.registry import bindings_of_box
from boxwatch.settings import Settings

OPEN = "OPEN"
LATE_CHECKS_PER_SWEEP = 1_000  # ~2,000 requests, well inside the sweep's timeout
INCIDENT_DAYS = 90  # resolved incidents (and what clients were told) kept for audit, then TTL


class ScheduledEvent(BaseModel):
    """The EventBridge scheduled event; only its `time` matters (the sweep's event time)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str | None = None
    detail_type: str = Field("Scheduled Event", alias="detail-type")
    time: AwareDatetime

    @property
    def at_ms(self) -> int:
        return int(self.time.timestamp() * 1000)

    @classmethod
    def parse(cls, event: Any) -> ScheduledEvent:
        if not isinstance(event, dict):
            raise InvalidInput("scheduled event must be a JSON object", got=type(event).__name__)
        try:
            return cls.model_validate(event)
        except ValidationError as exc:
            raise InvalidInput(
                "scheduled event failed validation",
                problems=[{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()][:5],
            ) from None


def lookback_ms(settings: Settings) -> int:
    """How far back a sweep reads the offline index.

    A box is first seen by the sweep after it (< one interval later); its cluster partner may have
    dropped up to the gap before it; and one more interval tolerates late lifecycle events.
    """
    return (2 * settings.sweep_interval_s + settings.outage_max_gap_s) * 1000


def alarm_grace_ms(settings: Settings) -> int:
    """How long after a disconnect the sweep looks once more for an alarm delivered late."""
    return settings.sweep_interval_s * 1000


# -------------------------------------------------------------------- clustering (pure)
@dataclass
class Candidate:
    box_id: str
    name: str
    lat: float
    lng: float
    offline_at: int  # epoch ms
    incident: str | None = None  # the open incident it already belongs to


@dataclass
class OpenIncident:
    item: IncidentItem
    members: dict[str, tuple[int, int]]  # box -> (offline time of its episode, member number)

    @property
    def incident_id(self) -> str:
        return str(self.item.incident_id)

    def seq_if_current(self, c: Candidate) -> int | None:
        """The member number of `c` if it is a member in this same offline episode."""
        m = self.members.get(c.box_id)
        return m[1] if m is not None and m[0] == c.offline_at else None


def cluster(cands: Sequence[Candidate], radius_m: float, gap_s: int, res: int,
            linked: Iterable[Sequence[str]] = ()) -> list[list[Candidate]]:
    """Connected components of "within radius and within gap", plus the `linked` groups.

    Pairs are found through H3 cells (each box against the boxes in its covering cells), so the
    work grows with the candidates and their density, not with their square.
    """
    parent = {c.box_id: c.box_id for c in cands}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for group in linked:
        present = [b for b in group if b in parent]
        for b in present[1:]:
            union(present[0], b)
    by_cell: dict[str, list[Candidate]] = defaultdict(list)
    for c in cands:
        by_cell[geo.cell_of(c.lat, c.lng, res)].append(c)
    gap_ms = gap_s * 1000
    for c in cands:
        for cell in geo.covering_cells(c.lat, c.lng, radius_m, res):
            for d in by_cell.get(cell, ()):
                # each pair once, from its smaller id (the cover is complete, so d's cell is found)
                if d.box_id <= c.box_id or abs(c.offline_at - d.offline_at) > gap_ms:
                    continue
                if geo.distance_m((c.lat, c.lng), (d.lat, d.lng)) <= radius_m:
                    union(c.box_id, d.box_id)
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for c in cands:
        groups[find(c.box_id)].append(c)
    out = [sorted(g, key=lambda c: (c.offline_at, c.box_id)) for g in groups.values()]
    return sorted(out, key=lambda g: (g[0].offline_at, g[0].box_id))


def content_hash(box_ids: Iterable[str]) -> str:
    return hashlib.sha256(",".join(sorted(box_ids)).encode()).hexdigest()[:16]


# -------------------------------------------------------------------- reads
def recent_offline(at_ms: int, settings: Settings) -> list[OfflineEntry]:
    """Offline index entries with an offline time in [at - lookback, at]: one Query per bucket."""
    lo = at_ms - lookback_ms(settings)
    out: list[OfflineEntry] = []
    for bucket in range(lo // OFFLINE_BUCKET_MS, at_ms // OFFLINE_BUCKET_MS + 1):
        out.extend(OfflineEntry.query(f"OFF#{bucket}", OfflineEntry.sk.between(f"{lo:013d}", f"{at_ms:013d}#\uffff"),
                                      consistent_read=True))
    return out


def open_incidents() -> dict[str, OpenIncident]:
    """The open incidents (sparse index) and their members: one Query each, paged by DynamoDB."""
    out: dict[str, OpenIncident] = {}
    for item in IncidentItem.open_incidents.query(OPEN):
        rows = IncidentMemberItem.rows(item.pk)
        out[item.incident_id] = OpenIncident(item, {m.box_id: (int(m.t), int(m.seq)) for m in rows})
    return out


def online_neighbours(group: Sequence[Candidate], settings: Settings) -> dict[str, tuple[BoxItem, float]]:
    """Online boxes within the outage radius of any member: box id -> (box, distance to nearest member).

    One Query of the area-cell index per cell covering a member (cells shared by members once).
    """
    members = {c.box_id for c in group}
    cells: dict[str, None] = {}
    for c in group:
        cells.update(dict.fromkeys(geo.covering_cells(c.lat, c.lng, settings.outage_radius_m, settings.area_res)))
    out: dict[str, tuple[BoxItem, float]] = {}
    for cell in cells:
        for item in BoxItem.by_area_cell.query(cell):
            if item.box_id in members or not item.online:
                continue
            d = min(geo.distance_m((item.lat, item.lng), (c.lat, c.lng)) for c in group)
            if d <= settings.outage_radius_m:
                out[item.box_id] = (item, d)
    return out


# -------------------------------------------------------------------- the sweep
@dataclass
class SweepResult:
    at_ms: int
    candidates: int = 0
    clusters: list[list[str]] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    notified: dict[str, list[str]] = field(default_factory=dict)  # incident -> clients sent to
    third_alarms: list[str] = field(default_factory=list)  # boxes whose late alarm the sweep caught
    failed: list[tuple[str, str]] = field(default_factory=list)  # (client, error) to retry next sweep


def neighbour_outage_notification(box: BoxItem, distance_m: float, group: Sequence[Candidate],
                                  incident: IncidentItem) -> Notification:
    # nearest first; a push (4 KB) lists the nearest LISTED_IN_DATA, the incident holds them all
    named = sorted(
        ({"id": c.box_id, "name": c.name, "distance_m": round(geo.distance_m((box.lat, box.lng), (c.lat, c.lng)), 1)}
         for c in group),
        key=lambda b: (b["distance_m"], b["id"]),
    )
    offline = sorted(str(b["id"]) for b in named[:LISTED_IN_DATA])
    first, last = group[0].offline_at, max(c.offline_at for c in group)
    area = {"lat": incident.center_lat, "lng": incident.center_lng, "radius_m": incident.radius_m}
    return Notification(
        kind="neighbour_outage",
        box_id=box.box_id,
        at_ms=last,
        data={"offline_boxes": offline, "boxes": offline, "offline_count": len(group), "incident": incident.incident_id,
              "area": area, "first_offline_at": first, "last_offline_at": last, "distance_m": round(distance_m, 1)},
        context={"count": len(group), "box_name": box.name, "boxes_named": named[:NAMED_IN_TEXT],
                 "span_s": (last - first) / 1000},
    )


def _area(group: Sequence[Candidate], settings: Settings) -> tuple[float, float, float]:
    """Center of the offline boxes and the radius within which neighbours were warned."""
    lat = sum(c.lat for c in group) / len(group)
    lng = sum(c.lng for c in group) / len(group)
    spread = max(geo.distance_m((lat, lng), (c.lat, c.lng)) for c in group)
    return lat, lng, round(spread + settings.outage_radius_m, 1)


def _conditional_failed(exc: PutError | UpdateError) -> bool:
    return exc.cause_response_code == "ConditionalCheckFailedException"


def _resolve(inc: OpenIncident, at_ms: int, boxes: dict[str, BoxItem], merged_into: str | None = None) -> bool:
    """Close an incident. Its resolution time is an event time: the last member's status change."""
    since = [int(boxes[b].status_since) for b in inc.members if b in boxes]
    expires_at = at_ms // 1000 + INCIDENT_DAYS * 86_400  # never while open
    actions: list[Action] = [
        IncidentItem.state.set("resolved"), IncidentItem.open_key.remove(), IncidentItem.updated_at.set(at_ms),
        IncidentItem.resolved_at.set(at_ms if merged_into else max(since, default=at_ms)),
        IncidentItem.expires_at.set(expires_at),
    ]
    if merged_into:
        actions.append(IncidentItem.merged_into.set(merged_into))
    try:
        inc.item.update(actions=actions)
    except UpdateError as exc:
        if not _conditional_failed(exc):
            raise
        return False  # another sweep changed it first; the next sweep looks again
    # its members expire with it (once per incident, 25 per request)
    _write_members(inc.incident_id, inc.members, expires_at)
    return True


def _write_members(incident_id: str, members: dict[str, tuple[int, int]], expires_at: int | None = None) -> None:
    with IncidentMemberItem.batch_write() as batch:
        for box_id, (t, seq) in members.items():
            batch.save(IncidentMemberItem(*IncidentMemberItem.key(incident_id, box_id), box_id=box_id, t=t, seq=seq,
                                          expires_at=expires_at))


def _warn(incident: IncidentItem, group: Sequence[Candidate], group_seq: int, at_ms: int, settings: Settings,
          sns: Any, result: SweepResult) -> bool:
    """Tell each client of an online neighbour what it was not told yet; True when nothing failed.

    `group_seq` is the highest member number in the cluster: a client told up to it knows every
    box of the cluster (members only join, and a box back in a new episode joins with a new number).
    """
    chosen: dict[str, tuple[BindingItem, BoxItem, float]] = {}
    neighbours = online_neighbours(group, settings)
    # a client bound to several neighbours hears once, about its nearest box
    for box_id, (box, d) in sorted(neighbours.items(), key=lambda kv: (kv[1][1], kv[0])):
        for binding in bindings_of_box(box_id):
            if binding.enabled and binding.client_id not in chosen:
                chosen[binding.client_id] = (binding, box, d)
    told_before = {r.client_id: r for r in IncidentClientItem.rows(incident.pk)}
    offline = {c.box_id for c in group}
    ok = True
    for client_id, (binding, box, d) in sorted(chosen.items()):
        old = told_before.get(client_id)
        if old is not None and int(old.told_upto) >= group_seq:
            continue  # nothing new for this client: never the same content twice
        record = IncidentClientItem(
            *IncidentClientItem.key(incident.incident_id, client_id), client_id=client_id, box_id=box.box_id,
            told_upto=group_seq, content_hash=content_hash(offline), sends=(old.sends if old else 0) + 1,
            updated_at=at_ms, expires_at=at_ms // 1000 + INCIDENT_DAYS * 86_400)
        # claim before sending, so that two overlapping sweeps cannot both send this update
        claim = IncidentClientItem.pk.does_not_exist() if old is None else IncidentClientItem.sends == old.sends
        try:
            record.save(condition=claim)
        except PutError as exc:
            if not _conditional_failed(exc):
                raise
            continue
        report: SendReport = send(sns, [binding], neighbour_outage_notification(box, d, group, incident))
        if report.failed:
            ok = False
            result.failed.extend(report.failed)
            if old is None:
                record.delete()  # release the claim: the next sweep retries
            else:
                old.save()
        elif report.sent:
            result.notified.setdefault(incident.incident_id, []).append(client_id)
    return ok


def _handle(group: list[Candidate], incidents: dict[str, OpenIncident], boxes: dict[str, BoxItem], at_ms: int,
            settings: Settings, sns: Any, result: SweepResult) -> None:
    """One cluster of 2+ offline boxes: find or open its incident, warn, record what was announced."""
    touched = sorted({c.incident for c in group if c.incident},
                     key=lambda i: (int(incidents[i].item.opened_at), i))
    if touched:
        inc = incidents[touched[0]]
    else:
        first = group[0]
        # deterministic id: a schedule delivered twice opens the same incident, once
        incident_id = f"{first.offline_at:013d}-{first.box_id}"
        inc = OpenIncident(IncidentItem(*IncidentItem.key(incident_id), incident_id=incident_id, state="open",
                                        open_key=OPEN, member_count=0, next_seq=0, announced_upto=0,
                                        opened_at=first.offline_at, updated_at=at_ms), {})
    incident = inc.item
    seqs = [inc.seq_if_current(c) for c in group]
    if len(touched) == 1 and all(q is not None and q <= int(incident.announced_upto) for q in seqs):
        return  # unchanged (or shrinking) cluster: nothing to read, nothing to say
    members = dict(inc.members)
    joined: dict[str, tuple[int, int]] = {}
    seq = int(incident.next_seq)
    for other in touched[1:]:  # merged incidents' boxes join this one
        for box_id, (t, _) in sorted(incidents[other].members.items(), key=lambda kv: kv[1][1]):
            if box_id not in members:
                seq += 1
                members[box_id] = joined[box_id] = (t, seq)
    for c in group:
        m = members.get(c.box_id)
        if m is None or m[0] != c.offline_at:
            seq += 1
            members[c.box_id] = joined[c.box_id] = (c.offline_at, seq)
    incident.next_seq, incident.member_count = seq, len(members)
    incident.opened_at = min(int(incident.opened_at), group[0].offline_at)
    incident.updated_at = at_ms
    incident.center_lat, incident.center_lng, incident.radius_m = _area(group, settings)
    try:
        incident.save()  # optimistic lock on `revision` (and "does not exist yet" for a new one)
    except PutError as exc:
        if not _conditional_failed(exc):
            raise
        return
    # after the claim above; a crash before this line leaves boxes that join again next sweep
    _write_members(inc.incident_id, joined)
    inc.members = members
    (result.updated if touched else result.opened).append(inc.incident_id)
    for other in touched[1:]:
        if _resolve(incidents[other], at_ms, boxes, merged_into=inc.incident_id):
            result.resolved.append(other)
    group_seq = max(members[c.box_id][1] for c in group)
    if _warn(incident, group, group_seq, at_ms, settings, sns, result):
        try:
            incident.update(actions=[IncidentItem.announced_upto.set(max(int(incident.announced_upto), group_seq))])
        except UpdateError as exc:
            if not _conditional_failed(exc):
                raise


def _late_third_alarms(entries: list[OfflineEntry], boxes: dict[str, BoxItem], at_ms: int, settings: Settings,
                       sns: Any, result: SweepResult) -> None:
    """Once per disconnect, after a grace period: an alarm delivered after the disconnect was processed.

    Two requests per box; an area outage of thousands would hold the sweep past its timeout, so a
    sweep checks at most LATE_CHECKS_PER_SWEEP (oldest first) and the next sweep goes on.
    """
    due = [e for e in entries if not (e.clean or e.third_alarm_seq is not None or e.alarm_checked)
           and int(e.offline_at) + alarm_grace_ms(settings) <= at_ms and e.box_id in boxes]
    for entry in due[:LATE_CHECKS_PER_SWEEP]:
        reports: dict[str, SendReport] = {}
        if offline_after_alarm(boxes[entry.box_id], entry, settings, sns, reports) is not None:
            result.third_alarms.append(entry.box_id)
        failed = [f for r in reports.values() for f in r.failed]
        result.failed.extend(failed)
        if not failed:
            entry.update(actions=[OfflineEntry.alarm_checked.set(True)])


def sweep(at_ms: int, settings: Settings, sns: Any) -> SweepResult:
    """One sweep at event time `at_ms`; its reads follow the boxes that changed state, not the fleet."""
    result = SweepResult(at_ms)
    entries = recent_offline(at_ms, settings)
    incidents = open_incidents()
    ids = sorted({e.box_id for e in entries} | {b for i in incidents.values() for b in i.members})
    boxes = {b.box_id: b for b in BoxItem.batch_get(ids, consistent_read=True)} if ids else {}

    cands = {
        b.box_id: Candidate(b.box_id, b.name, float(b.lat), float(b.lng), int(b.status_since))
        for b in boxes.values() if not b.online and int(b.status_since) <= at_ms
    }
    linked: list[list[str]] = []
    for inc in incidents.values():
        # a member is still part of the outage only in the same offline episode it was recorded with
        still = [b for b in inc.members if b in cands and inc.seq_if_current(cands[b]) is not None]
        for b in still:
            cands[b].incident = inc.incident_id
        if still:
            linked.append(still)
        elif _resolve(inc, at_ms, boxes):
            result.resolved.append(inc.incident_id)
    since = at_ms - lookback_ms(settings)
    # an old outage not held by an open incident is not news: its boxes were clustered back then
    current = [c for c in cands.values() if c.incident or c.offline_at >= since]
    result.candidates = len(current)
    for group in cluster(current, settings.outage_radius_m, settings.outage_max_gap_s, settings.area_res, linked):
        if len(group) < 2:
            continue
        result.clusters.append([c.box_id for c in group])
        _handle(group, incidents, boxes, at_ms, settings, sns, result)
    # after the clusters: the fourth alarm must not wait behind a long list of late checks
    _late_third_alarms(entries, boxes, at_ms, settings, sns, result)
    return result
