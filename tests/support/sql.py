"""What SQL an engine sends through SQLAlchemy while a block runs (the cheap reads' own statements are counted by
`CallPathReads.direct_statements`: SQLAlchemy does not see them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


@contextmanager
def statements_through_sqlalchemy(engine: AsyncEngine) -> Iterator[list[str]]:
    statements: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sync = engine.sync_engine
    event.listen(sync, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(sync, "before_cursor_execute", before)
