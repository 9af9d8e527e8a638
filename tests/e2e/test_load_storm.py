"""Issue 8, load with faults: a storm of alarms with an area outage, injected faults (2 % SNS 5xx,
2 % DynamoDB throttling) and QoS-1 redeliveries, through the in-process sandbox (real handlers,
the template's rules, Lambda's async retries, moto) where faults can be injected per call. Alarms
sent, stored and notified are counted at the end and must be equal.

Its twin through the real transport (local cloud, 2,000 device agents over MQTT, no injected
faults) is tests/e2e/test_load_local_cloud.py.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from boxwatch.registry import BindingSpec, BoxSpec, bind, import_boxes
from boxwatch_infra.sandbox import Sandbox, decode_push
from tests.integration.faultkit import T0, injected

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

N_BOXES = 2_000
N_ALARMING = 150
SIDE = 60  # boxes on a ~150 m grid


def test_alarm_storm_with_area_outage_and_faults_loses_and_doubles_nothing() -> None:
    rng = random.Random(8)
    with Sandbox(async_invokes=True) as sb:
        boxes = [BoxSpec(id=f"BX-{i:05d}", name=f"box {i}", address="", lat=39.9 + (i // SIDE) * 0.00135,
                         lng=116.3 + (i % SIDE) * 0.00175) for i in range(N_BOXES)]
        list(import_boxes(boxes, sb.settings))
        alarming = rng.sample(range(N_BOXES), N_ALARMING)
        clients = [f"c{i}" for i in alarming]
        endpoints = sb.create_push_endpoints(clients)
        for i in alarming:
            bind(BindingSpec(client_id=f"c{i}", box_id=f"BX-{i:05d}", target=endpoints[f"c{i}"], locale="en"))
        client_of = {arn: cid for cid, arn in endpoints.items()}

        sent: set[tuple[str, int]] = set()
        with injected(sb) as faults:
            # 2 % of pushes fail once, DynamoDB throttles now and then
            faults.client_error("sns", "Publish", "InternalError", status=500, times=10**6,
                                when=lambda p: rng.random() < 0.02)
            faults.client_error("dynamodb", "TransactWriteItems", "ProvisionedThroughputExceededException",
                                times=10**6, when=lambda p: rng.random() < 0.02)
            # the area outage: a block of 150 boxes drops (lifecycle events, issue 3's Presence rule)
            for k, i in enumerate(range(0, 150)):
                sb.publish_mqtt(f"$aws/events/presence/disconnected/BX-{i:05d}",
                                {"clientId": f"BX-{i:05d}", "timestamp": T0 + k * 10, "eventType": "disconnected",
                                 "disconnectReason": "CONNECTION_LOST", "versionNumber": 2},
                                client_id="", now_ms=T0 + k * 10)
            # the storm: every alarming box sends one alarm; 10 % are redelivered (QoS 1)
            for k, i in enumerate(alarming):
                box, t = f"BX-{i:05d}", T0 + 30_000 + k * 50
                payload = {"v": 1, "seq": 1, "cause": rng.choice(["overtemp", "overcurrent"]), "alarm_time": t,
                           "value": 99, "threshold": 80}
                for _ in range(2 if rng.random() < 0.1 else 1):
                    sb.publish_mqtt(f"boxwatch/boxes/{box}/alarms", payload, client_id=box, now_ms=t)
                sent.add((box, 1))

        ddb = sb.client("dynamodb")
        stored: set[tuple[str, int]] = set()
        for page in ddb.get_paginator("scan").paginate(TableName=sb.tables["AlarmsTable"]):
            stored |= {(i["box_id"]["S"], int(i["seq"]["N"])) for i in page["Items"] if i["pk"]["S"].startswith("BOX#")}
        notified: Counter[tuple[str, str]] = Counter()
        for arn, messages in sb.pushed_messages().items():
            for m in messages:
                data = decode_push(m)
                if data["kind"] == "alarm":
                    notified[(client_of[arn], data["box"])] += 1
        dead = sb.client("sqs").get_queue_attributes(QueueUrl=sb.queues["AsyncFailureQueue"],
                                                     AttributeNames=["ApproximateNumberOfMessages"])

    # Then sent = stored = notified, once each, with nothing dead-lettered from the alarm path
    assert len(sent) == N_ALARMING
    assert stored == sent
    assert set(notified) == {(f"c{b.split('-')[1].lstrip('0') or '0'}", b) for b, _ in sent}
    assert set(notified.values()) == {1}
    assert int(dead["Attributes"]["ApproximateNumberOfMessages"]) == 0
