"""An area outage of hundreds of boxes through the real OfflineSweep handler (moto): the incident
item stays small however many boxes it holds (members are items of their own), every phone near
the area is told once, a growing outage tells each of them once more, and nothing else repeats.

The first version kept members in the incident item: 10,000 offline boxes (the 100k/10 % sweep
benchmark) overflowed DynamoDB's 400 KB item limit and the sweep failed."""

from __future__ import annotations

import json
from collections import Counter

from boxwatch.models import IncidentItem
from boxwatch.registry import BindingSpec, bind
from boxwatch_infra.bench.fleet import START_MS, load_boxes
from boxwatch_infra.bench.sweep import grid_fleet, nearest, scheduled_event, take_offline
from boxwatch_infra.sandbox import Sandbox, decode_push


def outage_pushes(sb: Sandbox, client_of: dict[str, str]) -> Counter[str]:
    told: Counter[str] = Counter()
    for arn, messages in sb.pushed_messages().items():
        told[client_of[arn]] += sum(decode_push(m)["kind"] == "neighbour_outage" for m in messages)
    return +told


def test_area_outage_of_400_boxes_small_items_each_phone_told_once_per_news() -> None:
    specs = grid_fleet(900)  # 30 x 30 boxes, ~200 m apart
    dark = nearest(specs, 400)
    dark_ids = {s.id for s in dark}
    # storm mode off: this is the fourth alarm at scale (400 of 900 would be an area outage;
    # test_replay_storm.py covers that)
    with Sandbox(parameter_overrides={"StormMinBoxes": 1_000_000}) as sb:
        # Given 900 boxes, one phone each, and 400 of them dropping within 20 s
        load_boxes(sb, iter(specs))
        arns = sb.create_push_endpoints([f"ph-{s.id}" for s in specs])
        for s in specs:
            bind(BindingSpec(client_id=f"ph-{s.id}", box_id=s.id, target=arns[f"ph-{s.id}"], locale="en"))
        endpoints = {arn: client for client, arn in arns.items()}
        outage_at = START_MS + 30_000
        take_offline(sb, dark, outage_at)

        # When the sweep runs after the outage
        first = sb.invoke("OfflineSweep", scheduled_event(sb, outage_at + 65_000))
        told_first = outage_pushes(sb, endpoints)

        # Then one incident holds all 400 in member items, and its own item stays small
        assert [len(c) for c in first["clusters"]] == [400] and len(first["opened"]) == 1
        (incident,) = IncidentItem.scan(IncidentItem.sk == "META")
        raw = sb.client("dynamodb").get_item(TableName=sb.tables["NetworkTable"],
                                             Key={"pk": {"S": incident.pk}, "sk": {"S": "META"}})["Item"]
        assert len(json.dumps(raw)) < 1_000
        assert int(incident.member_count) == 400 and int(incident.announced_upto) == 400
        members = sb.client("dynamodb").query(
            TableName=sb.tables["NetworkTable"], KeyConditionExpression="pk = :p AND begins_with(sk, :m)",
            ExpressionAttributeValues={":p": {"S": incident.pk}, ":m": {"S": "MEMBER#"}}, Select="COUNT")["Count"]
        assert members == 400
        # every phone told is an online neighbour's, told once; no dark box's phone
        assert told_first and set(told_first.values()) == {1}
        assert not {c.removeprefix("ph-") for c in told_first} & dark_ids

        # When nothing changes, the next sweep says nothing
        sb.invoke("OfflineSweep", scheduled_event(sb, outage_at + 125_000))
        assert outage_pushes(sb, endpoints) == told_first

        # When one more box next to the area drops 56 s after the last one (the outage grows)
        grower = next(s for s in nearest(specs, 401) if s.id not in dark_ids)
        take_offline(sb, [grower], outage_at + 75_000)
        grown = sb.invoke("OfflineSweep", scheduled_event(sb, outage_at + 185_000))
        told_after = outage_pushes(sb, endpoints)

        # Then the same incident grows, and each phone near it hears once more, at most; the
        # grower's own phone (told before, while its box was online) is not told of its own box
        assert grown["updated"] == first["opened"] and [len(c) for c in grown["clusters"]] == [401]
        again = told_after - told_first
        assert again and set(again.values()) == {1}
        assert f"ph-{grower.id}" not in again
