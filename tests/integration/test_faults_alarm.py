"""Issue 8, faults: DynamoDB throttling and 5xx, SNS failures, disabled endpoints and crashes on the
alarm path. With Lambda's retries (template EventInvokeConfig), every alarm is stored once and
every bound client notified once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from boxwatch_infra.sandbox import Sandbox
from tests.integration.faultkit import AlarmWorld, Crash, Fault, alarm_world, expire_in_progress, injected


@pytest.fixture
def world() -> Iterator[AlarmWorld]:
    with Sandbox(async_invokes=True) as sb:
        yield alarm_world(sb)


def each_client_once(world: AlarmWorld, seq: int = 1) -> dict[tuple[str, int], int]:
    return {(c, seq): 1 for c in world.clients}


def to_endpoint(world: AlarmWorld, client: str) -> Any:
    return lambda params: params.get("TargetArn") == world.endpoints[client]


def test_sns_failure_for_one_client_is_retried_at_once_for_that_client_only(world: AlarmWorld) -> None:
    # Given SNS fails (500) for c1 once
    retries: list[str] = []
    world.sb.before_retry.append(lambda fn, ev: retries.append(fn))
    with injected(world.sb) as faults:
        faults.client_error("sns", "Publish", "InternalError", status=500, when=to_endpoint(world, "c1"))
        # When BX-1 alarms
        [d] = world.alarm()
    # Then the same invocation tries c1 again after a short backoff (Lambda's retry would come a
    # minute later): every client once, in one invocation
    assert d.error is None and d.result["status"] == "stored" and retries == []
    assert world.pushes("alarm") == each_client_once(world)


def test_sns_failure_for_one_client_twice_is_retried_by_lambda_for_that_client_only(world: AlarmWorld) -> None:
    # Given SNS fails (500) for c1 on both tries of the first invocation
    with injected(world.sb) as faults:
        faults.client_error("sns", "Publish", "InternalError", status=500, times=2, when=to_endpoint(world, "c1"))
        # When BX-1 alarms
        [d] = world.alarm()
    # Then Lambda's retry sends to c1 only: every client once, the alarm stored once, no dead letter
    assert d.error is None and d.result["status"] == "resumed"
    assert world.pushes("alarm") == each_client_once(world)
    assert len(world.alarm_records()) == 1
    assert world.queue("AsyncFailureQueue") == []


@pytest.mark.parametrize("operation,code,status", [
    ("TransactWriteItems", "ProvisionedThroughputExceededException", 400),
    ("TransactWriteItems", "InternalServerError", 500),
    ("Query", "ThrottlingException", 400),
    ("GetItem", "InternalServerError", 500),
    ("PutItem", "ProvisionedThroughputExceededException", 400),  # the idempotency record
    ("UpdateItem", "InternalServerError", 500),  # completing the idempotency record
])
def test_dynamodb_faults_are_retried_without_loss_or_duplicates(world: AlarmWorld, operation: str, code: str,
                                                                status: int) -> None:
    # Given DynamoDB refuses one `operation` (after the SDK's own retries)
    with injected(world.sb) as faults:
        fault = faults.client_error("dynamodb", operation, code, status=status)
        # When BX-1 alarms
        [d] = world.alarm()
    # Then the fault happened, Lambda retried, and the alarm is stored once and pushed once to each
    assert fault.fired == 1
    assert d.error is None, d.error
    assert len(world.alarm_records()) == 1
    assert world.pushes("alarm") == each_client_once(world)
    assert world.queue("AsyncFailureQueue") == []
    # and a redelivery after any leftover IN_PROGRESS record expired still pushes nothing
    expire_in_progress(world.sb)
    [again] = world.alarm(t_s=90, alarm_at_s=0)
    assert again.result["status"] == "duplicate"
    assert world.pushes("alarm") == each_client_once(world)


def cell_query(world: AlarmWorld) -> Any:
    """The neighbour lookup: the first request after the alarm is stored."""
    return lambda p: p["TableName"] == world.sb.tables["AlarmsTable"]


def test_exception_between_storing_and_notifying_resumes_on_retry(world: AlarmWorld) -> None:
    # Given the handler dies with an exception after the alarm is stored, before any push
    with injected(world.sb) as faults:
        faults.crash("dynamodb", "Query", exc=RuntimeError, when=cell_query(world))
        [d] = world.alarm()
    # Then the retry finds the alarm stored and notifies everyone once
    assert d.result["status"] == "resumed"
    assert world.pushes("alarm") == each_client_once(world)
    assert len(world.alarm_records()) == 1


def test_transaction_conflict_on_the_box_item_is_retried_in_the_invocation(world: AlarmWorld) -> None:
    # Given DynamoDB cancels the alarm's transaction once because another transaction touched the
    # box item at the same moment (TransactionConflict: no condition failed)
    def conflict(op: str) -> BaseException:
        response: Any = {"Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                         "CancellationReasons": [{"Code": "None"}, {"Code": "None"}, {"Code": "None"},
                                                 {"Code": "TransactionConflict"}],
                         "ResponseMetadata": {"HTTPStatusCode": 400}}
        return ClientError(response, op)

    retries: list[str] = []
    world.sb.before_retry.append(lambda fn, ev: retries.append(fn))
    with injected(world.sb) as faults:
        fault = Fault("dynamodb", "TransactWriteItems", 1, conflict)
        faults.plans.append(fault)
        [d] = world.alarm()
    # Then the invocation re-reads the box and stores the alarm itself: no Lambda retry, all pushed
    assert fault.fired == 1 and d.error is None and d.result["status"] == "stored" and retries == []
    assert world.pushes("alarm") == each_client_once(world)
    assert len(world.alarm_records()) == 1


def test_hard_kill_mid_fan_out_repeats_only_the_pushes_of_the_killed_attempt(world: AlarmWorld) -> None:
    # Given c1's push fails, then the process is killed at c2's push, before it could record that
    # c0 was sent (the idempotency record stays IN_PROGRESS until the invocation's timeout)
    world.sb.before_retry.append(lambda fn, ev: expire_in_progress(world.sb))
    with injected(world.sb) as faults:
        faults.client_error("sns", "Publish", "InternalError", status=500, when=to_endpoint(world, "c1"))
        faults.crash("sns", "Publish", when=to_endpoint(world, "c2"))
        [d] = world.alarm()
    # Then the retry reaches c1 and c2 once each; c0, pushed in the killed attempt, hears it twice.
    # This is the one window left (a push and its record cannot be atomic): docs/reliability.md
    assert d.error is None, d.error
    assert world.pushes("alarm") == {("c0", 1): 2, ("c1", 1): 1, ("c2", 1): 1}


def test_hard_crash_before_notifying_waits_for_the_timeout_then_resumes(world: AlarmWorld) -> None:
    # Given the process is killed after storing (IN_PROGRESS record left behind) and the retry
    # comes after the function timeout, as Lambda's retries do
    world.sb.before_retry.append(lambda fn, ev: expire_in_progress(world.sb))
    with injected(world.sb) as faults:
        faults.crash("dynamodb", "Query", exc=Crash, when=cell_query(world))
        [d] = world.alarm()
    # Then the retry resumes and everyone hears the alarm once
    assert d.error is None and d.result["status"] == "resumed"
    assert world.pushes("alarm") == each_client_once(world)


def test_disabled_endpoint_is_marked_and_does_not_block_the_others(world: AlarmWorld) -> None:
    # Given c1 uninstalled the app (its endpoint is disabled)
    world.sb.client("sns").set_endpoint_attributes(EndpointArn=world.endpoints["c1"], Attributes={"Enabled": "false"})
    # When BX-1 alarms twice
    [d1] = world.alarm(seq=1)
    [d2] = world.alarm(seq=2, t_s=30)
    # Then c0 and c2 hear both, the invocation succeeds, and c1's binding is disabled (tried once only)
    assert d1.error is None and d1.result["status"] == "stored"
    counts = world.pushes("alarm")
    assert counts == {("c0", 1): 1, ("c2", 1): 1, ("c0", 2): 1, ("c2", 2): 1}
    binding = world.sb.client("dynamodb").get_item(
        TableName=world.sb.tables["BindingsTable"], Key={"box_id": {"S": "BX-1"}, "client_id": {"S": "c1"}})["Item"]
    assert binding["enabled"] == {"BOOL": False} and binding["disabled_reason"] == {"S": "EndpointDisabled"}
    assert d2.result["notified"] == 2
    assert world.queue("AsyncFailureQueue") == []


def test_redelivery_costs_one_request_and_notifies_nobody(world: AlarmWorld) -> None:
    # Given BX-1's alarm was processed
    world.alarm()
    before = world.sb.counter.operations.copy()
    # When IoT redelivers it (QoS 1, PUBACK lost), a few seconds later
    [d] = world.alarm(t_s=5, alarm_at_s=0)
    # Then nothing is sent and the redelivery costs one DynamoDB request (the idempotency PutItem)
    assert d.result["status"] == "duplicate" and d.result["notified"] == 0
    assert world.pushes("alarm") == each_client_once(world)
    delta = world.sb.counter.operations - before
    assert sum(n for op, n in delta.items() if op.startswith("dynamodb.")) == 1


def test_common_path_request_count_is_unchanged_by_idempotency(world: AlarmWorld) -> None:
    # When BX-1 alarms (one H3 cell or more covers the neighbour radius)
    world.alarm()
    ops = world.sb.counter.operations
    queries = ops["dynamodb.Query"]
    # Then: idempotency Put + box Get + TransactWrite + c cell Queries + bindings Query + the
    # recipients' devices (BatchGet) + idempotency Update
    assert ops["dynamodb.PutItem"] == 1 and ops["dynamodb.UpdateItem"] == 1
    assert ops["dynamodb.GetItem"] == 1 and ops["dynamodb.TransactWriteItems"] == 1
    assert ops["dynamodb.BatchGetItem"] == 1
    assert sum(n for op, n in ops.items() if op.startswith("dynamodb.")) == 6 + (queries - 1)
    assert 6 + (queries - 1) <= 10


def test_concurrent_duplicate_is_held_off_and_dead_lettered_not_doubled(world: AlarmWorld) -> None:
    # Given a second delivery of the same alarm arrives while the first is still sending
    inner: list[Any] = []

    def redeliver_during_fan_out(params: dict[str, Any]) -> bool:
        if not inner:
            inner.append(None)
            inner[0] = world.alarm(t_s=1, alarm_at_s=0)
        return False  # never fail the call itself

    with injected(world.sb) as faults:
        faults.client_error("sns", "Publish", "unused", when=redeliver_during_fan_out)
        [outer] = world.alarm()
    [held] = inner[0]
    # Then the concurrent delivery is refused while in progress (Lambda retries it, then it is
    # dead-lettered), and everyone hears the alarm once
    assert outer.error is None and outer.result["status"] == "stored"
    assert held.error is not None and "IdempotencyAlreadyInProgressError" in held.error
    assert world.pushes("alarm") == each_client_once(world)
    [dead] = world.queue("AsyncFailureQueue")
    assert dead["requestPayload"]["seq"] == 1


def test_sequence_reused_with_other_content_is_a_new_alarm_stored_pushed_and_flagged(
        world: AlarmWorld, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    world.alarm(seq=7)
    capsys.readouterr()
    # When the box sends seq 7 again with another value (its counter restarted)
    [d] = world.alarm(seq=7, t_s=3, value=120.0)
    # Then it is a new alarm: stored under its own identity, pushed to everyone, nothing refused
    assert d.result["status"] == "stored"
    assert world.pushes("alarm") == {(c, 7): 2 for c in world.clients}
    records = world.alarm_records()
    assert sorted(float(r["value"]["N"]) for r in records) == [92.5, 120.0]
    assert {r["sk"]["S"][:20] for r in records} == {"SEQ#0000000000000007"}
    assert world.queue("RejectedInputQueue") == []
    # and flagged: a log line and the AlarmSeqReused metric
    assert '"AlarmSeqReused":[1.0]' in capsys.readouterr().out.replace(" ", "")
    assert "sequence number reused" in caplog.text
    # When both are redelivered / Then nothing more is pushed or stored, and each costs
    # at most two idempotency requests
    before = world.sb.counter.operations.copy()
    [again_new] = world.alarm(seq=7, t_s=4, alarm_at_s=3, value=120.0)
    [again_old] = world.alarm(seq=7, t_s=5, alarm_at_s=0)
    assert (again_new.result["status"], again_old.result["status"]) == ("duplicate", "duplicate")
    assert world.pushes("alarm") == {(c, 7): 2 for c in world.clients}
    assert len(world.alarm_records()) == 2
    delta = world.sb.counter.operations - before
    assert sum(n for op, n in delta.items() if op.startswith("dynamodb.")) <= 4


def test_seq_reused_three_times_keeps_three_alarms(world: AlarmWorld) -> None:
    # Given a box that restarted its counter twice / When seq 1 arrives with three contents
    for t, value in ((0, 90.0), (60, 91.0), (120, 92.0)):
        [d] = world.alarm(seq=1, t_s=t, value=value)
        assert d.result["status"] == "stored", d.result
    # Then three alarms are stored and pushed, each once
    assert len(world.alarm_records()) == 3
    assert world.pushes("alarm") == {(c, 1): 3 for c in world.clients}


def test_crash_retries_exhausted_goes_to_the_async_dead_letter_queue(world: AlarmWorld) -> None:
    # Given SNS is down for c1 for longer than Lambda's retries
    with injected(world.sb) as faults:
        faults.client_error("sns", "Publish", "InternalError", status=500, times=99, when=to_endpoint(world, "c1"))
        [d] = world.alarm()
    # Then c0 and c2 heard it once, c1 not yet, and the event waits in AsyncFailureQueue
    assert d.error is not None and "NotificationFailed" in d.error
    assert world.pushes("alarm") == {("c0", 1): 1, ("c2", 1): 1}
    [dead] = world.queue("AsyncFailureQueue")
    assert dead["requestContext"]["approximateInvokeCount"] == 3
    assert dead["requestPayload"]["thing"] == "BX-1"


# ------------------------------------------------------------------ flood hold-down and nearby updates
def test_concurrent_alarms_of_one_box_never_exceed_the_burst(world: AlarmWorld) -> None:
    # Given BX-1's seq 1 is about to be stored when seq 2, 3 and 4 of the same cause are processed
    # in full by concurrent invocations (AlarmBurst = 3)
    raced: list[bool] = []

    def others_first(service: str, operation: str, params: dict[str, Any], call: Any) -> Any:
        if (service, operation) == ("dynamodb", "TransactWriteItems") and not raced:
            raced.append(True)
            for seq in (2, 3, 4):
                [d] = world.alarm(seq=seq, t_s=seq / 10)
                assert d.result["status"] == "stored"
        return call()

    world.sb.counter.interceptors.insert(0, others_first)
    [first] = world.alarm(seq=1)
    world.sb.counter.interceptors.remove(others_first)
    # Then seq 1 lost the race on the box's hold state, re-read it, and is the 4th of its window:
    # held. Exactly three alarms were pushed, and the window's summary counts the held one.
    assert first.error is None and first.result["held"] is True
    assert world.pushes("alarm") == {(c, s): 1 for c in world.clients for s in (2, 3, 4)}
    due = [i for i in world.sb.client("dynamodb").scan(TableName=world.sb.tables["AlarmsTable"])["Items"]
           if i["pk"]["S"].startswith("DUE#alarm_summary#BX-1#overtemp#")]
    assert [int(i["tally"]["N"]) for i in due] == [1]


def test_a_held_alarm_costs_what_a_pushed_one_costs(world: AlarmWorld) -> None:
    for seq in (1, 2, 3):
        world.alarm(seq=seq, t_s=seq)
    before = world.sb.counter.operations.copy()
    # When the 4th alarm of the window (held) and the 5th (held, counted) arrive
    [d4] = world.alarm(seq=4, t_s=4)
    [d5] = world.alarm(seq=5, t_s=5)
    # Then neither is pushed, and each costs the common path's 5 + c requests (a pushed alarm adds
    # the read of its recipients' devices): the hold state and the summary counter are part of the
    # alarm's one transaction
    assert d4.result["held"] and d5.result["held"] and d4.result["notified"] == d5.result["notified"] == 0
    delta = world.sb.counter.operations - before
    queries = delta["dynamodb.Query"] // 2 - 1
    assert delta["dynamodb.TransactWriteItems"] == 2 and delta["dynamodb.GetItem"] == 2
    assert sum(n for op, n in delta.items() if op.startswith("dynamodb.")) == 2 * (5 + queries)


def test_nearby_update_push_failure_is_retried_for_that_client_only(world: AlarmWorld) -> None:
    # Given BX-2 (300 m away, client c9) alarmed first
    world.alarm(box="BX-2")
    # When BX-1 alarms and SNS fails for c9's nearby_update on both tries of the invocation
    with injected(world.sb) as faults:
        faults.client_error("sns", "Publish", "InternalError", status=500, times=2, when=to_endpoint(world, "c9"))
        [d] = world.alarm(box="BX-1", t_s=20)
    # Then Lambda's retry (finding its own claim) tells c9 once; BX-1's clients hear everything once
    assert d.error is None and d.result["status"] == "resumed"
    assert world.pushes("nearby_update") == {("c9", 1): 1}
    assert world.pushes("same_cause_nearby") == each_client_once(world)
    assert world.pushes("alarm") == {**each_client_once(world), ("c9", 1): 1}
    # and a third alarm of BX-1 inside c9's window tells c9 nothing more
    world.alarm(box="BX-1", seq=2, t_s=40)
    assert world.pushes("nearby_update") == {("c9", 1): 1}
