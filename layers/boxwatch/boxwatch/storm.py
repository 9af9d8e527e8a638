"""Storm mode: an offline cluster that is a share of a whole area is a power outage, not a fire.

The rule (docs/claims.md "Storm mode", docs/network-status.md): at a sweep at T, a live incident
with at least `storm_min_boxes` members whose episode is open is tested once per sweep in which it
changed: around the centre of those open members, within `storm_radius_m`, count the open members
(n) and every registered box (N, from the area-cell index). It is a storm when n >= storm_min_boxes
and n >= storm_share x N. A storm is sticky: it stays one until the incident resolves.

A storm incident tells each client of an online neighbour (the fourth alarm's recipients) once,
`area_outage`, however it grows; when it resolves, each client told gets one `area_all_clear`.
The third alarm is untouched: Presence sends it at the drop, the sweep's late checks go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pynamodb.exceptions import PutError

from boxwatch import geo
from boxwatch.bindings import bindings_of_box
from boxwatch.models import LEASE_MS, BindingItem, BoxItem, IncidentClientItem, IncidentItem, condition_failed
from boxwatch.notify import Notification, SendReport, record_after_push, send
from boxwatch.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

INCIDENT_DAYS = 90


class Candidate(Protocol):
    """An offline member as the sweep holds it (boxwatch.incidents.Candidate)."""

    @property
    def lat(self) -> float: ...
    @property
    def lng(self) -> float: ...
    @property
    def offline_at(self) -> int: ...


@dataclass(frozen=True)
class StormTest:
    """What the storm test counted: open members (n) and registered boxes (N) in the storm disk."""

    lat: float
    lng: float
    offline: int
    boxes: int

    def is_storm(self, settings: Settings) -> bool:
        return self.offline >= settings.storm_min_boxes and self.offline >= settings.storm_share * self.boxes


def centre(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    return sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)


def count_in_disk(points: Sequence[tuple[float, float]], lat: float, lng: float, radius_m: float) -> int:
    return sum(geo.distance_m((lat, lng), p) <= radius_m for p in points)


def assess(open_members: Sequence[Candidate], settings: Settings) -> StormTest | None:
    """The storm test of an incident's open members; None (no reads) below storm_min_boxes."""
    if len(open_members) < settings.storm_min_boxes:
        return None
    points = [(c.lat, c.lng) for c in open_members]
    lat, lng = centre(points)
    offline = count_in_disk(points, lat, lng, settings.storm_radius_m)
    if offline < settings.storm_min_boxes:
        return StormTest(lat, lng, offline, 0)  # cannot be a storm whatever the fleet: no reads
    boxes = 0
    # one Query per area cell covering the disk: every registered box, online or not
    for cell in geo.covering_cells(lat, lng, settings.storm_radius_m, settings.area_res):
        for item in BoxItem.by_area_cell.query(cell, attributes_to_get=["box_id", "lat", "lng"]):
            boxes += geo.distance_m((lat, lng), (float(item.lat), float(item.lng))) <= settings.storm_radius_m
    return StormTest(lat, lng, offline, boxes)


def mark(item: IncidentItem, test: StormTest, at_ms: int, settings: Settings) -> None:
    """Record the storm on the incident (saved with it by the sweep)."""
    item.storm = True
    item.storm_at = at_ms
    item.storm_lat, item.storm_lng = round(test.lat, 6), round(test.lng, 6)
    item.storm_radius_m = settings.storm_radius_m
    item.storm_boxes = test.boxes


def _area(item: IncidentItem) -> dict[str, Any]:
    return {"lat": item.storm_lat, "lng": item.storm_lng, "radius_m": item.storm_radius_m}


def area_outage_notification(box: BoxItem, distance_m: float, span: tuple[int, int], open_count: int,
                             item: IncidentItem) -> Notification:
    """`span`: the first and the last drop of the incident's members."""
    first, last = span
    return Notification(
        kind="area_outage",
        box_id=box.box_id,
        at_ms=last,
        data={"incident": item.incident_id, "area": _area(item), "offline_count": open_count,
              "boxes_in_area": int(item.storm_boxes or 0), "power_out": True, "first_offline_at": first,
              "last_offline_at": last, "distance_m": round(distance_m, 1), "boxes": []},
        context={"count": open_count, "box_name": box.name, "radius_m": float(item.storm_radius_m or 0)},
    )


def area_all_clear_notification(box: BoxItem, item: IncidentItem, back_at: int) -> Notification:
    return Notification(
        kind="area_all_clear",
        box_id=box.box_id,
        at_ms=back_at,
        data={"incident": item.incident_id, "area": _area(item), "offline_count": int(item.member_count or 0),
              "back_at": back_at, "boxes": []},
        context={"count": int(item.member_count or 0), "box_name": box.name},
    )


