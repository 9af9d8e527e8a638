"""The authorization matrix: every HTTP route of the template x every actor, with the status each
must get, through the local HTTP API emulation (its JWT authorizer is built from the translated
template, as API Gateway's) in front of the real CommandApi handler (moto).

Routes are read from the template, so a new route fails `test_every_route_has_a_row_for_every_actor`
until each actor's expected status is written down. An actor is one `Actor` entry (its token and
its expected column): operators (who do not exist yet) are added by adding one.

API Gateway's authorizer answers for the token actors (no, malformed, expired, another app's);
the emulation stands in for it here, so two more tests keep the real one honest: the translated
template declares the authorizer on every route, and the handler itself refuses a claims-less event
on every route (a route left without an authorizer still lets nobody in).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from boxwatch.power_off import command_id_for
from boxwatch.registry import BindingSpec, BoxSpec, bind, register_box
from boxwatch_infra.aws.events import http_api_event
from boxwatch_infra.aws.template import Template, translate
from boxwatch_infra.localcloud.functions import Trigger
from boxwatch_infra.localcloud.httpapi import HttpApi, mint_token
from boxwatch_infra.localcloud.stack import Deployment
from boxwatch_infra.sandbox import Sandbox

BOX = "BX-1"  # bound to alice; bob is bound to BX-2 only
KEY = "matrix-key-0001"
# a new path parameter must be named here; carol is bound to nothing (an operator's unbind of her is a no-op)
PARAMS = {"box_id": BOX, "command_id": command_id_for("alice", KEY), "client_id": "carol",
          "alarm_id": "1767225600000.1",
          "device_id": "d-0123456789abcdef0123"}
OPS = ["GET /ops/boxes", "GET /ops/boxes/{box_id}", "GET /ops/alarms", "GET /ops/incidents", "GET /ops/commands",
       "GET /ops/changes", "POST /ops/boxes", "POST /ops/boxes/import", "PUT /ops/boxes/{box_id}/bindings/{client_id}",
       "DELETE /ops/boxes/{box_id}/bindings/{client_id}", "POST /ops/boxes/{box_id}/power-off",
       "GET /ops/reports/monthly", "POST /ops/boxes/{box_id}/alarms/{alarm_id}/ack"]
PHONE_ROUTES = {"POST /boxes/{box_id}/power-off": 404, "GET /boxes/{box_id}/commands/{command_id}": 404,
                "GET /me/boxes": 200, "GET /boxes/{box_id}/alarms": 404,
                "POST /boxes/{box_id}/alarms/{alarm_id}/ack": 404, "GET /me/alarms": 200,
                "POST /me/devices": 400, "GET /me/devices": 200, "DELETE /me/devices/{device_id}": 404}
NOT_OPERATOR = {r: 403 for r in OPS}
UNAUTHORIZED = 401


@dataclass(frozen=True)
class Actor:
    """Who calls: the Authorization header they send (given the app client id) and what each route answers."""

    authorization: Callable[[str], str | None]
    expect: dict[str, int]  # route key -> HTTP status
    secrets_kept: bool = False  # the answer must not mention the box, its name or its other clients


ACTORS: dict[str, Actor] = {
    "bound client": Actor(lambda aud: f"Bearer {mint_token('alice', aud)}", {
        "POST /boxes/{box_id}/power-off": 201,
        "GET /boxes/{box_id}/commands/{command_id}": 200,
        "GET /me/boxes": 200,
        "GET /boxes/{box_id}/alarms": 200,
        "POST /boxes/{box_id}/alarms/{alarm_id}/ack": 400,  # bound, but the matrix sends no disposition
        "GET /me/alarms": 200,
        "POST /me/devices": 400,  # the matrix posts {}: no platform, no token
        "GET /me/devices": 200,
        "DELETE /me/devices/{device_id}": 404,  # not a device of hers
        **NOT_OPERATOR,  # a client is no operator
    }),
    # a real client of another box: hears what an unknown box answers, and nothing of this one
    "other client": Actor(lambda aud: f"Bearer {mint_token('bob', aud)}", {
        "POST /boxes/{box_id}/power-off": 404,
        "GET /boxes/{box_id}/commands/{command_id}": 404,
        "GET /me/boxes": 200,
        "GET /boxes/{box_id}/alarms": 404,
        "POST /boxes/{box_id}/alarms/{alarm_id}/ack": 404,
        "GET /me/alarms": 200,
        "POST /me/devices": 400,
        "GET /me/devices": 200,
        "DELETE /me/devices/{device_id}": 404,
        **NOT_OPERATOR,
    }, secrets_kept=True),
    "no token": Actor(lambda aud: None, {}, secrets_kept=True),
    "malformed token": Actor(lambda aud: "Bearer not.a-jwt", {}, secrets_kept=True),
    "expired token": Actor(lambda aud: f"Bearer {mint_token('alice', aud, ttl_s=-60)}", {}, secrets_kept=True),
    "another app's token": Actor(lambda aud: f"Bearer {mint_token('alice', 'some-other-app')}", {},
                                 secrets_kept=True),
    # the operator of the box's organisation (BX-1 is of the default org): the empty bodies the matrix
    # sends are refused as such (400), the reads answer; not bound to any box, so no phone route
    "operator": Actor(lambda aud: "Bearer local:olga@default+operators", {
        **PHONE_ROUTES,
        "GET /ops/boxes": 400,  # no bbox
        "GET /ops/boxes/{box_id}": 200, "GET /ops/alarms": 200, "GET /ops/incidents": 200,
        "GET /ops/commands": 200, "GET /ops/changes": 200,
        "POST /ops/boxes": 400, "POST /ops/boxes/import": 400, "PUT /ops/boxes/{box_id}/bindings/{client_id}": 400,
        "DELETE /ops/boxes/{box_id}/bindings/{client_id}": 200,
        "POST /ops/boxes/{box_id}/power-off": 400,  # no typed confirmation
        "GET /ops/reports/monthly": 400,  # no month
        "POST /ops/boxes/{box_id}/alarms/{alarm_id}/ack": 400,  # no disposition
    }),
    # an operator of another organisation: the box is unknown to them, their lists are empty
    "other org's operator": Actor(lambda aud: "Bearer local:oscar@other+operators", {
        **PHONE_ROUTES,
        "GET /ops/boxes": 400, "GET /ops/boxes/{box_id}": 404, "GET /ops/alarms": 200, "GET /ops/incidents": 200,
        "GET /ops/commands": 200, "GET /ops/changes": 200, "POST /ops/boxes": 400, "POST /ops/boxes/import": 400,
        "PUT /ops/boxes/{box_id}/bindings/{client_id}": 404, "DELETE /ops/boxes/{box_id}/bindings/{client_id}": 404,
        "POST /ops/boxes/{box_id}/power-off": 404, "GET /ops/reports/monthly": 400,
        "POST /ops/boxes/{box_id}/alarms/{alarm_id}/ack": 404,
    }, secrets_kept=True),
    "an org without the group": Actor(lambda aud: "Bearer local:ursula@default+viewers", {
        **PHONE_ROUTES, **NOT_OPERATOR}, secrets_kept=True),
}
ROUTE_ORDER = ["POST /boxes/{box_id}/power-off"]  # runs first: the GET of its command needs it


def route_functions() -> dict[str, str]:
    """Every HttpApi event of every function: "METHOD /path" -> the function's logical id."""
    return {f"{props['Method'].upper()} {props['Path']}": logical
            for logical, fn in Template().functions.items() for props in fn.events_of_type("HttpApi").values()}


