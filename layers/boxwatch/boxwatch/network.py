"""Network status from AWS IoT lifecycle events, and the third alarm (offline soon after an alarm).

AWS publishes `connected` / `disconnected` events on `$aws/events/presence/<type>/<clientId>`; they
may arrive late, twice or out of order. Each carries a `versionNumber` that grows per client, so
the box keeps the version of the last event it applied and ignores anything not newer. At equal
versions a `disconnected` beats a `connected` (the end of a session follows its start), so the
ordering holds whether AWS gives both events of one session the same number or not.

An applied `disconnected` also writes an `OfflineEntry` (the time-bucketed index the offline sweep
reads) and, unless the client disconnected cleanly, looks for an alarm of the box within
`offline_watch_s` before it: the third alarm. See docs/network-status.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from boxwatch.contract import BOX_ID_PATTERN
from boxwatch.errors import InvalidInput
from boxwatch.models import AlarmRecord, BoxItem, OfflineEntry, connection
from boxwatch.notify import Notification, SendReport, local_time, send
from boxwatch.registry import bindings_of_box, get_box
from boxwatch.settings import Settings

CLIENT_INITIATED = "CLIENT_INITIATED_DISCONNECT"
OFFLINE_ENTRY_DAYS = 7  # the index serves the sweep's few minutes of lookback; a week is for audit
LATEST_ALARMS = 5  # seq order is nearly time order: a few records cover an outbox that reordered


class PresenceEvent(BaseModel):
    """An AWS IoT Core connect/disconnect lifecycle event, as AWS documents it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    client_id: str = Field(alias="clientId", pattern=BOX_ID_PATTERN)
    thing_name: str | None = Field(None, alias="thingName", pattern=BOX_ID_PATTERN)
    event_type: Literal["connected", "disconnected"] = Field(alias="eventType")
    timestamp: int = Field(gt=0, description="epoch ms")
    version: int = Field(alias="versionNumber", ge=0)
    session_identifier: str | None = Field(None, alias="sessionIdentifier", max_length=128)
    client_initiated_disconnect: bool | None = Field(None, alias="clientInitiatedDisconnect")
    disconnect_reason: str | None = Field(None, alias="disconnectReason", max_length=64)

    @property
    def box_id(self) -> str:
        # thingName is present only with the exclusive-thing feature; our boxes use it as client id
        return self.thing_name or self.client_id

    @property
    def online(self) -> bool:
        return self.event_type == "connected"

    @property
    def clean(self) -> bool:
        """The box said goodbye (MQTT DISCONNECT): not a sign of fire or power loss."""
        return bool(self.client_initiated_disconnect) or self.disconnect_reason == CLIENT_INITIATED

    @classmethod
    def parse(cls, event: Any) -> PresenceEvent:
        if not isinstance(event, dict):
            raise InvalidInput("lifecycle event must be a JSON object", got=type(event).__name__)
        try:
            return cls.model_validate(event)
        except ValidationError as exc:
            raise InvalidInput(
                "lifecycle event failed validation",
                client_id=event.get("clientId") if isinstance(event.get("clientId"), str) else None,
                problems=[
                    {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()
                ][:10],
            ) from None


def supersedes(event_version: int, event_online: bool, stored_version: int | None, stored_online: bool) -> bool:
    """Does an event replace the stored status? Newer version wins; at an equal version only a
    disconnect of a box still marked online does (the end of the session it started)."""
    if stored_version is None or event_version > stored_version:
        return True
    return event_version == stored_version and stored_online and not event_online


@dataclass
class PresenceResult:
    status: Literal["applied", "stale"]
    box_id: str
    online: bool
    version: int
    third_alarm_seq: int | None = None
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
        actions.append(BoxItem.status_reason.remove())
    else:
        actions.append(BoxItem.status_reason.set(event.disconnect_reason or "UNKNOWN"))
    return actions


def offline_entry(box: BoxItem, event: PresenceEvent) -> OfflineEntry:
    return OfflineEntry(
        *OfflineEntry.key(event.timestamp, box.box_id),
        box_id=box.box_id, name=box.name, lat=box.lat, lng=box.lng, offline_at=event.timestamp,
        reason=event.disconnect_reason, clean=event.clean, version=event.version,
        expires_at=event.timestamp // 1000 + OFFLINE_ENTRY_DAYS * 86_400,
    )


def record_presence(event: PresenceEvent, settings: Settings, sns: Any) -> PresenceResult:
    """Apply a lifecycle event to its box unless a newer one was applied; a duplicate changes nothing."""
    box = get_box(event.box_id)
    stale = PresenceResult("stale", box.box_id, event.online, event.version)
    stored = None if box.presence_version is None else int(box.presence_version)
    if not supersedes(event.version, event.online, stored, bool(box.online)):
        return stale
    condition = _supersedes_condition(event)
    entry = None if event.online else offline_entry(box, event)
    try:
        if entry is None:
            BoxItem(box.box_id).update(actions=_status_actions(event), condition=condition)
        else:
            # status and index entry together: a box is offline exactly when the sweep can find it
            with TransactWrite(connection=connection()) as tx:
                tx.update(BoxItem(box.box_id), actions=_status_actions(event), condition=condition)
                tx.save(entry)
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        return stale  # a newer event won the race since we read the box
    except TransactWriteError as exc:
        reasons = [r.code for r in (exc.cancellation_reasons or []) if r is not None]
        if "ConditionalCheckFailed" not in reasons:
            raise
        return stale
    result = PresenceResult("applied", box.box_id, event.online, event.version)
    if entry is not None and not event.clean:
        result.third_alarm_seq = offline_after_alarm(box, entry, settings, sns, result.reports)
    return result


# -------------------------------------------------------------------- third alarm
@dataclass(frozen=True)
class RecentAlarm:
    seq: int
    cause: str
    alarm_time: int


def alarm_within_watch(alarms: list[RecentAlarm], offline_at: int, watch_s: int) -> RecentAlarm | None:
    """The latest alarm in [offline_at - watch, offline_at]: the one the outage follows."""
    inside = [a for a in alarms if offline_at - watch_s * 1000 <= a.alarm_time <= offline_at]
    return max(inside, key=lambda a: (a.alarm_time, a.seq), default=None)


def latest_alarms(box_id: str) -> list[RecentAlarm]:
    """The box's last few alarms by sequence: one Query, newest first."""
    return [
        RecentAlarm(int(r.seq), r.cause, int(r.alarm_time))
        for r in AlarmRecord.query(f"BOX#{box_id}", AlarmRecord.sk.startswith("SEQ#"), scan_index_forward=False,
                                   limit=LATEST_ALARMS, consistent_read=True)
    ]


def offline_after_alarm_notification(box: BoxItem, entry: OfflineEntry, alarm: RecentAlarm) -> Notification:
    offline_at = int(entry.offline_at)
    return Notification(
        kind="offline_after_alarm",
        box_id=box.box_id,
        at_ms=offline_at,
        data={"cause": alarm.cause, "alarm_seq": alarm.seq, "alarm_time": alarm.alarm_time,
              "offline_at": offline_at, "reason": entry.reason, "boxes": []},
        context={"box_name": box.name, "local_time": local_time(offline_at, box.timezone),
                 "minutes_after": (offline_at - alarm.alarm_time) / 60_000, "cause": alarm.cause,
                 "alarm_seq": alarm.seq},
    )


def offline_after_alarm(box: BoxItem, entry: OfflineEntry, settings: Settings, sns: Any,
                        reports: dict[str, SendReport]) -> int | None:
    """Send the third alarm for an offline entry if an alarm precedes it within the watch time.

    Presence tries when the disconnect arrives; the sweep tries once more later for alarms that
    were delivered after the disconnect. The entry's `third_alarm_seq` is claimed before sending so
    that only one of them sends; a failed send releases the claim for the sweep to retry.
    """
    alarm = alarm_within_watch(latest_alarms(box.box_id), int(entry.offline_at), settings.offline_watch_s)
    if alarm is None:
        return None
    try:
        entry.update(actions=[OfflineEntry.third_alarm_seq.set(alarm.seq)],
                     condition=OfflineEntry.pk.exists() & OfflineEntry.third_alarm_seq.does_not_exist())
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        return None  # already sent
    report = send(sns, bindings_of_box(box.box_id), offline_after_alarm_notification(box, entry, alarm))
    reports["offline_after_alarm"] = report
    if report.failed:
        entry.update(actions=[OfflineEntry.third_alarm_seq.remove()])
    return alarm.seq

