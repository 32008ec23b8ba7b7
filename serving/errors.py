"""Structured JSON errors: every 4xx names the field it is about.

Body of every error response:
  {"error": {"status": 422, "code": "invalid_request", "message": "...",
             "fields": [{"field": "days[3].precipitation",
                         "message": "non-numeric value in precipitation",
                         "input": "abc"}]}}
Bad input is always a 4xx; a 500 means a bug, a 502/503 the model server.
"""
import json
import logging
import math
from typing import Any, Dict, List, Optional, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.backend import BackendError, NoModelLoaded

log = logging.getLogger(__name__)

# pydantic error types -> the wording of the input contract.
_MESSAGES = {
    "float_parsing": "non-numeric value",
    "float_type": "non-numeric value",
    "finite_number": "non-numeric value (not finite)",
    "missing": "missing value",
    "extra_forbidden": "unknown field",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "json_invalid": "the body is not valid JSON",
}


class ApiError(Exception):
    """An error answered as JSON with `status`, `code`, `message` and `fields`."""

    def __init__(self, status: int, code: str, message: str,
                 fields: Optional[List[Dict[str, Any]]] = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = fields or []


def field_error(field: str, message: str, value: Any = None) -> Dict[str, Any]:
    """One entry of `fields`."""
    entry = {"field": field, "message": message}
    if value is not None:
        entry["input"] = value
    return entry


def field_path(loc: Sequence[Any]) -> str:
    """("body", "days", 3, "precipitation") -> "days[3].precipitation"."""
    path = ""
    for part in loc:
        if part in ("body", "path", "query") and not path:
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: an echoed lone surrogate (valid in a JSON
    string escape, not encodable as UTF-8) cannot turn an answer into a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False,
                          separators=(",", ":")).encode("ascii")


def _body(status: int, code: str, message: str, fields) -> JSONResponse:
    return AsciiJSONResponse(status_code=status, content={"error": {
        "status": status, "code": code, "message": message, "fields": fields}})


def install(app: FastAPI, max_body_bytes: int) -> None:
    """Registers the handlers and the request-size limit on `app`."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError):
        return _body(error.status, error.code, error.message, error.fields)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError):
        fields = []
        for item in error.errors():
            path = "body" if item.get("type") == "json_invalid" else field_path(item.get("loc", ()))
            message = _MESSAGES.get(item.get("type"), item.get("msg", "invalid value"))
            if item.get("type") in ("float_parsing", "float_type", "finite_number"):
                message = f"{message} in {path.rsplit('.', 1)[-1]}"
            value = item.get("input")
            fields.append(field_error(path, message, value if _jsonable(value) else None))
        names = ", ".join(f["field"] for f in fields)
        return _body(422, "invalid_request", f"invalid request: {names}", fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException):
        if error.status_code == 413:
            return _body(413, "request_too_large", str(error.detail),
                         [field_error("body", str(error.detail))])
        field = {400: "body", 404: "path", 405: "method"}.get(error.status_code)
        return _body(error.status_code, "http_error", str(error.detail),
                     [field_error(field, str(error.detail))] if field else [])

    @app.exception_handler(NoModelLoaded)
    async def _no_model(request: Request, error: NoModelLoaded):
        return _body(503, "no_model_loaded", str(error), [])

    @app.exception_handler(BackendError)
    async def _backend(request: Request, error: BackendError):
        log.error("Model server failed: %s", error)
        return _body(502, "model_server_error", str(error), [])

    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)


def _jsonable(value: Any) -> bool:
    """Echo the offending input only when it is short and valid JSON (no NaN)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (int, bool)) or (isinstance(value, str) and len(value) <= 200)


class _TooLarge(StarletteHTTPException):
    """Raised while the body streams in; FastAPI re-raises HTTP exceptions as they are."""

    def __init__(self, max_bytes: int):
        super().__init__(413, f"request body larger than {max_bytes} bytes")


class BodySizeLimit:
    """ASGI middleware: a body over `max_bytes` is a 413 naming the field `body`.

    Checks Content-Length first and also counts a chunked body as it arrives,
    so a client cannot stream past the limit by omitting the header.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._reject(send)
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send):
        response = _body(413, "request_too_large",
                         f"request body larger than {self.max_bytes} bytes",
                         [field_error("body", f"at most {self.max_bytes} bytes")])
        await response({"type": "http"}, None, send)
