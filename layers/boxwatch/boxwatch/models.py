"""pynamodb models. Table names come from Settings via `bind_tables`, once per process."""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Self

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from boxwatch.settings import Settings


class BoxAreaIndex(GlobalSecondaryIndex["BoxItem"]):
    """Boxes by their area cell (outage-radius resolution): who is near an outage."""

    class Meta:
        index_name = "by_area_cell"
        projection = AllProjection()

    area_cell = UnicodeAttribute(hash_key=True)
    box_id = UnicodeAttribute(range_key=True)


class BoxMapIndex(GlobalSecondaryIndex["BoxItem"]):
    """The operator map: boxes of one organisation by H3 cell. hash = <org>#<coarse cell>, range =
    <fine cell>#<box>: the fine cells of any coarser cell are one contiguous sort-key range, so a
    viewport is a few Queries that read about the boxes in view (geo.map_cover)."""

    class Meta:
        index_name = "by_org_cell"
        projection = AllProjection()

    map_part = UnicodeAttribute(hash_key=True)
    map_cell = UnicodeAttribute(range_key=True)


class BoxItem(Model):
    """A distribution box: where it is (for people and for H3) and its network status."""

    class Meta:
        table_name = "boxwatch-boxes"

    box_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    address = UnicodeAttribute(default="")
    lat = NumberAttribute()
    lng = NumberAttribute()
    timezone = UnicodeAttribute(default="Asia/Shanghai")
    alarm_cell = UnicodeAttribute()  # its cell at geo.ALARM_INDEX_RES (shown by `boxes show`)
    area_cell = UnicodeAttribute()  # res derived from the outage radius
    # network status, from IoT lifecycle events (ordered by their versionNumber)
    online = BooleanAttribute(default=True)
    status_since = NumberAttribute(default=0)  # epoch ms, event time
    status_reason = UnicodeAttribute(null=True)
    presence_version = NumberAttribute(default=0)
    # flood hold-down: {cause: {"r0": window start (received_at ms), "n": alarms processed in it}},
    # written in the alarm's own transaction, guarded by hold_rev (concurrent alarms of one box)
    holds = JSONAttribute(null=True)
    hold_rev = NumberAttribute(null=True)
    # the highest versionNumber of a `connected` event that arrived, applied or late: an offline
    # episode started by a disconnect of version v has ended once this is above v
    last_connect_version = NumberAttribute(null=True)
    # the box's active alarms: {"<cause>#<circuit or empty>": alarm_id}, written in the same
    # transaction (and under the same hold_rev guard) as the hold state, so that two concurrent
    # alarms of one cause make one alarm (docs/alarm-life.md)
    active = JSONAttribute(null=True)
    # the organisation that owns the box: its operators see and act on it (old rows: "default")
    org = UnicodeAttribute(default="default")
    # the contactor as the box's shadow last reported it ("open" | "closed"), ordered by the
    # shadow's version: the operators' map shows it
    contactor = UnicodeAttribute(null=True)
    contactor_version = NumberAttribute(null=True)
    map_part = UnicodeAttribute(null=True)  # by_org_cell keys, written with the cells (registry.box_item)
    map_cell = UnicodeAttribute(null=True)
    by_area_cell = BoxAreaIndex()
    by_org_cell = BoxMapIndex()


class ClientIndex(GlobalSecondaryIndex["BindingItem"]):
    class Meta:
        index_name = "by_client"
        projection = AllProjection()

    client_id = UnicodeAttribute(hash_key=True)
    box_id = UnicodeAttribute(range_key=True)


class BindingItem(Model):
    """A client (phone user) bound to a box: who hears of the box, in which language, and the
    SMS number / e-mail topic an operator set for them.

    Pushes go to every device the client registered (`ClientDevicesItem`, POST /me/devices): a
    binding names the client, never a phone. A binding written by an older version carries one
    `target` (endpoint ARN, topic ARN or phone number) and is still sent to until
    `boxwatch clients migrate` turns it into a device record; new bindings have none.
    """

    class Meta:
        table_name = "boxwatch-bindings"

    box_id = UnicodeAttribute(hash_key=True)
    client_id = UnicodeAttribute(range_key=True)
    target = UnicodeAttribute(null=True)  # older bindings only: SNS endpoint ARN, topic ARN or E.164 number
    target_kind = UnicodeAttribute(default="endpoint")  # of `target`: endpoint | topic | sms
    locale = UnicodeAttribute(default="zh-CN")
    role = UnicodeAttribute(null=True)  # None = a client; "manager": an escalation contact of the box
    # E.164 number texted every push of the box (set by an operator); a manager's is its escalation
    # number, texted the escalation SMS only
    sms = UnicodeAttribute(null=True)
    topic = UnicodeAttribute(null=True)  # SNS topic ARN (its e-mail subscriptions) sent every push
    enabled = BooleanAttribute(default=True)
    disabled_reason = UnicodeAttribute(null=True)
    by_client = ClientIndex()


