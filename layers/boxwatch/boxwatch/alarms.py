"""The alarm path: store an alarm log once, locate it, find same-cause neighbours, notify.

docs/claims.md states the rules; in short:
First alarm: every client bound to the box gets the located alarm, unless the flood hold-down
holds it (more than `alarm_burst` alarms of one box and cause within a hold window of
`alarm_repeat_hold_s` on received_at): held alarms are stored and correlated, and the alarm sweep
sends one `alarm_summary` per window that held any.
Second alarm: alarms of one cause within `neighbour_radius_m` whose alarm times differ by at most
`neighbour_window_s`, in either direction, are neighbours. The alarm processed second tells its
box's clients (`same_cause_nearby`); the clients of the earlier boxes get a `nearby_update` naming
it, at most one per client and cause per window.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from boxwatch import alarm_life, due, geo
from boxwatch.bindings import binding_from_snapshot, bindings_of_box, snapshot_of
from boxwatch.changes import add_alarm_to_transaction, note_alarm
from boxwatch.devices import devices_of
from boxwatch.errors import Conflict, UnknownBox
from boxwatch.events import AlarmEvent
from boxwatch.idempotency import Idempotency
from boxwatch.models import (
    AlarmCellEntry,
    AlarmClearRecord,
    AlarmReceivedEntry,
    AlarmRecord,
    BindingItem,
    BoxItem,
    DueItem,
    NearbyClaim,
    cancelled_by_condition,
    condition_failed,
    connection,
)
from boxwatch.notify import (
    LISTED_IN_DATA,
    NAMED_IN_TEXT,
    Notification,
    SendReport,
    local_time,
    record_after_push,
    send,
)
from boxwatch.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

SUMMARY_KIND = "alarm_summary"
# concurrent alarms of one box race on its hold state (or DynamoDB throttles the transaction);
# past this many tries in one invocation, Lambda retries, a minute later: a safety push should not
# wait that long for what 50 ms of backoff clears
STORE_ATTEMPTS = 5
BACKOFF_S = 0.025
THROTTLED = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
             "InternalServerError"}
# bindings copied onto a cell entry for later neighbours' nearby_update; beyond, they Query
SNAPSHOT_MAX_CLIENTS = 100
R = TypeVar("R", AlarmRecord, AlarmClearRecord)


class StoreContention(RuntimeError):
    """Concurrent alarms of the box kept racing on its hold state, or DynamoDB kept throttling:
    retryable (Lambda retries), never bad input."""


@dataclass
class Neighbour:
    id: str
    name: str
    distance_m: float
    alarm_time: int
    seq: int
    lat: float | None = None
    lng: float | None = None
    # the box's enabled bindings when it alarmed (bindings.snapshot_of); None: not known
    clients: list[list[Any]] | None = None

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
    held: bool = False  # held by the flood hold-down: stored and counted, not pushed
    seq_reused: bool = False  # a new alarm whose seq was stored before with other content
    record_sk: str | None = None
    alarm_id: str | None = None  # the alarm (life) this log opened, joined or cleared
    cleared: bool = False  # a clear message that cleared an active alarm

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: what the idempotency record keeps as the delivery's response (the nearest
        neighbours only, as a push does: a dense storm must not make this a 100 KB item)."""
        return {"status": self.status, "box_id": self.box_id, "seq": self.seq,
                "neighbours": [n.as_dict() for n in self.neighbours[:LISTED_IN_DATA]],
                "neighbour_count": len(self.neighbours), "held": self.held, "seq_reused": self.seq_reused,
                "record_sk": self.record_sk, "alarm_id": self.alarm_id, "cleared": self.cleared,
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
            held=bool(d.get("held", False)), seq_reused=bool(d.get("seq_reused", False)),
            record_sk=d.get("record_sk"), alarm_id=d.get("alarm_id"), cleared=bool(d.get("cleared", False)),
        )


