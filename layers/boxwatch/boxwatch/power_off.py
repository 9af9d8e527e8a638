"""Remote power-off: a bound client's order, through the device shadow, to the box's contactor.

A command is recorded first (its idempotency key reserved), then written into the shadow's
`desired` state with the shadow version (no lost update). The box's `reported` state settles it
(CommandAck); a command not settled by `expires_at` expires and leaves `desired` (CommandExpiry),
so a box that comes back hours later never acts on a stale order. Nothing here is ever triggered
automatically: only a client's request creates a command (GB 50116).

The shadow itself is `boxwatch.shadow`; what a phone reads back is `boxwatch.views`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from boxwatch import bounds
from boxwatch.bindings import get_box, require_bound
from boxwatch.changes import record_change
from boxwatch.errors import Conflict, PushFailed, Spoofed
from boxwatch.models import (
    COMMAND_ID,
    BindingItem,
    BoxItem,
    CommandItem,
    CommandKeyItem,
    cancelled_by_condition,
    condition_failed,
    connection,
)
from boxwatch.notify import Notification, SendReport, record_after_push, send
from boxwatch.settings import Settings
from boxwatch.shadow import CLEAR_ORDER, ShadowContention, holds, order, update_desired
from boxwatch.views import latest_alarms

if TYPE_CHECKING:
    from mypy_boto3_iot_data import IoTDataPlaneClient
    from mypy_boto3_sns import SNSClient

SETTLED = ("succeeded", "failed", "refused", "expired")
KEY_TTL_S = 30 * 86_400  # an idempotency key's reservation; reused after that, it makes a new command
# longer than CommandAck's timeout: a command settled this long ago without its push was left by a
# crash or a failed publish, not by an invocation still running
RETELL_AFTER_MS = 60_000
# what the audit record keeps of the box's report (docs/device-contract.md), nothing else
CONTACTOR_STATES = ("open", "closed")
REPORTED_FIELDS = ("power", "contactor", "command_id", "command_status", "reason", "at")


def command_id_for(client_id: str, key: str) -> str:
    """Deterministic: the same client and key always name the same command."""
    return "c-" + hashlib.sha256(f"{client_id}\x00{key}".encode()).hexdigest()[:20]


def _order(cmd: CommandItem) -> dict[str, Any]:
    return order(cmd.command_id, int(cmd.expires_at))


# ---------------------------------------------------------------------------------------------- request
@dataclass
class PowerOffOutcome:
    command: CommandItem
    created: bool


def request_power_off(client_id: str, box_id: str, key: str, now_ms: int, settings: Settings,
                      iotdata: IoTDataPlaneClient, _retried: bool = False,
                      _generation: int | None = None, operator_org: str | None = None) -> PowerOffOutcome:
    """`client_id` asks for `box_id`'s power-off: a bound client, or (`operator_org` set) an operator
    whose organisation `ops.power_off` has checked owns the box, after its second confirmation."""
    org = operator_org
    if operator_org is None:
        require_bound(client_id, box_id)
        org = get_box(box_id).org or "default"  # the org's command audit (by_org) lists it too
    key_pk, key_sk = CommandKeyItem.key(client_id, key)
    now_s = now_ms // 1000
    try:
        existing = CommandKeyItem.get(key_pk, key_sk, consistent_read=True)
        if existing.expires_at_ttl is not None and int(existing.expires_at_ttl) <= now_s:
            raise CommandKeyItem.DoesNotExist()  # expired; DynamoDB's TTL deletes it within days
        if existing.box_id != box_id:
            raise Conflict("this idempotency key was already used for another box", box=box_id,
                           other_box=existing.box_id)
        cmd = CommandItem.get(*CommandItem.key(existing.command_id), consistent_read=True)
    except CommandKeyItem.DoesNotExist:
        pass
    else:
        if cmd.status == "pending" and now_ms < int(cmd.expires_at):
            # the first attempt may have died between recording and writing the order: the repeat
            # finishes it, unless the shadow holds an order already (this one or a newer one)
            update_desired(iotdata, box_id, _order(cmd), when=lambda current: current is None)
        return PowerOffOutcome(cmd, False)

    # the key's first command has the id derived from (client, key); a key reused after its
    # reservation expired names a new command, whose id also depends on the request time
    cid = command_id_for(client_id, key if _generation is None else f"{key}\x00{_generation}")
    alarms = latest_alarms(box_id, 1)
    expires = now_ms + settings.command_expiry_s * 1000
    cmd = CommandItem(*CommandItem.key(cid), command_id=cid, box_id=box_id, client_id=client_id,
                      idempotency_key=key, status="pending", requested_at=now_ms, expires_at=expires,
                      alarm=alarms[0] if alarms else None, pending="1", org=org,
                      requested_by_role="operator" if operator_org is not None else None)
    reservation = CommandKeyItem(key_pk, key_sk, command_id=cid, box_id=box_id,
                                 expires_at_ttl=now_s + KEY_TTL_S)
    try:
        # reserve the key and record the command before touching the box: a concurrent retry of
        # the same request finds the reservation instead of writing a second order
        with TransactWrite(connection=connection()) as tx:
            tx.save(reservation,
                    condition=CommandKeyItem.pk.does_not_exist() | (CommandKeyItem.expires_at_ttl <= now_s))
            tx.save(cmd, condition=CommandItem.pk.does_not_exist())
    except TransactWriteError as exc:
        failed = cancelled_by_condition(exc)
        if failed[:1] == [True] and not _retried:
            # a concurrent request with the same key won the race: answer with its command
            return request_power_off(client_id, box_id, key, now_ms, settings, iotdata, _retried=True,
                                     operator_org=operator_org)
        if failed[1:2] == [True] and _generation is None:
            # the key's reservation expired but its old command keeps the id: a new command
            return request_power_off(client_id, box_id, key, now_ms, settings, iotdata, _retried, now_ms,
                                     operator_org=operator_org)
        raise
    try:
        update_desired(iotdata, box_id, _order(cmd))
    except (ClientError, ShadowContention) as exc:
        # the order never reached the box: say so now rather than let it expire silently
        _settle(cmd, "failed", now_ms, f"shadow update failed: {exc}", None)  # updates cmd in place
    return PowerOffOutcome(cmd, True)


# ---------------------------------------------------------------------------------------------- settle
def _settle(cmd: CommandItem, status: str, at_ms: int, reason: str | None, reported: dict[str, Any] | None) -> bool:
    """pending -> status, once (a conditional write: a duplicate report or a racing expiry loses).

    The command stays in the sparse pending index until its requester has been told (`_finish`):
    if the push is lost to a crash or a failed publish, the expiry sweep finds it and tells them.
    """
    actions: list[Any] = [CommandItem.status.set(status), CommandItem.settled_at.set(at_ms)]
    if reason is not None:
        actions.append(CommandItem.reason.set(reason))
    if reported is not None:
        actions.append(CommandItem.reported.set(reported))
    try:
        cmd.update(
            actions=actions,
            condition=CommandItem.status == "pending",
        )
        return True
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise


def _finish(cmd: CommandItem) -> None:
    """The requester was told (or cannot be): the command leaves the pending index. Retried in
    place: lost, the expiry sweep would tell the requester a second time."""
    record_after_push(lambda: cmd.update(actions=[CommandItem.pending.remove()]))


def _tell_requester(cmd: CommandItem, sns: SNSClient) -> int:
    """Push the result; leave the command for the expiry sweep to retry if the push failed."""
    report = _notify_requester(cmd, sns)
    if not report.failed:
        _finish(cmd)
    return len(report.sent)


def _notify_requester(cmd: CommandItem, sns: SNSClient) -> SendReport:
    try:
        binding = BindingItem.get(cmd.box_id, cmd.client_id)
    except BindingItem.DoesNotExist:
        return SendReport()  # unbound since: the result is in the audit record
    box = get_box(cmd.box_id)
    note = Notification(
        kind="power_off_result", box_id=cmd.box_id,
        at_ms=int(cmd.requested_at if cmd.settled_at is None else cmd.settled_at),
        data={"status": cmd.status, "command_id": cmd.command_id, "reason": cmd.reason, "boxes": []},
        context={"box_name": box.name, "status": cmd.status, "command_id": cmd.command_id,
                 "reason": cmd.reason or ""},
    )
    return send(sns, [binding], note)


@dataclass
class AckResult:
    status: str  # ignored | duplicate | succeeded | failed | refused | late_failed | late_refused
    command_id: str | None = None
    notified: int = 0
    late: bool = False  # settled by a report that came after the command expired


def note_contactor(thing: str, documents: dict[str, Any]) -> str | None:
    """The box's contactor as its shadow reports it, for the operators: written when the reported
    value changes (the documents carry before and after: no read), in shadow-version order (a late
    delivery of an older report changes nothing); null until the box first reports it open. The
    new value, or None if nothing was written."""
    now = (((documents.get("current") or {}).get("state") or {}).get("reported") or {}).get("contactor")
    before = (((documents.get("previous") or {}).get("state") or {}).get("reported") or {}).get("contactor")
    if now not in CONTACTOR_STATES or now == before:
        return None
    if before is None and now == "closed":
        # a box's first report, closed as installed: nothing to show (null reads "closed"). Every
        # box reports on connect, so writing this would cost two writes per box in a reconnect storm
        return None
    version = int((documents.get("current") or {}).get("version") or 0)
    box = BoxItem(thing)
    try:
        box.update(actions=[BoxItem.contactor.set(now), BoxItem.contactor_version.set(version)],
                   condition=BoxItem.box_id.exists() & (BoxItem.contactor_version.does_not_exist()
                                                        | (BoxItem.contactor_version < version)))
    except UpdateError as exc:
        if condition_failed(exc):
            return None  # not a registered box, or a newer report came first
        raise
    record_change(box.org or "default", "box", thing, int(documents.get("timestamp", 0)) * 1000)
    return str(now)


def acknowledge(thing: str, documents: dict[str, Any], iotdata: IoTDataPlaneClient, sns: SNSClient) -> AckResult:
    """Settle the command the box reported on (shadow update/documents), if any; keep the box's
    contactor state for the operators."""
    note_contactor(thing, documents)
    current = (documents.get("current") or {}).get("state") or {}
    previous = (documents.get("previous") or {}).get("state") or {}
    reported = current.get("reported") or {}
    cid, outcome = reported.get("command_id"), reported.get("command_status")
    if not isinstance(cid, str) or outcome not in ("done", "refused", "failed"):
        return AckResult("ignored")
    if not COMMAND_ID.match(cid):
        return AckResult("ignored")  # no command of ours: never a key, a log line or a push
    before = previous.get("reported") or {}
    if (before.get("command_id"), before.get("command_status")) == (cid, outcome):
        return AckResult("ignored", cid)  # another part of the shadow changed
    try:
        cmd = CommandItem.get(*CommandItem.key(cid), consistent_read=True)
    except CommandItem.DoesNotExist:
        return AckResult("ignored", cid)
    if cmd.box_id != thing:
        # a box cannot settle another box's command (a forged or confused report)
        raise Spoofed("a box reported on another box's command", box=thing, command_id=cid, command_box=cmd.box_id)
    at_ms = int(documents.get("timestamp", 0)) * 1000 or int(cmd.requested_at)
    if outcome == "done" and reported.get("contactor") == "open":
        status, reason = "succeeded", None
    elif outcome == "done":
        status, reason = "failed", "box reported done but its contactor is not open"
    else:  # failed (the contactor did not open) or refused (e.g. expired by the box's clock)
        # the box's words, bounded and printable: they reach the audit record, a log and a push
        status, reason = outcome, bounds.text(reported.get("reason") or "", bounds.REASON_CHARS) or "no reason given"
    if cmd.status == "expired":
        late = bounds.fields(reported, REPORTED_FIELDS, bounds.REASON_CHARS)
        return _late_report(cmd, status, at_ms, reason, late, sns)
    if cmd.status != "pending":
        return AckResult("duplicate", cid)
    # clear the order first, settle second: if we die in between, the retry finds the command still
    # pending and finishes; the other way round a retry would see it settled and leave the order
    update_desired(iotdata, thing, CLEAR_ORDER, when=holds(cid))
    if not _settle(cmd, status, at_ms, reason, bounds.fields(reported, REPORTED_FIELDS, bounds.REASON_CHARS)):
        return AckResult("duplicate", cid)  # a concurrent delivery or the expiry settled it first
    return AckResult(status, cid, _tell_requester(cmd, sns))


def _late_report(cmd: CommandItem, status: str, at_ms: int, reason: str | None, reported: dict[str, Any],
                 sns: SNSClient) -> AckResult:
    """A report for a command that expired meanwhile. The box's report is the truth: `done` with
    the contactor open settles it as succeeded (late, both times kept) and the requester is told
    again; a late failure or refusal is recorded only (expired already said it did not happen).
    The expiry cleared the order from the shadow before it settled, so there is nothing to clear."""
    if status != "succeeded":
        try:
            cmd.update(actions=[CommandItem.late_report.set(reported), CommandItem.late_reported_at.set(at_ms)],
                       condition=(CommandItem.status == "expired") & CommandItem.late_report.does_not_exist())
        except UpdateError as exc:
            if condition_failed(exc):
                return AckResult("duplicate", cmd.command_id)
            raise
        return AckResult("late_" + status, cmd.command_id)
    if cmd.pending is not None:
        # the requester was never told it expired (that push failed): each status the command
        # reached is told, in order, expired before succeeded
        report = _notify_requester(cmd, sns)
        if report.failed:
            raise PushFailed(f"expired result of {cmd.command_id} not sent: {report.failed}")
    try:
        # back into the pending index until the requester is told, as any settlement (_finish)
        cmd.update(actions=[CommandItem.status.set("succeeded"), CommandItem.expired_at.set(int(cmd.settled_at or 0)),
                            CommandItem.settled_at.set(at_ms), CommandItem.late.set(True),
                            CommandItem.reason.set("confirmed by the box after the command had expired"),
                            CommandItem.reported.set(reported), CommandItem.pending.set("1")],
                   condition=CommandItem.status == "expired")
    except UpdateError as exc:
        if condition_failed(exc):
            return AckResult("duplicate", cmd.command_id)  # a concurrent delivery settled it first
        raise
    return AckResult("succeeded", cmd.command_id, _tell_requester(cmd, sns), late=True)


def expire_due(now_ms: int, iotdata: IoTDataPlaneClient, sns: SNSClient) -> list[str]:
    """Expire every pending command whose expiry has passed: one Query of the sparse index."""
    expired = []
    # the index projects every attribute and the conditional settle guards against a stale entry,
    # so no GetItem per command
    for cmd in CommandItem.by_expiry.query("1", CommandItem.expires_at <= now_ms):
        if cmd.status != "pending":
            # settled, but its requester was never told (a crash after the settle, a failed push):
            # tell them now, once the invocation that settled it is surely over
            if cmd.settled_at is not None and now_ms - int(cmd.settled_at) >= RETELL_AFTER_MS:
                _tell_requester(cmd, sns)
            continue
        # order cleared before the settle, as in acknowledge: a crash in between is finished by the
        # next sweep, which still finds the command pending
        try:
            update_desired(iotdata, cmd.box_id, CLEAR_ORDER, when=holds(cmd.command_id))
        except ShadowContention:
            continue  # the box is busy with its shadow: the next sweep expires it

        if not _settle(cmd, "expired", now_ms, "not confirmed by the box before it expired", None):
            continue
        _tell_requester(cmd, sns)
        expired.append(cmd.command_id)
    return expired