# ------------------------------------------------------------------------- phones (DevicesTable)
class ClientDevicesItem(Model):
    """Every device (phone app install) a client registered: pk = CLIENT#<client>.

    One item per client, so that a fan-out reads the devices of all its recipients in one
    BatchGetItem; `devices` maps device id -> {platform, endpoint, locale, enabled, reason, at}.
    Written read-modify-write under `revision` (registrations are rare; two at once retry).
    """

    class Meta:
        table_name = "boxwatch-devices"

    pk = UnicodeAttribute(hash_key=True)
    client_id = UnicodeAttribute()
    devices = JSONAttribute(default=dict)
    revision = VersionAttribute()

    @staticmethod
    def key(client_id: str) -> str:
        return f"CLIENT#{client_id}"


class DeviceOwnerItem(Model):
    """Who owns a push token now: pk = DEVICE#<device id> (a hash of platform and token).

    A token has one owner: registering it as another client moves it (the previous owner's
    record loses it in the same transaction)."""

    class Meta:
        table_name = "boxwatch-devices"

    pk = UnicodeAttribute(hash_key=True)
    client_id = UnicodeAttribute()
    endpoint = UnicodeAttribute()
    platform = UnicodeAttribute()
    at = NumberAttribute()  # event time (ms) of the registration

    @staticmethod
    def key(device_id: str) -> str:
        return f"DEVICE#{device_id}"


class AlarmRecord(Model):
    """One alarm log, keyed by box and sequence: the idempotency key and the box's history.

    pk = BOX#<box>, sk = SEQ#<seq, 16 digits>; a sequence number reused with other content (a box
    whose counter restarted) is stored as SEQ#<seq, 16 digits>#<content hash, 16 hex>.
    """

    class Meta:
        table_name = "boxwatch-alarms"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    box_id = UnicodeAttribute()
    seq = NumberAttribute()
    cause = UnicodeAttribute()
    alarm_time = NumberAttribute()  # epoch ms
    received_at = NumberAttribute()
    value = NumberAttribute()
    threshold = NumberAttribute()
    unit = UnicodeAttribute(null=True)
    circuit = UnicodeAttribute(null=True)
    phase = UnicodeAttribute(null=True)
    cell = UnicodeAttribute()
    neighbours = JSONAttribute(null=True)  # the second alarm's box list, for audit
    # set only when everyone was pushed but the idempotency record could not be completed: a later
    # redelivery is then a duplicate all the same (docs/reliability.md)
    notified_at = NumberAttribute(null=True)
    # "<kind>#<target key>" (notify.Target.key: a client's device, SMS or e-mail) already pushed,
    # written only when a fan-out fails half-way (the retry skips them)
    sent = JSONAttribute(null=True)
    held = BooleanAttribute(null=True)  # held by the flood hold-down: stored, counted, not pushed
    hold_start = NumberAttribute(null=True)  # the hold window it fell in (received_at ms of its first alarm)
    seq_reused = BooleanAttribute(null=True)  # its seq was stored before with other content
    expires_at = NumberAttribute(null=True)  # DynamoDB TTL, epoch seconds

    @staticmethod
    def key(box_id: str, seq: int, content_hash: str | None = None) -> tuple[str, str]:
        sk = f"SEQ#{seq:016d}" if content_hash is None else f"SEQ#{seq:016d}#{content_hash}"
        return f"BOX#{box_id}", sk


