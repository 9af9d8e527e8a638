"""An alarm's life (docs/alarm-life.md): active until the box clears it, acknowledged by a person,
escalated while nobody does, and the all-clear when it is over.

- One `AlarmLifeItem` per (box, cause, circuit) while active: the first alarm opens it (inside the
  alarm's own transaction, under the box's hold_rev guard, so concurrent alarms make one), every
  later alarm of it joins (count, last_at). The box's clear message closes it.
- Opening it writes its escalation chain as two `DueItem`s (the alarm sweep's sparse due index):
  `reminder` at first_at + EscalateAfterS, `escalation` (SMS to the box's managers) at
  first_at + 2 x EscalateAfterS; an ack or a clear takes both out of the index in its own
  transaction, so the chain stops at once, and the sweep checks the alarm's state before each step.
- `acknowledge` is the one way to acknowledge, for a bound client (role client) and for an
  operator (role operator, whose organisation the caller checked).
- The pushes that follow a change (`acknowledged`, `alarm_cleared`, `box_back_online`,
  `all_clear`) are due items due at once, written in the change's transaction: whoever made the
  change pushes them at once, and the alarm sweep finishes what a failure left.

Clocks: first_at, last_at, cleared_at are IoT Core's received_at; acked_at is API Gateway's request
time; escalation steps are due by the alarm sweep's schedule time (`due_at <= time`, inclusive).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pynamodb.exceptions import PutError, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from boxwatch import bounds, due
from boxwatch.bindings import bindings_of_box, require_bound
from boxwatch.errors import InvalidInput, NotFound
from boxwatch.models import (
    AlarmLifeItem,
    BindingItem,
    BoxItem,
    DueItem,
    IncidentClientItem,
    IncidentItem,
    cancelled_by_condition,
    condition_failed,
    connection,
)
from boxwatch.notify import E164, Notification, SendReport, local_time, send
from boxwatch.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

    from boxwatch.events import AlarmEvent

REMINDER, ESCALATION = "reminder", "escalation"
ACKNOWLEDGED, CLEARED, BACK_ONLINE, ALL_CLEAR = "acknowledged", "alarm_cleared", "box_back_online", "all_clear"
STEPS = (REMINDER, ESCALATION)
DISPOSITIONS = ("real", "false_alarm", "test", "drill")
COMMENT_CHARS = 500
ALARM_ID = re.compile(r"^[0-9]{13}\.[0-9A-Za-z_.-]{1,64}$")
OFFLINE_CAUSE = "offline_after_alarm"
OUTAGE_CAUSE = "neighbour_outage"
ACK_ATTEMPTS = 4


# ---------------------------------------------------------------------------------------- keys
def life_key(cause: str, circuit: str | None) -> str:
    """The box's `active` map key of one (cause, circuit)."""
    return f"{cause}#{circuit or ''}"


def alarm_id_for(received_at: int, seq: int | str, digest: str | None = None) -> str:
    return f"{received_at:013d}.{seq}" + (f".{digest}" if digest else "")


