"""The in-process AWS: the emulation core (`boxwatch_infra.aws`) on moto in-process, with a
virtual clock.

Replay, the integration tests and the benchmarks use it: tables, topics and queues come from the
template, each function runs its real handler with its template environment, and each MQTT
message goes through the template's IoT rules to the function they target. Time is `now_ms`,
set by whoever drives the sandbox; nothing here waits or reads the wall clock (Lambda's retry
delays pass at once, `before_retry` hooks say what happens in between).
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.client import BaseClient

from boxwatch.models import bind_tables
from boxwatch.settings import Settings
from boxwatch_infra.aws import lambda_async, sqs_source
from boxwatch_infra.aws.environ import FAKE_CREDENTIALS, LOCAL_ENDPOINTS, patched_environ
from boxwatch_infra.aws.events import phone_token
from boxwatch_infra.aws.iot_rules import MessageContext, Rule, parse_payload, rules_from_template
from boxwatch_infra.aws.lambda_runtime import LocalFunction
from boxwatch_infra.aws.moto_patches import item_size_in_one_pass
from boxwatch_infra.aws.shadow import ShadowUpdate
from boxwatch_infra.aws.template import Template

# where virtual time starts unless a scenario says otherwise
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
START_MS = int(DEFAULT_START.timestamp() * 1000)


class AwsCallCounter:
    """Counts AWS API calls per service (and DynamoDB capacity) made while `active`.

    botocore has no process-wide hook that reaches clients created before us (pynamodb keeps its
    own session), so we wrap the one method every client call goes through.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.operations: Counter[str] = Counter()
        self.active = False
        self.function: str | None = None  # whose calls these are, while active
        self.by_function: dict[str, Counter[str]] = {}
        # called around every API call (counted or not): (service, operation, params, call) -> result
        self.interceptors: list[Callable[[str, str, dict[str, Any], Callable[[], Any]], Any]] = []

    @contextlib.contextmanager
    def installed(self) -> Iterator[AwsCallCounter]:
        original = BaseClient._make_api_call  # type: ignore[attr-defined]
        counter = self

        def counted(client: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
            service = client.meta.service_model.service_name
            if counter.active:
                counter.calls[service] += 1
                counter.operations[f"{service}.{operation_name}"] += 1
                if counter.function is not None:
                    counter.by_function.setdefault(counter.function, Counter())[service] += 1

            # the interceptors nest, first outermost: each one's `call` runs the next, the last the real call
            def call_from(i: int) -> Any:
                if i == len(counter.interceptors):
                    return original(client, operation_name, api_params)
                return counter.interceptors[i](service, operation_name, api_params, lambda: call_from(i + 1))

            return call_from(0)

        BaseClient._make_api_call = counted  # type: ignore[attr-defined]
        try:
            yield self
        finally:
            BaseClient._make_api_call = original  # type: ignore[attr-defined]

    def reset(self) -> None:
        self.calls.clear()
        self.operations.clear()
        self.by_function.clear()

    @contextlib.contextmanager
    def counting(self, function: str | None = None) -> Iterator[None]:
        self.active, self.function = True, function
        try:
            yield
        finally:
            self.active, self.function = False, None


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
    # True: rule deliveries are asynchronous invokes with Lambda's retries, on-failure destination
    # and the rule's ErrorAction, as on AWS (`invoke_async`); False: direct, errors raise
    async_invokes: bool = False

    def __post_init__(self) -> None:
        self.template = Template(parameter_overrides=self.parameter_overrides)
        self.counter = AwsCallCounter()
        self._stack = contextlib.ExitStack()
        self._functions: dict[str, LocalFunction] = {}
        self.tables: dict[str, str] = {}
        self.now_ms = 0  # virtual time, set by whoever drives the sandbox (replay)
        self.pending_mqtt: list[tuple[str, dict[str, Any]]] = []  # what IoT Core would publish next
        self.mqtt_log: list[tuple[int, str, dict[str, Any]]] = []  # (t ms, topic, payload) cloud -> devices
        self.topics: dict[str, str] = {}
        self.queues: dict[str, str] = {}
        self.before_retry: list[Callable[[str, Any], None]] = []  # (function, event) before each async retry
        # (attempt, retries) of the asynchronous invocation running now (None: a direct invoke)
        self.attempt: tuple[int, int] | None = None
        self._sent_to: set[str] = set()  # queues with an event source that were sent to since drained
        self._draining = False

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> Sandbox:
        from moto import mock_aws  # heavy: only when a sandbox is really built

        env = {**LOCAL_ENDPOINTS, **FAKE_CREDENTIALS, "AWS_DEFAULT_REGION": self.template.region,
               "AWS_REGION": self.template.region}
        self._stack.enter_context(patched_environ(env))
        self._stack.enter_context(mock_aws())
        self._stack.enter_context(item_size_in_one_pass())
        self._stack.enter_context(self.counter.installed())
        self.counter.interceptors += [self._observe_shadow, self._observe_sqs]
        self.tables = self.template.create_tables(self.client("dynamodb"))
        self.topics = self.template.create_topics(self.client("sns"))
        self.queues = self.template.create_queues(self.client("sqs"))
        sqs_source.configure_queues(self.template, self.client("sqs"), self.queues)
        self.platform_apps = self.template.create_platform_applications(self.client("sns"))
        self.settings = Settings.from_env(self.global_env)
        bind_tables(self.settings)
        self.rules: list[Rule] = rules_from_template(self.template)
        self.sqs_sources = sqs_source.mappings(self.template)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    @property
    def global_env(self) -> dict[str, str]:
        variables = self.template.doc.get("Globals", {}).get("Function", {}).get("Environment", {})
        return {k: str(self.template.resolve(v)) for k, v in variables.get("Variables", {}).items()}

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=self.template.region)  # type: ignore[call-overload]

    def redeploy(self, **parameters: Any) -> None:
        """`sam deploy` with other parameter values: the same tables and data, a new function
        configuration (cold containers, new settings and rules)."""
        self.parameter_overrides = {**self.parameter_overrides, **parameters}
        self.template = Template(parameter_overrides=self.parameter_overrides)
        self._functions.clear()
        self.settings = Settings.from_env(self.global_env)
        bind_tables(self.settings)
        self.rules = rules_from_template(self.template)
        self.sqs_sources = sqs_source.mappings(self.template)

    # ---------------------------------------------------------------- functions
    def function(self, name: str) -> LocalFunction:
        spec = self.template.function(name)
        if spec.logical_id not in self._functions:
            self._functions[spec.logical_id] = LocalFunction(self.template, spec)
        return self._functions[spec.logical_id]

    def invoke(self, name: str, event: Any) -> Any:
        fn = self.function(name)
        with self.counter.counting(fn.name):
            result = fn.invoke(event)
        self.flush_mqtt()
        self.run_event_sources()
        return result

    def _observe_sqs(self, service: str, operation: str, params: dict[str, Any], call: Callable[[], Any]) -> Any:
        """Note the queues with an event source that something sent to (those are drained next)."""
        if service == "sqs" and operation in ("SendMessage", "SendMessageBatch"):
            self._sent_to.add(str(params.get("QueueUrl")))
        return call()

    def run_event_sources(self) -> None:
        """Lambda's SQS event sources, at once (virtual time): each queue sent to is polled until
        it is empty, its messages handed to its function as Lambda would, a failed one again at
        once until the queue's redrive moves it to the dead-letter queue. The invocations are
        direct, each message's receive number its attempt (a replay fault spares the last one)."""
        if self._draining:
            return
        self._draining = True
        sqs = self.client("sqs")
        try:
            for _ in range(1000):  # a bound, never reached: a failing message is redriven after a few receives
                todo = [m for m in self.sqs_sources if self.queues.get(m.queue) in self._sent_to]
                if not todo:
                    return
                self._sent_to.clear()
                for m in todo:
                    url = self.queues[m.queue]
                    arn = self.template.attribute(m.queue, "Arn")
                    receives = self._max_receives(m.queue)

                    def deliver(event: dict[str, Any], m: sqs_source.SqsMapping = m, receives: int = receives) -> Any:
                        count = int(event["Records"][0]["attributes"].get("ApproximateReceiveCount", 1))
                        outer, self.attempt = self.attempt, (count - 1, receives - 1)
                        try:
                            return self.invoke(m.function, event)
                        finally:
                            self.attempt = outer

                    while sqs_source.poll_once(sqs, url, arn, self.template.region, m, deliver, retry_now=True):
                        pass
        finally:
            self._draining = False

    def _max_receives(self, queue: str) -> int:
        redrive = self.template.resources[queue].get("Properties", {}).get("RedrivePolicy")
        return int(redrive["maxReceiveCount"]) if redrive else 1

    def invoke_async(self, name: str, event: Any) -> tuple[Any, str | None]:
        """Lambda's asynchronous invocation: retried per the function's invoke config (the retries
        at once, after the `before_retry` hooks), then the OnFailure queue. (result, error)."""
        logical = self.template.function(name).logical_id
        retries, queue = lambda_async.async_config(self.template, logical)

        def attempt(n: int) -> Any:
            outer, self.attempt = self.attempt, (n, retries)  # fault injection spares the last attempt
            try:
                return self.invoke(name, event)
            finally:
                self.attempt = outer

        def before_retry(n: int) -> None:
            for hook in self.before_retry:
                hook(name, event)

        result, error = lambda_async.with_retries(attempt, retries, before_retry)
        if error is None:
            return result, None
        if queue is not None:
            lambda_async.send_failure(self.client("sqs"), self.queues[queue], self.template, logical, event, error,
                                      retries + 1)
        return None, f"{type(error).__name__}: {error}"

    def rule_error_action(self, rule: Rule, topic: str, client_id: str, raw: bytes, error: str) -> bool:
        """Run the rule's ErrorAction; False when the rule has none (the message is lost, as on AWS)."""
        if rule.error_queue is None:
            return False
        lambda_async.send_rule_error(self.client("sqs"), self.queues[rule.error_queue], rule.name, topic, client_id,
                                     raw, self.template.physical_name(rule.function), error)
        return True

    # ---------------------------------------------------------------- device shadow
    def create_things(self, names: list[str]) -> None:
        iot = self.client("iot")
        for name in names:
            iot.create_thing(thingName=name)

    def _shadow_doc(self, thing: str, shadow_name: str | None) -> dict[str, Any] | None:
        from moto.iotdata.models import iotdata_backends

        backend = iotdata_backends[self.template.account_id][self.template.region]
        shadow = backend.iot_backend.describe_thing(thing).thing_shadows.get(shadow_name)
        if shadow is None or shadow.deleted:
            return None
        # a copy: moto updates the shadow's state in place, so `previous` would become `current`
        doc: dict[str, Any] = copy.deepcopy(shadow.to_dict(include_delta=False))
        return doc

    def shadow(self, thing: str) -> dict[str, Any] | None:
        """The classic shadow's state document, as GetThingShadow returns it (without delta)."""
        return self._shadow_doc(thing, None)

    def shadows(self) -> dict[str, dict[str, Any]]:
        """Every thing's classic shadow, in one pass (moto's describe_thing scans all things)."""
        from moto.iotdata.models import iotdata_backends

        backend = iotdata_backends[self.template.account_id][self.template.region]
        out = {}
        for thing in backend.iot_backend.things.values():
            shadow = thing.thing_shadows.get(None)
            if shadow is not None and not shadow.deleted:
                out[thing.thing_name] = shadow.to_dict(include_delta=False)
        return out

    def _observe_shadow(self, service: str, operation: str, params: dict[str, Any], call: Callable[[], Any]) -> Any:
        """After each accepted UpdateThingShadow, queue what AWS IoT publishes (delta, documents)."""
        if service != "iot-data" or operation != "UpdateThingShadow":
            return call()
        thing, name = params["thingName"], params.get("shadowName")
        # a copy: moto updates the previous version's state dicts in place (a shallow copy)
        previous = copy.deepcopy(self._shadow_doc(thing, name))
        result = call()
        current = self._shadow_doc(thing, name)
        if name is None and current is not None:
            update = ShadowUpdate(thing, previous, current, self.now_ms // 1000)
            self.pending_mqtt.extend(update.messages())
        return result

    def device_shadow_update(self, thing: str, payload: dict[str, Any]) -> None:
        """A box publishing on $aws/things/<thing>/shadow/update (AWS applies it to the shadow)."""
        self.client("iot-data").update_thing_shadow(thingName=thing, payload=json.dumps(payload).encode())
        self.flush_mqtt()

    def flush_mqtt(self) -> None:
        """Deliver what IoT Core published, through the rules, until nothing is left."""
        while self.pending_mqtt:
            topic, payload = self.pending_mqtt.pop(0)
            self.mqtt_log.append((self.now_ms, topic, payload))
            self.publish_mqtt(topic, payload, client_id="", now_ms=self.now_ms)

    def publish_mqtt(self, topic: str, payload: Any, client_id: str, now_ms: int) -> list[Delivery]:
        """What IoT Core does with a message: every matching rule invokes its function."""
        raw = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        ctx = MessageContext(topic=topic, payload=parse_payload(raw), client_id=client_id, now_ms=now_ms)
        deliveries = []
        for rule in self.rules:
            try:
                event = rule.apply(ctx)
            except ValueError as exc:
                if self.async_invokes:
                    self.rule_error_action(rule, topic, client_id, raw.encode() if isinstance(raw, str) else raw,
                                           f"malformed: {exc}")
                deliveries.append(Delivery(rule.name, rule.function, {}, error=f"malformed: {exc}"))
                continue
            if event is None:
                continue
            if self.async_invokes:
                result, error = self.invoke_async(rule.function, event)
                deliveries.append(Delivery(rule.name, rule.function, event, result=result, error=error))
                continue
            deliveries.append(Delivery(rule.name, rule.function, event, result=self.invoke(rule.function, event)))
        return deliveries

    # ---------------------------------------------------------------- phones
    def create_push_endpoints(self, client_ids: list[str]) -> dict[str, str]:
        """One FCM platform endpoint per client (CustomUserData = client id), made outside the API:
        for bindings of the older form (`target` = the endpoint ARN)."""
        sns = self.client("sns")
        app = self.platform_apps["fcm"]
        return {
            cid: sns.create_platform_endpoint(PlatformApplicationArn=app, Token=phone_token(cid),
                                              CustomUserData=cid)["EndpointArn"]
            for cid in client_ids
        }

    def register_phones(self, clients: dict[str, str | None], now_ms: int = 0) -> dict[str, str]:
        """One FCM device per client, registered as POST /me/devices does (devices.register, token
        `fcm-token-<client>`); client -> endpoint ARN. `clients`: client id -> the phone's locale."""
        from boxwatch.devices import register

        sns = self.client("sns")
        return {cid: register(cid, "fcm", phone_token(cid), locale, now_ms, self.settings, sns).endpoint
                for cid, locale in clients.items()}

    def endpoint_owner(self, arn: str) -> str | None:
        """The client an endpoint belongs to now (its CustomUserData; a moved token changes it)."""
        from moto.sns.models import sns_backends

        backend = sns_backends[self.template.account_id][self.template.region]
        ep = backend.platform_endpoints.get(arn)
        if ep is None:
            return None
        owner = ep.attributes.get("CustomUserData", ep.custom_user_data)
        return str(owner) if owner else None

    def pushed_messages(self) -> dict[str, list[str]]:
        """endpoint ARN -> messages moto 'delivered' to it, oldest first."""
        from moto.sns.models import sns_backends

        backend = sns_backends[self.template.account_id][self.template.region]
        return {arn: list(ep.messages.values()) for arn, ep in backend.platform_endpoints.items()}


    def sent_sms(self) -> list[tuple[str, str]]:
        """(phone number, text) of every SMS moto 'sent', oldest first."""
        from moto.sns.models import sns_backends

        backend = sns_backends[self.template.account_id][self.template.region]
        return list(backend.sms_messages.values())


def decode_push(message: str) -> dict[str, Any]:
    """The machine-readable part of a boxwatch push (MessageStructure=json, FCM body)."""
    doc = json.loads(message)
    gcm = json.loads(doc["GCM"])
    data: dict[str, Any] = json.loads(gcm["data"]["boxwatch"])
    return data