def content_hash(alarm: AlarmEvent) -> str:
    """The alarm's content (cause, alarm time, value, threshold) as 16 hex digits: its identity
    besides (box, seq) when a sequence number is reused."""
    raw = json.dumps([alarm.cause.value, alarm.alarm_time, alarm.value, alarm.threshold])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _same_content(existing: AlarmRecord | AlarmClearRecord, alarm: AlarmEvent) -> bool:
    return (existing.cause, int(existing.alarm_time), float(existing.value), float(existing.threshold)) == (
        alarm.cause.value, alarm.alarm_time, alarm.value, alarm.threshold)


# ---------------------------------------------------------------------------------------- hold-down
@dataclass(frozen=True)
class Hold:
    held: bool
    start: int  # the window's start: received_at (ms) of the alarm that opened it
    n: int  # alarms processed in the window, this one included
    holds: dict[str, dict[str, int]]  # the box's hold state after this alarm


def decide_hold(box: BoxItem, alarm: AlarmEvent, settings: Settings) -> Hold:
    """Which hold window of (box, cause) the alarm falls in and whether it is held (docs/claims.md)."""
    cause, r = alarm.cause.value, alarm.received_at
    hold_ms = settings.alarm_repeat_hold_s * 1000
    state = (box.holds or {}).get(cause)
    if state is None or r >= int(state["r0"]) + hold_ms:
        start, n = r, 1
    else:
        # the open window; an alarm received before its start but processed after it (a retry)
        # counts in it too: the hold-down follows processing order
        start, n = int(state["r0"]), int(state["n"]) + 1
    holds = {c: s for c, s in (box.holds or {}).items() if c != cause and r < int(s["r0"]) + hold_ms}
    holds[cause] = {"r0": start, "n": n}
    return Hold(n > settings.alarm_burst, start, n, holds)


def summary_item(box: BoxItem, alarm: AlarmEvent, hold: Hold, settings: Settings) -> DueItem:
    end = hold.start + settings.alarm_repeat_hold_s * 1000
    return DueItem(
        *DueItem.key(SUMMARY_KIND, f"{box.box_id}#{alarm.cause.value}#{hold.start}"),
        kind=SUMMARY_KIND, subject=f"{box.box_id}#{alarm.cause.value}#{hold.start}", due="1", due_at=end,
        box_id=box.box_id, tally=1,
        data={"cause": alarm.cause.value, "window_start": hold.start, "window_end": end, "box_name": box.name,
              "timezone": box.timezone},
        expires_at=end // 1000 + settings.alarm_retention_days * 86_400,
    )


# ---------------------------------------------------------------------------------------- store
@dataclass
class Stored:
    record: AlarmRecord
    existing: bool  # a redelivery found it stored: resume its fan-out
    held: bool
    reused: bool  # stored under its content-keyed identity
    alarm_id: str | None = None  # the alarm (life) it opened or joined
    opened: bool = False


def _box(box_id: str) -> BoxItem:
    try:
        # consistent: the hold state must be the latest, or the conditional write fails for nothing
        return BoxItem.get(box_id, consistent_read=True)
    except BoxItem.DoesNotExist:
        raise UnknownBox(f"box {box_id!r} is not registered", box=box_id) from None


def _snapshot(bindings: list[BindingItem]) -> list[list[str | None]] | None:
    enabled = [snapshot_of(b) for b in bindings if b.enabled]
    return enabled if len(enabled) <= SNAPSHOT_MAX_CLIENTS else None


def _cancelled(exc: TransactWriteError, attempt: int) -> tuple[set[int], bool, bool]:
    """A cancelled transaction: (the items whose condition failed, try again as it is, a conflict).
    Another transaction on the box item at the same moment, or a throttle, is tried again after a
    back-off (slept here); on a conflict the caller reads the box again."""
    codes = [None if r is None else r.code for r in exc.cancellation_reasons or []]
    failed = {i for i, lost in enumerate(cancelled_by_condition(exc)) if lost}
    conflict = "TransactionConflict" in codes
    retry = not failed and (conflict or exc.cause_response_code in THROTTLED)
    if retry:
        time.sleep(BACKOFF_S * 2 ** attempt)
    return failed, retry, conflict


