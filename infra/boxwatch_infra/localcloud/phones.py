"""The phones: one inbox per client, filled with every push the functions publish through SNS.

moto_server's push gateway (`moto_proc`) POSTs each message published to a mobile endpoint
(FCM/APNs) or a phone number (SMS) to `/push`; SNS HTTP subscriptions of a topic deliver to
`/sns/<client_id>`. The client is the endpoint's CustomUserData (how boxwatch registers phones),
the subscription's path, or a registered phone number. Each push is decoded as the phone would
show it (title, body, and the app's `boxwatch` data) and timed: when SNS got it, when the phone
got it, and what caused it (the MQTT message, schedule or API request that invoked the function).

The same server is the local cloud's console: `GET /inbox[?since=N]` (every push, in arrival order),
`GET /info` (endpoints), `GET /lifecycle`, `GET /stats`, `POST /schedules/<name>` (run a schedule now).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from boxwatch_infra.aws.ports import HOST
from boxwatch_infra.localcloud.servers import QuietHandler, serve, shutdown

log = logging.getLogger("boxwatch.localcloud.phones")


@dataclass
class Push:
    n: int
    client: str
    channel: str  # push | sms | http
    kind: str
    box: str
    title: str
    body: str
    data: dict[str, Any]
    sns_at_ms: int
    received_at_ms: int
    trigger: str = ""
    trigger_at_ms: int | None = None
    function: str = ""
    raw: str = field(default="", repr=False)

    @property
    def latency_ms(self) -> int | None:
        return self.received_at_ms - self.trigger_at_ms if self.trigger_at_ms else None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("raw")
        d["latency_ms"] = self.latency_ms
        return d


def decode(message: str, target: str) -> tuple[str, str, dict[str, Any]]:
    """(title, body, boxwatch data) of a push as the phone shows it."""
    try:
        doc = json.loads(message)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):  # SMS "title: body", or a topic's `default` text "title\nbody"
        title, _, body = message.partition("\n" if "\n" in message else ": ")
        return title, body, {}
    platform = "APNS" if "/APNS" in target else "GCM"
    body_doc = doc.get(platform) or doc.get("GCM") or doc.get("default")
    try:
        inner = json.loads(body_doc) if isinstance(body_doc, str) else body_doc
    except ValueError:
        inner = None
    if isinstance(inner, dict) and "notification" in inner:  # FCM
        data = json.loads(inner.get("data", {}).get("boxwatch", "{}"))
        return inner["notification"].get("title", ""), inner["notification"].get("body", ""), data
    if isinstance(inner, dict) and "aps" in inner:  # APNs
        alert = inner["aps"].get("alert", {})
        return alert.get("title", ""), alert.get("body", ""), inner.get("boxwatch", {})
    text = str(doc.get("default", message))
    title, _, body = text.partition("\n")
    return title, body, {}


class Phones:
    def __init__(self, port: int = 0, trace_lookup: Callable[[str, str], Any] | None = None):
        self.port = port
        self.trace_lookup = trace_lookup
        self.pushes: list[Push] = []
        self.phone_numbers: dict[str, str] = {}  # +8613800000000 -> client id
        self.on_push: list[Callable[[Push], None]] = []
        self.info: dict[str, Any] = {}
        self.extra: dict[str, Callable[[], Any]] = {}  # GET /<name> -> callable (console views)
        self.actions: dict[str, Callable[[str], Any]] = {}  # POST /<name>/<arg>
        # the operator console's static files, served at /console/ with its config.json
        self.console_root: Path | None = None
        self.console_config: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def inbox(self, client: str) -> list[Push]:
        with self._lock:
            return [p for p in self.pushes if p.client == client]

    def receive(self, channel: str, target: str, client: str, message: str, sns_at_ms: int) -> Push:
        received = int(time.time() * 1000)
        title, body, data = decode(message, target)
        trace = self.trace_lookup(target, message) if self.trace_lookup else None
        trigger, trigger_at, function = "", None, ""
        if trace is not None:
            trig, _published_ms, function = trace
            if trig is not None:
                trigger, trigger_at = f"{trig.source} {trig.detail}".strip(), trig.at_ms
        with self._lock:
            push = Push(len(self.pushes) + 1, client, channel, str(data.get("kind", "")), str(data.get("box", "")),
                        title, body, data, sns_at_ms, received, trigger, trigger_at, function, message)
            self.pushes.append(push)
        for cb in self.on_push:
            try:
                cb(push)
            except Exception:
                log.exception("push callback failed")
        return push

    def _client_of(self, item: dict[str, Any]) -> str:
        if item.get("channel") == "sms":
            return self.phone_numbers.get(item["target"], item["target"])
        return str(item.get("custom_user_data") or item.get("token") or item.get("target"))

    def start(self) -> Phones:
        phones = self

        class Handler(QuietHandler):
            def _json(self, status: int, doc: Any) -> None:
                self.reply(status, json.dumps(doc, default=str).encode(), {"Content-Type": "application/json"})

            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                raw = self.body()
                try:
                    if url.path == "/push":
                        item = json.loads(raw)
                        phones.receive(item["channel"], item["target"], phones._client_of(item), item["message"],
                                       int(item.get("sns_at_ms") or time.time() * 1000))
                        return self._json(200, {"ok": True})
                    if url.path.startswith("/sns/"):
                        env = json.loads(raw)
                        client = urllib.parse.unquote(url.path[len("/sns/"):])
                        if env.get("Type") == "Notification":
                            phones.receive("http", env.get("TopicArn", ""), client, env.get("Message", ""),
                                           int(time.time() * 1000))
                        return self._json(200, {"ok": True})
                    name, _, arg = url.path.strip("/").partition("/")
                    if name in phones.actions:
                        return self._json(200, phones.actions[name](urllib.parse.unquote(arg)))
                except (ValueError, KeyError) as exc:
                    return self._json(400, {"error": str(exc)})
                return self._json(404, {"error": "not found"})

            def _static(self, rel: str) -> None:
                if rel == "config.json":
                    return self._json(200, phones.console_config)
                root = phones.console_root
                path = (root / rel).resolve() if root else None
                if root is None or path is None or not path.is_file() or root.resolve() not in path.parents:
                    return self._json(404, {"error": "not found"})
                kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                if kind.startswith("text/") or kind.endswith("javascript"):
                    kind += "; charset=utf-8"
                self.reply(200, path.read_bytes(), {"Content-Type": kind, "Cache-Control": "no-cache"})

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(url.query)
                if url.path == "/inbox":
                    since = int(q.get("since", ["0"])[0])
                    with phones._lock:
                        items = [p.as_dict() for p in phones.pushes[since:]]
                    return self._json(200, {"pushes": items, "next": since + len(items)})
                if url.path.startswith("/inbox/"):
                    client = urllib.parse.unquote(url.path[len("/inbox/"):])
                    return self._json(200, {"client": client, "pushes": [p.as_dict() for p in phones.inbox(client)]})
                if url.path == "/info":
                    return self._json(200, phones.info)
                if url.path == "/console" or url.path.startswith("/console/"):
                    return self._static(url.path[len("/console"):].lstrip("/") or "index.html")
                name = url.path.strip("/")
                if name in phones.extra:
                    return self._json(200, phones.extra[name]())
                return self._json(404, {"error": "not found"})

        self._server = serve(Handler, self.port, "phones")
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        shutdown(self._server)


def format_push(p: Push | dict[str, Any], t0_ms: int | None = None) -> str:
    """One line per push: when, who, what, and how long after what caused it."""
    d = p.as_dict() if isinstance(p, Push) else p
    at = f"+{(d['received_at_ms'] - t0_ms) / 1000:6.1f}s" if t0_ms else time.strftime(
        "%H:%M:%S", time.localtime(d["received_at_ms"] / 1000))
    lat = f"{d['latency_ms']:>6} ms after {d['trigger'].split(' ')[0]}" if d.get("latency_ms") is not None else ""
    return f"{at}  📱 {d['client']:<12} {d['kind'] or d['channel']:<18} {d['title'][:70]:<70}  {lat}"
