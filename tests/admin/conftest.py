"""Running the `hipper` CLI against the test database (SQLite file or PostgreSQL), as an operator would."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.cli import main
from hipper.config import Settings
from hipper.store.db import create_engine, session_factory

T = TypeVar("T")


class Hipper:
    """`hipper --data-dir … <args>` on the test's database; `query` reads what it wrote."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = {
            "HIPPER_DATABASE_URL": settings.database_url,
            "HIPPER_ARGON2_TIME_COST": str(settings.argon2_time_cost),
            "HIPPER_ARGON2_MEMORY_COST": str(settings.argon2_memory_cost),
        }

    def __call__(self, *args: str, ok: bool = True, **kwargs: Any) -> Result:
        result = CliRunner().invoke(main, ["--data-dir", str(self.settings.data_dir), *args], env=self.env, **kwargs)
        if ok:
            assert result.exit_code == 0, (args, result.output, result.exception)
        return result

    def query(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async def _go() -> T:
            engine = create_engine(self.settings.resolved_database_url())
            try:
                async with session_factory(engine)() as session:
                    return await work(session)
            finally:
                await engine.dispose()

        return asyncio.run(_go())


@pytest.fixture
def hipper(settings: Settings) -> Hipper:
    return Hipper(settings)
