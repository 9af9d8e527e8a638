"""Box registry and client bindings: the operator's side of the data (what an import, a move or
a bind validates and writes). What the alarm paths read (a box, its bindings) is `boxwatch.bindings`:
they need none of the validation here."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from boxwatch import bounds
from boxwatch.bindings import get_box
from boxwatch.contract import BOX_ID_PATTERN
from boxwatch.errors import UnknownBox
from boxwatch.models import BindingItem, BoxItem
from boxwatch.settings import Settings

DEFAULT_ORG = "default"  # the organisation of boxes registered before organisations existed
ORG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class BoxSpec(BaseModel):
    # the operator's models: validators built on first use, not by the import of a handler
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, defer_build=True)

    id: str = Field(pattern=BOX_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    address: str = Field(default="", max_length=500)
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)
    timezone: str = "Asia/Shanghai"
    org: str = Field(default=DEFAULT_ORG, pattern=ORG_PATTERN)

    @field_validator("name", "address")
    @classmethod
    def _printable(cls, value: str, info: Any) -> str:
        # names and addresses fill pushes and logs: printable, one line (boxwatch.bounds)
        cleaned = bounds.text(value, 500)
        if info.field_name == "name" and not cleaned:
            raise ValueError("a box name needs a printable character")
        return cleaned

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"


class BindingSpec(BaseModel):
    """A client bound to a box. Pushes go to the devices the client registers (POST /me/devices);
    an operator may add an SMS number and an e-mail topic. `target` / `target_kind` is the form of
    an older version (one endpoint, topic or number per binding), still accepted and served."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    client_id: str = Field(min_length=1, max_length=128)
    box_id: str = Field(pattern=BOX_ID_PATTERN)
    locale: Literal["zh-CN", "en"] = "zh-CN"
    role: str | None = Field(default=None, pattern=r"^[a-z_]{1,32}$")
    sms: str | None = Field(default=None, pattern=E164_PATTERN)
    topic: str | None = Field(default=None, pattern=r"^arn:[^:]+:sns:[^:]*:[0-9]*:[A-Za-z0-9_-]{1,256}$")
    target: str | None = Field(default=None, min_length=1, max_length=1024)
    target_kind: Literal["endpoint", "topic", "sms"] = "endpoint"

    @model_validator(mode="after")
    def _phone_number(self) -> BindingSpec:
        # SMS goes only to numbers a binding holds: an E.164 number, nothing else (notify.E164)
        if self.target is not None and self.target_kind == "sms" and not re.fullmatch(E164_PATTERN, self.target):
            raise ValueError("an sms target is an E.164 phone number (+8613800138000)")
        return self


def box_item(spec: BoxSpec, settings: Settings) -> BoxItem:
    from boxwatch.geo import cell_of, map_keys  # h3: operator paths only, never the handlers that read bindings

    map_part, map_cell = map_keys(spec.org, spec.lat, spec.lng, spec.id)
    return BoxItem(
        spec.id,
        name=spec.name,
        address=spec.address,
        lat=spec.lat,
        lng=spec.lng,
        timezone=spec.timezone,
        alarm_cell=cell_of(spec.lat, spec.lng, settings.alarm_res),
        area_cell=cell_of(spec.lat, spec.lng, settings.area_res),
        org=spec.org,
        map_part=map_part,
        map_cell=map_cell,
    )


def register_box(spec: BoxSpec, settings: Settings) -> BoxItem:
    """Create or move a box: its cells follow its coordinates; network status is kept."""
    item = box_item(spec, settings)
    try:
        old = BoxItem.get(spec.id)
        item.online, item.status_since = old.online, old.status_since
        item.status_reason, item.presence_version = old.status_reason, old.presence_version
        item.last_connect_version, item.active = old.last_connect_version, old.active
        item.holds, item.hold_rev = old.holds, old.hold_rev
    except BoxItem.DoesNotExist:
        pass
    item.save()
    return item


def import_boxes(specs: Iterable[BoxSpec], settings: Settings) -> Iterator[BoxItem]:
    """Bulk load (BatchWriteItem, 25 per request; pynamodb resends unprocessed items).

    Yields each box as it is queued so callers can show progress. Status of existing boxes is
    reset to online: bulk import is for commissioning, `register_box` for moves.
    """
    with BoxItem.batch_write() as batch:
        for spec in specs:
            item = box_item(spec, settings)
            batch.save(item)
            yield item


def reindex_boxes(settings: Settings) -> int:
    """Move every box whose cells are not the ones lookups query (boxes registered by a version that
    derived the resolution from the radius parameters) to its current cells; returns how many moved.

    Boxes registered before organisations get the default org and their operator-map keys.

    One Scan of the registry, one conditional UpdateItem per box that moves (only its cells, so a
    concurrent status change is kept); running it again moves nothing.
    """
    from boxwatch.geo import cell_of, map_keys  # h3: operator paths only, never the handlers that read bindings

    moved = 0
    for box in BoxItem.scan(attributes_to_get=["box_id", "lat", "lng", "alarm_cell", "area_cell", "org",
                                               "map_part", "map_cell"]):
        alarm_cell = cell_of(float(box.lat), float(box.lng), settings.alarm_res)
        area_cell = cell_of(float(box.lat), float(box.lng), settings.area_res)
        org = box.org or DEFAULT_ORG
        map_part, map_cell = map_keys(org, float(box.lat), float(box.lng), box.box_id)
        if (box.alarm_cell, box.area_cell, box.map_part, box.map_cell) == (alarm_cell, area_cell, map_part, map_cell):
            continue
        BoxItem(box.box_id).update(actions=[BoxItem.alarm_cell.set(alarm_cell), BoxItem.area_cell.set(area_cell),
                                            BoxItem.org.set(org), BoxItem.map_part.set(map_part),
                                            BoxItem.map_cell.set(map_cell)],
                                   condition=BoxItem.box_id.exists())
        moved += 1
    return moved


def bind(spec: BindingSpec) -> BindingItem:
    """Bind a client to a box (or rewrite the binding). The box must exist: we never guess."""
    get_box(spec.box_id)
    item = BindingItem(spec.box_id, spec.client_id, enabled=True,
                       **spec.model_dump(exclude={"box_id", "client_id"}))
    item.save()
    return item


def import_bindings(specs: Iterable[BindingSpec]) -> int:
    """Bulk `bind`: the boxes checked in one BatchGetItem per 100, the bindings written 25 per
    BatchWriteItem; an unknown box refuses the whole import before anything is written. The
    number of bindings written."""
    specs = list(specs)
    wanted = sorted({s.box_id for s in specs})
    found = {b.box_id for b in BoxItem.batch_get(wanted, attributes_to_get=["box_id"])} if wanted else set()
    missing = [b for b in wanted if b not in found]
    if missing:
        raise UnknownBox(f"box {missing[0]!r} is not registered", box=missing[0], unknown=len(missing))
    with BindingItem.batch_write() as batch:
        for spec in specs:
            batch.save(BindingItem(spec.box_id, spec.client_id, enabled=True,
                                   **spec.model_dump(exclude={"box_id", "client_id"})))
    return len(specs)
