"""API benchmark: settings GET and PUT at fixed open-loop rates against a real `hipper serve` process.

    .venv/bin/python -m bench.api --db sqlite
    .venv/bin/python -m bench.api --db postgresql --rates 100,250,500,750,1000 --seconds 10

10,000 users with session tokens are written straight into a fresh database; the server runs as its own
process pinned to core 0 (`hipper serve`, uvloop, JSON request logs at INFO, as in production) and the load
generator (bench/api/load.py) as another process pinned to core 1. Prints a table and writes JSON figures to
bench/api/results/<db>.json; docs/performance.md explains the method and the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select
from tests.support.postgres import PostgresServer

from hipper.domain.licences import expand
from hipper.passwords import Hasher
from hipper.store.db import create_engine, migrate
from hipper.store.models import AuthSession, Company, User

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).parent / "results"
TARGET_P99_MS = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def populate(url: str, users: int) -> list[str]:
    """A company with `users` users holding every licence, each with one live session; returns the tokens."""
    engine = create_engine(url)
    try:
        await migrate(engine)
        now = datetime.now(UTC)
        # One real argon2 hash for everybody: logging in is not what we measure, and 10,000 hashes take minutes.
        # Stored expanded, as hipper.store.admin does.
        licensed = sorted(expand(["full"]))
        password_hash = await Hasher(1, 1024).hash("bench password 1")
        async with engine.begin() as connection:
            company_id = (
                await connection.execute(
                    insert(Company).values(name="Bench", number="+31200000000", created_at=now).returning(Company.id)
                )
            ).scalar_one()
            await connection.execute(
                insert(User),
                [
                    {
                        "company_id": company_id,
                        "username": f"user{n}",
                        "password_hash": password_hash,
                        "role": "user",
                        "first_name": "Bench",
                        "last_name": f"User {n}",
                        "extension": str(10000 + n),
                        "direct_number": f"+3120{1000000 + n}",
                        "mobile_number": f"+316{10000000 + n}",
                        "licences": licensed,
                        "pin_hash": None,
                        "created_at": now,
                    }
                    for n in range(users)
                ],
            )
            ids = list((await connection.execute(select(User.id).order_by(User.id))).scalars())
            tokens = [secrets.token_urlsafe(32) for _ in ids]
            await connection.execute(
                insert(AuthSession),
                [
                    {
                        "token_hash": hashlib.sha256(token.encode()).hexdigest(),
                        "user_id": user_id,
                        "device_name": "bench",
                        "created_at": now,
                        "expires_at": now + timedelta(days=1),
                    }
                    for user_id, token in zip(ids, tokens, strict=True)
                ],
            )
        return tokens
    finally:
        await engine.dispose()


def start_server(
    data_dir: Path, database_url: str, port: int, log_file: Path, core: int = 0
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HIPPER_DATA_DIR": str(data_dir),
        "HIPPER_DATABASE_URL": database_url,
        "HIPPER_HTTP_HOST": "127.0.0.1",
        "HIPPER_HTTP_PORT": str(port),
        "HIPPER_SIP_PORT": str(free_port()),
        "HIPPER_LOG_LEVEL": "INFO",
        "HIPPER_LOG_JSON": "true",
    }
    env.pop("HIPPER_CONFIG", None)
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hipper", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            preexec_fn=lambda: os.sched_setaffinity(0, {core}),
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: see {log_file}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not become healthy")


def run_load(url: str, op: str, rate: float, seconds: float, tokens_file: Path, cpu: int) -> dict[str, Any]:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.api.load",
            "--url",
            url,
            "--op",
            op,
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--tokens",
            str(tokens_file),
            "--cpu",
            str(cpu),
        ],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=seconds * 3 + 60,
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def start_py_spy(pid: int, db: str, op: str, rate: float, seconds: float, cpu: int) -> subprocess.Popen[bytes]:
    """py-spy on the server for one rate, on the load generator's core; samples holding the GIL, without pausing.

    Collapsed stacks ("raw") go to bench/api/results/profiles/<db>-<op>-<rate>.txt; `bench.api.stacks` sums
    them by area. Costs the load generator's core some CPU, so latency figures of a profiled run are not kept.
    """
    spy = Path(sys.executable).parent / "py-spy"
    out = RESULTS / "profiles" / f"{db}-{op}-{rate:.0f}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [str(spy), "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--nonblocking", "--gil"]
    return subprocess.Popen(
        [*command, "--duration", str(int(seconds)), "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loop_lag_max_ms(url: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "hipper_event_loop_lag_max_seconds":
                return float(sample.value) * 1000
    return None


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rates", default="100,250,500,750,1000", help="requests per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per rate (after 1 s warm-up)")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--ops", default="get,put")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (database, server log)")
    parser.add_argument(
        "--server-core",
        type=int,
        default=0,
        help="the core the server runs on; the load generator takes another (on a shared machine, the quieter one)",
    )
    parser.add_argument(
        "--py-spy",
        action="store_true",
        help="sample the server with py-spy during each rate (collapsed stacks in bench/api/results/profiles/)",
    )
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or args.server_core not in cores:
        sys.exit("needs two cores: one for the server (--server-core), one for the load generator")
    load_core = next(core for core in cores if core != args.server_core)

    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the server and PostgreSQL are stopped below.
    signal.signal(signal.SIGTERM, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="hipper-bench-"))
    postgres: PostgresServer | None = None
    server: subprocess.Popen[bytes] | None = None
    try:
        if args.db == "postgresql":
            postgres = PostgresServer()
            postgres.start()
            database_url = postgres.url()
        else:
            database_url = f"sqlite+aiosqlite:///{work / 'hipper.db'}"
        print(f"creating {args.users} users on {args.db} …", file=sys.stderr)
        tokens = asyncio.run(populate(database_url, args.users))
        tokens_file = work / "tokens.txt"
        tokens_file.write_text("\n".join(tokens))
        port = free_port()
        server = start_server(work / "data", database_url, port, work / "server.log", args.server_core)
        url = f"http://127.0.0.1:{port}"
        results = []
        for op in args.ops.split(","):
            for rate in rates:
                spy = start_py_spy(server.pid, args.db, op, rate, args.seconds + 1, load_core) if args.py_spy else None
                cpu_before = cpu_seconds(server.pid)
                load_before = os.getloadavg()[0]
                result = run_load(url, op, rate, args.seconds, tokens_file, load_core)
                # How busy the shared machine was: latency at a given rate mostly follows it (docs/performance.md).
                result["load_average"] = round(max(load_before, os.getloadavg()[0]), 2)
                if spy is not None:
                    spy.wait(timeout=30)
                # CPU time the server spent per answered request: a capacity figure that does not depend on how
                # busy the machine was (latency does). 1000 / cpu_ms ≈ requests per second on one free core.
                used = cpu_seconds(server.pid) - cpu_before
                answered = result["answered_total"]
                result["server_cpu_ms_per_request"] = used / answered * 1000 if answered else None
                results.append(result)
                print(
                    f"{args.db:10} {op.upper():4} {rate:6.0f}/s  p50 {fmt(result['p50_ms']):>7} ms  "
                    f"p99 {fmt(result['p99_ms']):>7} ms  max {fmt(result['max_ms']):>8} ms  "
                    f"cpu/req {fmt(result['server_cpu_ms_per_request'])} ms  errors {result['errors']}  "
                    f"load {result['load_average']}  "
                    f"statuses {result['statuses']}",
                    file=sys.stderr,
                )
        lag = loop_lag_max_ms(url)
        best = {
            op: max(
                (
                    r["rate"]
                    for r in results
                    if r["op"] == op
                    and r["errors"] == 0
                    and r["p99_ms"] is not None
                    and r["p99_ms"] < TARGET_P99_MS
                    and set(r["statuses"]) == {"200"}
                ),
                default=None,
            )
            for op in args.ops.split(",")
        }
        summary = {
            "db": args.db,
            "users": args.users,
            "seconds_per_rate": args.seconds,
            "cpu": os.cpu_count(),
            "server_core": args.server_core,
            "python": sys.version.split()[0],
            "loop_lag_max_ms": lag,
            "highest_rate_with_p99_below_10ms": best,
            "results": results,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.db}.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(
            "\n| op | rate (req/s) | p50 (ms) | p99 (ms) | p99.9 (ms) | max (ms) | errors "
            "| server CPU/request (ms) | load |",
            file=sys.stderr,
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|", file=sys.stderr)
        for r in results:
            print(
                f"| {r['op'].upper()} | {r['rate']:.0f} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | "
                f"{fmt(r['p999_ms'])} | {fmt(r['max_ms'])} | {r['errors']} | {fmt(r['server_cpu_ms_per_request'])} | "
                f"{r['load_average']} |",
                file=sys.stderr,
            )
        print(
            f"\nhighest rate with p99 < {TARGET_P99_MS} ms: {best}; event-loop lag max {fmt(lag)} ms", file=sys.stderr
        )
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        if postgres is not None:
            postgres.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)  # a 10,000-user database per run adds up


if __name__ == "__main__":
    main()