@dataclass
class _Lost(Generic[R]):
    """What a cancelled store transaction leaves to its loop."""

    failed: set[int]  # the items whose condition failed
    box: BoxItem  # read again after a conflict
    digest: str | None  # the content hash to store under, once the box's counter restarted
    taken: R | None = None  # a redelivery: the record stored before
    again: bool = False  # try again (after a back-off, or under the content hash)


def _lost(exc: TransactWriteError, attempt: int, record: R, alarm: AlarmEvent, digest: str | None,
          box: BoxItem) -> _Lost[R]:
    """A throttle or a conflict is tried again; a taken key (box, seq[, hash]) is a redelivery when
    the stored record has the same content, else the box's counter restarted and the alarm is stored
    under its content hash: never dropped for its sequence number. Other failed conditions are the
    caller's."""
    failed, retry, conflict = _cancelled(exc, attempt)
    if retry:
        return _Lost(failed, _box(box.box_id) if conflict else box, digest, again=True)
    if 0 not in failed:
        return _Lost(failed, box, digest)
    existing = type(record).get(record.pk, record.sk, consistent_read=True)
    if _same_content(existing, alarm):
        return _Lost(failed, box, digest, taken=existing)
    if digest is not None:  # two contents with one 64-bit hash: never seen, never guessed
        raise Conflict("alarm content hash collision", box=box.box_id, seq=alarm.seq)
    return _Lost(failed, box, content_hash(alarm), again=True)


def _store(alarm: AlarmEvent, box: BoxItem, bindings: list[BindingItem], settings: Settings) -> Stored:
    """Write the record, its index entries, the box's hold state and, for a held alarm, its hold
    window's summary counter, in one transaction (one request); on a redelivery return the record.

    The record's key is (box, seq); if that holds other content, the box's counter restarted and
    the alarm is stored under (box, seq, content hash): never dropped for its sequence number.
    """
    digest: str | None = None
    cell = geo.cell_of(box.lat, box.lng, settings.alarm_res)
    expires = alarm.alarm_time // 1000 + settings.alarm_retention_days * 86_400
    summary_exists: bool | None = None  # learnt from a lost race on the summary item
    for attempt in range(STORE_ATTEMPTS):
        hold = decide_hold(box, alarm, settings)
        record = AlarmRecord(
            *AlarmRecord.key(box.box_id, alarm.seq, digest),
            box_id=box.box_id, seq=alarm.seq, cause=alarm.cause.value, alarm_time=alarm.alarm_time,
            received_at=alarm.received_at, value=alarm.value, threshold=alarm.threshold, unit=alarm.unit,
            circuit=alarm.circuit, phase=alarm.phase, cell=cell, expires_at=expires,
            held=True if hold.held else None, hold_start=hold.start, seq_reused=True if digest else None,
        )
        entry = AlarmCellEntry(
            *AlarmCellEntry.key(cell, alarm.cause.value, alarm.alarm_time, box.box_id, alarm.seq, digest),
            box_id=box.box_id, name=box.name, lat=box.lat, lng=box.lng, seq=alarm.seq,
            alarm_time=alarm.alarm_time, received_at=alarm.received_at, clients=_snapshot(bindings),
            # the cell index only serves the correlation window (either side); keep it a day past that
            expires_at=alarm.alarm_time // 1000 + settings.neighbour_window_s + 86_400,
        )
        received = AlarmReceivedEntry(
            *AlarmReceivedEntry.key(box.box_id, alarm.received_at, alarm.seq, alarm.alarm_time),
            box_id=box.box_id, seq=alarm.seq, cause=alarm.cause.value, alarm_time=alarm.alarm_time,
            received_at=alarm.received_at, record_sk=record.sk, expires_at=expires,
        )
        rev, same_state = alarm_life.box_rev(box)
        summary = summary_item(box, alarm, hold, settings)
        first_held = hold.n == settings.alarm_burst + 1 if summary_exists is None else not summary_exists
        try:
            with TransactWrite(connection=connection()) as tx:
                tx.save(record, condition=AlarmRecord.pk.does_not_exist())
                tx.save(entry)
                tx.save(received)
                if hold.held and first_held:
                    tx.save(summary, condition=DueItem.pk.does_not_exist())
                elif hold.held:
                    tx.update(DueItem(summary.pk, summary.sk), actions=[DueItem.tally.add(1)],
                              condition=DueItem.pk.exists())
                # the alarm's life: opened (with its escalation chain) or joined, in this request
                life = alarm_life.add_to_transaction(tx, box, alarm, digest, settings, 3 + int(hold.held))
                add_alarm_to_transaction(tx, box, life.alarm_id, life.cause, life.view, alarm.received_at, settings)
                tx.update(BoxItem(box.box_id), actions=[BoxItem.holds.set(hold.holds),
                                                        BoxItem.active.set(life.active),
                                                        BoxItem.hold_rev.set((rev or 0) + 1)],
                          condition=BoxItem.box_id.exists() & same_state)
        except TransactWriteError as exc:
            lost = _lost(exc, attempt, record, alarm, digest, box)
            box, digest, failed = lost.box, lost.digest, lost.failed
            if lost.taken is not None:
                return Stored(lost.taken, True, bool(lost.taken.held), digest is not None)
            if lost.again:
                continue
            box_index = len(exc.cancellation_reasons or []) - 1
            if box_index in failed or life.index in failed:
                # another alarm (or a clear) of this box changed its hold state or its alarms first
                box = _box(box.box_id)
                continue
            if 3 in failed and hold.held:
                summary_exists = first_held
                continue
            raise
        return Stored(record, False, hold.held, digest is not None, life.alarm_id, life.opened)
    raise StoreContention(f"storing {box.box_id}'s alarm failed {STORE_ATTEMPTS} times: contention or throttling")


