"""Replay event type `register`: a phone registering itself for pushes (POST /me/devices).

`{type: register, client, platform, token, locale?}` is the HTTP API call as that client (JWT
`sub` = client id) at the virtual time: the same token again refreshes the same endpoint, the
token of another client moves it to this one. `{type: unregister, client, token, platform?}`
is DELETE /me/devices/{id} of that token's device.

A declared client with no `register` event in the scenario gets one FCM device at set-up (token
`fcm-token-<client>`, registered the same way, before the first event and not counted): the
scenarios written before phones registered themselves keep their pushes. The report gains
`devices` (each client's devices at the end) when the scenario has `register` events.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from boxwatch.devices import device_id_for, list_devices
from boxwatch.models import DeviceOwnerItem
from boxwatch_infra.aws.events import http_api_event
from boxwatch_infra.replay.run import Plugin
from boxwatch_infra.replay.scenario import ScenarioError


class Devices(Plugin):
    EVENTS: ClassVar[dict[str, str]] = {"register": "register", "unregister": "unregister",
                                        "endpoint_disabled": "endpoint_disabled"}

    def registering(self) -> set[str]:
        """The clients that register themselves in the scenario (no implicit device)."""
        return {str(e.get("client")) for e in self.run.scenario.events if e.get("type") == "register"}

    def _call(self, event: dict[str, Any], method: str, path: str, route: str, client: str,
              params: dict[str, str] | None, body: Any = None) -> dict[str, Any]:
        run = self.run
        api_event = http_api_event(method, path, route, client, run.now_ms, params,
                                   headers={"content-type": "application/json"}, body=body)
        response = run.sb.invoke("CommandApi", api_event)
        status = int(response["statusCode"])
        answer: dict[str, Any] = json.loads(response.get("body") or "{}")
        if status >= 400:
            run.reject(event, str(answer.get("error", status)), str(answer.get("message", "")), http_status=status)
        return answer

    def register(self, event: dict[str, Any]) -> None:
        client, platform, token = event.get("client"), event.get("platform", "fcm"), event.get("token")
        if not isinstance(client, str) or not client or not isinstance(token, str):
            raise ScenarioError("register needs client and token")
        body = {"platform": platform, "token": token, **({"locale": event["locale"]} if "locale" in event else {})}
        self._call(event, "POST", "/me/devices", "/me/devices", client, None, body)

    def unregister(self, event: dict[str, Any]) -> None:
        client, token = event.get("client"), event.get("token")
        if not isinstance(client, str) or not client or not isinstance(token, str):
            raise ScenarioError("unregister needs client and token")
        device = device_id_for(str(event.get("platform", "fcm")), token)
        self._call(event, "DELETE", f"/me/devices/{device}", "/me/devices/{device_id}", client,
                   {"device_id": device})

    def endpoint_disabled(self, event: dict[str, Any]) -> None:
        token, platform = event.get("token"), str(event.get("platform", "fcm"))
        if not isinstance(token, str):
            raise ScenarioError("endpoint_disabled needs token")
        try:
            owner = DeviceOwnerItem.get(DeviceOwnerItem.key(device_id_for(platform, token)))
        except DeviceOwnerItem.DoesNotExist:
            raise ScenarioError(f"no device registered the {platform} token {token!r}") from None
        self.run.sb.client("sns").set_endpoint_attributes(EndpointArn=owner.endpoint, Attributes={"Enabled": "false"})

    def finish(self) -> None:
        if not self.registering():
            return
        clients = sorted({c.id for c in self.run.scenario.clients} | self.registering())
        self.run.extra["devices"] = {
            c: [{"device_id": d.device_id, "platform": d.platform, "enabled": d.enabled,
                 "endpoint": d.endpoint.rsplit("/", 1)[-1]} for d in list_devices(c)]
            for c in clients}