class AlarmLifeItem(Model):
    """One alarm's life: every alarm log of one (box, cause, circuit) while it is active joins it.

    pk = BOX#<box>, sk = LIFE#<alarm_id>; alarm_id = <received_at of its first alarm, 13 digits>.<seq>
    (plus .<content hash> for a reused seq): stable, time-ordered, unique per box. `state` active ->
    cleared (by the box's clear message); acked, independently, by a bound client or an operator.
    Times are epoch ms; `first_at`/`last_at`/`cleared_at` are IoT Core's received_at, `acked_at`
    the API request's time (docs/alarm-life.md). An org-scoped list adds an index on a copied
    `org` attribute; per box it is one Query on this key.
    """

    class Meta:
        table_name = "boxwatch-alarms"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    alarm_id = UnicodeAttribute()
    box_id = UnicodeAttribute()
    box_name = UnicodeAttribute(null=True)
    lat = NumberAttribute(null=True)
    lng = NumberAttribute(null=True)
    cause = UnicodeAttribute()  # an alarm cause, or offline_after_alarm / neighbour_outage
    circuit = UnicodeAttribute(null=True)
    state = UnicodeAttribute(default="active")  # active | cleared
    first_at = NumberAttribute()
    last_at = NumberAttribute()
    first_alarm_time = NumberAttribute(null=True)  # the box's clock, for people
    logs = NumberAttribute(attr_name="count", default=1)  # logs joined, the opener included ("count")
    seq = NumberAttribute(null=True)  # the opening alarm's seq
    value = NumberAttribute(null=True)  # the latest alarm's reading
    threshold = NumberAttribute(null=True)
    unit = UnicodeAttribute(null=True)
    cleared_at = NumberAttribute(null=True)
    clear_seq = NumberAttribute(null=True)
    acked_by = UnicodeAttribute(null=True)
    acked_role = UnicodeAttribute(null=True)  # client | operator
    acked_at = NumberAttribute(null=True)
    disposition = UnicodeAttribute(null=True)  # real | false_alarm | test | drill
    comment = UnicodeAttribute(null=True)
    escalation_steps = JSONAttribute(null=True)  # ["reminder", "escalation"] as sent
    subject = UnicodeAttribute(null=True)  # third/fourth alarm: what it is about (incident id)
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def key(box_id: str, alarm_id: str) -> tuple[str, str]:
        return f"BOX#{box_id}", f"LIFE#{alarm_id}"


class AlarmClearRecord(Model):
    """A clear message as stored (its own seq): pk = BOX#<box>, sk = CLR#<seq, 16 digits>[#hash]."""

    class Meta:
        table_name = "boxwatch-alarms"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    box_id = UnicodeAttribute()
    seq = NumberAttribute()
    cause = UnicodeAttribute()
    circuit = UnicodeAttribute(null=True)
    alarm_time = NumberAttribute()
    received_at = NumberAttribute()
    value = NumberAttribute(null=True)
    threshold = NumberAttribute(null=True)
    alarm_id = UnicodeAttribute(null=True)  # the alarm it cleared; None: none was active
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def key(box_id: str, seq: int, content_hash: str | None = None) -> tuple[str, str]:
        sk = f"CLR#{seq:016d}" if content_hash is None else f"CLR#{seq:016d}#{content_hash}"
        return f"BOX#{box_id}", sk


class AlarmCellEntry(Model):
    """The same alarm indexed by H3 cell for neighbour lookup.

    pk = CELL#<cell>, sk = <cause>#<alarm_time ms, 13 digits>#<box>#<seq>, so one Query per cell
    reads exactly the alarms of one cause inside a time window.
    """

    class Meta:
        table_name = "boxwatch-alarms"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    box_id = UnicodeAttribute()
    name = UnicodeAttribute()
    lat = NumberAttribute()
    lng = NumberAttribute()
    seq = NumberAttribute()
    alarm_time = NumberAttribute()
    received_at = NumberAttribute(null=True)
    # the box's enabled bindings when it alarmed (bindings.snapshot_of: [client, target, target_kind,
    # locale, sms, topic, role], older entries the first four): a later neighbour tells them
    # (nearby_update) without a Query per neighbour box; None = too many, Query
    clients = JSONAttribute(null=True)
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def key(cell: str, cause: str, alarm_time: int, box_id: str, seq: int,
            content_hash: str | None = None) -> tuple[str, str]:
        tail = "" if content_hash is None else f"#{content_hash}"
        return f"CELL#{cell}", f"{cause}#{alarm_time:013d}#{box_id}#{seq}{tail}"


class AlarmReceivedEntry(Model):
    """The same alarm under its box, ordered by when IoT Core received it (the third alarm's clock).

    pk = BOX#<box>, sk = RCV#<received_at ms, 13 digits>#<seq, 16 digits>#<alarm_time ms, 13 digits>:
    one Query reads a box's alarms received in a time range, whatever their sequence numbers
    (a counter that restarted makes seq order useless for "the latest alarm").
    """

    class Meta:
        table_name = "boxwatch-alarms"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    box_id = UnicodeAttribute()
    seq = NumberAttribute()
    cause = UnicodeAttribute()
    alarm_time = NumberAttribute()
    received_at = NumberAttribute()
    record_sk = UnicodeAttribute()  # the AlarmRecord's sort key
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def key(box_id: str, received_at: int, seq: int, alarm_time: int) -> tuple[str, str]:
        return f"BOX#{box_id}", f"RCV#{received_at:013d}#{seq:016d}#{alarm_time:013d}"


