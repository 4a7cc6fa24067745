"""Typed values out of a parsed TOML tree, every problem kept with its key path.

The configuration reports all its mistakes at once (`profiles.server.validity_days: must
be a positive integer`), so reading never stops at the first one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["TableReader"]


class TableReader:
    """Pulls typed values out of the TOML tree, recording every problem with its key path."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def table(self, parent: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            self.problems.append(f"{where}{key}: must be a table")
            return {}
        return value

    def get(self, table: Mapping[str, Any], key: str, kind: type | tuple[type, ...],
            default: Any, where: str) -> Any:
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) and kind is not bool:
            self.problems.append(f"{where}{key}: must be {_kind_name(kind)}, not a boolean")
            return default
        if not isinstance(value, kind):
            self.problems.append(f"{where}{key}: must be {_kind_name(kind)}")
            return default
        return value

    def positive(self, table: Mapping[str, Any], key: str, default: int, where: str) -> int:
        value: int = self.get(table, key, int, default, where)
        if value <= 0:
            self.problems.append(f"{where}{key}: must be a positive integer")
            return default
        return value

    def bounded(self, table: Mapping[str, Any], key: str, default: int, where: str,
                low: int, high: int) -> int:
        """An integer in LOW..HIGH (0 allowed where LOW is 0: "off")."""
        value: int = self.get(table, key, int, default, where)
        if not low <= value <= high:
            self.problems.append(f"{where}{key}: must be an integer from {low} to {high}")
            return default
        return value

    def strings(self, table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
        value = self.get(table, key, list, [], where)
        if not all(isinstance(item, str) for item in value):
            self.problems.append(f"{where}{key}: must be a list of strings")
            return ()
        return tuple(value)

    def unknown(self, table: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for key in table:
            if key not in allowed:
                self.problems.append(f"{where}{key}: unknown key")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", list: "a list",
             dict: "a table"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)
