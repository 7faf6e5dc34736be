"""Domain errors as HTTP answers: 403 with a reason, 422 naming the field, like FastAPI's own 422."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hipper.domain.errors import InvalidSetting, NotLicensed, ReadOnlySetting, StepUpRequired


def invalid(field: str, reason: str) -> JSONResponse:
    location = ["body", *field.split(".")] if field else ["body"]
    return JSONResponse(status_code=422, content={"detail": [{"loc": location, "msg": reason, "type": "value_error"}]})


def install(app: FastAPI) -> None:
    @app.exception_handler(InvalidSetting)
    async def _invalid(_request: Request, exc: InvalidSetting) -> JSONResponse:
        return invalid(exc.field, exc.reason)

    @app.exception_handler(NotLicensed)
    async def _unlicensed(_request: Request, exc: NotLicensed) -> JSONResponse:
        return JSONResponse(status_code=403, content={"detail": str(exc), "code": "not_licensed"})

    @app.exception_handler(ReadOnlySetting)
    async def _read_only(_request: Request, exc: ReadOnlySetting) -> JSONResponse:
        return JSONResponse(status_code=403, content={"detail": str(exc), "code": "read_only"})

    @app.exception_handler(StepUpRequired)
    async def _step_up(_request: Request, exc: StepUpRequired) -> JSONResponse:
        return JSONResponse(status_code=403, content={"detail": str(exc), "code": "step_up_required"})
