"""The local IoT rules evaluator: the SQL subset of the template, and nothing else."""

from __future__ import annotations

import pytest

from boxwatch_infra.iot_rules import MessageContext, Rule, UnsupportedSql, rules_from_template, topic_matches
from boxwatch_infra.template import Template


def ctx(topic: str, payload: object, client: str = "BX-1") -> MessageContext:
    return MessageContext(topic=topic, payload=payload, client_id=client, now_ms=1234)


def test_alarm_rule_from_template_adds_box_from_topic() -> None:
    rule = next(r for r in rules_from_template(Template()) if r.function == "AlarmIngestFunction")
    out = rule.apply(ctx("boxwatch/boxes/BX-1/alarms", {"seq": 1, "thing": "BX-9"}))
    # the topic's box id wins over a payload key of the same name
    assert out == {"seq": 1, "thing": "BX-1", "client_id": "BX-1", "received_at": 1234}
    assert rule.apply(ctx("boxwatch/boxes/BX-1/status", {})) is None


def test_where_clause() -> None:
    rule = Rule.parse("r", "F", "SELECT * FROM 'a/+' WHERE eventType = 'disconnected' AND n > 2")
    assert rule.apply(ctx("a/x", {"eventType": "disconnected", "n": 3})) is not None
    assert rule.apply(ctx("a/x", {"eventType": "connected", "n": 3})) is None
    assert rule.apply(ctx("a/x", {"eventType": "disconnected", "n": 1})) is None


def test_presence_rule_adds_its_arrival_time_and_refuses_a_payload_that_sets_it() -> None:
    rule = next(r for r in rules_from_template(Template()) if r.function == "PresenceFunction")
    event = {"clientId": "BX-1", "eventType": "connected", "timestamp": 1000, "versionNumber": 1}
    assert rule.apply(ctx("$aws/events/presence/connected/BX-1", event)) == {**event, "received_at": 1234}
    # a payload that brings its own received_at (or a null one) is not delivered at all
    assert rule.apply(ctx("$aws/events/presence/connected/BX-1", {**event, "received_at": 5})) is None
    assert rule.apply(ctx("$aws/events/presence/connected/BX-1", {**event, "received_at": None})) is None


def test_is_undefined_on_nested_paths() -> None:
    rule = Rule.parse("r", "F", "SELECT * FROM 'a' WHERE isUndefined(x.y) AND NOT isUndefined(z)")
    assert rule.apply(ctx("a", {"z": 1})) is not None
    assert rule.apply(ctx("a", {"z": 1, "x": {"y": 0}})) is None
    assert rule.apply(ctx("a", {"x": {}})) is None


@pytest.mark.parametrize("sql", [
    "SELECT get(x, 1) AS y FROM 'a'",
    "SELECT * FROM a",
    "SELECT x + 1 AS y FROM 'a'",
])
def test_unsupported_sql_fails_loudly(sql: str) -> None:
    with pytest.raises(UnsupportedSql):
        Rule.parse("r", "F", sql)


def test_topic_filters() -> None:
    assert topic_matches("$aws/events/presence/+/+", "$aws/events/presence/connected/BX-1")
    assert not topic_matches("$aws/events/presence/+/+", "$aws/events/presence/connected")
    assert topic_matches("a/#", "a/b/c")
    assert not topic_matches("a/b", "a/b/c")
