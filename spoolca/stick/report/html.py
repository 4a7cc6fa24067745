"""REPORT.html: the report's facts as one self-contained page.

No script, no external reference of any kind (fonts, styles, images): it must open in any
browser on a disconnected machine and print on paper. Jinja2 escapes every value, since
file names and subjects come from hostile sticks.
"""

from __future__ import annotations

from typing import Any

from spoolca.stick.report.timeline import layout

__all__ = ["render"]


def _when(stamp: str | None) -> str:
    """2026-12-23T21:35:59Z as people read it: 2026-12-23 21:35 UTC."""
    return f"{stamp[:10]} {stamp[11:16]} UTC" if stamp and len(stamp) >= 16 else (stamp or "")


def render(facts: dict[str, Any]) -> str:
    import jinja2  # only an export or `status --html` needs it

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("spoolca.stick.report", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)
    environment.filters["when"] = _when
    return environment.get_template("report.html.j2").render(
        facts=facts, timeline=layout(facts))