class NearbyClaim(Model):
    """The nearby_update window of one client and cause: pk = CLIENT#<client>, sk = NEARBY#<cause>.

    `r` is the received_at (ms) of the alarm whose update opened the window [r, r + window);
    `by` names that alarm (<box>#<record sk>), so that its own retry recognises the claim.
    """

    class Meta:
        table_name = "boxwatch-alarms"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    r = NumberAttribute()
    by = UnicodeAttribute()
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def key(client_id: str, cause: str) -> tuple[str, str]:
        return f"CLIENT#{client_id}", f"NEARBY#{cause}"


class DueIndex(GlobalSecondaryIndex["DueItem"]):
    """Sparse: only items still to do carry `due`, so the alarm sweep reads what is due, not history."""

    class Meta:
        index_name = "due_by_time"
        projection = AllProjection()

    due = UnicodeAttribute(hash_key=True)
    due_at = NumberAttribute(range_key=True)


class DueItem(Model):
    """Something the alarm sweep must do at or after `due_at` (ms, event time), once.

    pk = DUE#<kind>#<subject>, sk = DUE. Kinds: `alarm_summary` (subject <box>#<cause>#<window
    start ms>: a flood hold window that held `tally` alarms); `reminder`, `escalation` (subject
    <box>#<alarm_id>: an escalation step, `due` removed when the alarm is acked or cleared);
    `acknowledged`, `alarm_cleared`, `box_back_online`, `all_clear` (due at once: pushed by whoever
    made them, finished by the sweep if a push failed). The sweep leases an item, runs the
    kind's handler, and removes `due` when done; `sent` keeps who was told if a push failed.
    """

    class Meta:
        table_name = "boxwatch-alarms"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, default="DUE")
    kind = UnicodeAttribute()
    subject = UnicodeAttribute()
    due = UnicodeAttribute(null=True)  # "1" until done (sparse index key)
    due_at = NumberAttribute()
    box_id = UnicodeAttribute(null=True)
    data = JSONAttribute(null=True)  # what the kind's handler needs (names, times)
    tally = NumberAttribute(default=0)  # alarm_summary: alarms held in the window
    lease_until = NumberAttribute(null=True)  # a sweep is working on it until then (event time, ms)
    sent = JSONAttribute(null=True)  # clients already told, written only when a push failed
    done_at = NumberAttribute(null=True)
    expires_at = NumberAttribute(null=True)
    due_by_time = DueIndex()

    @staticmethod
    def key(kind: str, subject: str) -> tuple[str, str]:
        return f"DUE#{kind}#{subject}", "DUE"


# -------------------------------------------------------------------- network status (NetworkTable)
OFFLINE_BUCKET_MS = 60_000  # offline index partition width; fixed so that entries stay findable
# arrival index partition width: a sweep reads its ~7 minutes in one bucket (two past the hour) per
# shard; a Query reads only its sort-key range, so a wide bucket costs no extra items
ARRIVAL_BUCKET_MS = 3_600_000
# how long a claim (a leased due item, a pending warning) belongs to the invocation that made it, in
# schedule time: longer than a sweep's timeout (60 s), so only a crashed sweep's claims wait for it
LEASE_MS = 120_000
# Each bucket of the offline and arrival indexes is split into this many partition keys, the shard
# from the box id: 100,000 boxes dropping in one minute write ~1,700 items/s, which one key would
# throttle (DynamoDB: 1,000 WCU/s per partition); 16 keys take ~105/s each. Fixed, like the widths:
# changing it would hide the entries written under the old count until they age out.
INDEX_SHARDS = 16


def index_shard(box_id: str) -> int:
    """The shard of a box's index entries: stable across processes (not Python's salted hash)."""
    return zlib.crc32(box_id.encode()) % INDEX_SHARDS