# ---------------------------------------------------------------------------------------- second alarm
def same_cause_neighbours(box: BoxItem, cause: str, alarm_time: int, settings: Settings) -> list[Neighbour]:
    """Other boxes within the radius with a `cause` alarm in [t - window, t + window] (alarm
    times, both edges inclusive): one Query per cell. Nearest first; per box its latest alarm."""
    window = settings.neighbour_window_s * 1000
    lo = f"{cause}#{alarm_time - window:013d}"
    hi = f"{cause}#{alarm_time + window:013d}#\uffff"
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
                found[entry.box_id] = Neighbour(entry.box_id, entry.name, d, int(entry.alarm_time), int(entry.seq),
                                                float(entry.lat), float(entry.lng), entry.clients)
    return sorted(found.values(), key=lambda n: (n.distance_m, n.id))


@dataclass
class NearbyTarget:
    binding: BindingItem
    box: Neighbour  # the client's own box among the neighbours, nearest to the newcomer


def nearby_targets(neighbours: list[Neighbour], own: list[BindingItem]) -> list[NearbyTarget]:
    """Every enabled client of a neighbour box who is not bound to the newcomer's box, once, with
    their box nearest to the newcomer (neighbours come nearest first)."""
    bound_here = {b.client_id for b in own}
    out: dict[str, NearbyTarget] = {}
    for n in neighbours:
        if n.clients is None:  # a box with too many bindings to copy: read them
            bindings = [b for b in bindings_of_box(n.id) if b.enabled]
        else:
            bindings = [binding_from_snapshot(n.id, row) for row in n.clients]
        for b in bindings:
            if b.client_id not in bound_here and b.client_id not in out:
                out[b.client_id] = NearbyTarget(b, n)
    return list(out.values())


