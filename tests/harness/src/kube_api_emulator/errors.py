"""Errors shaped like the real API server's ``Status`` bodies."""

from __future__ import annotations

from typing import Any

REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
    501: "NotImplemented",
}


class ApiError(Exception):
    """An error answered to the client as a ``kind: Status`` body."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        f'{qualified(plural, group)} "{name}" not found',
        details={"name": name, "group": group, "kind": plural},
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        f'{qualified(plural, group)} "{name}" already exists',
        reason="AlreadyExists",
        details={"name": name, "group": group, "kind": plural},
    )


def conflict(plural: str, group: str, name: str, why: str | None = None) -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
        reason="Conflict",
        details={"name": name, "group": group, "kind": plural},
    )


class FieldError:
    """One cause of an ``Invalid`` error (Go's ``field.Error``)."""

    def __init__(self, field: str, reason: str, detail: str) -> None:
        self.field = field
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}" if self.field else self.detail

    def cause(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.detail, "field": self.field}

    def __repr__(self) -> str:
        return f"FieldError({self!s})"


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 ``Invalid`` with causes, worded like the real server."""
    qual = f"{kind}.{group}" if group else kind
    parts = [str(e) for e in errors]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ApiError(
        422,
        f'{qual} "{name}" is invalid: {joined}',
        reason="Invalid",
        details={"name": name, "group": group, "kind": kind, "causes": [e.cause() for e in errors]},
    )


def not_implemented(what: str) -> ApiError:
    return ApiError(
        501,
        f"{what} is not implemented by kube-api-emulator (see tests/harness/README.md)",
        reason="NotImplemented",
    )