class OfflineEntry(Model):
    """One offline episode: a disconnect (clean or not, applied or arrived late) and, once a later
    connect has arrived, its end. Indexed by the disconnect's lifecycle timestamp, so the sweep finds
    the drops near another drop's instant.

    pk = OFF#<minute of the offline time>#<shard of the box>, sk = <offline ms, 13 digits>#<box>#<version, 16>.
    """

    class Meta:
        table_name = "boxwatch-network"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    box_id = UnicodeAttribute()
    name = UnicodeAttribute()
    lat = NumberAttribute()
    lng = NumberAttribute()
    offline_at = NumberAttribute()  # epoch ms, the lifecycle event's timestamp: the episode's start
    reason = UnicodeAttribute(null=True)
    clean = BooleanAttribute(default=False)  # client-initiated disconnect: no third alarm
    version = NumberAttribute()
    arrived_at = NumberAttribute(null=True)  # when IoT Core received the event (the rule's timestamp())
    # the episode's end: the timestamp of the box's arrived connect with the smallest version above ours
    ended_at = NumberAttribute(null=True)
    end_version = NumberAttribute(null=True)
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def key(offline_at: int, box_id: str, version: int) -> tuple[str, str]:
        return (OfflineEntry.bucket_key(offline_at // OFFLINE_BUCKET_MS, index_shard(box_id)),
                f"{offline_at:013d}#{box_id}#{version:016d}")

    @staticmethod
    def bucket_key(bucket: int, shard: int) -> str:
        return f"OFF#{bucket}#{shard}"


class PresenceLogItem(Model):
    """Every lifecycle event a box had, by version: what makes episode ends exact whatever the
    arrival order. pk = BOX#<box>, sk = V#<version, 16 digits>#<C|D> (the event's identity: a
    repeat is a duplicate). A disconnect's row names its OfflineEntry."""

    class Meta:
        table_name = "boxwatch-network"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute()  # C (connected) | D (disconnected)
    timestamp = NumberAttribute()
    arrived_at = NumberAttribute()
    offline_pk = UnicodeAttribute(null=True)
    offline_sk = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def key(box_id: str, version: int, online: bool) -> tuple[str, str]:
        return f"BOX#{box_id}", f"V#{version:016d}#{'C' if online else 'D'}"


class ArrivalEntry(Model):
    """A lifecycle event by ARRIVAL time: what a sweep has not seen yet, however late the event is.

    pk = ARR#<arrival ms // ARRIVAL_BUCKET_MS>#<C|D>#<shard of the box>,
    sk = <arrival ms, 13 digits>#<box>#<version, 16>#<C|D>.
    Drops and connects have their own partitions: a sweep reads every drop, but connects only near
    an open incident (a mass reconnect must not make every quiet sweep read thousands of rows).
    """

    class Meta:
        table_name = "boxwatch-network"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    box_id = UnicodeAttribute()
    kind = UnicodeAttribute()  # C | D
    version = NumberAttribute()
    timestamp = NumberAttribute()  # the lifecycle event's own time
    arrived_at = NumberAttribute()
    lat = NumberAttribute()
    lng = NumberAttribute()
    clean = BooleanAttribute(default=False)
    reason = UnicodeAttribute(null=True)
    alarm_checks = NumberAttribute(default=0)  # late third-alarm checks the sweep made (D only)
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def key(arrived_at: int, box_id: str, version: int, online: bool) -> tuple[str, str]:
        kind = "C" if online else "D"
        return (ArrivalEntry.bucket_key(arrived_at // ARRIVAL_BUCKET_MS, kind, index_shard(box_id)),
                f"{arrived_at:013d}#{box_id}#{version:016d}#{kind}")

    @staticmethod
    def bucket_key(bucket: int, kind: str, shard: int) -> str:
        return f"ARR#{bucket}#{kind}#{shard}"


class EpisodeIncidentItem(Model):
    """Which incident an offline episode belongs to, written when the incident resolves: a drop
    arriving late that links to a member of a resolved incident joins that incident.
    pk = BOX#<box>, sk = INC#<version, 16 digits>."""

    class Meta:
        table_name = "boxwatch-network"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    incident_id = UnicodeAttribute()
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def key(box_id: str, version: int) -> tuple[str, str]:
        return f"BOX#{box_id}", f"INC#{version:016d}"


class ThirdAlarmItem(Model):
    """The third alarm of one watched alarm: at most one per alarm, finished by whoever retries.

    pk = THIRD#<box>, sk = the alarm's AlarmReceivedEntry sort key (RCV#<received_at>#<seq>#<alarm_time>).
    `sent` lists the clients already pushed (written when a fan-out fails half-way, so that the
    retry skips them); `done` once every client was told.
    """

    class Meta:
        table_name = "boxwatch-network"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    box_id = UnicodeAttribute(null=True)
    alarm_seq = NumberAttribute(null=True)
    alarm_time = NumberAttribute(null=True)
    alarm_received_at = NumberAttribute(null=True)
    offline_at = NumberAttribute(null=True)  # the drop that was told
    sent = JSONAttribute(null=True)
    done = BooleanAttribute(null=True)
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def key(box_id: str, alarm_key: str) -> tuple[str, str]:
        return f"THIRD#{box_id}", alarm_key


class OpenIncidentIndex(GlobalSecondaryIndex["IncidentItem"]):
    """Sparse: only open incidents carry `open_key`."""

    class Meta:
        index_name = "open_incidents"
        projection = AllProjection()

    open_key = UnicodeAttribute(hash_key=True)
    pk = UnicodeAttribute(range_key=True)


class IncidentItem(Model):
    """An offline cluster (fourth alarm): pk = INC#<id>, sk = META.

    Its boxes are `IncidentMemberItem`s under the same pk, not a list in this item: an area outage
    of 10,000 boxes would not fit one 400 KB item. `next_seq` numbers members in the order they
    joined (a box offline again, in a new episode, joins again with a new number), and
    `announced_upto` is the highest number every recipient was told about: a cluster whose
    members all carry a number up to it is unchanged, no work.
    """

    class Meta:
        table_name = "boxwatch-network"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, default="META")
    incident_id = UnicodeAttribute()
    state = UnicodeAttribute(default="open")  # open | resolved
    open_key = UnicodeAttribute(null=True)  # "OPEN" while open, removed on resolve
    member_count = NumberAttribute(default=0)
    next_seq = NumberAttribute(default=0)  # the last member number given
    announced_upto = NumberAttribute(default=0)
    opened_at = NumberAttribute()  # epoch ms, earliest member offline time
    updated_at = NumberAttribute()  # sweep time of the last change
    resolved_at = NumberAttribute(null=True)
    merged_into = UnicodeAttribute(null=True)
    center_lat = NumberAttribute(null=True)
    center_lng = NumberAttribute(null=True)
    radius_m = NumberAttribute(null=True)  # area: every member within radius_m of the center
    blip = BooleanAttribute(null=True)  # every member was back when the cluster was first decided: nobody told
    # storm mode (boxwatch.storm): the cluster is a share of its area, an area outage; sticky until resolved
    storm = BooleanAttribute(null=True)
    storm_at = NumberAttribute(null=True)  # the sweep that found it
    storm_lat = NumberAttribute(null=True)
    storm_lng = NumberAttribute(null=True)
    storm_radius_m = NumberAttribute(null=True)
    storm_boxes = NumberAttribute(null=True)  # registered boxes in the storm disk then
    # set before a sweep claims warnings, cleared once none is pending: only then do later sweeps
    # read the clients' rows for owed warnings (a crash after a claim leaves it set)
    owed_since = NumberAttribute(null=True)
    # a late connect showed that no two of its members are linked: it warns nobody new, and a drop
    # that joins it later keeps only the members linked to that drop
    unlinked = BooleanAttribute(null=True)
    revision = VersionAttribute()  # optimistic lock between overlapping sweeps
    expires_at = NumberAttribute(null=True)
    open_incidents = OpenIncidentIndex()

    @staticmethod
    def key(incident_id: str) -> tuple[str, str]:
        return f"INC#{incident_id}", "META"


class _UnderIncident(Model):
    """A row under an incident's key (pk = INC#<id>, sk = <PREFIX>#<name>): members and clients."""

    PREFIX = ""

    class Meta:
        table_name = "boxwatch-network"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)

    @classmethod
    def key(cls, incident_id: str, name: str) -> tuple[str, str]:
        return f"INC#{incident_id}", f"{cls.PREFIX}#{name}"

    @classmethod
    def rows(cls, incident_pk: str) -> Iterator[Self]:
        """Every row of this kind under the incident (one Query, paged by DynamoDB)."""
        return cls.query(incident_pk, cls.sk.startswith(f"{cls.PREFIX}#"), consistent_read=True)

    @classmethod
    def some(cls, incident_id: str, names: Iterable[str]) -> dict[str, Self]:
        """The rows of these names that exist (BatchGetItem, 100 per request): name -> row. What a
        warning needs of an incident with 100,000 members or clients, not all of them."""
        keys = [cls.key(incident_id, n) for n in sorted(set(names))]
        width = len(cls.PREFIX) + 1
        return {r.sk[width:]: r for r in cls.batch_get(keys, consistent_read=True)} if keys else {}


