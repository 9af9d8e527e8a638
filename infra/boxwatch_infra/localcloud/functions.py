"""The stack's Lambda functions, run in this process like warm Lambda containers.

Each `AWS::Lambda::Function` of the deployed stack is loaded from the code CloudFormation deployed
(unpacked from the artifacts bucket) with the handler, timeout, memory and environment moto's
Lambda holds for it: table names etc. are the stack's physical names, never guessed. The AWS SDK
inside the handlers talks to moto_server through `AWS_ENDPOINT_URL`, and to the local shadow
service through `AWS_ENDPOINT_URL_IOT_DATA`.

Invocations run on a thread pool. Asynchronous invokes (IoT rules, schedules) get Lambda's
retries and OnFailure destination from the template's `AWS::Lambda::EventInvokeConfig`.

Every SNS Publish a handler makes is traced back to what triggered the invocation (a rule's MQTT
message, a schedule, an API request), so the phones can show how long a push took.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from boxwatch_infra.aws import lambda_async
from boxwatch_infra.aws.environ import patched_environ
from boxwatch_infra.aws.lambda_runtime import LocalFunction
from boxwatch_infra.aws.template import FunctionSpec
from boxwatch_infra.localcloud.stack import DeployedTemplate, Deployment

log = logging.getLogger("boxwatch.localcloud.functions")

PUSH_HOOK_ID = "boxwatch-localcloud-push-trace"


@dataclass(frozen=True)
class Trigger:
    source: str  # "rule:AlarmIngestRule", "schedule:...", "api:POST /..."
    at_ms: int  # when IoT Core / EventBridge / API Gateway received what caused the invocation
    detail: str = ""  # topic, route ...


@dataclass
class InvokeStats:
    invocations: int = 0
    errors: int = 0
    retries: int = 0
    failed_to_destination: int = 0
    duration_ms: list[float] = field(default_factory=list)


class PushTrace:
    """SNS publishes made by handlers, keyed by (target, message): what caused each, and when."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], tuple[Trigger | None, int, str]] = {}

    def record(self, target: str, message: str, trigger: Trigger | None, function: str) -> None:
        with self._lock:
            self._by_key[(target, message)] = (trigger, int(time.time() * 1000), function)
            if len(self._by_key) > 200_000:
                self._by_key.pop(next(iter(self._by_key)))

    def lookup(self, target: str, message: str) -> tuple[Trigger | None, int, str] | None:
        with self._lock:
            return self._by_key.get((target, message))


