"""`python -m boxwatch_infra.localcloud.moto_proc HOST PORT [PUSH_URL]`: moto_server, plus a push
gateway.

moto keeps what is published to an SNS mobile endpoint (FCM/APNs) or a phone number (SMS) and
delivers nothing. Here, after moto has accepted such a Publish, the message is also POSTed (from a
background thread, so Publish is not slowed down) to PUSH_URL, the local phones' gateway, as the
push services would deliver it to the phone. HTTP(S) topic subscriptions need nothing: moto POSTs
to them itself. moto_server runs with the speed-ups of `aws.moto_patches` (same answers).
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
import urllib.request
from typing import Any

from boxwatch_infra.aws.moto_patches import fast_dynamodb_responses, scalable_dynamodb, speed_up_moto_server


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
