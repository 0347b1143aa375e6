"""How client commands print: aligned tables and short times for people, JSON for scripts.

Every client command takes `-o text|json`. Text goes through `table` (columns padded to
their widest cell, a header in capitals); json prints the server's answer as it came, so a
script sees the API's own shapes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def emit_json(value: Any) -> None:
    """Print one JSON value (for `-o json`)."""
    print(json.dumps(value, indent=2))


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], empty: str = "") -> None:
    """Print rows under a header, each column as wide as its widest cell; `empty` (if
    given) goes to stderr instead of a header with no rows."""
    if not rows and empty:
        print(empty, file=sys.stderr)
        return
    cells = [[str(c) for c in header], *[[cell(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def cell(value: Any) -> str:
    """A value as a table shows it: `-` for nothing, one line, at most 60 characters."""
    if value is None or value == "":
        return "-"
    text = " ".join(str(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def when(value: str | None) -> str:
    """An ISO 8601 time from the API as `2026-01-01 12:00:00` (UTC), or `-`."""
    if not value:
        return "-"
    return value[:19].replace("T", " ")


def labels(value: dict[str, str] | None) -> str:
    """Labels as `k=v,k2=v2`, sorted."""
    return ",".join(f"{k}={v}" for k, v in sorted((value or {}).items()))
