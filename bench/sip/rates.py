"""CPU per call at several offered rates in one exchange process (and py-spy at one of them).

Usage: .venv/bin/python -m bench.sip.rates [--rates 10,20,40,80] [--seconds 20] [--users 200] [--spy-rate 10]

`bench.sip.calls` measures one rate per run; this runs the same set-ups (its own functions: the exchange wired as
`hipper serve` wires it, SIPp caller and callee on the load core) at each rate in turn against one exchange, so
how the CPU per call moves with the rate is seen without the spread between runs (docs/performance.md, "Eleventh
session"). Each figure is net of the idle rate and of the lag watch's own CPU, like `bench.sip.calls`.
`--spy-rate R` records the run at rate R with py-spy (raw stacks in the work directory, kept).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.sip import calls as bench


async def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="hipper-rates-"))
    log_fd = os.open(workdir / "exchange.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    saved_stderr = os.dup(2)
    os.dup2(log_fd, 2)  # the exchange logs at INFO into the work directory
    trunk_port, callee_port = bench.free_port(), bench.free_port()
    exchange = await bench.start_exchange(workdir, args.users, trunk_port, None)
    results: dict[str, object] = {
        "commit": bench.git_commit(), "interpreter": bench.interpreter(), "users": args.users, "workdir": str(workdir),
    }  # fmt: skip
    try:
        await bench.register_all(exchange, workdir, callee_port)
        await bench.settle(0.02, limit=10.0)
        exchange.idle_rate = await bench.idle_cpu_rate(3.0)
        watch = bench.Watch()
        watch.start()
        watched_from = time.process_time()
        await asyncio.sleep(3.0)
        exchange.watch_rate = max(0.0, (time.process_time() - watched_from) / 3.0 - exchange.idle_rate)
        await watch.stop()
        callee = await bench.start_callee(workdir, callee_port)
        await asyncio.sleep(1.0)
        for rate in args.rates:
            spy = None
            if rate == args.spy_rate and (py_spy := bench.find_py_spy()) is not None:
                spy = await asyncio.create_subprocess_exec(
                    *bench.on_core(bench.LOAD_CORE), py_spy, "record", "--pid", str(os.getpid()),
                    "--duration", str(args.seconds + 2), "--rate", "250", "--format", "raw",
                    "--output", str(workdir / f"spy-{rate}.txt"), "--nonblocking",
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
                await asyncio.sleep(1.0)
            measured = await bench.setup_through_exchange(
                exchange, workdir, rate * args.seconds, rate, trunk_port, name=f"rate-{rate}"
            )
            if spy is not None:
                await spy.wait()
            keep = ("calls_ok", "cpu_ms_per_call_net_of_idle", "user_cpu_ms_per_call", "system_cpu_ms_per_call",
                    "core_used_by_others_percent", "sql_statements_per_call")  # fmt: skip
            results[f"rate_{rate}"] = {key: measured[key] for key in keep}
            print(rate, json.dumps(results[f"rate_{rate}"]), file=sys.__stdout__, flush=True)
        await bench.stop_process(callee)
    finally:
        await exchange.close()
        os.dup2(saved_stderr, 2)
    slot = f"-ports{bench.PORT_OFFSET}" if bench.PORT_OFFSET else ""  # two at once (bench.sip.pair): two files
    out = bench.HERE / "results" / f"rates-{time.strftime('%Y-%m-%dT%H%M', time.gmtime())}{slot}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print("results written to", out)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rates", type=lambda text: [int(rate) for rate in text.split(",")], default=[10, 20, 40, 80])
    parser.add_argument("--seconds", type=int, default=20, help="seconds of calls at each rate")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--spy-rate", type=int, default=0, help="record this rate's run with py-spy")
    args = parser.parse_args()
    bench.pin_and_raise_limits()
    import uvloop

    uvloop.run(run(args))


if __name__ == "__main__":
    main()