def template_routes() -> list[str]:
    return sorted(route_functions(), key=lambda r: (r not in ROUTE_ORDER, r))


def expected(actor: Actor, route: str) -> int:
    return actor.expect.get(route, UNAUTHORIZED) if actor.expect else UNAUTHORIZED


ROUTES = template_routes()


def test_every_route_has_a_row_for_every_actor() -> None:
    assert ROUTES, "the template declares no HTTP route"
    for name, actor in ACTORS.items():
        if actor.expect:  # an actor the authorizer lets through names every route it may reach
            assert set(actor.expect) == set(ROUTES), f"{name}: write down what each route answers"
    for route in ROUTES:
        for param in re.findall(r"\{([A-Za-z0-9_]+)\}", route):
            assert param in PARAMS, f"{route}: name a value for {{{param}}} in PARAMS"


class SandboxHost:
    """What HttpApi needs of the local cloud's FunctionHost, running the handlers in a Sandbox."""

    def __init__(self, sb: Sandbox, deployment: Deployment) -> None:
        self.sb, self.deployment = sb, deployment

    def logical_of(self, arn: str) -> str:
        name = arn.split(":function:")[-1].split(":")[0]
        return next(k for k, v in self.deployment.physical.items() if v == name)

    def invoke(self, logical: str, event: Any, trigger: Trigger | None = None) -> Any:
        return self.sb.invoke(logical, event)


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[HttpApi, str, Sandbox]]:
    with Sandbox() as sb:
        # Given BX-1 bound to alice, BX-2 to bob
        register_box(BoxSpec(id="BX-1", name="No.3 building", lat=39.98, lng=116.31), sb.settings)
        register_box(BoxSpec(id="BX-2", name="No.5 building", lat=39.988, lng=116.31), sb.settings)
        sb.create_things(["BX-1", "BX-2"])
        endpoints = sb.create_push_endpoints(["alice", "bob"])
        bind(BindingSpec(client_id="alice", box_id="BX-1", target=endpoints["alice"], locale="en"))
        bind(BindingSpec(client_id="bob", box_id="BX-2", target=endpoints["bob"], locale="en"))
        # and the phones' API as the translated template declares it, served locally
        translated = translate(sb.template)
        physical = {k: f"{sb.template.stack_name}-{k}" for k in translated["Resources"]}
        for logical in sb.template.functions:
            physical[logical] = sb.function(logical).name
        deployment = Deployment(endpoint_url="", template=sb.template, translated=translated, physical=physical,
                                local_only={}, outputs={})
        [logical] = [k for k, v in translated["Resources"].items() if v["Type"] == "AWS::ApiGatewayV2::Api"]
        server = HttpApi(logical, deployment, SandboxHost(sb, deployment)).start()  # type: ignore[arg-type]
        try:
            yield server, physical["ClientAppClient"], sb
        finally:
            server.stop()


