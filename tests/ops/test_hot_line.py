"""The one INFO line per call and per request (`logs.hot_line`) rendered by one function: the same text as the
structlog chain it stands for (docs/performance.md, twelfth session)."""

from __future__ import annotations

import io
import logging
import random
import re
import string
from datetime import UTC, datetime
from typing import Any

import structlog

from hipper import logs

STAMP = re.compile(r'"timestamp": "(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?Z)"')


class Shown:
    """A value JSON cannot encode that tells structlog how to show it."""

    def __structlog__(self) -> str:
        return "shown"


class Record:
    def __init__(self, name: str) -> None:
        self.name = name


def _text(rng: random.Random) -> str:
    alphabet = string.printable + 'éßü€\u2028\x00\x7f"\\/😀'
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(14 if depth < 2 else 10)
    if kind == 0:
        return _text(rng)
    if kind == 1:
        return rng.randint(-(10**20), 10**20)
    if kind == 2:
        return rng.choice([0.0, -0.0, 1.5, 12.345, 1e300, float("inf"), float("-inf"), float("nan"), rng.random()])
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return datetime(2026, 12, 7, 16, rng.randrange(60), tzinfo=UTC)  # no JSON form: its repr
    if kind == 5:
        return Shown()
    if kind == 6:
        return b"bytes"
    if kind in (7, 8, 9):
        return rng.choice(["answered", "device", "+31201234567", "c0ffee@10.0.0.5"])
    if kind in (10, 11):
        return [_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randrange(3))}


def _key(rng: random.Random) -> str:
    if rng.random() < 0.2:
        secret = rng.choice(sorted(logs.SECRET_KEYS))
        return "".join(c.upper() if rng.random() < 0.5 else c for c in secret)
    if rng.random() < 0.1:
        return rng.choice(["level", "logger", "timestamp", "_record"])
    return rng.choice(["call_id", "outcome", "caller", "branches", "seconds", "path", "status"]) + _text(rng)[:3]


def _chain(logger: logging.Logger, event_dict: dict[str, Any]) -> str:
    """What hot_line did before: the configured processors in turn."""
    result: Any = event_dict
    for processor in logs._hot_processors:
        result = processor(logger, "info", result)
    assert isinstance(result, str)
    return result


def test_the_json_line_is_the_chains_line_for_many_random_events() -> None:
    stream = io.StringIO()
    logs.configure("INFO", json=True, stream=stream)
    rng = random.Random(9)
    try:
        render = logs._hot_render
        assert render is not None  # the JSON configuration renders in one function
        for index in range(3_000):
            structlog.contextvars.clear_contextvars()
            if rng.random() < 0.3:
                bound = {_key(rng): _value(rng) for _ in range(rng.randrange(3))}
                bound.pop("_record", None)  # structlog's own key: a LogRecord (below), never a bound value
                structlog.contextvars.bind_contextvars(**bound)
            fields = {_key(rng): _value(rng) for _ in range(rng.randrange(8))}
            fields.pop("event", None)
            if "_record" in fields:  # structlog's own: a LogRecord (whose logger name wins) or nothing
                fields["_record"] = Record(f"record.{index}") if rng.random() < 0.5 else None
            logger = logging.getLogger(rng.choice(["hipper.engine.call", "hipper.http", "x"]))
            expected = _chain(logger, {**fields, "event": "call.ended"})
            fast = render(logger, {**fields, "event": "call.ended"})
            # The two read the clock a moment apart: equal but for the stamp, which has the same form.
            stamps = STAMP.findall(expected), STAMP.findall(fast)
            assert len(stamps[0]) == len(stamps[1]) == 1, (expected, fast)
            assert STAMP.sub("", fast) == STAMP.sub("", expected), (fields, expected, fast)
    finally:
        structlog.contextvars.clear_contextvars()
        logs.configure("WARNING", json=True)


def test_only_the_json_configuration_renders_in_one_function() -> None:
    try:
        logs.configure("INFO", json=False, stream=io.StringIO())
        assert logs._hot_render is None  # the console renderer: the processors in turn
        logs.configure("INFO", json=True, stream=io.StringIO())
        assert logs._hot_render is not None
    finally:
        logs.configure("WARNING", json=True)
