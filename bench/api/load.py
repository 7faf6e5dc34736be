"""The open-loop load generator: sends requests at a fixed rate by the clock, whatever the server does.

Runs as its own process, pinned to a core of its own. Latency is measured from each request's *scheduled*
send time, so a slow server cannot hide its queueing by slowing the generator down (coordinated omission).

The HTTP/1.1 client is a few lines of asyncio on purpose: a general client (httpx) costs several hundred
microseconds of CPU per request, which at 1000 req/s on one core would measure the client, not the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SERVICE_PATH = "/api/v1/me/services/do-not-disturb"
REQUEST_TIMEOUT = 5.0
MAX_CONNECTIONS = 512
# uvicorn closes a kept-alive connection after 5 s without a request (`timeout_keep_alive`); a request written on
# it as it closes gets no answer. HTTP clients reopen such a connection; so does this one, a little before.
KEEP_ALIVE_SECONDS = 4.0


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    last_used: float = 0.0  # perf_counter when its last answer came (or when it was opened)


def requests_for(op: str, host: str, tokens: list[str]) -> list[bytes]:
    """Ready-made request bytes per user, so building a request costs nothing while measuring."""
    prepared = []
    for token in tokens:
        if op == "get":
            prepared.append(
                f"GET {SERVICE_PATH} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
            )
        else:
            body = json.dumps({"active": random.random() < 0.5}).encode()
            prepared.append(
                (
                    f"PUT {SERVICE_PATH} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode()
                + body
            )
    return prepared


async def exchange(connection: Connection, request: bytes) -> int:
    connection.writer.write(request)
    head = await connection.reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lowered = head.lower()
    at = lowered.find(b"content-length:")
    if at < 0:
        raise RuntimeError("response without Content-Length")
    length = int(lowered[at + 15 : lowered.find(b"\r\n", at)])
    await connection.reader.readexactly(length)
    return status


async def run(url: str, op: str, rate: float, seconds: float, warmup: float, tokens: list[str]) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    prepared = requests_for(op, f"{host}:{port}", tokens)
    loop = asyncio.get_running_loop()
    # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds, too coarse for a 10 ms target.
    clock = time.perf_counter
    idle: list[Connection] = []
    opened = 0
    slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def connect() -> Connection:
        nonlocal opened
        reader, writer = await asyncio.open_connection(host, port)
        opened += 1
        return Connection(reader, writer, clock())

    # A warm pool: opening TCP connections is not what we measure.
    idle.extend(await asyncio.gather(*(connect() for _ in range(min(64, int(rate // 10) + 8)))))

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    # What each counted error was, and whether it came on a kept-alive connection or a new one: a server that
    # closes an idle connection as a request is sent on it (keep-alive timeout) is not one that failed a request.
    error_kinds: dict[str, int] = {}
    answered = 0  # including the warm-up: the server's CPU time is divided by this
    total = int(rate * (seconds + warmup))
    start = clock() + 0.1
    measure_from = start + warmup

    async def one(scheduled: float, request: bytes) -> None:
        nonlocal errors, answered
        async with slots:
            connection = idle.pop() if idle else None
            while connection is not None and clock() - connection.last_used > KEEP_ALIVE_SECONDS:
                connection.writer.close()
                connection = idle.pop() if idle else None
            reused = connection is not None
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    if connection is None:
                        connection = await connect()
                    status = await exchange(connection, request)
            except (OSError, TimeoutError, RuntimeError, asyncio.IncompleteReadError, ValueError) as error:
                if scheduled >= measure_from:
                    errors += 1
                    kind = f"{type(error).__name__} on a new connection"
                    if reused and connection is not None:
                        idle_for = clock() - connection.last_used
                        kind = f"{type(error).__name__} on a connection kept alive {idle_for:.0f} s"
                    error_kinds[kind] = error_kinds.get(kind, 0) + 1
                if connection is not None:
                    connection.writer.close()
                return
            connection.last_used = clock()
            idle.append(connection)
            answered += 1
        if scheduled >= measure_from:
            latencies.append(clock() - scheduled)
            statuses[str(status)] = statuses.get(str(status), 0) + 1

    tasks = set()
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(scheduled, prepared[random.randrange(len(prepared))]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    for connection in idle:
        connection.writer.close()

    latencies.sort()

    def quantile(q: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "op": op,
        "rate": rate,
        "seconds": seconds,
        "completed": len(latencies),
        "answered_total": answered,
        "errors": errors,
        "error_kinds": error_kinds,
        "statuses": statuses,
        "connections": opened,
        "p50_ms": quantile(0.50),
        "p99_ms": quantile(0.99),
        "p999_ms": quantile(0.999),
        "max_ms": latencies[-1] * 1000 if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--op", choices=["get", "put"], required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--tokens", type=Path, required=True)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one core")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    tokens = args.tokens.read_text().split()
    try:
        import uvloop

        result = uvloop.run(run(args.url, args.op, args.rate, args.seconds, args.warmup, tokens))
    except ImportError:  # pragma: no cover
        result = asyncio.run(run(args.url, args.op, args.rate, args.seconds, args.warmup, tokens))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
