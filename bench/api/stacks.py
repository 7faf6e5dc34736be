"""Sum py-spy's collapsed stacks ("raw" format) of the API server by area and by function.

    .venv/bin/python -m bench.api.stacks bench/api/results/profiles/sqlite-get-500.txt [--top 30]

Areas are matched innermost first (a frame of the request log inside the metrics middleware counts as logging),
so each sample lands in exactly one area and the percentages add up to 100.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# (area, pattern on "function (file:line)"), tried from the innermost frame outwards; first match wins.
AREAS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in [
        ("logging", r"\((structlog|logging)/|hipper/logs\.py"),
        ("metrics", r"prometheus_client/|hipper/metrics\.py"),
        ("sqlalchemy", r"\(sqlalchemy/"),
        ("aiosqlite / sqlite3", r"\(aiosqlite/|sqlite3"),
        ("asyncpg", r"\(asyncpg/"),
        ("pydantic", r"\(pydantic(_core)?/"),
        ("fastapi (dependencies, validation, serialisation)", r"\(fastapi/"),
        ("starlette (routing, middleware, responses)", r"\(starlette/"),
        ("uvicorn (HTTP protocol)", r"\(uvicorn/"),
        ("hipper: notify", r"hipper/notify/"),
        ("hipper: api", r"hipper/api/"),
        ("hipper: store", r"hipper/store/"),
        ("hipper: other", r"hipper/"),
        ("asyncio / threads", r"\((asyncio|threading|concurrent|uvloop)/|queue\.py|threading\.py"),
    ]
]


def area_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in AREAS:
            if pattern.search(frame):
                return name
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25, help="functions to list by own time and by total time")
    args = parser.parse_args()
    areas: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for file in args.files:
        for line in file.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            frames = stack.split(";")
            # py-spy prefixes each stack with the thread's name (e.g. "process 123:\"python -m hipper serve\"").
            frames = [f for f in frames if "(" in f]
            samples += count
            areas[area_of(frames)] += count
            if frames:
                own[frames[-1]] += count
            for frame in set(frames):
                total[frame] += count
    print(f"{samples} samples")
    for name, count in areas.most_common():
        print(f"{count / samples * 100:6.1f} %  {name}")
    print("\nown time:")
    for frame, count in own.most_common(args.top):
        print(f"{count / samples * 100:6.1f} %  {frame}")
    print("\ntotal time:")
    for frame, count in total.most_common(args.top):
        print(f"{count / samples * 100:6.1f} %  {frame}")


if __name__ == "__main__":
    main()
