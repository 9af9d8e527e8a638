"""The local IoT rules evaluator: the SQL subset of the template, with AWS's Undefined semantics,
and nothing else; and the template's rules: a payload cannot override what a rule adds."""

from __future__ import annotations

from typing import Any

import pytest

from boxwatch_infra.aws.iot_rules import (
    UNDEFINED,
    MessageContext,
    Rule,
    UnsupportedSql,
    rules_from_template,
    topic_matches,
)
from boxwatch_infra.aws.template import Template


def ctx(topic: str, payload: object, client: str = "BX-1", now_ms: int = 1234) -> MessageContext:
    return MessageContext(topic=topic, payload=payload, client_id=client, now_ms=now_ms)


def sample_topic(topic_filter: str) -> str:
    return "/".join("BX-1" if p == "+" else ("x" if p == "#" else p) for p in topic_filter.split("/"))


# hostile values a payload may carry under a key the rule adds: another box, null, the wrong type
HOSTILE: list[Any] = ["BX-2", None, "", 0, 1, True, {"S": "BX-2"}, ["BX-2"], "BX-1"]
TEMPLATE_RULES = rules_from_template(Template())


def added_keys(rule: Rule) -> list[str]:
    """What the rule adds itself (functions, literals), as opposed to fields it copies."""
    return [name for name, _ in rule.items if name not in rule.fields]


def test_every_template_rule_adds_something_the_door_test_covers() -> None:
    # the parametrisation below must not be vacuous: the alarm and shadow rules add keys
    by_name = {r.name: added_keys(r) for r in TEMPLATE_RULES}
    assert set(by_name["AlarmIngestRule"]) == {"thing", "client_id", "received_at"}
    assert by_name["CommandAckRule"] == ["thing"]


@pytest.mark.parametrize(("rule", "key"), [(r, k) for r in TEMPLATE_RULES for k in added_keys(r)],
                         ids=lambda v: v.name if isinstance(v, Rule) else str(v))
@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_a_payload_cannot_override_what_a_rule_adds(rule: Rule, key: str, value: Any) -> None:
    # Given the event the rule makes of a clean message on a box's topic
    topic = sample_topic(rule.topic_filter)
    clean = rule.apply(ctx(topic, {"seq": 1}, client="BX-1", now_ms=5000))
    # When the payload also carries a key the rule adds
    out = rule.apply(ctx(topic, {"seq": 1, key: value}, client="BX-1", now_ms=5000))
    # Then the rule refuses the message, or the key keeps the rule's own value
    if out is not None:
        assert clean is not None and out[key] == clean[key]
    # and a rule that copies the whole payload (`*`) must refuse it: AWS does not say which wins
    if rule.star:
        assert out is None


def test_alarm_rule_names_the_contract_fields_and_adds_box_connection_and_time() -> None:
    rule = next(r for r in TEMPLATE_RULES if r.name == "AlarmIngestRule")
    payload = {"v": 1, "seq": 1, "cause": "overtemp", "alarm_time": 1000, "value": 90.5, "threshold": 80,
               "thing": "BX-9", "client_id": "BX-9", "received_at": 1, "extra": "x"}
    out = rule.apply(ctx("boxwatch/boxes/BX-1/alarms", payload))
    # the topic, the connection and IoT's clock win; an unknown field is not passed on; absent
    # optional fields (unit, circuit, phase, box_id) stay absent rather than null
    assert out == {"v": 1, "seq": 1, "cause": "overtemp", "alarm_time": 1000, "value": 90.5, "threshold": 80,
                   "thing": "BX-1", "client_id": "BX-1", "received_at": 1234}
    # a box naming a box is passed on for the handler to refuse (the second wall)
    assert rule.apply(ctx("boxwatch/boxes/BX-1/alarms", {"seq": 1, "box_id": "BX-2"}))["box_id"] == "BX-2"  # type: ignore[index]
    assert rule.apply(ctx("boxwatch/boxes/BX-1/status", {})) is None
    with pytest.raises(ValueError):  # not JSON: the rule's error action, as AWS does
        rule.apply(ctx("boxwatch/boxes/BX-1/alarms", b"\x00\xff"))


def test_shadow_documents_rule_passes_aws_documents_and_refuses_a_thing_key() -> None:
    rule = next(r for r in TEMPLATE_RULES if r.name == "CommandAckRule")
    docs: dict[str, Any] = {"previous": None, "current": {"state": {}}, "timestamp": 1, "clientToken": "t"}
    assert rule.apply(ctx("$aws/things/BX-1/shadow/update/documents", docs)) == {**docs, "thing": "BX-1"}
    assert rule.apply(ctx("$aws/things/BX-1/shadow/update/documents", {**docs, "thing": "BX-1"})) is None


# ------------------------------------------------------------------------------------------ SQL subset
def test_where_clause() -> None:
    rule = Rule.parse("r", "F", "SELECT * FROM 'a/+' WHERE eventType = 'disconnected' AND n > 2")
    assert rule.apply(ctx("a/x", {"eventType": "disconnected", "n": 3})) is not None
    assert rule.apply(ctx("a/x", {"eventType": "connected", "n": 3})) is None
    assert rule.apply(ctx("a/x", {"eventType": "disconnected", "n": 1})) is None


