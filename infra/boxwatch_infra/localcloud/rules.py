"""Local IoT Core, the rules engine: the stack's topic rules run on every message the broker sees.

Rules come from the translated template's `AWS::IoT::TopicRule` resources (the template's own and
those SAM makes of `IoTRule` events), evaluated by `boxwatch_infra.aws.iot_rules` (the subset of IoT
SQL boxwatch uses; anything else, and any action other than Lambda, fails loudly at start). A
match is an asynchronous invoke of the target function; a payload the SQL cannot evaluate goes to
the rule's SQS ErrorAction, in AWS IoT's error-action format.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from boxwatch_infra.aws.iot_rules import MessageContext, Rule, UnsupportedSql, parse_payload, rules_from_template
from boxwatch_infra.aws.lambda_async import send_rule_error
from boxwatch_infra.localcloud.functions import FunctionHost, Trigger
from boxwatch_infra.localcloud.stack import Deployment

log = logging.getLogger("boxwatch.localcloud.rules")

SUPPORTED_ACTIONS = {"Lambda"}


class RulesRunner:
    def __init__(self, deployment: Deployment, host: FunctionHost):
        self.deployment = deployment
        self.host = host
        resolver = deployment.resolver()
        enabled: list[Rule] = []
        for rule in rules_from_template(resolver):
            payload = deployment.translated["Resources"].get(rule.name, {}).get("Properties", {}).get(
                "TopicRulePayload", {})
            if str(resolver.resolve(payload.get("RuleDisabled", False))).lower() == "true":
                log.info("rule %s is disabled", rule.name)
                continue
            if rule.function not in host.functions:
                raise UnsupportedSql(f"rule {rule.name}: target {rule.function} is not a function of the stack")
            enabled.append(rule)
        for logical, res in deployment.resources_of_type("AWS::IoT::TopicRule").items():
            for action in res["Properties"]["TopicRulePayload"].get("Actions", []):
                unknown = set(action) - SUPPORTED_ACTIONS
                if unknown:
                    raise UnsupportedSql(f"rule {logical}: action {sorted(unknown)} is not run by the local cloud")
        self.rules = enabled
        self.matched: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def on_message(self, topic: str, payload: bytes, client_id: str, at_ms: int) -> None:
        """Broker hook (event loop thread): evaluate, then hand the invokes to the function pool."""
        ctx = MessageContext(topic=topic, payload=parse_payload(payload), client_id=client_id, now_ms=at_ms)
        for rule in self.rules:
            try:
                event = rule.apply(ctx)
            except ValueError as exc:
                self.errors[rule.name] += 1
                self.host.submit(self._error_action, rule, topic, client_id, payload, f"malformed: {exc}")
                continue
            if event is None:
                continue
            self.matched[rule.name] += 1
            self.host.invoke_async(rule.function, event, Trigger(f"rule:{rule.name}", at_ms, topic))

    def _error_action(self, rule: Rule, topic: str, client_id: str, raw: bytes, error: str) -> None:
        if rule.error_queue is None:
            log.warning("rule %s: %s (no ErrorAction, message dropped)", rule.name, error)
            return
        send_rule_error(self.deployment.client("sqs"), self.deployment.physical[rule.error_queue], rule.name, topic,
                        client_id, raw, self.deployment.physical[rule.function], error)

    def describe(self) -> list[dict[str, Any]]:
        return [{"rule": r.name, "sql": r.sql, "function": r.function} for r in self.rules]
