"""Local API Gateway (HTTP APIs): each `AWS::ApiGatewayV2::Api` of the translated template served on
127.0.0.1, its routes read from the OpenAPI body SAM generated (paths, methods, Lambda proxy
integrations, JWT authorizers), each request turned into an HTTP API payload 2.0 event for the
integrated function.

Authorization: there is no Cognito locally. A route with a JWT authorizer accepts
- `Authorization: Bearer local:<sub>`: the client `<sub>`, for curl and tests;
- `Authorization: Bearer local:<sub>@<org>+<group>[+<group>]`: a user of organisation `<org>` in
  those Cognito groups (`local:ann@acme+operators`: an operator of acme; the console's local sign-in);
- `Authorization: Bearer <JWT>`: a JWT whose claims are taken **without checking its signature**
  (local only), as long as its `aud` (or `client_id`) is one of the authorizer's audiences and it
  has not expired. `mint_token()` makes one.
Anything else is 401, as API Gateway answers.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from boxwatch_infra.aws.events import http_api_request
from boxwatch_infra.aws.ports import HOST
from boxwatch_infra.localcloud.functions import FunctionHost, Trigger
from boxwatch_infra.localcloud.servers import QuietHandler, serve, shutdown
from boxwatch_infra.localcloud.stack import Deployment

log = logging.getLogger("boxwatch.localcloud.httpapi")


@dataclass
class Route:
    method: str  # GET, POST ... or ANY
    path: str  # /boxes/{box_id}/power-off
    function: str
    authorizer: dict[str, Any] | None
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        rx = re.sub(r"\\\{([A-Za-z0-9_]+)\\\+\\\}", r"(?P<\1>.+)", re.escape(self.path))
        rx = re.sub(r"\\\{([A-Za-z0-9_]+)\\\}", r"(?P<\1>[^/]+)", rx)
        self.pattern = re.compile(f"^{rx}$")

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_token(sub: str, audience: str, issuer: str = "https://local", ttl_s: int = 3600) -> str:
    """An unsigned JWT the local HTTP API accepts (never valid on AWS)."""
    now = int(time.time())
    claims = {"sub": sub, "aud": audience, "client_id": audience, "iss": issuer, "iat": now, "exp": now + ttl_s,
              "token_use": "id", "cognito:username": sub}
    return ".".join([b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode()),
                     b64url(json.dumps(claims).encode()), ""])


def _claims(token: str) -> dict[str, Any] | None:
    if token.startswith("local:"):
        sub, at, rest = token[len("local:"):].partition("@")
        if not at:
            return {"sub": sub} if sub else None
        org, _, groups = rest.partition("+")
        # as API Gateway hands a JWT's list claim to the function: "[a b]"
        return {"sub": sub, "custom:org": org, "cognito:groups": "[" + " ".join(groups.split("+")) + "]"} \
            if sub and org else None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        raw = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(raw))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


class HttpApi:
    def __init__(self, logical: str, deployment: Deployment, host: FunctionHost, port: int = 0):
        self.logical = logical
        self.deployment = deployment
        self.host = host
        self.port = port
        self.routes: list[Route] = []
        resolver = deployment.resolver()
        body = resolver.resolve(deployment.translated["Resources"][logical]["Properties"].get("Body", {}))
        schemes = body.get("components", {}).get("securitySchemes", {})
        for path, methods in body.get("paths", {}).items():
            for method, op in methods.items():
                integ = op.get("x-amazon-apigateway-integration", {})
                uri = str(integ.get("uri", ""))
                m = re.search(r"functions/(arn:[^/]+)/invocations", uri)
                if not m:
                    raise ValueError(f"{logical} {method.upper()} {path}: only Lambda proxy integrations run locally")
                auth = None
                for sec in op.get("security", []):
                    for name in sec:
                        auth = schemes.get(name, {}).get("x-amazon-apigateway-authorizer")
                name = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
                self.routes.append(Route(name, path, host.logical_of(m.group(1)), auth))
        self._server: ThreadingHTTPServer | None = None
        self.requests = 0
        # CORS: the template allows the console's CloudFront origin; locally the console is served
        # from the local cloud's own origin (LocalCloud sets it)
        self.cors_origins: set[str] = set()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for r in self.routes:
            if r.method in (method, "ANY"):
                m = r.pattern.match(path)
                if m:
                    return r, m.groupdict()
        return None

    def authorize(self, route: Route, headers: dict[str, str]) -> dict[str, Any] | bool | None:
        """Claims, None when the route has no authorizer, False when refused."""
        if not route.authorizer:
            return None
        value = headers.get("authorization", "")
        token = value[7:].strip() if value.lower().startswith("bearer ") else value.strip()
        claims = _claims(token) if token else None
        if not claims or not claims.get("sub"):
            return False
        if not token.startswith("local:"):
            audiences = route.authorizer.get("jwtConfiguration", {}).get("audience", [])
            if audiences and claims.get("aud") not in audiences and claims.get("client_id") not in audiences:
                return False
            if isinstance(claims.get("exp"), int | float) and claims["exp"] < time.time():
                return False
        return claims

    def event(self, route: Route, params: dict[str, str], method: str, url: urllib.parse.SplitResult,
              headers: dict[str, str], body: bytes, claims: dict[str, Any] | None, source_ip: str) -> dict[str, Any]:
        qs = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        return http_api_request(
            method, url.path, route.route_key, int(time.time() * 1000), request_id=str(uuid.uuid4()),
            api_id=self.deployment.physical[self.logical], account_id=self.deployment.template.account_id,
            domain_name=f"{HOST}:{self.port}", domain_prefix=HOST, headers=headers, source_ip=source_ip,
            claims=claims, path_parameters=params or None,
            query={k: ",".join(v) for k, v in qs.items()} or None, raw_query=url.query,
            body=body.decode("utf-8", errors="replace") if body else None)

    def start(self) -> HttpApi:
        api = self

        class Handler(QuietHandler):
            METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                origin = self.headers.get("Origin", "")
                cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin in api.cors_origins else {}
                self.reply(status, body, {"Content-Type": "application/json", **cors, **(headers or {})})

            def route(self, method: str) -> None:
                api.requests += 1
                url = urllib.parse.urlsplit(self.path)
                body = self.body()
                headers = {k.lower(): v for k, v in self.headers.items()}
                if method == "OPTIONS":  # a CORS preflight: API Gateway answers it without the authorizer
                    return self._send(204, b"", {
                        "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE",
                        "Access-Control-Allow-Headers": "authorization, content-type, idempotency-key, accept",
                        "Access-Control-Max-Age": "600"} if headers.get("origin") in api.cors_origins else {})
                found = api.match(method, url.path)
                if found is None:
                    return self._send(404, b'{"message":"Not Found"}')
                route, params = found
                claims = api.authorize(route, headers)
                if claims is False:
                    return self._send(401, b'{"message":"Unauthorized"}')
                event = api.event(route, params, method, url, headers, body,
                                  claims if isinstance(claims, dict) else None, self.client_address[0])
                trigger = Trigger(f"api:{route.route_key}", event["requestContext"]["timeEpoch"], url.path)
                try:
                    result = api.host.invoke(route.function, event, trigger)
                except Exception:
                    log.exception("%s failed", route.function)
                    return self._send(500, b'{"message":"Internal Server Error"}')
                if isinstance(result, dict) and "statusCode" in result:
                    raw = result.get("body") or ""
                    data = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
                    return self._send(int(result["statusCode"]), data, {k: str(v) for k, v in
                                                                       (result.get("headers") or {}).items()})
                return self._send(200, json.dumps(result).encode())

        self._server = serve(Handler, self.port, f"httpapi-{self.logical}")
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        shutdown(self._server)

    def describe(self) -> dict[str, Any]:
        return {"api": self.logical, "url": self.url,
                "routes": [{"route": r.route_key, "function": r.function, "jwt": bool(r.authorizer)}
                           for r in self.routes]}
