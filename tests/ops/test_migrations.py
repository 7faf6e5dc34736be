"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL, and end in one head."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from hipper.store.db import alembic_config, create_engine
from hipper.store.models import Base


def test_the_migrations_have_one_head() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(scripts.get_heads()) == 1, scripts.get_heads()


async def test_the_migrated_schema_is_what_the_models_describe(database_url: str) -> None:
    engine = create_engine(database_url)  # a copy of the template the migrations built
    try:
        async with engine.connect() as connection:

            def differences(sync_connection: Any) -> list[Any]:
                return list(compare_metadata(MigrationContext.configure(sync_connection), Base.metadata))

            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()
