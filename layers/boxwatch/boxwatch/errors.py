"""Errors the domain raises for input it refuses (bad, spoofed, unknown, not allowed); each has a stable
machine code for logs, metrics and API answers."""

from __future__ import annotations

from typing import Any


class Rejected(Exception):
    """An input we refuse: it is logged, counted and dead-lettered, never retried."""

    code = "rejected"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.details}


class InvalidInput(Rejected):
    code = "invalid_input"


class UnknownBox(Rejected):
    code = "unknown_box"


class Spoofed(Rejected):
    code = "spoofed"


class Conflict(Rejected):
    code = "conflict"


class NotFound(Rejected):
    code = "not_found"
    reason = "not_found"  # the real reason, for the log only


class Forbidden(NotFound):
    """Not bound to the box: answered exactly as an unknown box, so that box ids cannot be told
    apart from outside; logged and counted as what it is (an attempt on someone else's box)."""

    reason = "not_bound"


class Unauthorized(Rejected):
    """A request without an authenticated client (a route left unprotected by the authorizer)."""

    code = "unauthorized"


class PushFailed(RuntimeError):
    """A push failed for a retryable reason before anything was written: the invocation fails so
    that Lambda retries it."""
