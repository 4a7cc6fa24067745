"""`spoolca clock [status]` and `spoolca clock confirm --time T [--repair]`.

The clock guard (spoolca.register.clock) refuses a clock behind the register's floor or
past its ceiling. When the clock is right and the register is what is off (the appliance
was off for weeks; or a wrong clock once dated records ahead), the operator reads a clock
they trust, types it, and spoolca records the confirmation: an audit entry, never a
silent reset. Nothing is unlocked: the next signing process seals the entry.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from spoolca.commands.common import now, opened, parse_moment
from spoolca.errors import SpoolcaError
from spoolca.register.clock import CONFIRM_TOLERANCE
from spoolca.register.clockconfirm import record_confirmed, record_repaired
from spoolca.register.records import format_time, parse_time

__all__ = ["cmd_clock_confirm", "cmd_clock_status"]


def cmd_clock_status(args: argparse.Namespace) -> int:
    moment = now()
    with opened(args) as (_config, store):
        floor = store.clock_floor()
        problem = store.clock.problem(moment, floor)
        ceiling = format_time(store.clock.ceiling(parse_time(floor))) if floor else None
    facts = {"now": format_time(moment), "floor": floor, "ceiling": ceiling,
             "trusted": problem is None, "problem": problem.kind if problem else None}
    if args.json:
        print(json.dumps(facts, indent=2, sort_keys=True))
    elif problem is None:
        print(f"the clock reads {facts['now']}: trusted (the register's floor is {floor}, "
              f"its ceiling {ceiling})")
    else:
        print(problem.sentence("certificate or CRL"))
    return 0 if problem is None else 1


def cmd_clock_confirm(args: argparse.Namespace) -> int:
    moment = now()
    typed = parse_moment(args.time)
    if abs(moment - typed) > CONFIRM_TOLERANCE:
        raise SpoolcaError(
            f"the system clock reads {format_time(moment)}, not the {format_time(typed)} you "
            f"read off your clock (more than {CONFIRM_TOLERANCE.seconds // 60} minutes "
            "apart): set the system clock first (date -u -s ...), then confirm; nothing was "
            "recorded")
    with opened(args) as (_config, store):
        floor = store.clock_floor()
        problem = store.clock.problem(moment, floor)
        if problem is None:
            print(f"the clock reads {format_time(moment)}, within the register's bounds: "
                  "nothing to confirm")
            return 0
        data = {"typed": format_time(typed), "clock": format_time(moment), "floor_was": floor}
        if problem.kind == "ahead":
            record_confirmed(store, moment, data)
            print(f"recorded: the clock reads {format_time(moment)}, confirmed against your "
                  f"clock; the floor moves from {floor} to it")
            return 0
        ahead = store.dated_after(format_time(moment))
        if not args.repair:
            raise SpoolcaError(
                f"the clock reads {format_time(moment)}, earlier than the floor {floor}: "
                f"{_listed(ahead)} are dated after it. If your clock is right, those were "
                "made while the system clock ran ahead: run again with --repair to set the "
                "floor back to now (recorded); nothing was recorded")
        record_repaired(store, moment, {**data, "dated_ahead": ahead})
    print(f"recorded: the floor set back from {floor} to {format_time(moment)}. Dated ahead "
          f"and kept: {_listed(ahead)}. Certificates dated ahead become valid only at their "
          "notBefore: revoke any that should not (spoolca list shows them)")
    return 0


def _listed(ahead: dict[str, Any]) -> str:
    crls = f" ({', '.join(ahead['crls'])})" if ahead["crls"] else ""
    return (f"{ahead['certificates']} certificate(s), {len(ahead['crls'])} CRL(s){crls}, "
            f"{ahead['revocations']} revocation(s) and {ahead['audit_entries']} audit entries")
