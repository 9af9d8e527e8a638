"""Errors the domain raises for bad input; each has a stable machine code for logs and metrics."""

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