def claim_nearby(targets: list[NearbyTarget], alarm: AlarmEvent, me: str, settings: Settings) -> list[NearbyTarget]:
    """The targets not inside a nearby_update window of this cause, each claimed with a
    conditional write (the window [r, r + neighbour_window_s) on received_at opens with the claim).

    With two or more targets their windows are read first in one BatchGetItem, so that clients
    inside a window (most of them, in a spreading fire) cost nothing more. The claim names this
    alarm (`me`): its retry finds its own claims and sends what is not sent yet.
    """
    window = settings.neighbour_window_s * 1000
    rb, cause = alarm.received_at, alarm.cause.value
    open_at: dict[str, tuple[int, str]] = {}
    if len(targets) >= 2:
        keys = [NearbyClaim.key(t.binding.client_id, cause) for t in targets]
        for claim in NearbyClaim.batch_get(keys, consistent_read=True):
            open_at[claim.pk] = (int(claim.r), claim.by)
    won = []
    for t in targets:
        pk, sk = NearbyClaim.key(t.binding.client_id, cause)
        seen = open_at.get(pk)
        if seen is not None and seen[1] != me and seen[0] > rb - window:
            continue
        try:
            NearbyClaim(pk, sk).update(
                actions=[NearbyClaim.r.set(rb), NearbyClaim.by.set(me),
                         NearbyClaim.expires_at.set(rb // 1000 + settings.neighbour_window_s + 86_400)],
                condition=NearbyClaim.pk.does_not_exist() | (NearbyClaim.r <= rb - window) | (NearbyClaim.by == me),
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            continue  # inside the window of an update this client already got
        won.append(t)
    return won


# ---------------------------------------------------------------------------------------- notifications
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


def nearby_update_notification(box: BoxItem, alarm: AlarmEvent, recipient: Neighbour, neighbours: list[Neighbour],
                               settings: Settings) -> Notification:
    """To the clients of `recipient` (a box that alarmed earlier): `box` joined. `boxes` lists the
    newcomer first, then the other neighbours of the newcomer nearest to it first; `box` (the
    notification's box) is the recipient's own box."""
    others = [n for n in neighbours if n.id != recipient.id]
    listed = [box.box_id] + [n.id for n in others]

    def from_recipient(n: Neighbour) -> dict[str, Any]:
        named: dict[str, Any] = {"id": n.id, "name": n.name}
        if n.lat is not None and n.lng is not None and recipient.lat is not None and recipient.lng is not None:
            named["distance_m"] = geo.distance_m((recipient.lat, recipient.lng), (n.lat, n.lng))
        return named

    named = [{"id": box.box_id, "name": box.name, "distance_m": recipient.distance_m}]
    named += [from_recipient(n) for n in others[:NAMED_IN_TEXT - 1]]
    return Notification(
        kind="nearby_update",
        box_id=recipient.id,
        at_ms=alarm.received_at,
        data={"cause": alarm.cause.value, "seq": alarm.seq, "alarm_time": alarm.alarm_time,
              "count": len(listed), "boxes": listed[:LISTED_IN_DATA]},
        context={"cause": alarm.cause.value, "box_name": recipient.name, "newcomer_name": box.name,
                 "count": len(listed), "radius_m": settings.neighbour_radius_m, "boxes_named": named},
    )


def summary_notification(item: DueItem) -> Notification:
    data = item.data or {}
    start, end = int(data["window_start"]), int(data["window_end"])
    tz = str(data.get("timezone") or "Asia/Shanghai")
    return Notification(
        kind=SUMMARY_KIND,
        box_id=str(item.box_id),
        at_ms=end,
        data={"cause": data["cause"], "count": int(item.tally), "window_start": start, "window_end": end,
              "boxes": []},
        context={"cause": data["cause"], "count": int(item.tally), "box_name": data.get("box_name", item.box_id),
                 "start_local": local_time(start, tz), "end_local": local_time(end, tz),
                 "minutes": (end - start) / 60_000},
    )


def send_alarm_summary(item: DueItem, sns: SNSClient, skip: Collection[str]) -> SendReport:
    """The alarm sweep's handler for a hold window that held alarms: one push to the box's clients."""
    return send(sns, bindings_of_box(str(item.box_id)), summary_notification(item), skip=skip)


due.register(SUMMARY_KIND, send_alarm_summary)


# ---------------------------------------------------------------------------------------- processing
class NotificationFailed(RuntimeError):
    """Some pushes failed for a retryable reason: the invocation fails so that Lambda retries it."""


def _record_sent(record: AlarmRecord, sent: set[str]) -> None:
    """Remember who already got the alarm, so that the retry skips them (failure path only)."""
    record_after_push(lambda: AlarmRecord(record.pk, record.sk).update(actions=[AlarmRecord.sent.set(sorted(sent))]))


def _process(alarm: AlarmEvent, settings: Settings, sns: SNSClient) -> IngestResult:
    box = _box(alarm.thing)
    # before the store: the cell entry keeps a copy for the nearby_update of later neighbours
    bindings = bindings_of_box(box.box_id)
    stored = _store(alarm, box, bindings, settings)
    record = stored.record
    if stored.existing and record.notified_at is not None:  # notified, its idempotency record never completed
        return IngestResult("duplicate", box.box_id, alarm.seq, record_sk=record.sk)

    neighbours = same_cause_neighbours(box, alarm.cause.value, alarm.alarm_time, settings)
    result = IngestResult("resumed" if stored.existing else "stored", box.box_id, alarm.seq, neighbours,
                          held=stored.held, seq_reused=stored.reused and not stored.existing, record_sk=record.sk,
                          alarm_id=stored.alarm_id)
    already: set[str] = set(record.sent or []) if stored.existing else set()
    plan: list[tuple[Notification, list[BindingItem]]] = []
    if not stored.held:
        plan.append((alarm_notification(box, alarm), bindings))
        if neighbours:
            plan.append((nearby_notification(box, alarm, neighbours, settings), bindings))
    targets = [t for t in nearby_targets(neighbours, bindings) if f"nearby_update#{t.binding.client_id}" not in already]
    won = claim_nearby(targets, alarm, f"{box.box_id}#{record.sk}", settings) if targets else []
    by_box: dict[str, list[NearbyTarget]] = {}
    for t in won:
        by_box.setdefault(t.box.id, []).append(t)
    for group in by_box.values():
        plan.append((nearby_update_notification(box, alarm, group[0].box, neighbours, settings),
                     [t.binding for t in group]))
    for note, _ in plan:
        result.reports.setdefault(note.kind, SendReport())
    # every recipient's devices in one read (BatchGetItem), whatever the number of notifications
    recipients = {b.client_id for _, to in plan for b in to if b.enabled}
    devices = devices_of(recipients) if recipients else {}

    def sent_so_far() -> set[str]:
        return already | {f"{kind}#{c}" for kind, r in result.reports.items() for c in r.sent}

    try:
        for note, to in plan:
            skip = {key.split("#", 1)[1] for key in already if key.startswith(f"{note.kind}#")}
            report = result.reports[note.kind]
            before = len(report.failed)
            send(sns, to, note, skip=skip, report=report, devices=devices)
            if len(report.failed) > before:
                # once more now, after a short backoff, before failing the invocation: Lambda's
                # retry comes a minute later; what was sent, disabled or capped is not tried again
                del report.failed[before:]
                time.sleep(BACKOFF_S)
                done = skip | set(report.sent) | set(report.disabled) | set(report.capped)
                send(sns, to, note, skip=done, report=report, devices=devices)
    except Exception:
        if sent_so_far() != already:
            _record_sent(record, sent_so_far())
        raise
    failed = [f for r in result.reports.values() for f in r.failed]
    if failed:
        if sent_so_far() != already:
            _record_sent(record, sent_so_far())
        raise NotificationFailed(f"push failed for {len(failed)} client(s): {failed[:5]}")
    return result


def _process_clear(alarm: AlarmEvent, settings: Settings, sns: SNSClient) -> IngestResult:
    """The box's clear message: stored once (its own seq), it clears the box's active alarm of its
    cause and circuit (if any), stops that alarm's escalation and tells the box's clients, in one
    transaction; the push is a due item, so the alarm sweep finishes what a failure left."""
    box = _box(alarm.thing)
    key = alarm_life.life_key(alarm.cause.value, alarm.circuit)
    digest: str | None = None
    for attempt in range(STORE_ATTEMPTS):
        active = dict(box.active or {})
        alarm_id = active.pop(key, None)
        record = AlarmClearRecord(
            *AlarmClearRecord.key(box.box_id, alarm.seq, digest), box_id=box.box_id, seq=alarm.seq,
            cause=alarm.cause.value, circuit=alarm.circuit, alarm_time=alarm.alarm_time,
            received_at=alarm.received_at, value=alarm.value, threshold=alarm.threshold, alarm_id=alarm_id,
            expires_at=alarm.alarm_time // 1000 + settings.alarm_retention_days * 86_400)
        rev, same_state = alarm_life.box_rev(box)
        note: DueItem | None = None
        try:
            with TransactWrite(connection=connection()) as tx:
                tx.save(record, condition=AlarmClearRecord.pk.does_not_exist())
                if alarm_id is not None:
                    note = alarm_life.clear_writes(tx, box, alarm_id, alarm.received_at, alarm.seq, settings)
                    tx.update(BoxItem(box.box_id), actions=[BoxItem.active.set(active),
                                                            BoxItem.hold_rev.set((rev or 0) + 1)],
                              condition=BoxItem.box_id.exists() & same_state)
        except TransactWriteError as exc:
            lost = _lost(exc, attempt, record, alarm, digest, box)
            box, digest = lost.box, lost.digest
            if lost.taken is not None:
                return IngestResult("duplicate", box.box_id, alarm.seq, record_sk=lost.taken.sk,
                                    alarm_id=lost.taken.alarm_id)
            if lost.again:
                continue
            if lost.failed:  # an alarm or another clear of this box came first: look again
                box = _box(box.box_id)
                continue
            raise
        result = IngestResult("stored", box.box_id, alarm.seq, record_sk=record.sk, alarm_id=alarm_id,
                              cleared=alarm_id is not None, seq_reused=digest is not None)
        note_alarm(box, alarm_id, alarm.received_at, settings)  # the operators see it cleared
        if note is not None:
            result.reports[alarm_life.CLEARED] = due.run_item(note, alarm.received_at, sns)
        return result
    raise StoreContention(f"storing {box.box_id}'s clear failed {STORE_ATTEMPTS} times: contention or throttling")


def ingest_alarm(alarm: AlarmEvent, settings: Settings, sns: SNSClient, idempotency: Idempotency) -> IngestResult:
    """Store once, notify each bound client once, however often IoT and Lambda deliver the alarm.

    The powertools record keyed on (box, seq) makes a redelivery of a processed alarm return at
    once (one DynamoDB request) and holds concurrent deliveries off while one is in progress.
    A delivery whose (box, seq) record holds other content is a new alarm (the counter restarted)
    and goes through a second record keyed on (box, seq, content). A delivery whose predecessor
    failed finds the alarm record stored and resumes the fan-out, skipping the clients the failed
    attempt recorded as sent (docs/reliability.md).
    """
    # boto3 comes with it: see boxwatch.idempotency
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyPersistenceLayerError,
        IdempotencyValidationError,
    )

    alarm.check_time(settings.alarm_max_age_s, settings.alarm_max_future_s)
    content: list[Any] = [alarm.cause.value, alarm.alarm_time, alarm.value, alarm.threshold]
    if alarm.clears:  # a clear is other content than the alarm it may share a seq with
        content.append("cleared")
    delivery = {"thing": alarm.thing, "seq": alarm.seq, "content": content}

    done: list[IngestResult] = []

    def once(delivery: dict[str, Any]) -> dict[str, Any]:
        done.append(_process_clear(alarm, settings, sns) if alarm.clears else _process(alarm, settings, sns))
        return done[0].as_dict()

    def through(idem: Idempotency, prefix: str) -> dict[str, Any]:
        return idem.run(once, "delivery", delivery, key_prefix=prefix)

    try:
        try:
            out = through(idempotency, "alarm")
        except IdempotencyValidationError:
            if idempotency.reused is None:
                raise Conflict("sequence number reused with different content", box=alarm.thing,
                               seq=alarm.seq) from None
            out = through(idempotency.reused, "alarm-reused")
    except IdempotencyPersistenceLayerError:
        if not done:
            raise
        if alarm.clears:  # its record makes a redelivery a duplicate; its push is a due item
            return done[0]
        # everyone was pushed but the record could not be completed: it would expire IN_PROGRESS
        # and a redelivery would push again, so mark the alarm itself notified (failure path only)
        notified = AlarmRecord(f"BOX#{done[0].box_id}", str(done[0].record_sk))
        record_after_push(lambda: notified.update(actions=[AlarmRecord.notified_at.set(alarm.received_at)]))
        return done[0]
    return IngestResult.from_dict(out)