def claim_told(record: IncidentClientItem, old: IncidentClientItem | None) -> bool:
    """A conditional write before the push: two overlapping sweeps cannot both send it. The claim is
    pending until `confirm_told` (a claim found pending is pushed again, see IncidentClientItem)."""
    condition = IncidentClientItem.pk.does_not_exist() if old is None else IncidentClientItem.sends == old.sends
    record.pending_at = record.updated_at
    try:
        record.save(condition=condition)
    except PutError as exc:
        if not condition_failed(exc):
            raise
        return False
    return True


def confirm_told(record: IncidentClientItem) -> None:
    """The push of a claim went out: no longer pending (retried in the invocation, as every record
    of a push made)."""
    record_after_push(lambda: record.update(actions=[IncidentClientItem.pending_at.remove()]))


def confirmed(record: IncidentClientItem | None) -> bool:
    """Was what the record says sent? A pending claim may not have been."""
    return record is not None and record.pending_at is None


def leased(record: IncidentClientItem | None, at_ms: int) -> bool:
    """Is the record a claim that its sweep may still be pushing? Then no other sweep touches it
    (overlapping sweeps, a schedule delivered twice): only a claim older than the lease is owed."""
    return record is not None and record.pending_at is not None and int(record.pending_at) + LEASE_MS > at_ms


def release(record: IncidentClientItem) -> None:
    """A claim whose push failed is owed at once: the next sweep sends it, not one a lease later."""
    record_after_push(lambda: record.update(actions=[IncidentClientItem.pending_at.set(0)]))


def warn_area(item: IncidentItem, span: tuple[int, int], open_count: int,
              chosen: dict[str, tuple[BindingItem, BoxItem, float]], at_ms: int, sns: SNSClient,
              notified: list[str], failed: list[tuple[str, str]]) -> bool:
    """One `area_outage` per client of an online neighbour, ever (a client told already is skipped,
    whatever it was told before the incident became a storm); True when no push failed."""
    told = IncidentClientItem.some(item.incident_id, chosen)  # the chosen clients' rows only
    ok = True
    for client_id, (binding, box, d) in sorted(chosen.items()):
        old = told.get(client_id)
        if confirmed(old) and old is not None and old.area_told:
            continue
        if leased(old, at_ms):
            ok = False  # an overlapping sweep is telling it
            continue
        record = IncidentClientItem(
            *IncidentClientItem.key(item.incident_id, client_id), client_id=client_id, box_id=box.box_id,
            told_upto=int(item.next_seq), content_hash=None if old is None else old.content_hash,
            sends=(old.sends if old else 0) + 1, area_told=True, updated_at=at_ms,
            expires_at=at_ms // 1000 + INCIDENT_DAYS * 86_400)
        if not claim_told(record, old):
            continue
        report: SendReport = send(sns, [binding], area_outage_notification(box, d, span, open_count, item))
        if report.failed:
            ok = False
            failed.extend(report.failed)
            if old is None:
                record.delete()  # released: the next sweep retries
            else:
                old.save()
        elif report.sent:
            confirm_told(record)
            notified.append(client_id)
    return ok


def all_clear(item: IncidentItem, back_at: int, at_ms: int, sns: SNSClient, notified: list[str],
              failed: list[tuple[str, str]]) -> bool:
    """One `area_all_clear` per client told `area_outage`; True when every one was sent (then the
    incident may resolve; otherwise it stays open and the next sweep sends the rest)."""
    ok = True
    todo = [r for r in IncidentClientItem.rows(item.pk) if r.area_told and not (r.cleared and confirmed(r))]
    ids = sorted({r.box_id for r in todo})
    boxes = {b.box_id: b for b in BoxItem.batch_get(ids)} if ids else {}
    for old in todo:
        if leased(old, at_ms):
            ok = False  # an overlapping sweep is telling it
            continue
        box = boxes.get(old.box_id)
        bindings = [] if box is None else [
            b for b in bindings_of_box(old.box_id) if b.client_id == old.client_id and b.enabled]
        record = IncidentClientItem(
            *IncidentClientItem.key(item.incident_id, old.client_id), client_id=old.client_id, box_id=old.box_id,
            told_upto=int(old.told_upto), content_hash=old.content_hash, sends=int(old.sends) + 1, area_told=True,
            cleared=True, updated_at=at_ms, expires_at=at_ms // 1000 + INCIDENT_DAYS * 86_400)
        if not claim_told(record, old):
            continue
        if box is None or not bindings:
            confirm_told(record)  # unbound since: nobody to tell, recorded as cleared
            continue
        report = send(sns, bindings[:1], area_all_clear_notification(box, item, back_at))
        if report.failed:
            ok = False
            failed.extend(report.failed)
            old.save()
        elif report.sent:
            confirm_told(record)
            notified.append(old.client_id)
    return ok
