"""Domain errors as HTTP answers: 403 with a reason, 422 naming the field, like FastAPI's own 422."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError

from hipper.domain.errors import InvalidSetting, NotLicensed, ReadOnlySetting, StepUpRequired


class Conflict(Exception):
    """A 409 a client may branch on: `code` is machine-readable and stable, `detail` English for people."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def invalid(field: str, reason: str) -> JSONResponse:
    location = ["body", *field.split(".")] if field else ["body"]
    return JSONResponse(status_code=422, content={"detail": [{"loc": location, "msg": reason, "type": "value_error"}]})


def _out_of_range(request: Request) -> JSONResponse:
    where = ["path", *request.path_params] if request.path_params else ["body"]
    return JSONResponse(
        status_code=422,
        content={"detail": [{"loc": where, "msg": "a value is out of the range we can store", "type": "value_error"}]},
    )


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

    @app.exception_handler(InvalidSetting)
    async def _invalid(_request: Request, exc: InvalidSetting) -> JSONResponse:
        return invalid(exc.field, exc.reason)

    @app.exception_handler(NotLicensed)
    async def _unlicensed(_request: Request, exc: NotLicensed) -> JSONResponse:
        return JSONResponse(status_code=403, content={"detail": str(exc), "code": "not_licensed"})

    @app.exception_handler(ReadOnlySetting)
    async def _read_only(_request: Request, exc: ReadOnlySetting) -> JSONResponse:
        return JSONResponse(status_code=403, content={"detail": str(exc), "code": "read_only"})

    @app.exception_handler(Conflict)
    async def _conflict(_request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": exc.detail, "code": exc.code})

    @app.exception_handler(StepUpRequired)
    async def _step_up(_request: Request, exc: StepUpRequired) -> JSONResponse:
        return JSONResponse(status_code=403, content={"detail": str(exc), "code": "step_up_required"})