class FunctionHost:
    def __init__(self, deployment: Deployment, env: dict[str, str], workers: int = 8):
        self.deployment = deployment
        self.resolver: DeployedTemplate = deployment.resolver()
        self.base_env = env
        self.functions: dict[str, LocalFunction] = {}
        self.async_config: dict[str, tuple[int, str | None]] = {}
        self.stats: dict[str, InvokeStats] = {}
        self.trace = PushTrace()
        self._local = threading.local()
        self._env_lock = threading.RLock()
        self._own_env: dict[str, dict[str, str]] = {}  # function -> variables that differ between functions
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="lambda")
        self._pending: set[Future[Any]] = set()
        self._pending_lock = threading.Lock()

    # ---------------------------------------------------------------- loading
    def load(self) -> FunctionHost:
        lam = self.deployment.client("lambda")
        specs: dict[str, FunctionSpec] = {}
        for logical in self.deployment.resources_of_type("AWS::Lambda::Function"):
            cfg = lam.get_function_configuration(FunctionName=self.deployment.physical[logical])
            env = {k: str(v) for k, v in cfg.get("Environment", {}).get("Variables", {}).items()}
            specs[logical] = FunctionSpec(logical_id=logical, code_dir=self.deployment.code_dirs[logical],
                                          handler=cfg["Handler"], environment=env, events={},
                                          timeout_s=int(cfg.get("Timeout", 3)),
                                          memory_mb=int(cfg.get("MemorySize", 128)))
        # variables every function agrees on are set process-wide; the others per invocation, serialised
        union: dict[str, set[str]] = {}
        for spec in specs.values():
            for k, v in spec.environment.items():
                union.setdefault(k, set()).add(v)
        shared = {k: next(iter(v)) for k, v in union.items() if len(v) == 1}
        os.environ.update(self.base_env)
        os.environ.update(shared)
        self._install_push_tracing()  # before the handlers create their clients: they inherit the hook
        for logical, spec in specs.items():
            own = {k: v for k, v in spec.environment.items() if k not in shared}
            self._own_env[logical] = own
            fn = LocalFunction(self.resolver, spec, extra_env=self.base_env)
            _ = fn.handler  # import now: a warm container, and import errors surface at start
            self.functions[logical] = fn
            self.stats[logical] = InvokeStats()
            self.async_config[logical] = lambda_async.async_config(self.resolver, logical)
        self._install_push_tracing()  # and on clients made from other sessions at import time
        return self

    def _install_push_tracing(self) -> None:
        import boto3

        host = self

        def before_publish(params: dict[str, Any], **_: Any) -> None:
            target = params.get("TargetArn") or params.get("TopicArn") or params.get("PhoneNumber") or ""
            host.trace.record(target, params.get("Message", ""), getattr(host._local, "trigger", None),
                              getattr(host._local, "function", ""))

        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("provide-client-params.sns.Publish", before_publish,
                                              unique_id=PUSH_HOOK_ID)
        # clients the handlers created at import time were built before the hook: give it to them too
        for fn in self.functions.values():
            mod = fn._module
            for value in vars(mod).values() if mod is not None else ():
                meta = getattr(value, "meta", None)
                if meta is not None and getattr(meta, "service_model", None) is not None \
                        and meta.service_model.service_name == "sns":
                    meta.events.register("provide-client-params.sns.Publish", before_publish,
                                         unique_id=PUSH_HOOK_ID)

    # ---------------------------------------------------------------- invoking
    def logical_of(self, name_or_arn: str) -> str:
        if name_or_arn in self.functions:
            return name_or_arn
        name = name_or_arn.split(":function:")[-1].split(":")[0]
        for logical in self.functions:
            if self.deployment.physical.get(logical) == name:
                return logical
        raise KeyError(f"no function {name_or_arn!r} in the stack")

    @contextlib.contextmanager
    def _env_for(self, logical: str) -> Iterator[None]:
        own = self._own_env.get(logical)
        if not own:
            yield
            return
        with self._env_lock, patched_environ(own):
            yield

    def invoke(self, logical: str, event: Any, trigger: Trigger | None = None) -> Any:
        """RequestResponse: run the handler now, on this thread; its exception propagates."""
        fn = self.functions[logical]
        stats = self.stats[logical]
        self._local.trigger, self._local.function = trigger, logical
        t0 = time.perf_counter()
        try:
            with self._env_for(logical):
                return fn.handler(event, fn.context())
        except Exception:
            stats.errors += 1
            raise
        finally:
            stats.invocations += 1
            stats.duration_ms.append((time.perf_counter() - t0) * 1000)
            self._local.trigger = None

    def invoke_async(self, logical: str, event: Any, trigger: Trigger | None = None) -> Future[Any]:
        """Event invoke: queued, retried per the function's invoke config, then its OnFailure queue."""
        fut = self._pool.submit(self._run_async, logical, event, trigger)
        with self._pending_lock:
            self._pending.add(fut)
        fut.add_done_callback(self._done)
        return fut

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._pool.submit(fn, *args)

    def _done(self, fut: Future[Any]) -> None:
        with self._pending_lock:
            self._pending.discard(fut)

    def _run_async(self, logical: str, event: Any, trigger: Trigger | None) -> Any:
        retries, queue = self.async_config.get(logical, (lambda_async.ASYNC_DEFAULT_RETRIES, None))

        def before_retry(attempt: int) -> None:
            self.stats[logical].retries += 1
            time.sleep(0.5 * attempt)  # AWS waits 1 and 2 minutes; a local run cannot

        def on_error(attempt: int, exc: BaseException) -> None:
            log.warning("%s failed (attempt %d/%d): %s\n%s", logical, attempt + 1, retries + 1, exc,
                        traceback.format_exc())  # called while the exception is handled

        result, error = lambda_async.with_retries(lambda _: self.invoke(logical, event, trigger), retries,
                                                  before_retry, on_error)
        if error is not None and queue is not None:
            self.stats[logical].failed_to_destination += 1
            lambda_async.send_failure(self.deployment.client("sqs"), self.deployment.physical[queue], self.resolver,
                                      logical, event, error, retries + 1)
        return result

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until no invocation is queued or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._pending_lock:
                if not self._pending:
                    return True
            time.sleep(0.02)
        return False

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def summary(self) -> dict[str, Any]:
        out = {}
        for logical, s in self.stats.items():
            d = sorted(s.duration_ms)
            out[logical] = {"invocations": s.invocations, "errors": s.errors, "retries": s.retries,
                            "to_failure_destination": s.failed_to_destination,
                            "p50_ms": round(d[len(d) // 2], 1) if d else None}
        return out
