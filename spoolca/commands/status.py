"""`spoolca status`: the stick report's facts on the appliance's terminal.

For the operator before and after a stick goes in: when it must come back, what is about
to expire, what the CA has done. The same facts as report.json (`--json`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from spoolca.commands.common import now, opened

__all__ = ["cmd_status"]


def cmd_status(args: argparse.Namespace) -> int:
    from spoolca.spool.tree import Spool
    from spoolca.stick.report.facts import gather

    with opened(args) as (config, store):
        facts = gather(config, store, now())
        incoming = config.spool_dir / "incoming"
        facts["queued"] = sum(1 for p in incoming.rglob("*") if p.is_file()
                              and not p.name.startswith(".")) if incoming.is_dir() else 0
        facts["cannot_take"] = [why for _path, why in Spool(config.spool_dir).untakeable(
            config.default_profile)]
    if args.json:
        print(json.dumps(facts, indent=2, sort_keys=True))
        return 0
    print("\n".join(_lines(facts)))
    return 0


def _lines(facts: dict[str, Any]) -> list[str]:
    back = facts["return_by"]
    lines = [f"Bring the stick back between {back['from']} and {back['until']} "
             f"({back['days_left']} days): the {back['authority']} CA's next CRL is made "
             f"from the first; its CRLs end at {back['lapses_at']}, {back['margin_days']} "
             "day(s) after the second." if back else
             "No CRL published yet: run `spoolca crl`."]
    if facts["next_trip"]:
        lines.append(f"Next trip planned: {facts['next_trip']}")
    lines += [f"WARNING: {w}" for w in facts["warnings"]]
    lines.append("CA certificates:")
    lines += [f"  {a['name']:<13} until {a['not_after']} ({a['days_left']} days)  "
              f"{a['subject']}" for a in facts["authorities"]]
    lines.append("CRLs:")
    lines += [f"  {c['authority']:<13} #{c['number']} next update {c['next_update']} "
              f"({c['days_left']} days), {c['entries']} revoked" for c in facts["crls"]]
    if facts.get("ssh"):
        ssh = facts["ssh"]
        lines.append("SSH certificates: " + "; ".join(
            f"{ca} CA {c['valid']} valid, {c['revoked']} revoked"
            for ca, c in ssh["counts"].items())
            + f"; {len(ssh['ending'])} ending within {ssh['within_days']} days "
            "(spoolca ssh list --ca user|host)")
    ending = ", ".join(f"{w['count']} within {w['within_days']} days"
                       for w in facts["expiring"])
    lines.append(f"Ending soon: {ending} (spoolca list --expiring DAYS)")
    totals = facts["totals"]
    since = totals["previous_trip_at"] or "the start"
    lines.append("Totals: {issued} issued, {rejected} rejected, {revoked} revoked overall"
                 .format(**totals["overall"]) + "; since the last stick export ({}): "
                 "{issued} issued, {rejected} rejected, {revoked} revoked".format(
                     since, **totals["since_previous_trip"]))
    lines.append(f"Queued in incoming/: {facts['queued']}")
    lines += [f"WAITING: {why}" for why in facts["cannot_take"]]
    lines.append(f"Audit head: entry {facts['audit']['seq']}, {facts['audit']['hash']}")
    return lines
