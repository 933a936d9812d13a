"""Service-side subcommands: ``classify`` (and, as they land, ``serve``…)."""

from __future__ import annotations

from typing import Any


def add_parsers(sub: Any) -> None:
    """Register service subcommands (none yet beyond training's)."""
