"""The alarm sweep: things that must happen at a time, once (flood summaries; any `DueItem` kind).

A `DueItem` carries `due` ("1") and `due_at` until it is done, so the sparse index `due_by_time`
holds only what is still to do: one Query reads what is due now, and the sweep's cost follows the
due items, never the fleet or the history. Each item is leased (a conditional write: two
deliveries of one schedule, or overlapping sweeps, never both run it), handed to its kind's
handler, and leaves the index once everyone was told. A push that failed keeps the item in the
index with the clients already told in `sent`: the next sweep tells the others.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import PynamoDBException, UpdateError

from boxwatch.models import LEASE_MS, DueItem, condition_failed
from boxwatch.notify import SendReport, record_after_push

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

PER_SWEEP = 1000  # the rest waits for the next run: a backlog never holds a sweep past its timeout

Handler = Callable[[DueItem, Any, Collection[str]], SendReport]
# each kind's handler, registered by the module that makes items of that kind when it is imported
# (alarms: alarm_summary; alarm_life: the alarm's life): this module imports none of them
HANDLERS: dict[str, Handler] = {}


def register(kind: str, handler: Handler) -> None:
    HANDLERS[kind] = handler


def handlers() -> dict[str, Handler]:
    return HANDLERS


@dataclass
class DueResult:
    at_ms: int
    done: list[str] = field(default_factory=list)  # subjects, per kind: "<kind>:<subject>"
    failed: list[str] = field(default_factory=list)  # retried on the next sweep
    busy: int = 0  # leased by another sweep, or done meanwhile
    unknown: list[str] = field(default_factory=list)  # a kind this code has no handler for
    sent: int = 0


def _lease(item: DueItem, now_ms: int) -> bool:
    try:
        # ALL_NEW: the item as it is now (the index copy may lag behind a late count)
        item.update(actions=[DueItem.lease_until.set(now_ms + LEASE_MS)],
                    condition=DueItem.due.exists() & (DueItem.lease_until.does_not_exist()
                                                      | (DueItem.lease_until <= now_ms)))
        return True
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise


def _run(item: DueItem, now_ms: int, sns: SNSClient, result: DueResult) -> SendReport | None:
    name = f"{item.kind}:{item.subject}"
    handler = handlers().get(item.kind)
    if handler is None:
        result.unknown.append(name)
        return None
    try:
        if not _lease(item, now_ms):
            result.busy += 1
            return None
        told = set(item.sent or [])
        report = handler(item, sns, told)
        told |= set(report.sent) | set(report.disabled)
        result.sent += len(report.sent)
        # what was pushed is recorded (retried here: lost, the next sweep would push it again)
        if report.failed:
            record_after_push(lambda: item.update(actions=[DueItem.sent.set(sorted(told)),
                                                           DueItem.lease_until.remove()]))
            result.failed.append(name)
            return report
        record_after_push(lambda: item.update(actions=[DueItem.due.remove(), DueItem.lease_until.remove(),
                                                       DueItem.done_at.set(now_ms)]))
        result.done.append(name)
        return report
    except (PynamoDBException, ClientError, BotoCoreError):
        # throttled or failing: this item waits for the next sweep (its lease, if taken, expires)
        result.failed.append(name)
        return None


def sweep_due(now_ms: int, sns: SNSClient) -> DueResult:
    """Run every due item whose `due_at` <= now (the schedule's event time, inclusive)."""
    result = DueResult(now_ms)
    for item in DueItem.due_by_time.query("1", DueItem.due_at <= now_ms, limit=PER_SWEEP):
        _run(item, now_ms, sns, result)
    return result


def run_item(item: DueItem, now_ms: int, sns: SNSClient) -> SendReport:
    """Run one item now, by whoever just wrote it (an ack, a clear): leased like the sweep's, so
    that a sweep meanwhile never runs it twice; what fails stays due for the next sweep."""
    return _run(item, now_ms, sns, DueResult(now_ms)) or SendReport()
