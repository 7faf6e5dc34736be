from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hipper.media.engine import MediaEngine
from tests.support.ports import engine_range


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    base = engine_range()
    media = MediaEngine(port_min=base, port_max=base + 200, rtp_timeout_seconds=1.0)
    async with media:
        yield media
