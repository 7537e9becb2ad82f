"""The asset API's refusals: a status, a machine-readable code and a message."""

from __future__ import annotations

import json


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> str:
        return json.dumps({"error": {"code": self.code, "message": self.message}})


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": 'Bearer realm="tusd-py"'})
