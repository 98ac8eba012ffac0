"""JSON as ALP writes it: Decimals as JSON numbers (never via float), ALP-style error bodies."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from aiohttp import web


def dumps(value: Any) -> str:
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text if "." in text or "e" in text.lower() else text + ".0"
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__}")


def reply(value: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(value), status=status, content_type="application/json")


def error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = json.dumps({"code": code, "message": message})
    return web.Response(text=body, status=status, content_type="application/json", headers=headers)


class Reject(Exception):
    """Raised by handlers; rendered as an ALP error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
