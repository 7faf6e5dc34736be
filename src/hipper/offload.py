"""The one way CPU-heavy work (argon2, audio decoding) leaves the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# argon2-cffi and libsndfile release the GIL while they work, so a small thread pool really runs beside the
# loop; two workers match the two cores this is sized for.
_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hipper-cpu")


async def run_cpu(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, lambda: function(*args, **kwargs))