def test_undefined_is_not_null() -> None:
    # AWS: in {"foo": null} the key foo is Null, the key bar is Undefined
    undefined = Rule.parse("r", "F", "SELECT * FROM 'a' WHERE isUndefined(bar)")
    null = Rule.parse("r", "F", "SELECT * FROM 'a' WHERE isNull(foo)")
    assert undefined.apply(ctx("a", {"foo": None})) is not None
    assert undefined.apply(ctx("a", {"bar": None})) is None
    assert null.apply(ctx("a", {"foo": None})) is not None
    assert null.apply(ctx("a", {})) is None  # Undefined is not Null
    nested = Rule.parse("r", "F", "SELECT * FROM 'a' WHERE isUndefined(state.reported.x)")
    assert nested.apply(ctx("a", {"state": {"reported": {}}})) is not None
    assert nested.apply(ctx("a", {"state": {"reported": {"x": 0}}})) is None


@pytest.mark.parametrize(("where", "payload", "matches"), [
    ("n <> 1", {}, False),  # a comparison with Undefined is Undefined, not true
    ("NOT n = 1", {}, False),  # NOT Undefined is Undefined
    ("n = 1 OR m = 2", {"m": 2}, False),  # AWS's table: an Undefined operand makes OR Undefined
    ("n = 1 OR m = 2", {"n": 1, "m": 3}, True),
    ("(n = 1 OR m = 2) AND isUndefined(k)", {"n": 1, "m": 0}, True),
    ("(n = 1 OR m = 2) AND isUndefined(k)", {"n": 1, "m": 0, "k": None}, False),
    ("s = 'it''s AND more'", {"s": "it's AND more"}, True),  # quoted AND is not an operator
    ("n < 'x'", {"n": 1}, False),  # no order between a number and a string
    ("flag AND n = 1", {"flag": "TRUE", "n": 1}, True),  # AND takes the strings "true"/"false" as Booleans
    ("flag AND n = 1", {"flag": 1, "n": 1}, False),
    ("NOT isUndefined(k)", {"k": 0}, True),
])
def test_where_follows_aws_undefined_semantics(where: str, payload: dict[str, Any], matches: bool) -> None:
    rule = Rule.parse("r", "F", f"SELECT * FROM 'a' WHERE {where}")
    assert (rule.apply(ctx("a", payload)) is not None) is matches


def test_undefined_select_items_are_left_out() -> None:
    rule = Rule.parse("r", "F", "SELECT a, b.c, topic(9) AS far, timestamp() AS t FROM 'x/y'")
    assert rule.apply(ctx("x/y", {"a": None, "b": {}})) == {"a": None, "t": 1234}
    assert UNDEFINED is not None and not UNDEFINED


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
    "SELECT length(x) AS y FROM 'a'",
    "SELECT * FROM 'a' WHERE x IN ('a', 'b')",
    "SELECT * FROM 'a' WHERE isUndefined(x, y)",
    "SELECT * FROM 'a' WHERE topic(x) = 'a'",
    "SELECT * FROM 'a' WHERE (a = 1",
    "SELECT a, b AS a FROM 'a'",  # two items named a
    # `*` next to an alias the payload could carry, without a WHERE that refuses it
    "SELECT *, topic(3) AS thing FROM 'a/+/b'",
    "SELECT *, topic(3) AS thing FROM 'a/+/b' WHERE isUndefined(other)",
    "SELECT *, topic(3) AS thing FROM 'a/+/b' WHERE isUndefined(thing) OR n = 1",
    "SELECT *, topic(3) AS thing FROM 'a/+/b' WHERE NOT isUndefined(thing)",
    "SELECT *, topic(3) AS thing FROM 'a/+/b' WHERE isNull(thing)",
    "SELECT *, topic(3) AS thing, timestamp() AS t FROM 'a/+/b' WHERE isUndefined(thing)",
])
def test_unsupported_sql_fails_loudly(sql: str) -> None:
    with pytest.raises(UnsupportedSql):
        Rule.parse("r", "F", sql)


def test_guarded_star_with_aliases_is_accepted() -> None:
    rule = Rule.parse("r", "F", "SELECT *, topic(2) AS thing, timestamp() AS t FROM 'a/+' "
                                "WHERE isUndefined(t) AND n > 0 AND isUndefined(thing)")
    assert rule.refused_keys == {"thing", "t"}
    assert rule.apply(ctx("a/BX-1", {"n": 1})) == {"n": 1, "thing": "BX-1", "t": 1234}
    assert rule.apply(ctx("a/BX-1", {"n": 1, "t": 0})) is None


def test_topic_filters() -> None:
    assert topic_matches("$aws/events/presence/+/+", "$aws/events/presence/connected/BX-1")
    assert not topic_matches("$aws/events/presence/+/+", "$aws/events/presence/connected")
    assert topic_matches("a/#", "a/b/c")
    assert not topic_matches("a/b", "a/b/c")
