"""The alarm path: store an alarm log once, locate it, find same-cause neighbours, notify.

First alarm: every client bound to the box gets the located alarm.
Second alarm: if other boxes within `neighbour_radius_m` raised the same cause within
`neighbour_window_s` before this alarm, the box's clients are told which (one message, all boxes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from aws_lambda_powertools.utilities.idempotency import idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from boxwatch import geo
from boxwatch.contract import AlarmEvent
from boxwatch.errors import Conflict
from boxwatch.idempotency import Idempotency
from boxwatch.models import AlarmCellEntry, AlarmReceivedEntry, AlarmRecord, BoxItem, connection
from boxwatch.notify import LISTED_IN_DATA, NAMED_IN_TEXT, Notification, SendReport, local_time, send
from boxwatch.registry import bindings_of_box, get_box
from boxwatch.settings import Settings


@dataclass
class Neighbour:
    id: str
    name: str
    distance_m: float
    alarm_time: int
    seq: int

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "distance_m": round(self.distance_m, 1),
                "alarm_time": self.alarm_time, "seq": self.seq}


@dataclass
class IngestResult:
    status: Literal["stored", "duplicate", "resumed"]
    box_id: str
    seq: int
    neighbours: list[Neighbour] = field(default_factory=list)
    reports: dict[str, SendReport] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: what the idempotency record keeps as the delivery's response (the nearest
        neighbours only, as a push does: a dense storm must not make this a 100 KB item)."""
        return {"status": self.status, "box_id": self.box_id, "seq": self.seq,
                "neighbours": [n.as_dict() for n in self.neighbours[:LISTED_IN_DATA]],
                "neighbour_count": len(self.neighbours),
                "reports": {k: {"sent": r.sent, "disabled": r.disabled, "failed": [list(f) for f in r.failed]}
                            for k, r in self.reports.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IngestResult:
        return cls(
            status=d["status"], box_id=d["box_id"], seq=int(d["seq"]),
            neighbours=[Neighbour(n["id"], n["name"], float(n["distance_m"]), int(n["alarm_time"]), int(n["seq"]))
                        for n in d.get("neighbours", [])],
            reports={k: SendReport(list(r["sent"]), list(r["disabled"]), [(c, e) for c, e in r["failed"]])
                     for k, r in d.get("reports", {}).items()},
        )


def _same_content(existing: AlarmRecord, alarm: AlarmEvent) -> bool:
    return (existing.cause, int(existing.alarm_time), float(existing.value), float(existing.threshold)) == (
        alarm.cause.value, alarm.alarm_time, alarm.value, alarm.threshold)


def _store(alarm: AlarmEvent, box: BoxItem, settings: Settings) -> AlarmRecord | None:
    """Write the record and its cell entry atomically; return the existing record on a redelivery."""
    cell = geo.cell_of(box.lat, box.lng, settings.alarm_res)
    expires = alarm.alarm_time // 1000 + settings.alarm_retention_days * 86_400
    record = AlarmRecord(
        *AlarmRecord.key(box.box_id, alarm.seq),
        box_id=box.box_id, seq=alarm.seq, cause=alarm.cause.value, alarm_time=alarm.alarm_time,
        received_at=alarm.received_at, value=alarm.value, threshold=alarm.threshold, unit=alarm.unit,
        circuit=alarm.circuit, phase=alarm.phase, cell=cell, expires_at=expires,
    )
    entry = AlarmCellEntry(
        *AlarmCellEntry.key(cell, alarm.cause.value, alarm.alarm_time, box.box_id, alarm.seq),
        box_id=box.box_id, name=box.name, lat=box.lat, lng=box.lng, seq=alarm.seq,
        alarm_time=alarm.alarm_time,
        # the cell index only serves the correlation window; keep it a day past that
        expires_at=alarm.alarm_time // 1000 + settings.neighbour_window_s + 86_400,
    )
    received = AlarmReceivedEntry(
        *AlarmReceivedEntry.key(box.box_id, alarm.received_at, alarm.seq, alarm.alarm_time),
        box_id=box.box_id, seq=alarm.seq, cause=alarm.cause.value, alarm_time=alarm.alarm_time,
        received_at=alarm.received_at, record_sk=record.sk, expires_at=expires,
    )
    try:
        with TransactWrite(connection=connection()) as tx:
            tx.save(record, condition=AlarmRecord.pk.does_not_exist())
            tx.save(entry)
            tx.save(received)
    except TransactWriteError as exc:
        reasons = [r.code for r in (exc.cancellation_reasons or []) if r is not None]
        if "ConditionalCheckFailed" not in reasons:
            raise
        existing = AlarmRecord.get(*AlarmRecord.key(box.box_id, alarm.seq), consistent_read=True)
        if not _same_content(existing, alarm):
            raise Conflict("sequence number reused with different content", box=box.box_id, seq=alarm.seq) from None
        return existing
    return None


def same_cause_neighbours(box: BoxItem, cause: str, alarm_time: int, settings: Settings) -> list[Neighbour]:
    """Other boxes within the radius with a `cause` alarm in [t - window, t]: one Query per cell."""
    lo = f"{cause}#{alarm_time - settings.neighbour_window_s * 1000:013d}"
    hi = f"{cause}#{alarm_time:013d}#\uffff"
    found: dict[str, Neighbour] = {}
    for cell in geo.covering_cells(box.lat, box.lng, settings.neighbour_radius_m, settings.alarm_res):
        for entry in AlarmCellEntry.query(f"CELL#{cell}", AlarmCellEntry.sk.between(lo, hi), consistent_read=True):
            if entry.box_id == box.box_id:
                continue
            d = geo.distance_m((box.lat, box.lng), (entry.lat, entry.lng))
            if d > settings.neighbour_radius_m:
                continue
            seen = found.get(entry.box_id)
            if seen is None or entry.alarm_time > seen.alarm_time:
                found[entry.box_id] = Neighbour(entry.box_id, entry.name, d, int(entry.alarm_time), int(entry.seq))
    return sorted(found.values(), key=lambda n: (n.distance_m, n.id))


def alarm_notification(box: BoxItem, alarm: AlarmEvent) -> Notification:
    return Notification(
        kind="alarm",
        box_id=box.box_id,
        at_ms=alarm.received_at,
        data={"cause": alarm.cause.value, "seq": alarm.seq, "alarm_time": alarm.alarm_time,
              "value": alarm.value, "threshold": alarm.threshold, "unit": alarm.unit,
              "name": box.name, "address": box.address, "lat": box.lat, "lng": box.lng, "boxes": []},
        context={"cause": alarm.cause.value, "value": alarm.value, "threshold": alarm.threshold,
                 "unit": alarm.unit, "local_time": local_time(alarm.alarm_time, box.timezone),
                 "box_name": box.name, "address": box.address, "lat": box.lat, "lng": box.lng},
    )


def nearby_notification(box: BoxItem, alarm: AlarmEvent, neighbours: list[Neighbour],
                        settings: Settings) -> Notification:
    return Notification(
        kind="same_cause_nearby",
        box_id=box.box_id,
        at_ms=alarm.received_at,
        # neighbours come nearest first; a push carries the nearest (4 KB), with the count of all
        data={"cause": alarm.cause.value, "seq": alarm.seq, "alarm_time": alarm.alarm_time,
              "count": len(neighbours), "boxes": [n.id for n in neighbours[:LISTED_IN_DATA]],
              "neighbours": [n.as_dict() for n in neighbours[:NAMED_IN_TEXT]]},
        context={"cause": alarm.cause.value, "box_name": box.name, "count": len(neighbours),
                 "radius_m": settings.neighbour_radius_m, "window_min": settings.neighbour_window_s / 60,
                 "boxes_named": [{"id": n.id, "name": n.name, "distance_m": n.distance_m}
                                 for n in neighbours[:NAMED_IN_TEXT]]},
    )


class NotificationFailed(RuntimeError):
    """Some pushes failed for a retryable reason: the invocation fails so that Lambda retries it."""


def _record_sent(box_id: str, seq: int, sent: set[str]) -> None:
    """Remember who already got the alarm, so that the retry skips them (failure path only)."""
    AlarmRecord(*AlarmRecord.key(box_id, seq)).update(actions=[AlarmRecord.sent.set(sorted(sent))])


def _process(alarm: AlarmEvent, settings: Settings, sns: Any) -> IngestResult:
    box = get_box(alarm.thing)
    existing = _store(alarm, box, settings)
    if existing is not None and existing.notified_at is not None:  # notified before idempotency records existed
        return IngestResult("duplicate", box.box_id, alarm.seq)

    neighbours = same_cause_neighbours(box, alarm.cause.value, alarm.alarm_time, settings)
    bindings = bindings_of_box(box.box_id)
    result = IngestResult("stored" if existing is None else "resumed", box.box_id, alarm.seq, neighbours)
    already: set[str] = set(existing.sent or []) if existing is not None else set()
    notes = [alarm_notification(box, alarm)]
    if neighbours:
        notes.append(nearby_notification(box, alarm, neighbours, settings))
    for note in notes:
        result.reports[note.kind] = SendReport()

    def sent_so_far() -> set[str]:
        return already | {f"{kind}#{c}" for kind, r in result.reports.items() for c in r.sent}

    try:
        for note in notes:
            skip = {key.split("#", 1)[1] for key in already if key.startswith(f"{note.kind}#")}
            send(sns, bindings, note, skip=skip, report=result.reports[note.kind])
    except Exception:
        if sent_so_far() != already:
            _record_sent(box.box_id, alarm.seq, sent_so_far())
        raise
    failed = [f for r in result.reports.values() for f in r.failed]
    if failed:
        if sent_so_far() != already:
            _record_sent(box.box_id, alarm.seq, sent_so_far())
        raise NotificationFailed(f"push failed for {len(failed)} client(s): {failed[:5]}")
    return result


def ingest_alarm(alarm: AlarmEvent, settings: Settings, sns: Any, idempotency: Idempotency) -> IngestResult:
    """Store once, notify each bound client once, however often IoT and Lambda deliver the alarm.

    The powertools record keyed on (box, seq) makes a redelivery of a processed alarm return at
    once (one DynamoDB request) and holds concurrent deliveries off while one is in progress.
    A delivery whose predecessor failed finds the alarm record stored and resumes the fan-out,
    skipping the clients the failed attempt recorded as sent (docs/reliability.md).
    """
    alarm.check_time(settings.alarm_max_age_s, settings.alarm_max_future_s)
    delivery = {"thing": alarm.thing, "seq": alarm.seq,
                "content": [alarm.cause.value, alarm.alarm_time, alarm.value, alarm.threshold]}

    done: list[IngestResult] = []

    def once(delivery: dict[str, Any]) -> dict[str, Any]:
        done.append(_process(alarm, settings, sns))
        return done[0].as_dict()

    try:
        out = idempotent_function(
            once, data_keyword_argument="delivery", persistence_store=idempotency.persistence,
            config=idempotency.config, key_prefix="alarm",
        )(delivery=delivery)
    except IdempotencyValidationError:
        raise Conflict("sequence number reused with different content", box=alarm.thing, seq=alarm.seq) from None
    except IdempotencyPersistenceLayerError:
        if not done:
            raise
        # everyone was pushed but the record could not be completed: it would expire IN_PROGRESS
        # and a redelivery would push again, so mark the alarm itself notified (failure path only)
        AlarmRecord(*AlarmRecord.key(done[0].box_id, alarm.seq)).update(
            actions=[AlarmRecord.notified_at.set(alarm.received_at)])
        return done[0]
    return IngestResult.from_dict(out)
