"""Two builds' CPU per call measured side by side, in the same minutes: two `bench.sip.rates` processes at once.

Usage: .venv/bin/python -m bench.sip.pair --a <src of build A> --b <src of build B> [--rates 40] [--seconds 60]
       [--rounds 2] [--a-env NAME=VALUE] [--b-env NAME=VALUE] [--a-python PATH] [--b-python PATH]

One run of `bench.sip.calls` moves ± 15 % from the next on this machine (docs/performance.md), so two builds
measured one after the other cannot be told apart by less than that. Here both exchanges run at the same time on
the exchange core (each its own process, SQLite database, SIPp caller and callee on the load core, ports moved
apart by BENCH_PORT_OFFSET), so whatever the machine does in those minutes it does to both; each process measures
its own CPU. The two share the core (≈ 15–20 % of it each at 40/s), and the slots are swapped every round.
A build is a source tree (`git archive <commit> | tar -x -C <dir>`, then `--a <dir>/src`), imported ahead of this
checkout's through PYTHONPATH; the benchmark code is this checkout's. `--a-python` / `--b-python` run a side on
another interpreter (a venv's python with this checkout's dependencies installed), to compare interpreters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SLOT_OFFSETS = (0, 10000)
FIGURES = ("cpu_ms_per_call_net_of_idle", "gross_ms_per_call")


async def measure(
    source: str, offset: int, rates: str, seconds: int, extra: dict[str, str], python: str
) -> dict[int, dict[str, float]]:
    environment = {**os.environ, **extra, "PYTHONPATH": f"{source}{os.pathsep}{ROOT}", "BENCH_PORT_OFFSET": str(offset)}
    process = await asyncio.create_subprocess_exec(
        python, "-m", "bench.sip.rates", "--rates", rates, "--seconds", str(seconds),
        cwd=ROOT, env=environment, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    results: dict[int, dict[str, float]] = {}
    for line in output.decode(errors="replace").splitlines():
        rate, _, figures = line.partition(" ")
        if rate.isdigit() and figures.startswith("{"):
            measured = json.loads(figures)
            measured["gross_ms_per_call"] = measured["user_cpu_ms_per_call"] + measured["system_cpu_ms_per_call"]
            results[int(rate)] = measured
    if process.returncode != 0 or not results:
        raise RuntimeError(f"{source}: bench.sip.rates failed:\n{output.decode(errors='replace')[-3000:]}")
    return results


async def run(args: argparse.Namespace) -> None:
    ratios: dict[str, list[float]] = {figure: [] for figure in FIGURES}
    lines: list[dict[str, object]] = []
    builds = {"a": (args.a, dict(args.a_env), args.a_python), "b": (args.b, dict(args.b_env), args.b_python)}
    for round_ in range(args.rounds):
        order = ("a", "b") if round_ % 2 == 0 else ("b", "a")
        measured = await asyncio.gather(
            *(
                measure(builds[build][0], offset, args.rates, args.seconds, builds[build][1], builds[build][2])
                for build, offset in zip(order, SLOT_OFFSETS, strict=True)
            )
        )
        by_build = dict(zip(order, measured, strict=True))
        for rate in sorted(by_build["a"]):
            a, b = by_build["a"][rate], by_build["b"][rate]
            line: dict[str, object] = {"round": round_ + 1, "rate": rate, "a_slot": order.index("a")}
            for figure in FIGURES:
                line[f"a_{figure}"] = round(a[figure], 3)
                line[f"b_{figure}"] = round(b[figure], 3)
                line[f"b_over_a_{figure}"] = round(b[figure] / a[figure], 3)
                ratios[figure].append(b[figure] / a[figure])
            line["calls_ok"] = [a["calls_ok"], b["calls_ok"]]
            print(json.dumps(line), flush=True)
            lines.append(line)
    medians = {f"median_b_over_a_{figure}": round(statistics.median(values), 3) for figure, values in ratios.items()}
    print(json.dumps(medians))
    out = HERE / "results" / f"pair-{time.strftime('%Y-%m-%dT%H%M', time.gmtime())}.json"
    described = {
        "a": args.a, "b": args.b, "a_env": dict(args.a_env), "b_env": dict(args.b_env),
        "a_python": args.a_python, "b_python": args.b_python,
    }  # fmt: skip
    out.write_text(json.dumps({**described, "rounds": lines, **medians}, indent=1) + "\n")
    print("results written to", out)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--a", required=True, help="source tree of build A (its src directory)")
    parser.add_argument("--b", required=True, help="source tree of build B (its src directory)")
    parser.add_argument("--a-env", action="append", default=[], type=lambda text: tuple(text.split("=", 1)),
                        help="NAME=VALUE in build A's environment only (repeatable)")  # fmt: skip
    parser.add_argument("--b-env", action="append", default=[], type=lambda text: tuple(text.split("=", 1)),
                        help="NAME=VALUE in build B's environment only (repeatable)")  # fmt: skip
    parser.add_argument("--a-python", default=sys.executable, help="build A's interpreter (default: this one)")
    parser.add_argument("--b-python", default=sys.executable, help="build B's interpreter (default: this one)")
    parser.add_argument("--rates", default="40")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
