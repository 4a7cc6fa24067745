"""spoolca: an offline certificate authority driven by a spool directory."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
