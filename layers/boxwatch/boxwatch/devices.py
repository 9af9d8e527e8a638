"""Phones that register themselves: a client's push devices (SNS platform endpoints).

A device is one app install's push token on one platform (`fcm` or `apns`). Its id is a hash of
platform and token, so registering the same token again is the same device (and the same SNS
endpoint: CreatePlatformEndpoint is idempotent per token). A token has one owner: registering
it as another client moves it. Bindings name clients; a push goes to every enabled device of the
client (notify.targets_of). SNS reports a dead token (Publish: EndpointDisabled) and the fan-out
marks the device disabled; registering the token again enables it (Enabled=true).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError
from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.transactions import TransactWrite

from boxwatch.errors import Conflict, InvalidInput, NotFound
from boxwatch.models import ClientDevicesItem, DeviceOwnerItem, connection
from boxwatch.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

Platform = Literal["fcm", "apns"]
PLATFORMS: tuple[str, ...] = ("fcm", "apns")
LOCALES = ("zh-CN", "en")
# a person's phones and tablets; beyond, the oldest registration is dropped (reinstalls leave dead tokens)
MAX_DEVICES = 10
TOKEN = re.compile(r"^[A-Za-z0-9_:.\-]{8,4096}$")  # FCM registration tokens and APNs hex tokens
DEVICE_ID = re.compile(r"^d-[0-9a-f]{20}$")
ATTEMPTS = 4
BACKOFF_S = 0.02
# "Invalid parameter: Token Reason: Endpoint <arn> already exists with the same Token, but different attributes."
EXISTING = re.compile(r"Endpoint (arn:[^\s]+) already exists with the same [Tt]oken")


@dataclass(frozen=True)
class Device:
    client_id: str
    device_id: str
    platform: str
    endpoint: str
    locale: str | None
    enabled: bool
    reason: str | None = None  # why it was disabled
    at: int = 0  # event time (ms) of its latest registration

    def view(self) -> dict[str, Any]:
        """What the phone sees of its devices (no token, no endpoint ARN)."""
        return {"device_id": self.device_id, "platform": self.platform, "locale": self.locale,
                "enabled": self.enabled, "disabled_reason": self.reason, "registered_at": self.at}


def device_id_for(platform: str, token: str) -> str:
    return "d-" + hashlib.sha256(f"{platform}\n{token}".encode()).hexdigest()[:20]


def _entry(d: Device) -> dict[str, Any]:
    return {"platform": d.platform, "endpoint": d.endpoint, "locale": d.locale, "enabled": d.enabled,
            "reason": d.reason, "at": d.at}


def _devices(item: ClientDevicesItem) -> list[Device]:
    return [Device(item.client_id, did, str(e["platform"]), str(e["endpoint"]), e.get("locale"),
                   bool(e.get("enabled", True)), e.get("reason"), int(e.get("at", 0)))
            for did, e in sorted((item.devices or {}).items())]


def _item(client_id: str) -> ClientDevicesItem:
    try:
        return ClientDevicesItem.get(ClientDevicesItem.key(client_id), consistent_read=True)
    except ClientDevicesItem.DoesNotExist:
        return ClientDevicesItem(ClientDevicesItem.key(client_id), client_id=client_id, devices={})


def devices_of(client_ids: Iterable[str]) -> dict[str, list[Device]]:
    """Every client's devices (enabled or not), in one BatchGetItem per 100 clients."""
    keys = sorted(set(client_ids))
    out: dict[str, list[Device]] = {c: [] for c in keys}
    if not keys:
        return out
    for item in ClientDevicesItem.batch_get([ClientDevicesItem.key(c) for c in keys]):
        out[item.client_id] = _devices(item)
    return out


def list_devices(client_id: str) -> list[Device]:
    return _devices(_item(client_id))


# ---------------------------------------------------------------------------------------- SNS
def _application(platform: str, settings: Settings) -> str:
    arn = settings.fcm_application_arn if platform == "fcm" else settings.apns_application_arn
    if not arn:
        raise InvalidInput(f"push platform {platform!r} is not configured", platform=platform)
    return arn


