"""Every error answer of the API in one shape: `detail` in English for people and a stable `code` clients
branch on and translate (docs/api.md lists the codes). A 422 lists its fields, each with its dotted `field`
path and `code`; it never repeats the submitted value (FastAPI's default echoes the input, passwords included).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hipper.api.forwarding import AnsweredElsewhere
from hipper.domain.errors import (
    InvalidSetting,
    NotLicensed,
    ReadOnlySetting,
    StepUpRequired,
    code_of,
    field_path,
    limits_of,
)

# The code of an HTTP error raised without one of its own.
STATUS_CODES = {
    400: "bad_request",
    401: "not_logged_in",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_attempts",
    503: "unavailable",
}


class ApiProblem(HTTPException):
    """An HTTP error with its own stable `code` (e.g. 403 wrong_pin); `detail` stays English for people."""

    def __init__(self, status_code: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status_code, detail, dict(headers) if headers else None)
        self.code = code


def field_error(
    location: list[str | int], message: str, code: str = "invalid", limits: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """One item of a 422's `detail`: FastAPI's loc/msg/type plus our `field` and `code` (and bounds, if any)."""
    item: dict[str, Any] = {
        "loc": location,
        "msg": message,
        "type": "value_error",
        "field": field_path(location),
        "code": code,
    }
    if limits:
        item["limits"] = dict(limits)
    return item


def invalid_answer(items: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": items, "code": "validation_failed"})


def invalid_query(field: str, message: str, code: str = "invalid") -> HTTPException:
    return HTTPException(422, [field_error(["query", field], message, code)])


def invalid_body(field: str, message: str, code: str = "invalid") -> HTTPException:
    return HTTPException(422, [field_error(["body", field], message, code)])


class Conflict(Exception):
    """A 409 a client may branch on: `code` is machine-readable and stable, `detail` English for people."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def invalid(field: str, reason: str, code: str = "invalid", limits: Mapping[str, int] | None = None) -> JSONResponse:
    location: list[str | int] = ["body", *field.split(".")] if field and field != "body" else ["body"]
    return invalid_answer([field_error(location, reason, code, limits)])


def _out_of_range(request: Request) -> JSONResponse:
    where: list[str | int] = ["path", *request.path_params] if request.path_params else ["body"]
    return invalid_answer([field_error(where, "a value is out of the range we can store", "out_of_range")])


def _validation_items(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Rebuilt field by field: FastAPI's items carry `input` (the submitted value: a password, a PIN) and `ctx`
    # (which may hold it too); only the location, message, code and numeric bounds go back.
    return [
        field_error(list(error.get("loc", ())), str(error.get("msg", "")), code_of(error), limits_of(error))
        for error in exc.errors()
    ]


def _http_error(exc: StarletteHTTPException) -> Response:
    headers = getattr(exc, "headers", None)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=headers)
    code = getattr(exc, "code", None) or STATUS_CODES.get(exc.status_code, "error")
    detail: Any = exc.detail
    if isinstance(detail, list):
        # A router's hand-made 422 (field_error items already): keep them, fill in what an older shape lacks.
        detail = [
            item if "code" in item else field_error(list(item.get("loc", [])), str(item.get("msg", "")))
            for item in detail
            if isinstance(item, dict)
        ]
        code = "validation_failed"
    return JSONResponse(status_code=exc.status_code, content={"detail": detail, "code": code}, headers=headers)


def _is_bad_value(exc: BaseException) -> bool:
    """A value the database cannot take (SQLAlchemy wraps asyncpg's DataError as a plain DBAPIError)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, DataError | asyncpg.exceptions.DataError | OverflowError):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__ or seen.__context__
    return False


def install(app: FastAPI) -> None:
    # Safety nets for input the routers did not bound: an id beyond 64 bits makes SQLite's driver raise
    # OverflowError, one beyond 32 bits (or a too long text) makes PostgreSQL raise DataError. Either is the
    # client's mistake, never a server error; routers should still bound their fields (Path(le=...)).
    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, _exc: OverflowError) -> JSONResponse:
        return _out_of_range(request)

    @app.exception_handler(DBAPIError)
    async def _data_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if _is_bad_value(exc):
            return _out_of_range(request)
        raise exc

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid_answer(_validation_items(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        return _http_error(exc)

    @app.exception_handler(InvalidSetting)
    async def _invalid(_request: Request, exc: InvalidSetting) -> JSONResponse:
        return invalid(exc.field, exc.reason, exc.code, exc.limits)

    @app.exception_handler(NotLicensed)
    async def _unlicensed(_request: Request, exc: NotLicensed) -> JSONResponse:
        return JSONResponse(status_code=403, content={"detail": str(exc), "code": "not_licensed"})

    @app.exception_handler(ReadOnlySetting)
    async def _read_only(_request: Request, exc: ReadOnlySetting) -> JSONResponse:
        return JSONResponse(status_code=403, content={"detail": str(exc), "code": "read_only", "field": exc.field})

    @app.exception_handler(AnsweredElsewhere)
    async def _elsewhere(_request: Request, exc: AnsweredElsewhere) -> Response:
        return exc.response

    @app.exception_handler(Conflict)
    async def _conflict(_request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": exc.detail, "code": exc.code})

    @app.exception_handler(StepUpRequired)
    async def _step_up(_request: Request, exc: StepUpRequired) -> JSONResponse:
        return JSONResponse(status_code=403, content={"detail": str(exc), "code": "step_up_required"})
