"""The routing plan of one call, in process: what `Call.route_user` asks of the routing policy per call.

Usage: .venv/bin/python -m bench.domain.plan [--state plain|forwarding|simring|assistant|all] [--plans 20000]
[--rounds 5] [--first] [--check]

One "plan" is what `route_user` does between reading the user's snapshot and running the steps: the per-call copy
of the cached snapshot (`dataclasses.replace` with the devices and the "on a call" fact, as engine/snapshots.py
hands it out), the plan for an incoming call (a different caller every time, the clock's `now`) and the JSON the
call-log row stores. Whichever build is on the path runs: with `hipper.domain.routing.policy.plan_for_call` (the
per-snapshot memo) that, else `plan_incoming` + `model_dump(mode="json")` as before. So old and new code compare
side by side: `git archive <base> | tar -x -C /tmp/base` and `PYTHONPATH=/tmp/base/src python -m bench.domain.plan`
(the bench puts ./src on the path only when PYTHONPATH does not name a src directory).

States: `plain` (every service licensed, the defaults: desk phone and the mobile ring, voicemail on no answer),
`forwarding` (forward on busy and on no answer, voicemail on busy), `simring` (simultaneous ring to two numbers,
two Anywhere locations, call waiting on), `assistant` (the Personal Assistant is on: its plan depends on the caller
and the time, so it is planned afresh for every call).

Figures: CPU per plan on this process's clock, best of `rounds` (the machine is shared). For instruction counts
(deterministic): `PYTHONHASHSEED=0 valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null
python -m bench.domain.plan --state plain --plans N --rounds 1` for N and 3N; (count(3N) − count(N)) / 2N.
`--first`: every plan is the first of its snapshot (a snapshot just read, nothing kept from earlier calls).
`--check` prints each state's plan sentences and JSON once (to compare builds by eye or by diff).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if "src" not in os.environ.get("PYTHONPATH", ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from hipper.domain.routing import IncomingCall, RegisteredDevice, RoutingRules, UserState, plan_incoming, policy
from hipper.domain.services import SERVICES, ServiceSettings

DESK = RegisteredDevice(id=1, kind="desk", name="desk phone")
APP = RegisteredDevice(id=2, kind="mobile", name="app")
STATES: dict[str, tuple[dict[str, dict[str, Any]], bool]] = {
    "plain": ({}, False),
    "forwarding": (
        {
            "call-forwarding-busy": {"active": True, "destination": "+31201234888"},
            "call-forwarding-no-answer": {"active": True, "destination": "+31687654321", "rings": 3},
            "voicemail": {"active": True, "on_busy": True},
        },
        False,
    ),
    "simring": (
        {
            "simultaneous-ring": {
                "active": True,
                "targets": [{"number": "+31687654321"}, {"number": "+31201234888", "answer_confirmation": True}],
            },
            "anywhere": {
                "locations": [
                    {"name": "home", "number": "+31612340000", "call_control": True},
                    {"name": "car", "number": "+31612349999", "block_diversion": True},
                ]
            },
        },
        True,
    ),
    "assistant": (
        {
            "personal-assistant": {"active": True, "presence": "meeting", "transfer_to": "+31201234888"},
        },
        False,
    ),
}
CALLERS = [f"+3130123{n:04d}" for n in range(1000)]
RULES = RoutingRules()


def snapshot(name: str) -> tuple[UserState, bool]:
    changes, on_call = STATES[name]
    documents: dict[str, ServiceSettings] = {
        service: settings_class.model_validate(changes.get(service, {})) for service, settings_class in SERVICES.items()
    }
    state = UserState(
        user_id=7,
        extension="201",
        numbers={"direct": "+31201234101", "mobile": "+31612345601", "company": "+31201234000"},
        licences=frozenset(documents),
        services=documents,
    )
    return state, on_call


def route(cached: UserState, on_call: bool, caller: str, first: bool = False) -> tuple[Any, dict[str, Any]]:
    """What route_user does with the snapshot, in whichever build is on the path."""
    state = dataclasses.replace(cached, devices=(DESK, APP), on_call=on_call)
    if first and hasattr(state, "plans"):
        state.plans.clear()
    incoming = IncomingCall(caller=caller, called="fixed")
    now = datetime.now(UTC)
    plan_for_call = getattr(policy, "plan_for_call", None)
    if plan_for_call is not None:
        plan, dumped = plan_for_call(incoming, state, now, RULES)
        return plan, dumped
    plan = plan_incoming(incoming, state, now, RULES)
    return plan, plan.model_dump(mode="json")


def run(name: str, plans: int, first: bool) -> float:
    cached, on_call = snapshot(name)
    callers = CALLERS
    count = len(callers)
    started = time.process_time()
    for i in range(plans):
        route(cached, on_call, callers[i % count], first)
    return (time.process_time() - started) / plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", default="all", choices=[*STATES, "all"])
    parser.add_argument("--plans", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--first", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    names = list(STATES) if args.state == "all" else [args.state]
    build = "plan_for_call" if hasattr(policy, "plan_for_call") else "plan_incoming + model_dump"
    if args.check:
        for name in names:
            cached, on_call = snapshot(name)
            plan, dumped = route(cached, on_call, CALLERS[0])
            print(name, *plan.describe(), sep="\n  ")
            dumped.pop("at")
            print(" ", json.dumps(dumped, sort_keys=False))
        return
    for name in names:
        best = min(run(name, args.plans, args.first) for _ in range(args.rounds))
        first = ", the first of its snapshot" if args.first else ""
        print(f"{name}: {best * 1e6:.2f} µs per plan ({build}{first}, {policy.__file__})")


if __name__ == "__main__":
    main()
