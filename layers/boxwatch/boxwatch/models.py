"""pynamodb models. Table names come from Settings via `bind_tables`, once per process."""

from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
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
    alarm_cell = UnicodeAttribute()  # res derived from the neighbour radius
    area_cell = UnicodeAttribute()  # res derived from the outage radius
    # network status, from IoT lifecycle events (ordered by their versionNumber)
    online = BooleanAttribute(default=True)
    status_since = NumberAttribute(default=0)  # epoch ms, event time
    status_reason = UnicodeAttribute(null=True)
    presence_version = NumberAttribute(default=0)
    by_area_cell = BoxAreaIndex()


class ClientIndex(GlobalSecondaryIndex["BindingItem"]):
    class Meta:
        index_name = "by_client"
        projection = AllProjection()

    client_id = UnicodeAttribute(hash_key=True)
    box_id = UnicodeAttribute(range_key=True)


class BindingItem(Model):
    """A client (phone user) bound to a box, with where and how to reach them.

    The push target and locale are copied onto each binding so that an alarm needs one Query to
    know everyone to notify; `boxwatch clients` rewrites them on every binding of the client.
    """

    class Meta:
        table_name = "boxwatch-bindings"

    box_id = UnicodeAttribute(hash_key=True)
    client_id = UnicodeAttribute(range_key=True)
    target = UnicodeAttribute()  # SNS platform endpoint ARN, topic ARN, or E.164 phone number
    target_kind = UnicodeAttribute(default="endpoint")  # endpoint | topic | sms
    locale = UnicodeAttribute(default="zh-CN")
    enabled = BooleanAttribute(default=True)
    disabled_reason = UnicodeAttribute(null=True)
    by_client = ClientIndex()


class AlarmRecord(Model):
    """One alarm log, keyed by box and sequence: the idempotency key and the box's history.

    pk = BOX#<box>, sk = SEQ#<seq, zero-padded>.
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
    notified_at = NumberAttribute(null=True)  # set once every bound client was sent the alarm
    expires_at = NumberAttribute(null=True)  # DynamoDB TTL, epoch seconds

    @staticmethod
    def key(box_id: str, seq: int) -> tuple[str, str]:
        return f"BOX#{box_id}", f"SEQ#{seq:016d}"


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
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def key(cell: str, cause: str, alarm_time: int, box_id: str, seq: int) -> tuple[str, str]:
        return f"CELL#{cell}", f"{cause}#{alarm_time:013d}#{box_id}#{seq}"


ALL_MODELS: dict[str, list[type[Model]]] = {
    "boxes_table": [BoxItem],
    "bindings_table": [BindingItem],
    "alarms_table": [AlarmRecord, AlarmCellEntry],
}


def bind_tables(settings: Settings) -> None:
    """Point every model at the tables named in settings (pynamodb keeps names on Meta)."""
    for field, models in ALL_MODELS.items():
        for model in models:
            model.Meta.table_name = getattr(settings, field)
