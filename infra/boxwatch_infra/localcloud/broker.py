"""Local IoT Core, the MQTT side: an amqtt broker on 127.0.0.1 that behaves like AWS IoT where
boxwatch depends on it.

- **Lifecycle events.** Every connection and disconnection is published on
  `$aws/events/presence/connected|disconnected/<clientId>` in AWS's format: `versionNumber` grows
  per client id with each connection (a session's disconnect carries its connect's number),
  `disconnectReason` says how the connection ended: `CLIENT_INITIATED_DISCONNECT` (the client sent
  DISCONNECT), `MQTT_KEEP_ALIVE_TIMEOUT` (nothing received for 1.5 x the keep-alive, as AWS),
  `CONNECTION_LOST` (the socket closed without DISCONNECT), `DUPLICATE_CLIENTID` (a new connection
  took the client id over).
- **Keep-alive.** amqtt 0.12 does not drop a client whose keep-alive lapses (its read timeout is a
  no-op), so a watchdog does, at 1.5 x the keep-alive the client asked for.
- **Reserved topics.** Clients may publish on their shadow topics `$aws/things/<thing>/shadow/...`
  (amqtt refuses every `$` topic); any other `$` topic closes the connection, as amqtt does.
- **Every message** a client publishes, and every message the local cloud publishes itself
  (lifecycle events, shadow responses), is handed to `on_message(topic, payload, client_id, ms)`
  for the rules engine and the shadow service. The hook runs on the broker's event loop and must
  not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.events import BrokerEvents
from amqtt.mqtt.disconnect import DisconnectPacket

from boxwatch_infra.aws.events import CLIENT_INITIATED, lifecycle_event, lifecycle_topic
from boxwatch_infra.aws.ports import free_port

log = logging.getLogger("boxwatch.localcloud.broker")

MessageHook = Callable[[str, bytes, str, int], None]  # topic, payload, publishing client id ("" = IoT Core), ms

KEEPALIVE_FACTOR = 1.5  # AWS IoT drops a client after 1.5 x its keep-alive without a packet
CLIENT_SHADOW_TOPIC = re.compile(r"^\$aws/things/[^/#+]+/shadow/(update|get|delete)$")
KEEP_ALIVE_TIMEOUT = "MQTT_KEEP_ALIVE_TIMEOUT"
CONNECTION_LOST = "CONNECTION_LOST"
DUPLICATE_CLIENTID = "DUPLICATE_CLIENTID"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Connection:
    client_id: str
    version: int
    session_id: str
    ip: str
    keep_alive: int
    last_rx: float = field(default_factory=time.monotonic)
    reason: str | None = None  # set when we decide how it ends (keep-alive, takeover)


WATCHDOG_TICK_S = 0.25
LOOP_LAG_S = 1.0


class _Subscriptions(dict[str, Any]):
    """amqtt's topic filter -> subscribers map, with an index for its broadcast.

    amqtt 0.12 broadcasts a message by walking every topic filter (formatting a debug line for each
    one that does not match): O(subscriptions) per message, so 2,000 boxes connecting (a shadow
    get and a lifecycle event each, three shadow filters each) held its loop up for tens of
    seconds and keep-alives lapsed. `items()`, the broadcast's only use of it, yields just the
    filters that match the topic being broadcast (set by `_TopicQueue.get`): the exact filter by
    key, the few wildcard filters by walk."""

    def __init__(self, has_retained: Callable[[], bool]) -> None:
        super().__init__()
        self.wild: set[str] = set()
        self.topic: str | None = None
        self.by_client: dict[str, set[str]] = {}  # client id -> its filters (amqtt walks them all on a disconnect)
        self._has_retained = has_retained

    def __repr__(self) -> str:
        # amqtt logs repr(subscriptions) at debug level after every SUBSCRIBE, formatted even when
        # debug is off: every session of the broker, per subscribe
        return f"<{len(self)} topic filters>"

    def __iter__(self) -> Any:
        # amqtt's only walk of the keys left: on every connect it offers the retained messages of
        # EVERY filter in the broker to the new client; with nothing retained there is nothing to offer
        return super().__iter__() if self._has_retained() else iter(())

    def __setitem__(self, key: str, value: Any) -> None:
        if "+" in key or "#" in key:
            self.wild.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.wild.discard(key)
        super().__delitem__(key)

    def clear(self) -> None:
        self.wild.clear()
        super().clear()

    def items(self) -> Any:
        topic, self.topic = self.topic, None
        if topic is None:
            return list(super().items())
        keys = ([topic] if topic in self else []) + sorted(k for k in self.wild if _matches(topic, k))
        return [(k, self[k]) for k in keys]


def _matches(topic: str, topic_filter: str) -> bool:
    if topic.startswith("$") and topic_filter.startswith(("+", "#")):
        return False  # [MQTT-4.7.2-1]
    f, t = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return i == len(f) - 1
        if i >= len(t) or level not in ("+", t[i]):
            return False
    return len(f) == len(t)


class _TopicQueue(asyncio.Queue[dict[str, Any]]):
    """amqtt's broadcast queue: hands the topic it gives out to the subscriptions' index."""

    def __init__(self, subscriptions: _Subscriptions):
        super().__init__()
        self._subs = subscriptions

    async def get(self) -> dict[str, Any]:
        item = await super().get()
        self._subs.topic = item.get("topic")
        return item


def _unread(handler: Any) -> bool:
    """Bytes the client sent that the broker has not read yet: the client is alive."""
    stream = getattr(getattr(handler, "reader", None), "_reader", None)
    return bool(getattr(stream, "_buffer", b""))


class _AwsLikeBroker(Broker):
    """amqtt with AWS IoT's lifecycle events, keep-alive enforcement and shadow topics."""

    def __init__(self, config: dict[str, Any], owner: IotBroker):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            super().__init__(config)
        self._subscriptions = _Subscriptions(lambda: bool(self._retained_messages))  # type: ignore[assignment]
        self._broadcast_queue = _TopicQueue(self._subscriptions)
        self._owner = owner
        self._conns: dict[int, _Connection] = {}  # id(handler) -> connection
        self._handlers: dict[int, Any] = {}
        self._versions: dict[str, int] = {}

    # ---------------------------------------------------------------- subscriptions
    async def add_subscription(self, subscription: tuple[str, int], session: Any) -> int:
        qos: int = await super().add_subscription(subscription, session)
        if qos != 0x80:
            self._subscriptions.by_client.setdefault(session.client_id, set()).add(subscription[0])
        return qos

    async def _del_all_subscriptions(self, session: Any) -> None:
        """amqtt's, over the session's own filters instead of every filter in the broker."""
        subs = self._subscriptions
        for topic in sorted(subs.by_client.pop(session.client_id, set())):
            if topic in subs and self._del_subscription(topic, session) and not subs[topic]:
                del subs[topic]

    # ---------------------------------------------------------------- connections
    async def _handle_client_session(self, reader: Any, writer: Any, client_session: Any, handler: Any,
                                     server: Any, listener_name: str) -> None:
        old = self._sessions.get(client_session.client_id)
        if old is not None:
            conn = self._conns.get(id(old[1]))
            if conn is not None and conn.reason is None:
                conn.reason = DUPLICATE_CLIENTID
        await super()._handle_client_session(reader, writer, client_session, handler, server, listener_name)

    async def _client_message_loop(self, client_session: Any, handler: Any) -> None:
        cid = client_session.client_id
        version = self._versions.get(cid, 0) + 1
        self._versions[cid] = version
        peer = handler.writer.get_peer_info() if handler.writer is not None else None
        conn = _Connection(cid, version, str(uuid.uuid4()), peer[0] if peer else "127.0.0.1",
                           int(client_session.keep_alive or 0))
        self._conns[id(handler)] = conn
        self._handlers[id(handler)] = handler
        reader = handler.reader
        original_read = reader.read

        async def read(n: int = -1) -> bytes:
            data: bytes = await original_read(n)
            conn.last_rx = time.monotonic()
            return data

        reader.read = read  # every byte received counts as activity, as on AWS
        self._owner._lifecycle(conn, "connected")
        try:
            await super()._client_message_loop(client_session, handler)
        finally:
            self._conns.pop(id(handler), None)
            self._handlers.pop(id(handler), None)
            if conn.reason is None:
                conn.reason = CONNECTION_LOST
            if not self._owner._stopping:
                self._owner._lifecycle(conn, "disconnected")

    async def _handle_disconnect(self, client_session: Any, handler: Any, disconnect_waiter: Any) -> None:
        conn = self._conns.get(id(handler))
        if conn is not None and conn.reason is None and isinstance(disconnect_waiter.result(), DisconnectPacket):
            conn.reason = CLIENT_INITIATED
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)

    async def keepalive_watchdog(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(WATCHDOG_TICK_S)
            now = time.monotonic()
            lag, last = now - last - WATCHDOG_TICK_S, now
            if lag > LOOP_LAG_S:
                # this loop was held up (a busy process): bytes that arrived meanwhile are not read
                # yet, and AWS would have read them; judge after the readers have had their turn
                log.warning("broker loop held up %.1f s: keep-alive checks wait for the readers", lag)
                continue
            for key, conn in list(self._conns.items()):
                if conn.keep_alive <= 0 or conn.reason is not None:
                    continue
                if now - conn.last_rx > KEEPALIVE_FACTOR * conn.keep_alive and not _unread(self._handlers.get(key)):
                    conn.reason = KEEP_ALIVE_TIMEOUT
                    handler = self._handlers.get(key)
                    if handler is not None:
                        log.info("%s: keep-alive lapsed (%ss), disconnecting", conn.client_id, conn.keep_alive)
                        await handler.handle_connection_closed()

    # ---------------------------------------------------------------- messages
    async def _handle_message_delivery(self, client_session: Any, handler: Any, wait_deliver: Any) -> bool:
        """amqtt's delivery, except that a client may publish on its shadow topics, and every
        message is also handed to the rules engine and the shadow service."""
        app_message = wait_deliver.result()
        await self.plugins_manager.fire_event(BrokerEvents.MESSAGE_RECEIVED, client_id=client_session.client_id,
                                              message=app_message)
        if app_message is None:
            return True
        topic = app_message.topic
        if not topic or "#" in topic or "+" in topic:
            return False
        if topic.startswith("$") and not CLIENT_SHADOW_TOPIC.match(topic):
            log.warning("%s published on reserved topic %s: connection closed", client_session.client_id, topic)
            return False
        if not await self._topic_filtering(client_session, topic=topic, action=Action.PUBLISH):
            return True
        await self.plugins_manager.fire_event(BrokerEvents.MESSAGE_BROADCAST, client_id=client_session.client_id,
                                              message=app_message)
        data = bytes(app_message.data or b"")
        self._owner._hook(topic, data, client_session.client_id)
        await self._broadcast_message(client_session, topic, data)
        if app_message.publish_packet and app_message.publish_packet.retain_flag:
            await self.retain_message(client_session, topic, data, app_message.qos)
        return True


class IotBroker:
    """The broker in a thread of its own (asyncio loop). `publish()` is IoT Core publishing."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, on_message: list[MessageHook] | None = None):
        self.host = host
        self.port = port
        self.hooks: list[MessageHook] = list(on_message or [])
        self.lifecycle_log: list[dict[str, Any]] = []  # every lifecycle event published, for tests and the demo
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: _AwsLikeBroker | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopping = False
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    # ---------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 15.0) -> IotBroker:
        if not self.port:
            self.port = free_port()
        self._thread = threading.Thread(target=self._run, name="iot-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("MQTT broker did not start")
        if self._error is not None:
            raise RuntimeError(f"MQTT broker failed to start on {self.host}:{self.port}: {self._error}")
        return self

    def _run(self) -> None:
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.CRITICAL)  # amqtt logs every connection
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 0}},
            "sys_interval": 0,
            "auth": {"allow-anonymous": True},
            "topic-check": {"enabled": False},
        }

        async def boot() -> None:
            self._broker = _AwsLikeBroker(config, self)
            await self._broker.start()
            self._watchdog = asyncio.ensure_future(self._broker.keepalive_watchdog())

        try:
            loop.run_until_complete(boot())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    def stop(self) -> None:
        if self._loop is None or self._broker is None:
            return
        self._stopping = True
        broker, loop = self._broker, self._loop

        async def down() -> None:
            if self._watchdog:
                self._watchdog.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(broker.shutdown(), 5)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(down(), loop).result(8)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread:
            self._thread.join(5)
        self._broker = None

    # ---------------------------------------------------------------- publishing
    def publish(self, topic: str, payload: bytes | str | dict[str, Any], qos: int = 1) -> None:
        """IoT Core publishes (thread-safe): subscribers receive it and the rules see it."""
        data = json.dumps(payload).encode() if isinstance(payload, dict) else (
            payload.encode() if isinstance(payload, str) else payload)
        loop = self._loop
        if loop is None:
            raise RuntimeError("broker not started")
        if threading.current_thread() is self._thread:
            self._publish_on_loop(topic, data, qos)
        else:
            loop.call_soon_threadsafe(self._publish_on_loop, topic, data, qos)

    def _publish_on_loop(self, topic: str, data: bytes, qos: int) -> None:
        self._hook(topic, data, "")
        if self._broker is not None:
            task = asyncio.ensure_future(self._broker.internal_message_broadcast(topic, data, qos))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _hook(self, topic: str, data: bytes, client_id: str) -> None:
        at = now_ms()
        for hook in self.hooks:
            try:
                hook(topic, data, client_id, at)
            except Exception:  # a hook's bug must never take the broker down
                log.exception("message hook failed for %s", topic)

    def _lifecycle(self, conn: _Connection, event_type: str) -> None:
        event = lifecycle_event(conn.client_id, event_type, now_ms(), conn.version, conn.session_id, conn.reason,
                                principal="local", ip=conn.ip)
        self.lifecycle_log.append(event)
        self._publish_on_loop(lifecycle_topic(event_type, conn.client_id), json.dumps(event).encode(), 1)

    @property
    def connected_clients(self) -> list[str]:
        # list() copies in one step under the GIL: the loop thread may add or drop a connection meanwhile
        return sorted({c.client_id for c in list(self._broker._conns.values())}) if self._broker else []
