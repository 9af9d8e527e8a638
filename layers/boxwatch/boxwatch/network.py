"""Network status from AWS IoT lifecycle events, and the third alarm (offline soon after an alarm).

AWS publishes `connected` / `disconnected` events on `$aws/events/presence/<type>/<clientId>`; they
may arrive late, twice or out of order. Each carries a `versionNumber` that grows per client, so
the box keeps the version of the last event it applied and ignores anything not newer. At equal
versions a `disconnected` beats a `connected` (the end of a session follows its start), so the
ordering holds whether AWS gives both events of one session the same number or not.

Every event that is not a duplicate is also recorded, applied or late: a disconnect starts an
offline episode (`OfflineEntry`), a connect ends the episodes of lower versions, and the arrival
index tells the sweep what it has not seen yet. An unclean disconnect is a drop: the box's alarm
received last within `offline_watch_s` before it is its watched alarm, whose clients are told once
(the third alarm). See docs/claims.md and docs/network-status.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from boxwatch import alarm_life
from boxwatch.bindings import bindings_of_box, get_box
from boxwatch.changes import note_alarm, record_change
from boxwatch.events import CLIENT_INITIATED as CLIENT_INITIATED  # where the replay tooling reads it
from boxwatch.events import PresenceEvent
from boxwatch.idempotency import Idempotency, records
from boxwatch.models import (
    AlarmReceivedEntry,
    ArrivalEntry,
    BoxItem,
    OfflineEntry,
    PresenceLogItem,
    ThirdAlarmItem,
    cancelled_by_condition,
    condition_failed,
    connection,
)
from boxwatch.notify import Notification, SendReport, local_time, record_after_push, send
from boxwatch.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

LIFECYCLE_DAYS = 7  # episodes, logs and third-alarm claims serve minutes of lookback; a week is for audit


def supersedes(event_version: int, event_online: bool, stored_version: int | None, stored_online: bool) -> bool:
    """Does an event replace the stored status? Newer version wins; at an equal version only a
    disconnect of a box still marked online does (the end of the session it started)."""
    if stored_version is None or event_version > stored_version:
        return True
    return event_version == stored_version and stored_online and not event_online


@dataclass
class PresenceResult:
    status: Literal["applied", "stale", "duplicate"]
    box_id: str
    online: bool
    version: int
    third_alarm_seq: int | None = None  # the watched alarm told by this invocation
    reports: dict[str, SendReport] = field(default_factory=dict)


def _supersedes_condition(event: PresenceEvent) -> Any:
    """The `supersedes` rule as a DynamoDB condition, so a concurrent newer event always wins."""
    cond = BoxItem.presence_version.does_not_exist() | (BoxItem.presence_version < event.version)
    if not event.online:
        cond = cond | ((BoxItem.presence_version == event.version) & (BoxItem.online == True))  # noqa: E712
    return BoxItem.box_id.exists() & cond


def _status_actions(event: PresenceEvent) -> list[Any]:
    actions = [BoxItem.online.set(event.online), BoxItem.status_since.set(event.timestamp),
               BoxItem.presence_version.set(event.version)]
    if event.online:
        # applied means newer than anything applied, so also the highest connect that arrived
        actions += [BoxItem.status_reason.remove(), BoxItem.last_connect_version.set(event.version)]
    else:
        actions.append(BoxItem.status_reason.set(event.disconnect_reason or "UNKNOWN"))
    return actions


def _expires(event: PresenceEvent) -> int:
    return event.arrived_at // 1000 + LIFECYCLE_DAYS * 86_400


def offline_entry(box: BoxItem, event: PresenceEvent) -> OfflineEntry:
    return OfflineEntry(
        *OfflineEntry.key(event.timestamp, box.box_id, event.version),
        box_id=box.box_id, name=box.name, lat=box.lat, lng=box.lng, offline_at=event.timestamp,
        reason=event.disconnect_reason, clean=event.clean, version=event.version, arrived_at=event.arrived_at,
        expires_at=_expires(event),
    )


def lifecycle_items(box: BoxItem, event: PresenceEvent) -> list[Model]:
    """What one lifecycle event records besides the box's status: its log row, its arrival entry
    and, for a disconnect, its offline episode. (The bench writes these in bulk, too.)"""
    entry = None if event.online else offline_entry(box, event)
    log = PresenceLogItem(
        *PresenceLogItem.key(box.box_id, event.version, event.online), kind="C" if event.online else "D",
        timestamp=event.timestamp, arrived_at=event.arrived_at, expires_at=_expires(event),
        offline_pk=None if entry is None else entry.pk, offline_sk=None if entry is None else entry.sk)
    arrival = ArrivalEntry(
        *ArrivalEntry.key(event.arrived_at, box.box_id, event.version, event.online), box_id=box.box_id,
        kind="C" if event.online else "D", version=event.version, timestamp=event.timestamp,
        arrived_at=event.arrived_at, lat=box.lat, lng=box.lng, clean=event.clean,
        reason=None if event.online else event.disconnect_reason, expires_at=_expires(event))
    return [log, arrival] + ([] if entry is None else [entry])


Recorded = Literal["applied", "stale", "duplicate"]


def _nothing_open(box: BoxItem) -> bool:
    """The box as read is online at the version of its last connect: none of its episodes is open
    (a disconnect above that version would have been applied, or found a higher event applied)."""
    version = 0 if box.presence_version is None else int(box.presence_version)
    last = 0 if box.last_connect_version is None else int(box.last_connect_version)
    return bool(box.online) and version == last


def _record(box: BoxItem, event: PresenceEvent, apply: bool, nothing_open: bool = False) -> tuple[Recorded, bool]:
    """Log the event, index it and, if it supersedes the box's status, apply it: one transaction.

    The log row's condition makes a repeat a duplicate; the box's condition lets a newer event that
    won a race since we read the box keep the status (the event is then recorded as late).
    `nothing_open`: also require the box to be as read (online at its last connect's version), so
    that a connect may skip looking for episodes to end; if it changed meanwhile, the event is
    recorded without that assumption. Returns the status and whether `nothing_open` held.
    """
    items = lifecycle_items(box, event)
    condition = _supersedes_condition(event)
    if nothing_open:
        condition = condition & (BoxItem.presence_version == int(box.presence_version or 0)) & (
            BoxItem.online == True)  # noqa: E712
    try:
        with TransactWrite(connection=connection()) as tx:
            tx.save(items[0], condition=PresenceLogItem.pk.does_not_exist())
            for item in items[1:]:
                tx.save(item)
            if apply:
                tx.update(BoxItem(box.box_id), actions=_status_actions(event), condition=condition)
    except TransactWriteError as exc:
        failed = cancelled_by_condition(exc)
        if failed[:1] == [True]:
            return "duplicate", False
        if apply and failed[-1:] == [True]:
            return _record(box, event, apply=nothing_open)  # without the assumption, or as late
        raise
    return ("applied" if apply else "stale"), nothing_open and apply


def _raise_connect_version(box: BoxItem, event: PresenceEvent) -> None:
    """A connect that arrived late still ends the episodes below it: keep the highest connect version."""
    if box.last_connect_version is not None and int(box.last_connect_version) >= event.version:
        return
    try:
        BoxItem(box.box_id).update(
            actions=[BoxItem.last_connect_version.set(event.version)],
            condition=BoxItem.box_id.exists() & (BoxItem.last_connect_version.does_not_exist()
                                                 | (BoxItem.last_connect_version < event.version)))
    except UpdateError as exc:
        if not condition_failed(exc):
            raise


def _end_episode(offline_pk: str, offline_sk: str, end_version: int, ended_at: int) -> None:
    """An episode ends at its box's connect with the smallest version above it: whichever arrives."""
    try:
        OfflineEntry(offline_pk, offline_sk).update(
            actions=[OfflineEntry.end_version.set(end_version), OfflineEntry.ended_at.set(ended_at)],
            condition=OfflineEntry.pk.exists() & (OfflineEntry.end_version.does_not_exist()
                                                  | (OfflineEntry.end_version > end_version)))
    except UpdateError as exc:
        if not condition_failed(exc):
            raise


def _close_episodes(box_id: str, version: int, timestamp: int) -> None:
    """A connect of `version` ends the box's episodes of lower versions back to its previous connect
    (the ones before that were ended by it or by an earlier one): one Query, newest first."""
    pk, upto = PresenceLogItem.key(box_id, version, True)
    rows = PresenceLogItem.query(pk, PresenceLogItem.sk.between("V#", upto[:-1]), scan_index_forward=False,
                                 consistent_read=True, page_size=10)
    for row in rows:
        if row.kind == "C":
            break
        if row.offline_pk and row.offline_sk:
            _end_episode(row.offline_pk, row.offline_sk, version, timestamp)


def _episode_end_if_known(box_id: str, entry: OfflineEntry) -> None:
    """A disconnect delivered after the connect that ends it: find that connect (one Query)."""
    pk, own = PresenceLogItem.key(box_id, int(entry.version), False)
    above = own[:-1] + "\uffff"  # every row of a higher version
    for row in PresenceLogItem.query(pk, PresenceLogItem.sk > above, consistent_read=True, page_size=10):
        if row.kind == "C":
            _end_episode(entry.pk, entry.sk, int(row.sk.split("#")[1]), int(row.timestamp))
            return


def record_presence(event: PresenceEvent, settings: Settings, sns: SNSClient,
                    idempotency: Idempotency) -> PresenceResult:
    """Record a lifecycle event, apply it to its box unless a newer one was, and for a drop send the
    third alarm. A duplicate (or Lambda's retry of this event) redoes only what may not have been
    finished: episode ends and the third alarm, both idempotent."""
    box = get_box(event.box_id)
    stored = None if box.presence_version is None else int(box.presence_version)
    apply = supersedes(event.version, event.online, stored, bool(box.online))
    # a connect to a box online at its last connect's version ends nothing: no log Query (checked
    # again in the transaction; if the box changed meanwhile, the first attempt is cancelled)
    shortcut = apply and event.online and _nothing_open(box)
    status, nothing_open = _record(box, event, apply, nothing_open=shortcut)
    result = PresenceResult(status, box.box_id, event.online, event.version)
    if status == "applied":  # the operators' map: the box changed state
        record_change(box.org or "default", "box", box.box_id, event.arrived_at)
    if event.online:
        if status != "applied":
            _raise_connect_version(box, event)
        if not nothing_open:
            _close_episodes(box.box_id, event.version, event.timestamp)
        # a box whose third alarm is open is back: its clients hear it (nothing to do otherwise)
        back = alarm_life.back_online(box, event.version, event.timestamp, event.arrived_at, settings, sns)
        if back is not None:
            result.reports[alarm_life.BACK_ONLINE] = back
        return result
    entry = offline_entry(box, event)
    if status != "applied":
        # an applied disconnect has no arrived connect above it: the transaction's condition proved
        # that no higher event was applied, and a later connect finds this episode itself
        _episode_end_if_known(box.box_id, entry)
    if not event.clean:
        drop = Drop(box.box_id, event.timestamp, event.version, event.disconnect_reason)
        result.third_alarm_seq = offline_after_alarm(box, drop, settings, sns, idempotency, result.reports)
    return result


# -------------------------------------------------------------------- third alarm
@dataclass(frozen=True)
class Drop:
    """An unclean disconnect of a box at lifecycle timestamp `offline_at`."""

    box_id: str
    offline_at: int
    version: int
    reason: str | None = None


@dataclass(frozen=True)
class WatchedAlarm:
    key: str  # its AlarmReceivedEntry sort key: the alarm's identity under its box
    seq: int
    cause: str
    alarm_time: int
    received_at: int


class ThirdAlarmFailed(RuntimeError):
    """Some pushes failed for a retryable reason: the invocation fails so that it is retried."""


def alarm_within_watch(alarms: list[WatchedAlarm], offline_at: int, watch_s: int) -> WatchedAlarm | None:
    """The watched alarm of a drop at `offline_at`: the latest received r with r <= d <= r + watch
    (both inclusive; ties: the higher seq). The rule in plain Python (the Query below reads it)."""
    inside = [a for a in alarms if a.received_at <= offline_at <= a.received_at + watch_s * 1000]
    return max(inside, key=lambda a: (a.received_at, a.seq), default=None)


def watched_alarm(box_id: str, offline_at: int, watch_s: int) -> WatchedAlarm | None:
    """One Query of the box's alarms by received time: the last one received in [d - watch, d]."""
    lo = max(0, offline_at - watch_s * 1000)
    cond = AlarmReceivedEntry.sk.between(f"RCV#{lo:013d}", f"RCV#{offline_at:013d}#\uffff")
    for e in AlarmReceivedEntry.query(f"BOX#{box_id}", cond, scan_index_forward=False, limit=1,
                                      consistent_read=True):
        return WatchedAlarm(e.sk, int(e.seq), e.cause, int(e.alarm_time), int(e.received_at))
    return None


def third_alarm_idempotency(settings: Settings) -> Idempotency:
    """Records keyed on (box, watched alarm), shared by Presence and the sweep (same key prefix):
    one of them sends at a time, a failed one is resumed by the next, a finished one is final."""
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig  # boto3: see boxwatch.idempotency

    return Idempotency(
        persistence=records(settings),
        config=IdempotencyConfig(event_key_jmespath="[box, alarm]", raise_on_no_idempotency_key=True,
                                 expires_after_seconds=LIFECYCLE_DAYS * 86_400),
    )


def offline_after_alarm_notification(box: BoxItem, drop: Drop, alarm: WatchedAlarm) -> Notification:
    return Notification(
        kind="offline_after_alarm",
        box_id=box.box_id,
        at_ms=drop.offline_at,
        data={"cause": alarm.cause, "alarm_seq": alarm.seq, "alarm_time": alarm.alarm_time,
              "alarm_received_at": alarm.received_at, "offline_at": drop.offline_at, "reason": drop.reason,
              "boxes": []},
        context={"box_name": box.name, "local_time": local_time(drop.offline_at, box.timezone),
                 "minutes_after": (drop.offline_at - alarm.received_at) / 60_000, "cause": alarm.cause,
                 "alarm_seq": alarm.seq},
    )


def _tell(box: BoxItem, drop: Drop, alarm: WatchedAlarm, settings: Settings, sns: SNSClient,
          reports: dict[str, SendReport]) -> bool:
    """The fan-out of one watched alarm, resumable: skips who an earlier attempt reached; True if it
    sent now, False if it was already done."""
    claim = ThirdAlarmItem(*ThirdAlarmItem.key(box.box_id, alarm.key))
    try:
        current = ThirdAlarmItem.get(claim.pk, claim.sk, consistent_read=True)
        if current.done:
            return False
        already = set(current.sent or [])
    except ThirdAlarmItem.DoesNotExist:
        already = set()
    report = reports.setdefault("offline_after_alarm", SendReport())
    expires = drop.offline_at // 1000 + LIFECYCLE_DAYS * 86_400
    # an alarm with a life (ackable, escalated) from the moment it is told; a retry finds it open
    alarm_life.open_offline_alarm(box.box_id, drop.offline_at, drop.version, settings)
    # ... and in its organisation's alarm list, as the console lists alarms (a retry rewrites it)
    note_alarm(box, alarm_life.alarm_id_for(drop.offline_at, f"v{drop.version}"), drop.offline_at, settings)

    def keep(sent: set[str], done: bool) -> None:
        actions: list[Action] = [ThirdAlarmItem.sent.set(sorted(sent)), ThirdAlarmItem.box_id.set(box.box_id),
                   ThirdAlarmItem.alarm_seq.set(alarm.seq), ThirdAlarmItem.expires_at.set(expires)]
        if done:
            actions += [ThirdAlarmItem.done.set(True), ThirdAlarmItem.offline_at.set(drop.offline_at),
                        ThirdAlarmItem.alarm_time.set(alarm.alarm_time),
                        ThirdAlarmItem.alarm_received_at.set(alarm.received_at)]
        record_after_push(lambda: claim.update(actions=actions))  # lost, the retry would push again

    try:
        send(sns, bindings_of_box(box.box_id), offline_after_alarm_notification(box, drop, alarm), skip=already,
             report=report)
    except BaseException:
        # a crash half-way (throttled read, killed process): who was reached is kept for the retry
        if report.sent:
            keep(already | set(report.sent), done=False)
        raise
    if report.failed:
        if report.sent:
            keep(already | set(report.sent), done=False)
        raise ThirdAlarmFailed(f"third alarm push failed for {len(report.failed)} client(s): {report.failed[:5]}")
    keep(already | set(report.sent), done=True)
    return True


def offline_after_alarm(box: BoxItem, drop: Drop, settings: Settings, sns: SNSClient, idempotency: Idempotency,
                        reports: dict[str, SendReport]) -> int | None:
    """Send the third alarm for a drop if it has a watched alarm not told yet; the seq if sent now.

    Presence tries when the drop arrives, the sweep twice more later (an alarm stored after the drop
    was processed). Both go through one idempotency record per watched alarm: a concurrent attempt
    is held off (IdempotencyAlreadyInProgressError, retried), a failed one is resumed.
    """
    alarm = watched_alarm(box.box_id, drop.offline_at, settings.offline_watch_s)
    if alarm is None:
        return None
    try:
        if ThirdAlarmItem.get(*ThirdAlarmItem.key(box.box_id, alarm.key), consistent_read=True).done:
            return None  # told already: flaps inside the watch add nothing
    except ThirdAlarmItem.DoesNotExist:
        pass
    sent: list[bool] = []

    def once(watched: dict[str, str]) -> dict[str, Any]:
        sent.append(_tell(box, drop, alarm, settings, sns, reports))
        return {"box": box.box_id, "alarm": alarm.key, "sent_now": sent[0]}

    idempotency.run(once, "watched", {"box": box.box_id, "alarm": alarm.key}, key_prefix="third")
    return alarm.seq if sent and sent[0] else None
