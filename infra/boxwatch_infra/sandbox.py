"""An in-process AWS (moto) built from template.yaml, with the template's functions and rules.

Replay and the integration tests use it: tables, topics and queues come from the template, each
function runs its real handler with its template environment, and each MQTT message goes through
the template's IoT rules to the function they target.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.client import BaseClient

from boxwatch.models import bind_tables
from boxwatch.settings import Settings
from boxwatch_infra.iot_rules import MessageContext, Rule, parse_payload, rules_from_template
from boxwatch_infra.lambda_runtime import LocalFunction, patched_environ
from boxwatch_infra.template import Template

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class AwsCallCounter:
    """Counts AWS API calls per service (and DynamoDB capacity) made while `active`.

    botocore has no process-wide hook that reaches clients created before us (pynamodb keeps its
    own session), so we wrap the one method every client call goes through.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.operations: Counter[str] = Counter()
        self.active = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[AwsCallCounter]:
        original = BaseClient._make_api_call  # type: ignore[attr-defined]
        counter = self

        def counted(client: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
            if counter.active:
                service = client.meta.service_model.service_name
                counter.calls[service] += 1
                counter.operations[f"{service}.{operation_name}"] += 1
            return original(client, operation_name, api_params)

        BaseClient._make_api_call = counted  # type: ignore[attr-defined]
        try:
            yield self
        finally:
            BaseClient._make_api_call = original  # type: ignore[attr-defined]

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        self.active = True
        try:
            yield
        finally:
            self.active = False


@dataclass
class Delivery:
    rule: str
    function: str
    event: dict[str, Any]
    result: Any = None
    error: str | None = None


@dataclass
class Sandbox:
    parameter_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.template = Template(parameter_overrides=self.parameter_overrides)
        self.counter = AwsCallCounter()
        self._stack = contextlib.ExitStack()
        self._functions: dict[str, LocalFunction] = {}
        self.tables: dict[str, str] = {}
        self.topics: dict[str, str] = {}
        self.queues: dict[str, str] = {}

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> Sandbox:
        from moto import mock_aws  # heavy: only when a sandbox is really built

        env = {**FAKE_CREDENTIALS, "AWS_DEFAULT_REGION": self.template.region, "AWS_REGION": self.template.region}
        self._stack.enter_context(patched_environ(env))
        self._stack.enter_context(mock_aws())
        self._stack.enter_context(self.counter.installed())
        self.tables = self.template.create_tables(self.client("dynamodb"))
        self.topics = self.template.create_topics(self.client("sns"))
        self.queues = self.template.create_queues(self.client("sqs"))
        self.settings = Settings.from_env(self.global_env)
        bind_tables(self.settings)
        self.rules: list[Rule] = rules_from_template(self.template)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    @property
    def global_env(self) -> dict[str, str]:
        variables = self.template.doc.get("Globals", {}).get("Function", {}).get("Environment", {})
        return {k: str(self.template.resolve(v)) for k, v in variables.get("Variables", {}).items()}

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=self.template.region)  # type: ignore[call-overload]

    # ---------------------------------------------------------------- functions
    def function(self, name: str) -> LocalFunction:
        spec = self.template.function(name)
        if spec.logical_id not in self._functions:
            self._functions[spec.logical_id] = LocalFunction(self.template, spec)
        return self._functions[spec.logical_id]

    def invoke(self, name: str, event: Any) -> Any:
        fn = self.function(name)
        with self.counter.counting():
            return fn.invoke(event)

    def publish_mqtt(self, topic: str, payload: Any, client_id: str, now_ms: int) -> list[Delivery]:
        """What IoT Core does with a message: every matching rule invokes its function."""
        raw = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        ctx = MessageContext(topic=topic, payload=parse_payload(raw), client_id=client_id, now_ms=now_ms)
        deliveries = []
        for rule in self.rules:
            try:
                event = rule.apply(ctx)
            except ValueError as exc:
                deliveries.append(Delivery(rule.name, rule.function, {}, error=f"malformed: {exc}"))
                continue
            if event is None:
                continue
            deliveries.append(Delivery(rule.name, rule.function, event, result=self.invoke(rule.function, event)))
        return deliveries

    # ---------------------------------------------------------------- phones
    def create_push_endpoints(self, client_ids: list[str]) -> dict[str, str]:
        """One FCM platform endpoint per client (CustomUserData = client id)."""
        sns = self.client("sns")
        app = sns.create_platform_application(
            Name="boxwatch-fcm", Platform="GCM", Attributes={"PlatformCredential": "local-fcm-key"}
        )["PlatformApplicationArn"]
        return {
            cid: sns.create_platform_endpoint(PlatformApplicationArn=app, Token=f"fcm-token-{cid}",
                                              CustomUserData=cid)["EndpointArn"]
            for cid in client_ids
        }

    def pushed_messages(self) -> dict[str, list[str]]:
        """endpoint ARN -> messages moto 'delivered' to it, oldest first."""
        from moto.sns.models import sns_backends

        backend = sns_backends[self.template.account_id][self.template.region]
        return {arn: list(ep.messages.values()) for arn, ep in backend.platform_endpoints.items()}


def decode_push(message: str) -> dict[str, Any]:
    """The machine-readable part of a boxwatch push (MessageStructure=json, FCM body)."""
    doc = json.loads(message)
    gcm = json.loads(doc["GCM"])
    data: dict[str, Any] = json.loads(gcm["data"]["boxwatch"])
    return data

