"""`python -m boxwatch_infra.localcloud.moto_proc HOST PORT [PUSH_URL]`: moto_server, plus a push
gateway.

moto keeps what is published to an SNS mobile endpoint (FCM/APNs) or a phone number (SMS) and
delivers nothing. Here, after moto has accepted such a Publish, the message is also POSTed (from a
background thread, so Publish is not slowed down) to PUSH_URL, the local phones' gateway, as the
push services would deliver it to the phone. HTTP(S) topic subscriptions need nothing: moto POSTs
to them itself.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import queue
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

_KEEP = contextlib.ExitStack()


def install_push_gateway(push_url: str) -> None:
    from moto.sns.models import PlatformEndpoint, SNSBackend

    outbox: queue.Queue[dict[str, Any]] = queue.Queue()

    def deliver() -> None:
        while True:
            item = outbox.get()
            try:
                req = urllib.request.Request(push_url, data=json.dumps(item).encode(), method="POST",
                                             headers={"Content-Type": "application/json"})
                urllib.request.urlopen(req, timeout=5).read()
            except OSError as exc:  # the phone is off: a push service drops it too
                sys.stderr.write(f"push gateway: {exc}\n")

    threading.Thread(target=deliver, name="push-gateway", daemon=True).start()

    original_endpoint_publish = PlatformEndpoint.publish

    def endpoint_publish(self: Any, message: str) -> str:
        message_id: str = original_endpoint_publish(self, message)
        outbox.put({"channel": "push", "target": self.arn, "token": self.token,
                    "custom_user_data": self.custom_user_data, "message": message, "message_id": message_id,
                    "sns_at_ms": int(time.time() * 1000)})
        return message_id

    original_publish = SNSBackend.publish

    def backend_publish(self: Any, message: str, arn: str | None, phone_number: str | None = None,
                        *args: Any, **kwargs: Any) -> str:
        message_id: str = original_publish(self, message, arn, phone_number, *args, **kwargs)
        if phone_number:
            outbox.put({"channel": "sms", "target": phone_number, "message": message, "message_id": message_id,
                        "sns_at_ms": int(time.time() * 1000)})
        return message_id

    PlatformEndpoint.publish = endpoint_publish  # type: ignore[method-assign]
    SNSBackend.publish = backend_publish  # type: ignore[method-assign]


def speed_up_moto_server() -> None:
    """Things that cost moto_server most of its time under concurrent load (measured by stack
    sampling): werkzeug logs every request at INFO (threads queue on the logging lock), and the
    dispatcher lists moto's package directory on disk for every request, under a global lock."""
    import logging

    import moto.backends
    import moto.core.responses

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    modules = tuple(moto.backends.list_of_moto_modules())
    moto.backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]
    # and every request lists its handler class's methods with inspect.getmembers (5 % of the CPU)
    moto.core.responses.method_names_from_class = functools.cache(  # type: ignore[attr-defined]
        moto.core.responses.method_names_from_class)  # type: ignore[attr-defined]


def scalable_dynamodb() -> None:
    """moto's DynamoDB costs grow with everything stored: a Query sorts every item of the table,
    a TransactWriteItems deep-copies every table it touches (for its rollback). An alarm then
    costs moto 20+ ms more per thousand stored, and the local cloud falls behind any steady load.

    - Query: the partition-local lookups of `bench.fastmoto` (same results);
    - TransactWriteItems: instead of copying whole tables, the items the transaction names are
      copied before it runs and put back if moto cancels it: the same all-or-nothing outcome,
      under one lock so concurrent transactions cannot interleave with a rollback.
    """
    import copy

    from moto.dynamodb.models import DynamoDBBackend

    from boxwatch_infra.bench.fastmoto import faster_moto

    _KEEP.enter_context(faster_moto())  # for the life of the process (a dropped stack would undo it)
    original = DynamoDBBackend.transact_write_items
    lock = threading.RLock()

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with lock:
            saved: list[tuple[str, dict[str, Any], Any]] = []
            try:
                for entry in transact_items:
                    _, op = next(iter(entry.items()))
                    table = self.get_table(op["TableName"])
                    if "Item" in op:
                        key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                        if table.range_key_attr is not None:
                            key[table.range_key_attr] = op["Item"][table.range_key_attr]
                    else:
                        key = op["Key"]
                    current = self.get_item(op["TableName"], key)
                    saved.append((op["TableName"], key, copy.deepcopy(current.to_json()["Attributes"])
                                  if current is not None else None))
            except Exception:  # malformed: moto's own validation answers it
                saved = []
            try:
                original(self, transact_items)
            except Exception:
                for table_name, key, attrs in reversed(saved):
                    if attrs is None:
                        with contextlib.suppress(Exception):
                            self.delete_item(table_name, key)
                    else:
                        self.put_item(table_name, attrs)
                raise

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


# DynamoDB's data plane: results are already wire-format dicts (moto's dynamo_to_dict)
DATA_PLANE = frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem",
                        "BatchWriteItem", "TransactGetItems", "TransactWriteItems"})


def _wire_json(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()  # B and BS values, as the JSON protocol sends them
    raise TypeError(f"not JSON: {type(value).__name__}")


def fast_dynamodb_responses() -> Callable[[Any, Any], Any]:
    """moto 5.2 serialises every response by walking botocore's output shapes, attribute by
    attribute: half of moto_server's CPU under the local cloud's load (py-spy --gil), 15 ms of
    each alarm's 30. A DynamoDB data-plane result is already the wire format, so it is dumped as
    JSON directly (same body, tests/integration/test_moto_fast_path.py); anything else, errors
    included, goes through moto's serializer. Returns moto's original for that comparison."""
    from moto.core.utils import get_service_model
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.serialized
    model = get_service_model("dynamodb")
    # moto's dicts carry a few keys outside the output shape (legacy ConsumedCapacityUnits): drop them
    members = {a: frozenset(model.operation_model(a).output_shape.members) for a in DATA_PLANE}

    def serialized(self: Any, action_result: Any) -> Any:
        result = action_result.result
        action = self._get_action()
        if type(result) is dict and action in DATA_PLANE:
            keep = members[action]
            try:
                body = json.dumps({k: v for k, v in result.items() if k in keep and v is not None},
                                  default=_wire_json)
            except (TypeError, ValueError):
                return original(self, action_result)
            return 200, {"Content-Type": "application/x-amz-json-1.0", **self.response_headers}, body
        return original(self, action_result)

    DynamoHandler.serialized = serialized  # type: ignore[method-assign]
    return original


def main(argv: list[str]) -> None:
    host, port = argv[0], argv[1]
    if len(argv) > 2 and argv[2]:
        install_push_gateway(argv[2])
    speed_up_moto_server()
    scalable_dynamodb()
    fast_dynamodb_responses()
    from moto.server import main as moto_main

    moto_main(["-H", host, "-p", port])


if __name__ == "__main__":
    main(sys.argv[1:])