def step_item(kind: str, box_id: str, alarm_id: str, due_at: int, settings: Settings,
              data: dict[str, Any] | None = None) -> DueItem:
    subject = f"{box_id}#{alarm_id}"
    return DueItem(*DueItem.key(kind, subject), kind=kind, subject=subject, due="1", due_at=due_at, box_id=box_id,
                   data={"alarm_id": alarm_id, **(data or {})},
                   expires_at=due_at // 1000 + settings.alarm_retention_days * 86_400)


def chain(box_id: str, alarm_id: str, first_at: int, settings: Settings) -> list[DueItem]:
    """The escalation steps of a new alarm: reminder at first + E, SMS at first + 2E."""
    e = settings.escalate_after_s * 1000
    return [step_item(REMINDER, box_id, alarm_id, first_at + e, settings),
            step_item(ESCALATION, box_id, alarm_id, first_at + 2 * e, settings)]


def stop_chain(tx: TransactWrite, box_id: str, alarm_id: str) -> None:
    """Both steps leave the due index (a step already done stays done)."""
    for kind in STEPS:
        pk, sk = DueItem.key(kind, f"{box_id}#{alarm_id}")
        tx.update(DueItem(pk, sk), actions=[DueItem.due.remove()], condition=DueItem.pk.exists())


# ---------------------------------------------------------------------------------------- the alarm path
@dataclass
class LifeWrite:
    """What an alarm's transaction adds for its alarm's life (alarms._store)."""

    alarm_id: str
    opened: bool
    active: dict[str, str]  # the box's active map after this alarm
    index: int = -1  # position of the life item in the transaction (its cancellation reason)
    cause: str = ""
    view: dict[str, Any] | None = None  # the opened alarm as the operators see it (None: joined)


def add_to_transaction(tx: TransactWrite, box: BoxItem, alarm: AlarmEvent, digest: str | None,
                       settings: Settings, index: int) -> LifeWrite:
    """Open the (box, cause, circuit) alarm, or join the active one: one or three items more in
    the alarm's transaction (no request more)."""
    key = life_key(alarm.cause.value, alarm.circuit)
    active = dict(box.active or {})
    current = active.get(key)
    expires = alarm.alarm_time // 1000 + settings.alarm_retention_days * 86_400
    if current is not None:
        pk, sk = AlarmLifeItem.key(box.box_id, current)
        tx.update(AlarmLifeItem(pk, sk), actions=[
            AlarmLifeItem.logs.add(1), AlarmLifeItem.value.set(alarm.value),
            AlarmLifeItem.threshold.set(alarm.threshold), AlarmLifeItem.last_at.set(alarm.received_at)],
            condition=AlarmLifeItem.state == "active")
        return LifeWrite(current, False, active, index, alarm.cause.value)
    alarm_id = alarm_id_for(alarm.received_at, alarm.seq, digest)
    life = AlarmLifeItem(
        *AlarmLifeItem.key(box.box_id, alarm_id), alarm_id=alarm_id, box_id=box.box_id, box_name=box.name,
        lat=box.lat, lng=box.lng, cause=alarm.cause.value, circuit=alarm.circuit, state="active",
        first_at=alarm.received_at, last_at=alarm.received_at, first_alarm_time=alarm.alarm_time, logs=1,
        seq=alarm.seq, value=alarm.value, threshold=alarm.threshold, unit=alarm.unit, expires_at=expires)
    tx.save(life, condition=AlarmLifeItem.pk.does_not_exist())
    for step in chain(box.box_id, alarm_id, alarm.received_at, settings):
        tx.save(step)
    active[key] = alarm_id
    return LifeWrite(alarm_id, True, active, index, alarm.cause.value, alarm_view(life))


def clear_writes(tx: TransactWrite, box: BoxItem, alarm_id: str, cleared_at: int, seq: int,
                 settings: Settings) -> DueItem:
    """The life's side of a clear: the alarm cleared, its chain stopped, the alarm_cleared push due."""
    pk, sk = AlarmLifeItem.key(box.box_id, alarm_id)
    tx.update(AlarmLifeItem(pk, sk), actions=[AlarmLifeItem.state.set("cleared"),
                                              AlarmLifeItem.cleared_at.set(cleared_at),
                                              AlarmLifeItem.clear_seq.set(seq)],
              condition=AlarmLifeItem.state == "active")
    stop_chain(tx, box.box_id, alarm_id)
    note = step_item(CLEARED, box.box_id, alarm_id, cleared_at, settings)
    tx.save(note, condition=DueItem.pk.does_not_exist())
    return note


def get_life(box_id: str, alarm_id: str) -> AlarmLifeItem | None:
    try:
        return AlarmLifeItem.get(*AlarmLifeItem.key(box_id, alarm_id), consistent_read=True)
    except AlarmLifeItem.DoesNotExist:
        return None


# ---------------------------------------------------------------------------------------- third alarm
def box_rev(box: BoxItem) -> tuple[int | None, Any]:
    """The box's hold revision as read, and the condition that it is unchanged: every write of its
    hold state or active alarms is guarded by it (optimistic locking)."""
    rev = None if box.hold_rev is None else int(box.hold_rev)
    return rev, (BoxItem.hold_rev.does_not_exist() if rev is None else BoxItem.hold_rev == rev)


def open_offline_alarm(box_id: str, offline_at: int, version: int, settings: Settings) -> str | None:
    """A third alarm as an alarm with a life (ackable, escalated like the others): opened when it is
    told, unless the box is back already (a connect above the drop's version arrived) or has one
    open. One transaction with the box's active map (hold_rev guard); None if not opened now."""
    return _open_system_alarm(box_id, OFFLINE_CAUSE, alarm_id_for(offline_at, f"v{version}"), offline_at,
                              str(version), settings,
                              lambda box: int(box.last_connect_version or 0) <= version)


def outage_alarm_id(incident_id: str, told_at: int) -> str:
    return alarm_id_for(told_at, "n" + hashlib.sha256(incident_id.encode()).hexdigest()[:16])


def open_outage_alarm(box_id: str, incident_id: str, told_at: int, settings: Settings) -> str | None:
    """A fourth alarm as an alarm with a life for the online box whose clients were just warned
    (ackable, escalated like the others from the sweep that told them), unless the box has one open
    (another incident nearby: that one stands). Cleared when the incident resolves (its all-clear)."""
    return _open_system_alarm(box_id, OUTAGE_CAUSE, outage_alarm_id(incident_id, told_at), told_at, incident_id,
                              settings, lambda box: bool(box.online))


def _open_system_alarm(box_id: str, cause: str, alarm_id: str, at_ms: int, subject: str, settings: Settings,
                       may_open: Callable[[BoxItem], bool]) -> str | None:
    """Open an alarm that we raise (not the box): its life, its escalation chain and the box's
    active map in one transaction; None if not opened now (an open one of that cause, or a retry)."""
    for attempt in range(ACK_ATTEMPTS):
        try:
            box = BoxItem.get(box_id, consistent_read=True)
        except BoxItem.DoesNotExist:
            return None
        if not may_open(box):
            return None
        active = dict(box.active or {})
        key = life_key(cause, None)
        if key in active:
            return None
        life = AlarmLifeItem(
            *AlarmLifeItem.key(box_id, alarm_id), alarm_id=alarm_id, box_id=box_id, box_name=box.name, lat=box.lat,
            lng=box.lng, cause=cause, state="active", first_at=at_ms, last_at=at_ms, logs=1,
            subject=subject, expires_at=at_ms // 1000 + settings.alarm_retention_days * 86_400)
        active[key] = alarm_id
        rev, same = box_rev(box)
        try:
            with TransactWrite(connection=connection()) as tx:
                tx.save(life, condition=AlarmLifeItem.pk.does_not_exist())
                for step in chain(box_id, alarm_id, at_ms, settings):
                    tx.save(step)
                tx.update(BoxItem(box_id), actions=[BoxItem.active.set(active), BoxItem.hold_rev.set((rev or 0) + 1)],
                          condition=BoxItem.box_id.exists() & same)
        except TransactWriteError as exc:
            failed = cancelled_by_condition(exc)
            if failed[:1] == [True]:
                return None  # opened before (a retry)
            time.sleep(0.025 * 2 ** attempt)  # the box changed meanwhile, or a conflict: look again
            continue
        return alarm_id
    raise RuntimeError(f"opening {box_id}'s {cause} alarm kept conflicting")  # retryable


def clear_outage_alarms(box_ids: Collection[str], cleared_at: int) -> list[str]:
    """The incident the boxes' clients were warned of is over: each box's open fourth alarm is
    cleared and its chain stopped (the all-clear tells them; no alarm_cleared push). The boxes
    cleared."""
    done: list[str] = []
    key = life_key(OUTAGE_CAUSE, None)
    for box in BoxItem.batch_get(sorted(set(box_ids)), consistent_read=True) if box_ids else []:
        if key not in (box.active or {}):
            continue
        for attempt in range(ACK_ATTEMPTS):
            fresh = box if attempt == 0 else BoxItem.get(box.box_id, consistent_read=True)
            active = dict(fresh.active or {})
            alarm_id = active.pop(key, None)
            if alarm_id is None:
                break
            rev, same = box_rev(fresh)
            pk, sk = AlarmLifeItem.key(fresh.box_id, alarm_id)
            try:
                with TransactWrite(connection=connection()) as tx:
                    tx.update(AlarmLifeItem(pk, sk), actions=[AlarmLifeItem.state.set("cleared"),
                                                              AlarmLifeItem.cleared_at.set(cleared_at)],
                              condition=AlarmLifeItem.state == "active")
                    stop_chain(tx, fresh.box_id, alarm_id)
                    tx.update(BoxItem(fresh.box_id), actions=[BoxItem.active.set(active),
                                                              BoxItem.hold_rev.set((rev or 0) + 1)],
                              condition=BoxItem.box_id.exists() & same)
            except TransactWriteError as exc:
                if cancelled_by_condition(exc)[:1] == [True] and _drop_active(fresh, active, rev, same):
                    break  # cleared before (a retry): the map no longer names it
                time.sleep(0.025 * 2 ** attempt)
                continue
            done.append(fresh.box_id)
            break
    return done


def _drop_active(box: BoxItem, active: dict[str, str], rev: int | None, same: Any) -> bool:
    """The box's active map still names an alarm that is no longer active: write it without (the
    hold_rev guard: False if the box changed meanwhile)."""
    try:
        BoxItem(box.box_id).update(actions=[BoxItem.active.set(active), BoxItem.hold_rev.set((rev or 0) + 1)],
                                   condition=BoxItem.box_id.exists() & same)
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
        return False
    return True


def back_online(box: BoxItem, version: int, online_at: int, arrived_at: int, settings: Settings,
                sns: SNSClient) -> SendReport | None:
    """A connect above the drop of the box's open third alarm: the alarm is cleared, its chain
    stopped, and the box's clients get `box_back_online` (once: a due item). `box` as Presence
    read it: a box without an open third alarm costs nothing more."""
    key = life_key(OFFLINE_CAUSE, None)
    if key not in (box.active or {}):
        return None
    for attempt in range(ACK_ATTEMPTS):
        fresh = BoxItem.get(box.box_id, consistent_read=True)
        active = dict(fresh.active or {})
        alarm_id = active.pop(key, None)
        if alarm_id is None:
            return None
        life = get_life(box.box_id, alarm_id)
        if life is not None and int(life.subject or 0) >= version:
            return None  # a connect older than the drop: the box is still offline
        note = step_item(BACK_ONLINE, box.box_id, alarm_id, arrived_at, settings,
                         data={"online_at": online_at, "offline_at": None if life is None else int(life.first_at),
                               "box_name": fresh.name})
        rev, same = box_rev(fresh)
        try:
            with TransactWrite(connection=connection()) as tx:
                if life is not None and life.state == "active":
                    pk, sk = AlarmLifeItem.key(box.box_id, alarm_id)
                    tx.update(AlarmLifeItem(pk, sk), actions=[AlarmLifeItem.state.set("cleared"),
                                                              AlarmLifeItem.cleared_at.set(online_at)],
                              condition=AlarmLifeItem.state == "active")
                    stop_chain(tx, box.box_id, alarm_id)
                tx.save(note, condition=DueItem.pk.does_not_exist())
                tx.update(BoxItem(box.box_id), actions=[BoxItem.active.set(active),
                                                        BoxItem.hold_rev.set((rev or 0) + 1)],
                          condition=BoxItem.box_id.exists() & same)
        except TransactWriteError:
            time.sleep(0.025 * 2 ** attempt)  # the box or the alarm changed meanwhile: look again
            continue
        return due.run_item(note, arrived_at, sns)
    raise RuntimeError(f"{box.box_id} back online kept conflicting")  # retryable


# ---------------------------------------------------------------------------------------- all-clear
def all_clear(incident: IncidentItem, members: list[str], boxes: dict[str, BoxItem], at_ms: int,
              settings: Settings, sns: SNSClient) -> SendReport | None:
    """An incident resolved: every client told about it (its IncidentClientItem rows) gets one
    `all_clear` (how long, which boxes are back, which still dark). One due item per incident,
    written once: a sweep delivered twice, or an incident resolved again, tells nobody twice."""
    # rows a split-off incident inherited (sends 0) are not warnings of it, nor a first claim whose
    # push was never confirmed
    told = [[r.client_id, r.box_id] for r in IncidentClientItem.rows(incident.pk)
            if int(r.sends or 0) > (0 if r.pending_at is None else 1)]
    if not told:
        return None
    # the fourth alarms it raised on the warned boxes end with it (a retry finds them cleared)
    clear_outage_alarms({str(b) for _, b in told}, int(incident.resolved_at or at_ms))
    back = [b for b in members if b in boxes and boxes[b].online]
    dark = [b for b in members if b not in back]
    note = step_item(ALL_CLEAR, "-", str(incident.incident_id), at_ms, settings,
                     data={"incident": incident.incident_id, "clients": told, "back": back, "dark": dark,
                           "opened_at": int(incident.opened_at), "resolved_at": int(incident.resolved_at or at_ms)})
    note.box_id = None
    try:
        note.save(condition=DueItem.pk.does_not_exist())
    except PutError as exc:
        if condition_failed(exc):
            return None
        raise
    return due.run_item(note, at_ms, sns)


# ---------------------------------------------------------------------------------------- acknowledge
@dataclass
class AckResult:
    alarm: AlarmLifeItem
    changed: bool  # False: it was acknowledged before (idempotent)
    report: SendReport | None = None


def acknowledge(box_id: str, alarm_id: str, disposition: Any, comment: Any, actor: str, role: str, now_ms: int,
                settings: Settings, sns: SNSClient) -> AckResult:
    """Acknowledge an alarm with its disposition: `role` "client" must be bound to the box (404
    otherwise, as for an unknown box); "operator" is checked by the caller (its organisation).
    Idempotent: the first acknowledgement stands and a repeat changes nothing. A cleared alarm may
    be acknowledged. The box's other clients get one `acknowledged` push; the chain stops."""
    if role not in ("client", "operator"):
        raise ValueError(f"unknown role {role!r}")
    if role == "client":
        require_bound(actor, box_id)
    if not isinstance(alarm_id, str) or not ALARM_ID.match(alarm_id):
        raise NotFound("no such alarm", box=box_id, alarm_id=str(alarm_id)[:80])
    if disposition not in DISPOSITIONS:
        raise InvalidInput(f"disposition must be one of {', '.join(DISPOSITIONS)}",
                           disposition=str(disposition)[:40])
    if comment is not None and (not isinstance(comment, str) or len(comment) > COMMENT_CHARS):
        raise InvalidInput(f"comment: a string of at most {COMMENT_CHARS} characters")
    text = None if comment is None else bounds.text(comment, COMMENT_CHARS) or None
    for attempt in range(ACK_ATTEMPTS):
        life = get_life(box_id, alarm_id)
        if life is None:
            raise NotFound("no such alarm", box=box_id, alarm_id=alarm_id)
        if life.acked_by is not None:
            return AckResult(life, False)
        note = step_item(ACKNOWLEDGED, box_id, alarm_id, now_ms, settings,
                         data={"actor": actor, "role": role, "disposition": disposition, "cause": life.cause,
                               "box_name": life.box_name})
        try:
            with TransactWrite(connection=connection()) as tx:
                tx.update(AlarmLifeItem(life.pk, life.sk), actions=[
                    AlarmLifeItem.acked_by.set(actor), AlarmLifeItem.acked_role.set(role),
                    AlarmLifeItem.acked_at.set(now_ms), AlarmLifeItem.disposition.set(disposition),
                    *([AlarmLifeItem.comment.set(text)] if text else [])],
                    condition=AlarmLifeItem.acked_by.does_not_exist())
                stop_chain(tx, box_id, alarm_id)
                tx.save(note, condition=DueItem.pk.does_not_exist())
        except TransactWriteError as exc:
            if any(cancelled_by_condition(exc)):
                continue  # acknowledged meanwhile: read it again, answer as a repeat
            time.sleep(0.025 * 2 ** attempt)  # a conflict or a throttle: try again
            continue
        life.acked_by, life.acked_role, life.acked_at, life.disposition = actor, role, now_ms, disposition
        life.comment = text
        # pushed now; a failure leaves the due item for the alarm sweep
        return AckResult(life, True, due.run_item(note, now_ms, sns))
    raise RuntimeError(f"acknowledging {box_id}/{alarm_id} kept conflicting")  # retryable: a 5xx


# ---------------------------------------------------------------------------------------- views
def alarm_view(life: AlarmLifeItem) -> dict[str, Any]:
    """The `alarm` entity of docs/operator-api.md."""
    def ms(v: Any) -> int | None:
        return None if v is None else int(v)

    return {"alarm_id": life.alarm_id, "box_id": life.box_id, "box_name": life.box_name, "cause": life.cause,
            "circuit": life.circuit, "state": life.state, "acked": life.acked_by is not None,
            "acked_by": life.acked_by, "acked_at": ms(life.acked_at), "disposition": life.disposition,
            "comment": life.comment, "first_at": int(life.first_at), "last_at": int(life.last_at),
            "cleared_at": ms(life.cleared_at), "count": int(life.logs), "value": life.value,
            "threshold": life.threshold, "unit": life.unit, "escalation_steps": list(life.escalation_steps or []),
            "lat": life.lat, "lng": life.lng}


def box_alarms(box_id: str, state: str, limit: int = 50) -> list[dict[str, Any]]:
    """A box's alarms, newest first (one Query; `active` reads the box's active map instead)."""
    if state == "active":
        box = BoxItem.get(box_id, consistent_read=True, attributes_to_get=["box_id", "active"])
        ids = sorted((box.active or {}).values(), reverse=True)
        keys = [AlarmLifeItem.key(box_id, i) for i in ids]
        found = list(AlarmLifeItem.batch_get(keys)) if keys else []
        return [alarm_view(x) for x in sorted(found, key=lambda x: x.sk, reverse=True) if x.state == "active"]
    return [alarm_view(x) for x in AlarmLifeItem.query(f"BOX#{box_id}", AlarmLifeItem.sk.startswith("LIFE#"),
                                                        scan_index_forward=False, limit=limit)]


def my_alarms(client_id: str, state: str) -> list[dict[str, Any]]:
    """The alarms of every box the client is bound to (active: the boxes' active maps, one
    BatchGetItem each way)."""
    box_ids = sorted({b.box_id for b in BindingItem.by_client.query(client_id)})
    if not box_ids:
        return []
    if state != "active":
        return [a for b in box_ids for a in box_alarms(b, "all", 20)]
    boxes = list(BoxItem.batch_get(box_ids, attributes_to_get=["box_id", "active"]))
    keys = [AlarmLifeItem.key(b.box_id, i) for b in boxes for i in (b.active or {}).values()]
    found = list(AlarmLifeItem.batch_get(keys)) if keys else []
    return [alarm_view(x) for x in sorted(found, key=lambda x: (x.first_at, x.box_id), reverse=True)
            if x.state == "active"]


# ---------------------------------------------------------------------------------------- pushes
def _context(life: AlarmLifeItem, tz: str = "Asia/Shanghai") -> dict[str, Any]:
    return {"cause": life.cause, "box_name": life.box_name or life.box_id,
            "first_local": local_time(int(life.first_at), tz), "count": int(life.logs)}


def _data(life: AlarmLifeItem) -> dict[str, Any]:
    return {"cause": life.cause, "alarm_id": life.alarm_id, "circuit": life.circuit, "first_at": int(life.first_at),
            "count": int(life.logs), "boxes": []}


def _still_unacked(item: DueItem) -> AlarmLifeItem | None:
    life = get_life(str(item.box_id), str((item.data or {})["alarm_id"]))
    if life is None or life.state != "active" or life.acked_by is not None:
        return None  # acked or cleared meanwhile (the chain was stopped): nothing to do
    return life


def _record_step(life: AlarmLifeItem, step: str) -> None:
    steps = list(life.escalation_steps or [])
    if step not in steps:
        try:
            life.update(actions=[AlarmLifeItem.escalation_steps.set([*steps, step])],
                        condition=AlarmLifeItem.pk.exists())
        except UpdateError as exc:
            if not condition_failed(exc):
                raise


def send_reminder(item: DueItem, sns: SNSClient, skip: Collection[str]) -> SendReport:
    """Nobody acknowledged within EscalateAfterS: every client of the box again."""
    return _escalate(item, REMINDER, lambda life: (bindings_of_box(life.box_id), None), sns, skip)


Targets = Callable[[AlarmLifeItem], tuple[list[BindingItem], dict[str, Any] | None]]


def _escalate(item: DueItem, step: str, targets: Targets, sns: SNSClient, skip: Collection[str]) -> SendReport:
    """One step of the escalation chain, unless the alarm was acknowledged or cleared meanwhile;
    recorded on the alarm once sent to everyone. `targets`: (bindings, devices or None = theirs)."""
    life = _still_unacked(item)
    if life is None:
        return SendReport()
    minutes = (int(item.due_at) - int(life.first_at)) / 60_000
    context = {**_context(life), "minutes": minutes}
    if step == ESCALATION:
        context.update(box_id=life.box_id, alarm_id=life.alarm_id)
    note = Notification(kind=step, box_id=life.box_id, at_ms=int(item.due_at), data={**_data(life), "step": step},
                        context=context)
    bindings, devices = targets(life)
    report = send(sns, bindings, note, skip=skip, devices=devices)
    if not report.failed:
        _record_step(life, step)
    return report


def escalation_contacts(bindings: list[BindingItem]) -> list[BindingItem]:
    """The box's managers with an E.164 number, as SMS targets (never saved: not a binding)."""
    return [BindingItem(b.box_id, b.client_id, target=str(b.sms), target_kind="sms", locale=b.locale, enabled=True)
            for b in bindings if b.enabled and b.role == "manager" and b.sms and E164.match(str(b.sms))]


def send_escalation(item: DueItem, sns: SNSClient, skip: Collection[str]) -> SendReport:
    """Nobody acknowledged within 2 x EscalateAfterS: an SMS to each of the box's managers (the SMS
    only: the managers' phones had the reminder; devices={}: none of theirs)."""
    return _escalate(item, ESCALATION, lambda life: (escalation_contacts(bindings_of_box(life.box_id)), {}),
                     sns, skip)


def send_acknowledged(item: DueItem, sns: SNSClient, skip: Collection[str]) -> SendReport:
    """The box's other clients: who acknowledged, and what it was."""
    data = item.data or {}
    life = get_life(str(item.box_id), str(data["alarm_id"]))
    if life is None:
        return SendReport()
    actor = str(data.get("actor"))
    note = Notification(kind=ACKNOWLEDGED, box_id=life.box_id, at_ms=int(item.due_at),
                        data={**_data(life), "acked_by": actor, "disposition": data.get("disposition")},
                        context={**_context(life), "actor": actor if data.get("role") == "client" else "operator",
                                 "disposition": data.get("disposition")})
    others = [b for b in bindings_of_box(life.box_id) if b.client_id != actor]
    return send(sns, others, note, skip=skip)


def send_cleared(item: DueItem, sns: SNSClient, skip: Collection[str]) -> SendReport:
    data = item.data or {}
    life = get_life(str(item.box_id), str(data["alarm_id"]))
    if life is None:
        return SendReport()
    cleared = int(life.cleared_at or item.due_at)
    note = Notification(kind=CLEARED, box_id=life.box_id, at_ms=cleared,
                        data={**_data(life), "cleared_at": cleared, "acked": life.acked_by is not None},
                        context={**_context(life), "minutes": (cleared - int(life.first_at)) / 60_000})
    return send(sns, bindings_of_box(life.box_id), note, skip=skip)


def send_back_online(item: DueItem, sns: SNSClient, skip: Collection[str]) -> SendReport:
    data = item.data or {}
    back = int(data.get("online_at") or item.due_at)
    note = Notification(kind=BACK_ONLINE, box_id=str(item.box_id), at_ms=back,
                        data={"cause": OFFLINE_CAUSE, "online_at": back, "offline_at": data.get("offline_at"),
                              "first_at": data.get("offline_at"), "alarm_id": data.get("alarm_id"), "boxes": []},
                        context={"box_name": data.get("box_name") or item.box_id,
                                 "minutes": (back - int(data.get("offline_at") or back)) / 60_000})
    return send(sns, bindings_of_box(str(item.box_id)), note, skip=skip)


def send_all_clear(item: DueItem, sns: SNSClient, skip: Collection[str]) -> SendReport:
    """One per client told about the incident (`data.clients`: [client, box] pairs)."""
    data = item.data or {}
    back = [str(b) for b in data.get("back", [])]
    dark = [str(b) for b in data.get("dark", [])]
    minutes = (int(data["resolved_at"]) - int(data["opened_at"])) / 60_000
    out = SendReport()
    by_box: dict[str, list[str]] = {}
    for client, box in data.get("clients", []):
        by_box.setdefault(str(box), []).append(str(client))
    for box_id, clients in sorted(by_box.items()):
        bindings = [b for b in bindings_of_box(box_id) if b.client_id in clients]
        note = Notification(kind=ALL_CLEAR, box_id=box_id, at_ms=int(data["resolved_at"]),
                            data={"incident": data.get("incident"), "boxes": back[:30], "dark": dark[:30],
                                  "back_count": len(back), "dark_count": len(dark),
                                  "opened_at": int(data["opened_at"]), "resolved_at": int(data["resolved_at"])},
                            context={"minutes": minutes, "back_count": len(back), "dark_count": len(dark),
                                     "dark_list": ", ".join(dark[:5]) or "-"})
        send(sns, bindings, note, skip=skip, report=out)
    return out


for _kind, _handler in ((REMINDER, send_reminder), (ESCALATION, send_escalation), (ACKNOWLEDGED, send_acknowledged),
                        (CLEARED, send_cleared), (BACK_ONLINE, send_back_online), (ALL_CLEAR, send_all_clear)):
    due.register(_kind, _handler)