def _endpoint(sns: SNSClient, application: str, token: str, client_id: str) -> str:
    """The one SNS endpoint of `token`, enabled and owned by `client_id` (CustomUserData), as AWS's
    mobile token management says: CreatePlatformEndpoint returns the existing endpoint for the same
    token and attributes; for the same token with other attributes it answers InvalidParameter
    naming the endpoint, which we then look at and set (token, Enabled=true, owner)."""
    wanted = {"Token": token, "Enabled": "true", "CustomUserData": client_id}
    try:
        arn = sns.create_platform_endpoint(PlatformApplicationArn=application, Token=token,
                                           CustomUserData=client_id)["EndpointArn"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        found = EXISTING.search(str(error.get("Message", "")))
        if error.get("Code") != "InvalidParameter" or found is None:
            raise
        # the token's endpoint with other attributes (another owner, disabled): make them ours
        arn = found.group(1)
        sns.set_endpoint_attributes(EndpointArn=arn, Attributes=wanted)
        return arn
    attributes = sns.get_endpoint_attributes(EndpointArn=arn).get("Attributes", {})
    if attributes.get("Token") != token or str(attributes.get("Enabled", "true")).lower() != "true":
        sns.set_endpoint_attributes(EndpointArn=arn, Attributes=wanted)
    return arn


# ---------------------------------------------------------------------------------------- register
def register(client_id: str, platform: Any, token: Any, locale: Any, now_ms: int, settings: Settings,
             sns: SNSClient) -> Device:
    """Create or refresh the caller's device for `token`; returns it (enabled).

    The SNS endpoint first (idempotent), then one transaction: the token's owner row, the caller's
    device record and, when the token belonged to another client, that client's record without it.
    A concurrent registration of the same token or by the same client makes the transaction fail
    on its condition: read again and retry (the last registration wins, one owner always).
    """
    if not isinstance(platform, str) or platform not in PLATFORMS:
        raise InvalidInput("platform must be fcm or apns", platform=str(platform)[:20])
    if not isinstance(token, str) or not TOKEN.match(token):
        raise InvalidInput("token: 8-4096 characters of [A-Za-z0-9_:.-]")
    if locale is not None and locale not in LOCALES:
        raise InvalidInput("locale must be zh-CN or en", locale=str(locale)[:20])
    arn = _endpoint(sns, _application(platform, settings), token, client_id)
    device_id = device_id_for(platform, token)
    device = Device(client_id, device_id, platform, arn, locale, True, None, now_ms)
    for attempt in range(ATTEMPTS):
        try:
            owner: DeviceOwnerItem | None = DeviceOwnerItem.get(DeviceOwnerItem.key(device_id), consistent_read=True)
        except DeviceOwnerItem.DoesNotExist:
            owner = None
        mine = _item(client_id)
        devices = dict(mine.devices or {})
        devices[device_id] = _entry(device)
        evicted = sorted((e.get("at", 0), did) for did, e in devices.items() if did != device_id)
        dropped = [did for _, did in evicted[: max(len(devices) - MAX_DEVICES, 0)]]
        for did in dropped:
            devices.pop(did)
        mine.devices = devices
        row = DeviceOwnerItem(DeviceOwnerItem.key(device_id), client_id=client_id, endpoint=arn, platform=platform,
                              at=now_ms)
        same_owner = (DeviceOwnerItem.pk.does_not_exist() if owner is None
                      else DeviceOwnerItem.client_id == owner.client_id)
        try:
            with TransactWrite(connection=connection()) as tx:
                tx.save(mine)  # the revision condition: nobody changed my devices since I read them
                tx.save(row, condition=same_owner)
                if owner is not None and owner.client_id != client_id:
                    previous = _item(owner.client_id)
                    if device_id in (previous.devices or {}):
                        previous.devices = {k: v for k, v in previous.devices.items() if k != device_id}
                        tx.save(previous)
                for did in dropped:
                    tx.delete(DeviceOwnerItem(DeviceOwnerItem.key(did)),
                              condition=DeviceOwnerItem.client_id == client_id)
        except TransactWriteError:
            time.sleep(BACKOFF_S * 2 ** attempt)
            continue
        return device
    raise Conflict("concurrent registrations kept racing; try again", client=client_id, device=device_id)


def unregister(client_id: str, device_id: str, sns: SNSClient) -> None:
    """Delete one of the caller's devices and its SNS endpoint; anyone else's is "no such device"."""
    if not DEVICE_ID.match(device_id):
        raise NotFound("no such device", client=client_id)
    for attempt in range(ATTEMPTS):
        mine = _item(client_id)
        entry = (mine.devices or {}).get(device_id)
        if entry is None:
            raise NotFound("no such device", client=client_id, device=device_id)
        # the endpoint first: DeleteEndpoint is idempotent, so a failure below is retried whole
        sns.delete_endpoint(EndpointArn=str(entry["endpoint"]))
        mine.devices = {k: v for k, v in mine.devices.items() if k != device_id}
        try:
            with TransactWrite(connection=connection()) as tx:
                tx.save(mine)
                tx.delete(DeviceOwnerItem(DeviceOwnerItem.key(device_id)),
                          condition=DeviceOwnerItem.client_id == client_id)
        except TransactWriteError:
            time.sleep(BACKOFF_S * 2 ** attempt)
            continue
        return
    raise Conflict("concurrent changes to your devices; try again", client=client_id, device=device_id)


def mark_disabled(client_id: str, seen: Mapping[str, int], reason: str) -> None:
    """SNS said these endpoints are disabled: skip them until the phone registers the token again.
    `seen`: device id -> its registration time when the fan-out read it; a device registered again
    since (enabled by its phone meanwhile) is left alone."""
    for _ in range(ATTEMPTS):
        item = _item(client_id)
        devices = dict(item.devices or {})
        changed = False
        for did, at in seen.items():
            if did in devices and devices[did].get("enabled", True) and int(devices[did].get("at", 0)) == at:
                devices[did] = {**devices[did], "enabled": False, "reason": reason}
                changed = True
        if not changed:
            return
        item.devices = devices
        try:
            item.save()
            return
        except PynamoDBException as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
    raise Conflict("marking a device disabled kept racing", client=client_id)


def adopt_endpoint(client_id: str, endpoint_arn: str, locale: str | None, now_ms: int,
                   sns: SNSClient) -> Device | None:
    """A device record for an endpoint created outside POST /me/devices (a binding of an older
    version): platform from the ARN, token from its attributes. None: the endpoint is gone."""
    platform = "apns" if "/APNS" in endpoint_arn else "fcm"
    try:
        attributes = sns.get_endpoint_attributes(EndpointArn=endpoint_arn).get("Attributes", {})
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NotFound":
            return None
        raise
    token = str(attributes.get("Token", ""))
    if not token:
        return None
    enabled = str(attributes.get("Enabled", "true")).lower() == "true"
    device_id = device_id_for(platform, token)
    device = Device(client_id, device_id, platform, endpoint_arn, locale, enabled,
                    None if enabled else "EndpointDisabled", now_ms)
    for attempt in range(ATTEMPTS):
        mine = _item(client_id)
        mine.devices = {**(mine.devices or {}), device_id: _entry(device)}
        try:
            with TransactWrite(connection=connection()) as tx:
                tx.save(mine)
                tx.save(DeviceOwnerItem(DeviceOwnerItem.key(device_id), client_id=client_id, endpoint=endpoint_arn,
                                        platform=platform, at=now_ms),
                        condition=DeviceOwnerItem.pk.does_not_exist() | (DeviceOwnerItem.client_id == client_id))
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons or []
            if len(reasons) > 1 and reasons[1] is not None and reasons[1].code == "ConditionalCheckFailed":
                return None  # the token belongs to another client now (it registered itself): theirs
            time.sleep(BACKOFF_S * 2 ** attempt)
            continue
        return device
    raise Conflict("adopting an endpoint kept racing", client=client_id)


# ---------------------------------------------------------------------------------------- migration
@dataclass
class Migration:
    devices: list[str]  # "<client> <box>": endpoint targets now devices of their clients
    sms: list[str]  # phone number targets now the binding's `sms`
    topics: list[str]  # topic targets now the binding's `topic`
    dropped: list[str]  # endpoints that no longer exist, numbers that are not E.164: no target left


def migrate_bindings(now_ms: int, sns: SNSClient, dry_run: bool = False) -> Migration:
    """Turn every binding of the older form (one `target` on the binding) into a client binding:
    an endpoint ARN becomes a device record of the client (token and state read from SNS), a
    phone number the binding's `sms`, a topic its `topic`. One Scan of the bindings (an operator
    command, run once after the deploy); each binding is rewritten only if its target is still the
    one read (a concurrent `clients bind` wins). Running it again changes nothing."""
    from boxwatch.models import BindingItem

    out = Migration([], [], [], [])
    for b in BindingItem.scan(BindingItem.target.exists()):
        name, target, kind = f"{b.client_id} {b.box_id}", str(b.target), b.target_kind
        actions: list[Any] = [BindingItem.target.remove()]
        if kind == "endpoint":
            device = None if dry_run else adopt_endpoint(b.client_id, target, b.locale, now_ms, sns)
            (out.devices if dry_run or device is not None else out.dropped).append(name)
            # the device carries a dead endpoint's state now: the binding serves the client's other targets
            actions += [BindingItem.enabled.set(True), BindingItem.disabled_reason.remove()]
        elif kind == "sms" and re.fullmatch(r"\+[1-9][0-9]{6,14}", target):
            out.sms.append(name)
            actions += [BindingItem.sms.set(target), BindingItem.enabled.set(True),
                        BindingItem.disabled_reason.remove()]
        elif kind == "topic":
            out.topics.append(name)
            actions.append(BindingItem.topic.set(target))
        else:
            out.dropped.append(name)
        if not dry_run:
            try:
                b.update(actions=actions, condition=BindingItem.target == target)
            except PynamoDBException as exc:
                if exc.cause_response_code != "ConditionalCheckFailedException":
                    raise
    return out
