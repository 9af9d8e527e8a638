"""What every handler does around its one domain call, written once: settings from the function's
environment, tables bound, powertools Logger / Metrics / Tracer around the invocation, AWS clients,
the idempotency records, and the refusal of bad input (log + metric + dead letter, never a crash).

    RT = Runtime(os.environ, refusals=("alarm", "AlarmsRejected"), idempotency=alarm_idempotency)

    @RT.handler(AlarmEvent)
    def lambda_handler(alarm: AlarmEvent, context: LambdaContext) -> dict[str, Any]:
        return ingest_alarm(alarm, RT.settings, RT.sns, RT.idempotency).as_dict()

Only what a call needs is paid for, when it needs it (a cold start is the import of the handler):
- the AWS clients are made on their first use (a connect event never pushes; only a refusal
  needs SQS), each once per container;
- the Tracer (aws_xray_sdk, ~0.1 s to import) is made on the first invocation, and not at all
  where powertools would disable it (POWERTOOLS_TRACE_DISABLED, outside Lambda, SAM local);
- the idempotency layers (a boto3 session each) on the first invocation.

The environment is the handler's to read (`os.environ`); the domain sees only `Settings`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

from boxwatch.deadletter import Refusals
from boxwatch.errors import Rejected
from boxwatch.models import bind_tables
from boxwatch.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_iot_data import IoTDataPlaneClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

    from boxwatch.events import Inbound  # (pydantic: the HTTP handlers never load it)
    from boxwatch.idempotency import Idempotency  # (powertools idempotency loads boto3: not for every handler)

M = TypeVar("M", bound="Inbound")
Handler = Callable[[Any, "LambdaContext"], Any]


def tracing_enabled(env: Mapping[str, str]) -> bool:
    """Powertools' own rule (Tracer._is_tracer_disabled): traced in Lambda unless disabled."""
    if resolve_truthy_env_var_choice(env=env.get("POWERTOOLS_TRACE_DISABLED", "false")):
        return False
    return bool(env.get("LAMBDA_TASK_ROOT")) and not env.get("AWS_SAM_LOCAL") and not env.get("AWS_CHALICE_CLI_MODE")


class LazyClient:
    """A boto3 client made on first use, from the default session (so that hooks registered on it,
    e.g. the local cloud's push tracing, reach the client). One client made at a time: boto3's
    default session is not thread-safe, and the local cloud invokes handlers from several threads."""

    _making = threading.Lock()

    def __init__(self, service: str) -> None:
        self._service = service
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            with LazyClient._making:
                if self._client is None:
                    import boto3  # on first use: most handlers need it only on some calls

                    self._client = boto3.client(self._service)  # type: ignore[call-overload]
        return getattr(self._client, name)


class Runtime:
    """One per handler module (a warm container keeps it)."""

    def __init__(self, env: Mapping[str, str], *, refusals: tuple[str, str] | None = None,
                 idempotency: Callable[[Settings], Idempotency] | None = None) -> None:
        """`refusals` = (what is refused, metric name), for handlers invoked asynchronously: bad
        input is refused, never retried (a retry cannot make it valid), dead-lettered for operators."""
        self.settings = Settings.from_env(env)
        bind_tables(self.settings)
        self.logger = Logger()
        self.metrics = Metrics()
        self._tracing = tracing_enabled(env)
        self._clients: dict[str, LazyClient] = {}
        self._make_idempotency = idempotency
        self._idempotency: Idempotency | None = None
        self._lock = threading.Lock()
        self.refuse = None if refusals is None else Refusals(
            self.logger, self.metrics, self._client("sqs"), self.settings.rejected_input_queue,
            what=refusals[0], metric=refusals[1])

    # ------------------------------------------------------------------ AWS clients
    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = LazyClient(service)
        return self._clients[service]

    @property
    def sns(self) -> SNSClient:
        return cast("SNSClient", self._client("sns"))

    @property
    def sqs(self) -> SQSClient:
        return cast("SQSClient", self._client("sqs"))

    @property
    def iotdata(self) -> IoTDataPlaneClient:
        return cast("IoTDataPlaneClient", self._client("iot-data"))

    @property
    def idempotency(self) -> Idempotency:
        if self._idempotency is None:
            if self._make_idempotency is None:
                raise RuntimeError("this handler keeps no idempotency records")
            with self._lock:  # one per container, whichever thread asks first (the local cloud's)
                if self._idempotency is None:
                    self._idempotency = self._make_idempotency(self.settings)
        return self._idempotency

    # ------------------------------------------------------------------ decorators
    def lambda_handler(self, fn: Handler) -> Handler:
        """The powertools decorators around `fn(event, context)`: logger (context), tracer (where
        tracing is on), metrics (flushed per invocation). Built on the first invocation."""
        built: list[Handler] = []

        def invocation(event: Any, context: LambdaContext) -> Any:
            if self._make_idempotency is not None:
                # a record left IN_PROGRESS by a killed invocation expires with this one's timeout
                self.idempotency.register_lambda_context(context)
            return fn(event, context)

        @functools.wraps(fn)
        def handler(event: Any, context: LambdaContext) -> Any:
            if not built:
                inner = self.metrics.log_metrics(invocation)
                if self._tracing:
                    from aws_lambda_powertools import Tracer  # imports aws_xray_sdk: only where it traces

                    inner = Tracer().capture_lambda_handler(inner)
                built.append(self.logger.inject_lambda_context(inner))
            return built[0](event, context)

        return handler

    def handler(self, model: type[M], *, domain_refusals: bool = True
                ) -> Callable[[Callable[[M, LambdaContext], dict[str, Any]]], Handler]:
        """An asynchronously invoked handler: the event parsed as `model`, then `fn(parsed, context)`.

        A refusal (`Rejected`) of the event is answered by `Refusals`; so is one raised by `fn`
        (a spoofed or unknown box found by the domain) unless `domain_refusals` is False: then only
        the event itself is refused and a domain refusal fails the invocation (Lambda retries)."""
        if self.refuse is None:
            raise RuntimeError("a parsing handler needs refusals=(what, metric)")
        refuse = self.refuse

        def decorate(fn: Callable[[M, LambdaContext], dict[str, Any]]) -> Handler:
            @functools.wraps(fn)
            def body(event: Any, context: LambdaContext) -> dict[str, Any]:
                try:
                    parsed = model.parse(event)
                except Rejected as exc:
                    return refuse(exc, event, context.function_name)
                if not domain_refusals:
                    return fn(parsed, context)
                try:
                    return fn(parsed, context)
                except Rejected as exc:
                    return refuse(exc, event, context.function_name)

            return self.lambda_handler(body)

        return decorate

