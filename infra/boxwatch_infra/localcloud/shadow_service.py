"""Local IoT Core, the device shadow service: classic shadows on MQTT and on the iot-data HTTP API.

State lives in moto_server's iot-data, which keeps AWS's version, merge, delta and conflict rules
(a `version` that does not match is rejected with 409). This service puts AWS IoT's messaging
around it:

- MQTT: a device publishing on `$aws/things/<thing>/shadow/update|get|delete` gets
  `.../accepted` or `.../rejected` (with its `clientToken`), and after every accepted update
  `.../update/delta` (when desired and reported differ) and `.../update/documents` (previous and
  current state) are published, built by `boxwatch_infra.aws.shadow.ShadowUpdate`.
- HTTP: the iot-data REST API (`GetThingShadow`, `UpdateThingShadow`, `DeleteThingShadow`,
  `Publish`), so boto3 works with `AWS_ENDPOINT_URL_IOT_DATA` pointing here. Requests are passed
  to moto as they are and its answer returned as it is; an accepted update publishes the same
  MQTT messages as one from a device.

Operations on one thing are serialised (one lock per thing) so "previous" is really the state the
update replaced.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer
from typing import Any

from boxwatch_infra.aws.ports import HOST
from boxwatch_infra.aws.shadow import ShadowUpdate
from boxwatch_infra.aws.shadow import topic as shadow_topic
from boxwatch_infra.localcloud.broker import IotBroker
from boxwatch_infra.localcloud.servers import QuietHandler, serve, shutdown

log = logging.getLogger("boxwatch.localcloud.shadow")

DEVICE_OP = re.compile(r"^\$aws/things/([^/]+)/shadow/(update|get|delete)$")
SIGV4 = ("AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/iotdata/aws4_request, "
         "SignedHeaders=host, Signature=local")


class ShadowService:
    def __init__(self, moto_url: str, broker: IotBroker, region: str = "us-east-1", port: int = 0,
                 stripes: int = 8):
        self.moto_url = moto_url.rstrip("/")
        self.broker = broker
        self.region = region
        self.port = port
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._known_things: set[str] = set()
        # one single-thread executor per stripe: a thing's MQTT operations run in order
        self._stripes = [ThreadPoolExecutor(1, thread_name_prefix=f"shadow-{i}") for i in range(stripes)]
        self._server: ThreadingHTTPServer | None = None
        self.updates_accepted = 0
        self.updates_rejected = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # ---------------------------------------------------------------- moto
    def _lock(self, thing: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(thing, threading.Lock())

    def _moto(self, method: str, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        hdrs = {"Authorization": SIGV4.format(region=self.region), "Content-Type": "application/json",
                **(headers or {})}
        req = urllib.request.Request(self.moto_url + path, data=body, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def _ensure_thing(self, thing: str) -> None:
        """AWS keeps a classic shadow for any thing name; moto wants the thing registered."""
        if thing in self._known_things:
            return
        status, _, _ = self._moto("GET", f"/things/{urllib.parse.quote(thing)}", headers={
            "Authorization": SIGV4.format(region=self.region).replace("/iotdata/", "/iot/")})
        if status == 404:
            self._moto("POST", f"/things/{urllib.parse.quote(thing)}", b"{}", headers={
                "Authorization": SIGV4.format(region=self.region).replace("/iotdata/", "/iot/")})
        self._known_things.add(thing)

    def _get(self, thing: str, query: str = "") -> dict[str, Any] | None:
        status, _, body = self._moto("GET", f"/things/{urllib.parse.quote(thing)}/shadow{query}")
        return json.loads(body) if status == 200 else None

    def update(self, thing: str, payload: bytes, query: str = "", headers: dict[str, str] | None = None
               ) -> tuple[int, dict[str, str], bytes]:
        """UpdateThingShadow, then what AWS IoT publishes about it."""
        with self._lock(thing):
            self._ensure_thing(thing)
            previous = self._get(thing, query)
            status, hdrs, body = self._moto("POST", f"/things/{urllib.parse.quote(thing)}/shadow{query}", payload,
                                            headers)
            if status != 200:
                self.updates_rejected += 1
                return status, hdrs, body
            self.updates_accepted += 1
            current = self._get(thing, query) or json.loads(body)
            if "name=" not in query:  # classic shadow topics; named shadows are not used by boxwatch
                accepted = json.loads(body)
                token = _client_token(payload)
                if token is not None:
                    accepted["clientToken"] = token
                self.broker.publish(shadow_topic(thing, "update/accepted"), accepted)
                for topic, message in ShadowUpdate(thing, previous, current, int(time.time())).messages():
                    if token is not None and topic.endswith("/delta"):
                        message = {**message, "clientToken": token}
                    self.broker.publish(topic, message)
            return status, hdrs, body

    def get(self, thing: str, query: str = "") -> tuple[int, dict[str, str], bytes]:
        with self._lock(thing):
            self._ensure_thing(thing)
            return self._moto("GET", f"/things/{urllib.parse.quote(thing)}/shadow{query}")

    def delete(self, thing: str, query: str = "") -> tuple[int, dict[str, str], bytes]:
        with self._lock(thing):
            self._ensure_thing(thing)
            return self._moto("DELETE", f"/things/{urllib.parse.quote(thing)}/shadow{query}")

    # ---------------------------------------------------------------- MQTT
    def on_message(self, topic: str, payload: bytes, client_id: str, at_ms: int) -> None:
        m = DEVICE_OP.match(topic)
        if not m:
            return
        thing, op = m.group(1), m.group(2)
        self._stripes[hash(thing) % len(self._stripes)].submit(self._device_op, thing, op, payload)

    def _device_op(self, thing: str, op: str, payload: bytes) -> None:
        try:
            token = _client_token(payload)
            if op == "update":
                status, _, body = self.update(thing, payload)
                if status != 200:
                    self._reject(thing, "update", status, body, token)
            elif op == "get":
                status, _, body = self.get(thing)
                if status == 200:
                    doc = json.loads(body)
                    if token is not None:
                        doc["clientToken"] = token
                    self.broker.publish(shadow_topic(thing, "get/accepted"), doc)
                else:
                    self._reject(thing, "get", status, body, token)
            else:
                status, _, body = self.delete(thing)
                if status == 200:
                    self.broker.publish(shadow_topic(thing, "delete/accepted"), json.loads(body or b"{}"))
                else:
                    self._reject(thing, "delete", status, body, token)
        except Exception:
            log.exception("shadow %s of %s failed", op, thing)

    def _reject(self, thing: str, op: str, status: int, body: bytes, token: str | None) -> None:
        try:
            message = json.loads(body).get("message") or json.loads(body).get("Message") or ""
        except ValueError:
            message = body.decode(errors="replace")
        if status == 404 and not message:
            message = f"No shadow exists with name: '{thing}'"
        doc: dict[str, Any] = {"code": status, "message": message, "timestamp": int(time.time())}
        if token is not None:
            doc["clientToken"] = token
        self.broker.publish(shadow_topic(thing, f"{op}/rejected"), doc)

    # ---------------------------------------------------------------- HTTP (iot-data)
    def start(self) -> ShadowService:
        service = self

        class Handler(QuietHandler):
            METHODS = frozenset({"GET", "POST", "DELETE"})

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.reply(status, body, {k: v for k, v in headers.items()
                                          if k.lower() in ("content-type", "x-amzn-errortype", "x-amzn-requestid")})

            def route(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                body = self.body()
                query = f"?{url.query}" if url.query else ""
                m = re.match(r"^/things/([^/]+)/shadow$", url.path)
                fwd = {k: v for k, v in self.headers.items() if k.lower() == "authorization"}
                if m:
                    thing = urllib.parse.unquote(m.group(1))
                    if method == "POST":
                        return self._send(*service.update(thing, body, query, fwd))
                    if method == "GET":
                        return self._send(*service.get(thing, query))
                    if method == "DELETE":
                        return self._send(*service.delete(thing, query))
                t = re.match(r"^/topics/(.+)$", url.path)
                if t and method == "POST":  # iot-data Publish: the cloud publishing to devices
                    service.broker.publish(urllib.parse.unquote(t.group(1)), body)
                    return self._send(200, {"Content-Type": "application/json"}, b"{}")
                return self._send(*service._moto(method, self.path, body or None, fwd))

        self._server = serve(Handler, self.port, "iot-data-http")
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        shutdown(self._server)
        for ex in self._stripes:
            ex.shutdown(wait=False, cancel_futures=True)


def _client_token(payload: bytes) -> str | None:
    try:
        doc = json.loads(payload or b"{}")
    except ValueError:
        return None
    token = doc.get("clientToken") if isinstance(doc, dict) else None
    return token if isinstance(token, str) else None
