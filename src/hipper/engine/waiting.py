"""Waiting inside a call: for something to happen, unless the call ends first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def race_until(awaitable: Awaitable[T], over: asyncio.Event, limit: float | None) -> T | None:
    """`awaitable`'s result, or None when `over` is set (the call ended) or `limit` seconds pass first."""
    task = asyncio.ensure_future(awaitable)
    ended = asyncio.ensure_future(over.wait())
    try:
        done, _ = await asyncio.wait({task, ended}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, ended):
            if not pending.done():
                pending.cancel()
    if task in done and not task.cancelled():
        return task.result()
    return None
