"""Users logging in through the API while calls run (the load generator of bench/sip/calls.py part 3).

Usage: python bench/sip/login_load.py URL USERNAME PASSWORD SECONDS [CONCURRENCY]

Runs on the load generator's core; logs in again and again with the right password for SECONDS and prints one
JSON line: logins done, failures, and latency percentiles in milliseconds. Each login is one argon2 verify
on the exchange (its thread pool, off the event loop but on the exchange's core).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

import httpx


async def run(url: str, username: str, password: str, seconds: float, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await client.post(
                "/api/v1/auth/login", json={"username": username, "password": password, "device_name": "bench"}
            )
            if response.status_code == 200:
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                failures += 1

    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    ordered = sorted(latencies) or [0.0]
    return {
        "logins": len(latencies),
        "failures": failures,
        "per_second": len(latencies) / seconds,
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max_ms": ordered[-1],
    }


def main() -> None:
    url, username, password, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    concurrency = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    print(json.dumps(asyncio.run(run(url, username, password, seconds, concurrency))))


if __name__ == "__main__":
    main()
