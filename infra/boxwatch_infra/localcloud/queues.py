"""Local Lambda SQS event sources: each mapping of the template polls its queue (on moto_server)
and invokes its function in process, as Lambda's pollers do (boxwatch_infra.aws.sqs_source).

moto's own event source mappings would invoke moto's Lambda runtime (Docker), so the deployment
leaves AWS::Lambda::EventSourceMapping out of the stack and these pollers run them. A failed
message comes back after the queue's visibility timeout, then moves to its dead-letter queue.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from boxwatch_infra.aws import sqs_source
from boxwatch_infra.localcloud.functions import FunctionHost, Trigger
from boxwatch_infra.localcloud.stack import Deployment

log = logging.getLogger("boxwatch.localcloud.queues")


class SqsPollers:
    def __init__(self, deployment: Deployment, host: FunctionHost):
        self.deployment = deployment
        self.host = host
        self.mappings = sqs_source.mappings(deployment.template)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._lock = threading.Lock()
        self.received: dict[str, int] = {m.function: 0 for m in self.mappings}

    def start(self) -> SqsPollers:
        resolver = self.deployment.resolver()
        for m in self.mappings:
            url = self.deployment.physical[m.queue]
            arn = resolver.attributes(m.queue)["Arn"]
            t = threading.Thread(target=self._loop, args=(m, url, arn), name=f"sqs-{m.queue}", daemon=True)
            t.start()
            self._threads.append(t)
            log.info("event source %s -> %s (batch %d)", m.queue, m.function, m.batch_size)
        return self

    def _loop(self, m: sqs_source.SqsMapping, url: str, arn: str) -> None:
        sqs = self.deployment.client("sqs")
        region = self.deployment.template.region

        def invoke(event: dict[str, Any]) -> Any:
            with self._lock:
                self._busy += 1
            try:
                return self.host.invoke(m.function, event, Trigger(f"sqs:{m.queue}", int(time.time() * 1000)))
            finally:
                with self._lock:
                    self._busy -= 1

        while not self._stop.is_set():
            try:
                self.received[m.function] += sqs_source.poll_once(sqs, url, arn, region, m, invoke, wait_s=1)
            except Exception as exc:  # the endpoint going away at shutdown, a transient error: poll again
                if not self._stop.is_set():
                    log.warning("polling %s: %s", m.queue, exc)
                    time.sleep(0.5)

    def idle(self) -> bool:
        """No message waiting or in flight on any mapped queue, no invocation running."""
        sqs = self.deployment.client("sqs")
        with self._lock:
            if self._busy:
                return False
        for m in self.mappings:
            attrs = sqs.get_queue_attributes(QueueUrl=self.deployment.physical[m.queue], AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
            if int(attrs["ApproximateNumberOfMessages"]) or int(attrs["ApproximateNumberOfMessagesNotVisible"]):
                return False
        return True

    def drain(self, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(3)

    def describe(self) -> list[dict[str, Any]]:
        return [{"queue": m.queue, "function": m.function, "batch_size": m.batch_size,
                 "received": self.received[m.function]} for m in self.mappings]
