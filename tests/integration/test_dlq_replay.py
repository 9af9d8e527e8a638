"""Issue 8, dead letters: what failed lands in a queue, and `boxwatch dlq replay` feeds it back
through the handlers once the cause is fixed, without duplicates (moto SQS)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest

from boxwatch.registry import BindingSpec, BoxSpec, bind, register_box
from boxwatch_infra import cli
from boxwatch_infra.aws.lambda_async import rule_error_message
from boxwatch_infra.dlq import QUEUES, replay, sandbox_invoker
from boxwatch_infra.sandbox import Sandbox
from tests.integration.faultkit import T0, AlarmWorld, alarm_world, injected


@pytest.fixture
def world() -> Iterator[AlarmWorld]:
    with Sandbox(async_invokes=True) as sb:
        yield alarm_world(sb)


def run_replay(world: AlarmWorld, *kinds: str, dry_run: bool = False) -> dict:
    urls = {k: world.sb.queues[QUEUES[k]] for k in QUEUES}
    return replay(world.sb.client("sqs"), urls, sandbox_invoker(world.sb), world.sb.template,
                  list(kinds) or None, dry_run=dry_run).as_dict()


def test_async_failure_is_replayed_once_the_cause_is_fixed_without_duplicates(world: AlarmWorld) -> None:
    # Given SNS was down for c1 through all of Lambda's retries
    with injected(world.sb) as faults:
        faults.client_error("sns", "Publish", "InternalError", status=500, times=99,
                            when=lambda p: p.get("TargetArn") == world.endpoints["c1"])
        world.alarm()
    assert len(world.queue("AsyncFailureQueue")) == 1
    # When an operator looks first (dry run) / Then nothing changes
    dry = run_replay(world, "async", dry_run=True)
    assert [(r["function"], r["dry_run"]) for r in dry["redelivered"]] == [("AlarmIngestFunction", True)]
    assert len(world.queue("AsyncFailureQueue")) == 1 and ("c1", 1) not in world.pushes()
    # When SNS is back and the dead letters are replayed
    report = run_replay(world, "async")
    # Then c1 hears the alarm once, the others still once, and the queue is empty
    assert [r["result"]["status"] for r in report["redelivered"]] == ["resumed"]
    assert world.pushes("alarm") == {("c0", 1): 1, ("c1", 1): 1, ("c2", 1): 1}
    assert world.queue("AsyncFailureQueue") == []
    # and replaying again (or the same letter twice) changes nothing
    assert run_replay(world)["redelivered"] == []


def test_rejected_input_is_replayed_after_the_box_is_registered(world: AlarmWorld) -> None:
    # Given BX-3 alarms before it was commissioned: refused as unknown and dead-lettered
    [d] = world.alarm(box="BX-3", seq=4)
    assert d.result["error"] == "unknown_box"
    # When the box is registered (and bound) and the rejected queue is replayed
    register_box(BoxSpec(id="BX-3", name="No.3", address="3 Main St", lat=39.99, lng=116.32), world.sb.settings)
    bind(BindingSpec(client_id="c0", box_id="BX-3", target=world.endpoints["c0"], locale="en"))
    report = run_replay(world, "rejected")
    # Then the alarm is stored and pushed once; a second replay finds nothing
    assert [r["result"]["status"] for r in report["redelivered"]] == ["stored"]
    assert world.pushes("alarm")[("c0", 4)] == 1
    assert run_replay(world, "rejected")["redelivered"] == []


def test_still_invalid_rejected_input_is_refused_again_not_looped(world: AlarmWorld) -> None:
    world.alarm(seq=5, cause="meltdown")
    report = run_replay(world, "rejected")
    # the handler refuses it again (into the queue again, for the next run), and replay stops
    assert [r["result"]["error"] for r in report["redelivered"]] == ["invalid_input"]
    assert len(world.queue("RejectedInputQueue")) == 1


def test_rule_error_action_messages_run_through_the_rules_again(world: AlarmWorld) -> None:
    # Given IoT could not invoke AlarmIngest (throttled) and its error action kept the message,
    # twice (IoT publishes one error message per failed delivery)
    # (replay takes IoT's timestamp() from the dead letter's SentTimestamp: real time here)
    payload = {"v": 1, "seq": 9, "cause": "arc_fault", "alarm_time": int(time.time() * 1000) - 60_000,
               "value": 3, "threshold": 1}
    message = rule_error_message("AlarmIngestRule", "boxwatch/boxes/BX-1/alarms", "BX-1",
                                 json.dumps(payload).encode(), "boxwatch-AlarmIngestFunction", "Lambda throttled")
    sqs = world.sb.client("sqs")
    for _ in range(2):
        sqs.send_message(QueueUrl=world.sb.queues["IotRuleDeadLetterQueue"], MessageBody=json.dumps(message))
    # When the rule queue is replayed
    report = run_replay(world, "rule")
    # Then the rule's SQL adds thing/client_id/received_at again, and the alarm is pushed once
    assert sorted(r["result"]["status"] for r in report["redelivered"]) == ["duplicate", "stored"]
    assert world.pushes("alarm") == {(c, 9): 1 for c in world.clients}


def test_malformed_payload_goes_to_the_rule_queue_and_stays_unreadable(world: AlarmWorld) -> None:
    # Given a box publishes bytes that are not JSON
    world.sb.publish_mqtt("boxwatch/boxes/BX-1/alarms", b"\x00\xffnot json", client_id="BX-1", now_ms=T0)
    [dead] = world.queue("IotRuleDeadLetterQueue")
    assert base64.b64decode(dead["base64OriginalPayload"]) == b"\x00\xffnot json"
    # When replayed / Then it cannot be evaluated either: reported, kept for a human, nothing stored
    report = run_replay(world, "rule")
    assert len(report["unreadable"]) == 1 and report["redelivered"] == []
    assert len(world.queue("IotRuleDeadLetterQueue")) == 1
    assert world.alarm_records() == []


def test_cli_dry_run_lists_dead_letters_from_the_template_queues(world: AlarmWorld,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    world.alarm(box="BX-404")
    capsys.readouterr()
    # When `boxwatch dlq replay --dry-run` runs against this AWS (no stack: template names)
    rc = cli.main(["dlq", "replay", "--dry-run", "--queue", "rejected"])
    out = json.loads(capsys.readouterr().out)
    # Then it lists the refused alarm and changes nothing
    assert rc == 0 and [r["function"] for r in out["redelivered"]] == ["AlarmIngestFunction"]
    assert len(world.queue("RejectedInputQueue")) == 1
