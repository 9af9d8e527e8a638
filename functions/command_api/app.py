"""CommandApi: the phone's HTTP API (JWT from Cognito; the client id is the token's `sub`).

POST /boxes/{box_id}/power-off (Idempotency-Key header), GET /boxes/{box_id}/commands/{id},
GET /me/boxes, GET /boxes/{box_id}/alarms[?state=active|all], POST /boxes/{box_id}/alarms/{alarm_id}/ack,
GET /me/alarms?state=active. Only a client bound to a box may command, acknowledge or read it.
"""

import os
import re
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from boxwatch import alarm_life, views
from boxwatch.contract import BOX_ID_PATTERN
from boxwatch.errors import Forbidden, InvalidInput, Rejected, Unauthorized
from boxwatch.power_off import request_power_off
from boxwatch.runtime import Runtime

RT = Runtime(os.environ)  # synchronous: a refusal is an HTTP answer, not a dead letter
logger, metrics = RT.logger, RT.metrics
app = APIGatewayHttpResolver()
STATUS = {"invalid_input": 400, "unauthorized": 401, "not_found": 404, "unknown_box": 404,
          "conflict": 409}
KEY = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")
BOX_ID = re.compile(BOX_ID_PATTERN)


def client_id() -> str:
    # the JWT authorizer has verified the token; a missing sub means a route left unprotected
    claims = app.current_event.request_context.authorizer.jwt_claim or {}
    if not claims.get("sub"):
        raise Unauthorized("no authenticated client")
    return str(claims["sub"])


def box_param(box_id: str) -> str:
    if not BOX_ID.match(box_id):
        raise InvalidInput("box_id: 1-128 characters of [A-Za-z0-9_.:-]", box=box_id[:200])
    return box_id


@app.exception_handler(Rejected)
def refused(exc: Rejected) -> Response:
    # every refusal is logged and counted with its real reason; the answer says only what the
    # caller may know (an unbound client hears "no such box", as for an unknown box)
    reason = getattr(exc, "reason", exc.code)
    logger.warning(f"request refused: {exc.message}", extra={"error": exc.code, "reason": reason,
                                                             "route": app.current_event.route_key, **exc.details})
    metrics.add_metric(name="Forbidden" if isinstance(exc, Forbidden) else "RequestsRefused",
                       unit=MetricUnit.Count, value=1)
    return Response(STATUS.get(exc.code, 400), "application/json", {"error": exc.code, "message": exc.message})


@app.post("/boxes/<box_id>/power-off")
def power_off(box_id: str) -> Response:
    key = app.current_event.headers.get("idempotency-key", "")
    if not KEY.match(key):
        raise InvalidInput("Idempotency-Key header: 8-128 characters of [A-Za-z0-9_.:-]")
    now_ms = app.current_event.request_context.time_epoch  # event time: the request as API Gateway got it
    out = request_power_off(client_id(), box_param(box_id), key, now_ms, RT.settings, RT.iotdata)
    metrics.add_metric(name="PowerOffRequested" if out.created else "PowerOffRepeated", unit=MetricUnit.Count, value=1)
    return Response(201 if out.created else 200, "application/json", views.command_view(out.command, client_id()))


@app.get("/boxes/<box_id>/commands/<command_id>")
def get_command(box_id: str, command_id: str) -> dict[str, Any]:
    viewer = client_id()
    return views.command_view(views.get_command(viewer, box_param(box_id), command_id), viewer)


@app.get("/me/boxes")
def me_boxes() -> dict[str, Any]:
    return {"boxes": views.my_boxes(client_id())}


def state_param(default: str | None) -> str | None:
    state = app.current_event.get_query_string_value("state", default)
    if state is not None and state not in ("active", "all"):
        raise InvalidInput("state must be active or all", state=state[:20])
    return state


@app.get("/boxes/<box_id>/alarms")
def box_alarms(box_id: str) -> dict[str, Any]:
    raw = app.current_event.get_query_string_value("limit", "20") or "20"
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise InvalidInput("limit must be 1..100", limit=raw[:20])
    # without `state`: the latest alarm logs, as before; with it: the alarms and their life
    return views.box_alarms(client_id(), box_param(box_id), int(raw), state_param(None))


@app.post("/boxes/<box_id>/alarms/<alarm_id>/ack")
def ack_alarm(box_id: str, alarm_id: str) -> Response:
    try:
        body = app.current_event.json_body or {}
    except ValueError:
        raise InvalidInput("body must be JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object")
    now_ms = app.current_event.request_context.time_epoch  # event time: the request as API Gateway got it
    out = alarm_life.acknowledge(box_param(box_id), alarm_id, body.get("disposition"), body.get("comment"),
                                 client_id(), "client", now_ms, RT.settings, RT.sns)
    metrics.add_metric(name="AlarmsAcknowledged" if out.changed else "AlarmAckRepeated", unit=MetricUnit.Count,
                       value=1)
    return Response(200, "application/json", {"alarm": alarm_life.alarm_view(out.alarm), "changed": out.changed})


@app.get("/me/alarms")
def me_alarms() -> dict[str, Any]:
    return {"alarms": alarm_life.my_alarms(client_id(), state_param("active") or "active")}


@RT.lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