class IncidentMemberItem(_UnderIncident):
    """One box of an incident and its offline episodes in it: sk = MEMBER#<box>."""

    PREFIX = "MEMBER"

    box_id = UnicodeAttribute()
    t = NumberAttribute()  # the offline time (epoch ms) of its latest episode in the incident
    seq = NumberAttribute()  # joining order of that episode, see IncidentItem
    version = NumberAttribute(null=True)  # the latest episode's disconnect version: open until a connect above it
    versions = JSONAttribute(null=True)  # every episode (disconnect version) of the box in the incident
    expires_at = NumberAttribute(null=True)  # set when the incident resolves


class IncidentClientItem(_UnderIncident):
    """What one client was told about one incident: sk = CLIENT#<client>."""

    PREFIX = "CLIENT"

    client_id = UnicodeAttribute()
    box_id = UnicodeAttribute()  # the client's online box the warning was addressed to
    told_upto = NumberAttribute(default=0)  # highest member number this client was told about
    # the news it was last told (count and boxes listed); none when only told `area_outage`
    content_hash = UnicodeAttribute(null=True)
    sends = NumberAttribute(default=0)
    area_told = BooleanAttribute(null=True)  # told `area_outage` (storm mode): never again for this incident
    cleared = BooleanAttribute(null=True)  # told `area_all_clear`
    # the schedule time of a claim whose push is not confirmed. Until LEASE_MS after it the claim is
    # its sweep's (an overlapping sweep leaves it); after, that sweep may have died before the push,
    # so whoever finds it pushes again (at least once: never silence). 0: released after a failed push
    pending_at = NumberAttribute(null=True)
    updated_at = NumberAttribute()
    expires_at = NumberAttribute(null=True)


