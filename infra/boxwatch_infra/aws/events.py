"""One factory per AWS event type boxwatch's functions receive, as AWS documents them, and the
`rate()` schedule expressions.

Both emulators (sandbox/replay in virtual time, the local cloud in wall-clock time) and the
benchmarks build their events here; only the values differ (ids, clocks, addresses).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

# ---------------------------------------------------------------------------- EventBridge


class UnsupportedSchedule(ValueError):
    pass


RATE = re.compile(r"\s*rate\(\s*(\d+)\s+(second|minute|hour|day)s?\s*\)\s*")
UNIT_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str, seconds: bool = False) -> int:
    """Period of `rate(N minute|minutes|hour|hours|day|days)`, in seconds. seconds=True also takes
    `rate(N seconds)`: below EventBridge's minute, which only virtual-time replay uses."""
    m = RATE.fullmatch(expression)
    if not m or (m.group(2) == "second" and not seconds):
        units = "second|seconds|minute|minutes|..." if seconds else "minute|minutes|hour|hours|day|days"
        raise UnsupportedSchedule(f"schedule {expression!r}: only rate(N {units}) runs locally")
    return int(m.group(1)) * UNIT_S[m.group(2)]


def iso_seconds(epoch_ms: int) -> str:
    """EventBridge's `time`: UTC to the second."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_event(at_ms: int, account: str, region: str, event_id: str, resources: list[str]) -> dict[str, Any]:
    """What an EventBridge schedule delivers to its target (Scheduled Event)."""
    return {"version": "0", "id": event_id, "detail-type": "Scheduled Event", "source": "aws.events",
            "account": account, "time": iso_seconds(at_ms), "region": region, "resources": resources, "detail": {}}


# ---------------------------------------------------------------------------- IoT Core lifecycle

SESSION_NS = uuid.UUID("6f1c2a52-8f4e-4d55-9a55-0b8f3f7e2c11")  # deterministic session ids
CLIENT_INITIATED = "CLIENT_INITIATED_DISCONNECT"


def lifecycle_event(client_id: str, kind: str, timestamp: int, version: int, session: int | str = 1,
                    reason: str | None = None, principal: str | None = None, ip: str = "192.0.2.10",
                    ) -> dict[str, Any]:
    """A lifecycle event as AWS IoT Core publishes it on `$aws/events/presence/<kind>/<client id>`
    (life-cycle-events.html). `session`: the session identifier, or the how-manyth connection of
    the client (a deterministic identifier is made of it); `principal` defaults to a certificate
    id made of the client id."""
    doc: dict[str, Any] = {
        "clientId": client_id,
        "timestamp": timestamp,
        "eventType": kind,
        "sessionIdentifier": session if isinstance(session, str) else str(uuid.uuid5(SESSION_NS,
                                                                                    f"{client_id}#{session}")),
        "principalIdentifier": principal if principal is not None else hashlib.sha256(client_id.encode()).hexdigest(),
        "versionNumber": version,
    }
    if kind == "connected":
        doc["ipAddress"] = ip
    else:
        doc["clientInitiatedDisconnect"] = reason == CLIENT_INITIATED
        doc["disconnectReason"] = reason
    return doc


def lifecycle_topic(kind: str, client_id: str) -> str:
    return f"$aws/events/presence/{kind}/{client_id}"


# ---------------------------------------------------------------------------- API Gateway HTTP API

REQUEST_NS = uuid.UUID("0b6c3f4e-23c1-4f59-9a1e-5a3cbd0a7e42")
API_ID, USER_POOL, APP_CLIENT = "k3x9q2w7ab", "us-east-1_Bx7WaTcH1", "5kq2n8r1m0c4boxwatchapp01"


def http_api_request(method: str, path: str, route_key: str, now_ms: int, *, request_id: str, api_id: str,
                     account_id: str, domain_name: str, domain_prefix: str, headers: dict[str, str],
                     source_ip: str, claims: dict[str, Any] | None = None,
                     path_parameters: dict[str, str] | None = None, query: dict[str, str] | None = None,
                     raw_query: str = "", body: str | None = None) -> dict[str, Any]:
    """An HTTP API (payload format 2.0) event: headers lower-cased by API Gateway, a JWT
    authorizer's claims as strings, and what the request did not have (None) left out."""
    ctx: dict[str, Any] = {
        "accountId": account_id, "apiId": api_id, "domainName": domain_name, "domainPrefix": domain_prefix,
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                 "userAgent": headers.get("user-agent", "")},
        "requestId": request_id, "routeKey": route_key, "stage": "$default",
        "time": datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": now_ms,
    }
    if claims is not None:
        ctx["authorizer"] = {"jwt": {"claims": {k: v if isinstance(v, str) else json.dumps(v)
                                                for k, v in claims.items()}, "scopes": None}}
    event: dict[str, Any] = {"version": "2.0", "routeKey": route_key, "rawPath": path, "rawQueryString": raw_query,
                             "headers": headers, "requestContext": ctx, "isBase64Encoded": False}
    for name, value in (("queryStringParameters", query), ("pathParameters", path_parameters), ("body", body)):
        if value is not None:
            event[name] = value
    return event


def http_api_event(method: str, path: str, route: str, client: str, now_ms: int, path_parameters: dict[str, str] | None,
                   headers: dict[str, str] | None = None, body: Any = None, query: dict[str, str] | None = None,
                   ) -> dict[str, Any]:
    """A phone's call to the command API as AWS delivers it: `http_api_request` on API Gateway's
    domain, with the claims of that client's Cognito access token (sub = client id)."""
    issued = now_ms // 1000 - 60
    domain = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
    claims = {
        "sub": client, "iss": f"https://cognito-idp.us-east-1.amazonaws.com/{USER_POOL}",
        "client_id": APP_CLIENT, "token_use": "access", "scope": "aws.cognito.signin.user.admin",
        "auth_time": str(issued), "iat": str(issued), "exp": str(issued + 3600),
        "jti": str(uuid.uuid5(REQUEST_NS, f"jti{client}{issued}")), "username": client,
    }
    all_headers = {"accept": "application/json", "authorization": "Bearer eyJraWQiOi...", "content-length": "0",
                   "host": domain, "user-agent": "boxwatch-app/1.0", "x-forwarded-for": "198.51.100.7",
                   "x-forwarded-port": "443", "x-forwarded-proto": "https", **(headers or {})}
    request_id = str(uuid.uuid5(REQUEST_NS, f"{client}{method}{path}{now_ms}"))
    return http_api_request(
        method, path, f"{method} {route}", now_ms, request_id=request_id,
        api_id=API_ID, account_id="123456789012", domain_name=domain, domain_prefix=API_ID, headers=all_headers,
        source_ip="198.51.100.7", claims=claims, path_parameters=path_parameters, query=query,
        raw_query="&".join(f"{k}={v}" for k, v in (query or {}).items()),
        body=None if body is None else json.dumps(body))


def phone_token(client_id: str) -> str:
    """The FCM registration token of a test or demo client's phone: one per client, valid for
    `POST /me/devices` whatever the client id's length (tokens are 8+ characters)."""
    return f"fcm-token-{client_id}"