def request(api: HttpApi, route: str, authorization: str | None) -> tuple[int, str]:
    method, template_path = route.split(" ", 1)
    path = re.sub(r"\{([A-Za-z0-9_]+)\}", lambda m: PARAMS[m.group(1)], template_path)
    headers = {"Idempotency-Key": KEY, "Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    req = urllib.request.Request(api.url + path, method=method, headers=headers,
                                 data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("actor_name", list(ACTORS))
def test_authorization_matrix(api: tuple[HttpApi, str, Sandbox], actor_name: str, route: str) -> None:
    server, audience, _ = api
    actor = ACTORS[actor_name]
    # When the actor calls the route / Then the status written in the matrix
    status, body = request(server, route, actor.authorization(audience))
    assert status == expected(actor, route), (actor_name, route, body)
    if actor.secrets_kept:
        # and nothing about the box, its name or its clients in the answer
        for secret in (BOX, "No.3 building", "alice", PARAMS["command_id"]):
            assert secret not in body, (actor_name, route, body)


def test_the_template_declares_the_jwt_authorizer_on_every_route() -> None:
    doc = translate()
    [api] = [v for v in doc["Resources"].values() if v["Type"] == "AWS::ApiGatewayV2::Api"]
    body = api["Properties"]["Body"]
    schemes = body["components"]["securitySchemes"]
    declared = []
    for path, methods in body["paths"].items():
        for method, op in methods.items():
            names = [name for sec in op.get("security", []) for name in sec]
            assert names == ["ClientJwt"], f"{method.upper()} {path} is not behind the JWT authorizer"
            declared.append(f"{method.upper()} {path}")
            auth = schemes["ClientJwt"]["x-amazon-apigateway-authorizer"]
            assert auth["type"] == "jwt" and auth["identitySource"] == "$request.header.Authorization"
            assert auth["jwtConfiguration"]["audience"] == [{"Ref": "ClientAppClient"}]
    assert sorted(declared) == sorted(ROUTES)


@pytest.mark.parametrize("route", ROUTES)
def test_the_handler_refuses_an_event_without_claims(api: tuple[HttpApi, str, Sandbox], route: str) -> None:
    _, _, sb = api
    method, template_path = route.split(" ", 1)
    names = re.findall(r"\{([A-Za-z0-9_]+)\}", template_path)
    path = re.sub(r"\{([A-Za-z0-9_]+)\}", lambda m: PARAMS[m.group(1)], template_path)
    event = http_api_event(method, path, template_path, "alice", 1767225630000,
                           {n: PARAMS[n] for n in names} or None, headers={"idempotency-key": "claimless-0001"})
    # Given a route whose authorizer passed no claims (as if it had none)
    event["requestContext"].pop("authorizer")
    version = (sb.shadow(BOX) or {}).get("version")
    response = sb.invoke(route_functions()[route], event)
    # Then 401, and nothing was written
    assert response["statusCode"] == UNAUTHORIZED, json.loads(response["body"])
    assert (sb.shadow(BOX) or {}).get("version") == version