class PendingCommandIndex(GlobalSecondaryIndex["CommandItem"]):
    """Sparse: only pending commands carry `pending`, so the expiry sweep reads what is due, not history."""

    class Meta:
        index_name = "pending_by_expiry"
        projection = AllProjection()

    pending = UnicodeAttribute(hash_key=True)
    expires_at = NumberAttribute(range_key=True)


class CommandOrgIndex(GlobalSecondaryIndex["CommandItem"]):
    """An organisation's command audit, newest first (commands recorded with their box's org; a box's
    audit filters it: power-offs are few, and DynamoDB adds one index per table update)."""

    class Meta:
        index_name = "by_org"
        projection = AllProjection()

    org = UnicodeAttribute(hash_key=True)
    requested_at = NumberAttribute(range_key=True)


class CommandItem(Model):
    """A power-off command and its audit record (pk = CMD#<id>, sk = CMD)."""

    class Meta:
        table_name = "boxwatch-commands"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    command_id = UnicodeAttribute()
    box_id = UnicodeAttribute()
    client_id = UnicodeAttribute()  # who asked (the JWT sub)
    idempotency_key = UnicodeAttribute()
    status = UnicodeAttribute()  # pending | succeeded | failed | refused | expired
    requested_at = NumberAttribute()  # epoch ms, event time of the API request
    expires_at = NumberAttribute()
    alarm = JSONAttribute(null=True)  # the alarm it answered: the box's latest alarm at request time
    settled_at = NumberAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    reported = JSONAttribute(null=True)  # the box's report that settled it
    expired_at = NumberAttribute(null=True)  # a late success keeps when the sweep had expired it
    late = BooleanAttribute(null=True)  # settled by a report that came after its expiry
    late_report = JSONAttribute(null=True)  # a failed/refused report after expiry: recorded only
    late_reported_at = NumberAttribute(null=True)
    pending = UnicodeAttribute(null=True)  # "1" while pending (sparse index key)
    org = UnicodeAttribute(null=True)  # the box's organisation when it was requested
    requested_by_role = UnicodeAttribute(null=True)  # client | operator (None: a client, before operators)
    by_expiry = PendingCommandIndex()
    by_org = CommandOrgIndex()

    @staticmethod
    def key(command_id: str) -> tuple[str, str]:
        return f"CMD#{command_id}", "CMD"


COMMAND_ID = re.compile(r"^c-[0-9a-f]{20}$")  # what power_off.command_id_for makes


class CommandKeyItem(Model):
    """A client's idempotency key -> the command it created (pk = KEY#<client>#<key>, sk = KEY)."""

    class Meta:
        table_name = "boxwatch-commands"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    command_id = UnicodeAttribute()
    box_id = UnicodeAttribute()
    expires_at_ttl = NumberAttribute(null=True)

    @staticmethod
    def key(client_id: str, idempotency_key: str) -> tuple[str, str]:
        return f"KEY#{client_id}#{idempotency_key}", "KEY"


class SmsQuotaItem(Model):
    """SMS sent to one phone number in one hour of event time (pk = SMS#<number hash>#<hour>).

    IAM cannot scope an SMS Publish to chosen numbers, so the code caps it: each SMS first takes
    one from its recipient's hour with a conditional write (`sent < per_hour`), so concurrent
    senders never exceed the cap together. The number is hashed: no second copy of the bindings'
    phone numbers in clear (a hash of a phone number is no secret against a determined attacker).
    """

    class Meta:
        table_name = "boxwatch-sms-quota"

    per_hour = 10  # SmsPerRecipientPerHour, set by bind_tables

    pk = UnicodeAttribute(hash_key=True)
    sent = NumberAttribute(default=0)
    expires_at = NumberAttribute(null=True)  # DynamoDB TTL, epoch seconds

    @staticmethod
    def key(number: str, at_ms: int) -> str:
        digest = hashlib.sha256(number.encode()).hexdigest()[:32]
        return f"SMS#{digest}#{at_ms // 3_600_000}"


