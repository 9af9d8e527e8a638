"""OpsApi: the operators' HTTP API (`/ops/...`, docs/operator-api.md), same HTTP API and JWT
authorizer as the phones'. An operator is in the Cognito group `operators`; their organisation is
the token's `custom:org` claim. Each route parses, then makes one call into `boxwatch.ops`.
"""

import json
import os
import re
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from boxwatch import ops
from boxwatch.contract import BOX_ID_PATTERN
from boxwatch.errors import InvalidInput, Rejected, Unauthorized
from boxwatch.registry import ORG_PATTERN
from boxwatch.runtime import Runtime

RT = Runtime(os.environ)  # synchronous: a refusal is an HTTP answer, not a dead letter
logger, metrics = RT.logger, RT.metrics
app = APIGatewayHttpResolver()
STATUS = {"invalid_input": 400, "confirmation_required": 400, "unauthorized": 401, "not_operator": 403,
          "not_found": 404, "unknown_box": 404, "conflict": 409}
KEY = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")
BOX_ID = re.compile(BOX_ID_PATTERN)
ORG = re.compile(ORG_PATTERN)
CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")


class NotOperator(Rejected):
    code = "not_operator"


def groups(claims: dict[str, Any]) -> list[str]:
    # API Gateway hands a JWT's list claims to the function as "[a b]"; the local cloud may pass a list
    raw = claims.get("cognito:groups") or []
    if isinstance(raw, str):
        return [g for g in re.split(r"[\s,]+", raw.strip("[]")) if g]
    return [str(g) for g in raw]


def operator() -> ops.Operator:
    claims = app.current_event.request_context.authorizer.jwt_claim or {}
    if not claims.get("sub"):
        raise Unauthorized("no authenticated user")
    org = str(claims.get("custom:org") or "")
    if ops.OPERATORS_GROUP not in groups(claims) or not ORG.match(org):
        raise NotOperator("operators only", sub=str(claims["sub"])[:64])
    return ops.Operator(str(claims["sub"]), org)


def now_ms() -> int:
    return app.current_event.request_context.time_epoch  # event time: the request as API Gateway got it


def q(name: str) -> str | None:
    return app.current_event.get_query_string_value(name, None)


def box_param(box_id: str) -> str:
    if not BOX_ID.match(box_id):
        raise InvalidInput("box_id: 1-128 characters of [A-Za-z0-9_.:-]", box=box_id[:200])
    return box_id


def ms_param(name: str) -> int | None:
    raw = q(name)
    if raw in (None, ""):
        return None
    if not raw.isdigit():
        raise InvalidInput(f"{name}: epoch milliseconds", value=raw[:20])
    return int(raw)


def json_body() -> Any:
    try:
        return json.loads(app.current_event.decoded_body or "null")
    except ValueError:
        raise InvalidInput("body: JSON") from None


@app.exception_handler(Rejected)
def refused(exc: Rejected) -> Response:
    # logged and counted with the real reason; the answer says only what the caller may know (a box
    # of another organisation is "no such box", as an unknown one)
    reason = getattr(exc, "reason", exc.code)
    logger.warning(f"request refused: {exc.message}", extra={"error": exc.code, "reason": reason,
                                                             "route": app.current_event.route_key, **exc.details})
    name = "CrossOrgRefused" if isinstance(exc, ops.CrossOrg) else "RequestsRefused"
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    return Response(STATUS.get(exc.code, 400), "application/json", {"error": exc.code, "message": exc.message})


@app.get("/ops/boxes")
def boxes() -> dict[str, Any]:
    return ops.boxes_in_view(operator(), q("bbox") or "", ops.page_limit(q("limit"), 200), q("cursor"), now_ms())


@app.get("/ops/boxes/<box_id>")
def box(box_id: str) -> dict[str, Any]:
    return ops.box_detail(operator(), box_param(box_id), now_ms())


@app.get("/ops/alarms")
def alarms() -> dict[str, Any]:
    return ops.alarms(operator(), q("state") or "active", q("cause") or None, ms_param("from"), ms_param("to"),
                      ops.page_limit(q("limit")), q("cursor"), now_ms())


@app.get("/ops/incidents")
def incidents() -> dict[str, Any]:
    return ops.incidents(operator(), q("state") or "open", ops.page_limit(q("limit")), q("cursor"), now_ms())


@app.get("/ops/commands")
def commands() -> dict[str, Any]:
    box_id = q("box_id")
    return ops.commands(operator(), box_param(box_id) if box_id else None, ops.page_limit(q("limit")), q("cursor"))


@app.get("/ops/changes")
def changes() -> dict[str, Any]:
    return ops.changes(operator(), q("since"), now_ms())


@app.post("/ops/boxes")
def register() -> Response:
    item = ops.register(operator(), json_body(), RT.settings, now_ms())
    return Response(200, "application/json", {"box_id": item.box_id, "org": item.org})


@app.post("/ops/boxes/import")
def import_boxes() -> dict[str, Any]:
    return ops.import_csv(operator(), app.current_event.decoded_body or "", RT.settings, now_ms())


@app.put("/ops/boxes/<box_id>/bindings/<client_id>")
def bind(box_id: str, client_id: str) -> dict[str, Any]:
    if not CLIENT_ID.match(client_id):
        raise InvalidInput("client_id: 1-128 characters", client=client_id[:200])
    b = ops.bind_client(operator(), box_param(box_id), client_id, json_body())
    return {"box_id": b.box_id, "client_id": b.client_id, "target_kind": b.target_kind, "locale": b.locale}


@app.delete("/ops/boxes/<box_id>/bindings/<client_id>")
def unbind(box_id: str, client_id: str) -> dict[str, Any]:
    if not CLIENT_ID.match(client_id):
        raise InvalidInput("client_id: 1-128 characters", client=client_id[:200])
    return {"removed": ops.unbind_client(operator(), box_param(box_id), client_id)}


@app.post("/ops/boxes/<box_id>/power-off")
def power_off(box_id: str) -> Response:
    key = app.current_event.headers.get("idempotency-key", "")
    if not KEY.match(key):
        raise InvalidInput("Idempotency-Key header: 8-128 characters of [A-Za-z0-9_.:-]")
    body = json_body()
    confirm = body.get("confirm") if isinstance(body, dict) else None
    out = ops.power_off(operator(), box_param(box_id), confirm, key, now_ms(), RT.settings, RT.iotdata)
    metrics.add_metric(name="OperatorPowerOffRequested" if out.created else "PowerOffRepeated",
                       unit=MetricUnit.Count, value=1)
    return Response(201 if out.created else 200, "application/json", ops.command_view(out.command))


@app.post("/ops/boxes/<box_id>/alarms/<alarm_id>/ack")
def ack(box_id: str, alarm_id: str) -> dict[str, Any]:
    out = ops.ack(operator(), box_param(box_id), alarm_id, json_body(), now_ms(), RT.settings, RT.sns)
    metrics.add_metric(name="AlarmsAcked" if out["changed"] else "AckRepeated", unit=MetricUnit.Count, value=1)
    return out


@app.get("/ops/reports/monthly")
def monthly() -> Response:
    report = ops.monthly_report(operator(), q("month") or "")
    if "text/csv" in (app.current_event.headers.get("accept") or ""):
        return Response(200, "text/csv; charset=utf-8", ops.report_csv(report))
    return Response(200, "application/json", report)


@RT.lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