# ------------------------------------------------------------------------ operators (OpsTable)
CHANGE_BUCKET_MS = 60_000  # change-log partition width: a 2 s poll reads one or two partitions


class ChangeItem(Model):
    """One change an operator's console must show (a box, alarm, incident or command), by org and
    arrival time: pk = CHG#<org>#<minute>, sk = <at ms, 13 digits>#<type>#<id>. Sparse (only what
    changed), kept a day: `/ops/changes` costs ~ changes, never the fleet."""

    class Meta:
        table_name = "boxwatch-ops"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    type = UnicodeAttribute()  # box | alarm | incident | command
    id = UnicodeAttribute()
    at = NumberAttribute()
    entity = JSONAttribute(null=True)  # the entity as the console shows it, when not read back (alarm)
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def key(org: str, at: int, type_: str, id_: str) -> tuple[str, str]:
        return f"CHG#{org}#{at // CHANGE_BUCKET_MS}", f"{at:013d}#{type_}#{id_}"


class OrgAlarmItem(Model):
    """An alarm (its life, `AlarmLifeItem`) under its organisation and the month it opened: pk =
    ALARM#<org>#<YYYY-MM>, sk = <alarm_id>#<box> (alarm ids begin with their first receive time, so
    the sort key is time order). A pointer: the list reads the lives it names (BatchGetItem)."""

    class Meta:
        table_name = "boxwatch-ops"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    alarm_id = UnicodeAttribute()
    box_id = UnicodeAttribute()
    cause = UnicodeAttribute()
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def key(org: str, month: str, alarm_id: str, box_id: str) -> tuple[str, str]:
        return f"ALARM#{org}#{month}", f"{alarm_id}#{box_id}"


class OrgIncidentItem(Model):
    """A resolved fourth-alarm incident under each organisation whose boxes were in it and the month
    it resolved: pk = INCIDENTS#<org>#<YYYY-MM>, sk = <resolved_at>#<incident_id>. A pointer: the
    list reads the incidents it names (an incident that a late drop reopened is not listed)."""

    class Meta:
        table_name = "boxwatch-ops"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    incident_id = UnicodeAttribute()
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def key(org: str, resolved_at: int, incident_id: str) -> tuple[str, str]:
        return f"INCIDENTS#{org}#{month_of(resolved_at)}", f"{resolved_at:013d}#{incident_id}"


def month_of(at_ms: int) -> str:
    """The UTC month (YYYY-MM) of an epoch-ms time: the organisations' alarm and incident lists."""
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m")


ALL_MODELS: dict[str, list[type[Model]]] = {
    "boxes_table": [BoxItem],
    "bindings_table": [BindingItem],
    "devices_table": [ClientDevicesItem, DeviceOwnerItem],
    "alarms_table": [AlarmRecord, AlarmCellEntry, AlarmReceivedEntry, NearbyClaim, DueItem, AlarmLifeItem,
                     AlarmClearRecord],
    "network_table": [OfflineEntry, PresenceLogItem, ArrivalEntry, EpisodeIncidentItem, ThirdAlarmItem, IncidentItem,
                      IncidentMemberItem, IncidentClientItem],
    "commands_table": [CommandItem, CommandKeyItem],
    "sms_quota_table": [SmsQuotaItem],
    "ops_table": [ChangeItem, OrgAlarmItem, OrgIncidentItem],
}


def bind_tables(settings: Settings) -> None:
    """Point every model at the tables named in settings (pynamodb keeps names on Meta), with fresh
    connections: a cached one keeps the endpoint it was built for, and a process that talked to
    another stack (a test run, a local cloud) would keep writing there."""
    for field, models in ALL_MODELS.items():
        for model in models:
            model.Meta.table_name = getattr(settings, field)
            model._connection = None
    _CONNECTION.clear()
    SmsQuotaItem.per_hour = settings.sms_per_recipient_per_hour


_CONNECTION: list[Connection] = []


def connection() -> Connection:
    """One pynamodb Connection per process for transactions: creating one parses botocore's
    DynamoDB model again (0.1-0.2 s), which a warm Lambda should pay once, not per alarm."""
    if not _CONNECTION:
        _CONNECTION.append(Connection())
    return _CONNECTION[0]


def condition_failed(exc: PynamoDBException) -> bool:
    """A conditional write refused because its condition was false: someone got there first (or
    the item is not in the state we write from); never an error to retry."""
    return exc.cause_response_code == "ConditionalCheckFailedException"


def cancelled_by_condition(exc: TransactWriteError) -> list[bool]:
    """Per item of a cancelled transaction, in the order added: did its condition fail?"""
    return [r is not None and r.code == "ConditionalCheckFailed" for r in (exc.cancellation_reasons or [])]
