"""IN lists and bulk UPDATEs sized for a fan-out to 10,000 hosts: the helpers that the
statements of the rollout, the push and the hosts' statuses share. SQL only."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Column, Table, Update, bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.session import deferred

# IN lists this long keep a push to 10,000 hosts to a few round trips (on an event loop busy
# with their statuses each await waits its turn), within the bind limits: 32,766 for SQLite
# since 3.32 and for asyncpg, 999 for an older SQLite
IN_LIST = 5000 if sqlite3.sqlite_version_info >= (3, 32, 0) else 900


def chunks(items: Sequence[Any], size: int = IN_LIST) -> list[Sequence[Any]]:
    """`items` cut into IN lists of at most `size` each."""
    return [items[i : i + size] for i in range(0, len(items), size)]


async def update_rows(
    session: AsyncSession,
    table: Table,
    key: Column[Any],
    rows: Mapping[Any, Mapping[str, Any]],
    scope: tuple[Column[Any], Any] | None = None,
) -> None:
    """UPDATE rows by a unique `key` column (key value -> the columns to set), within `scope`
    (a column and its value: `column = value`) if given. Rows that get the same values
    (10,000 targets turning healthy in one pass) share one UPDATE per IN list of keys; the
    others are one Core executemany per set of columns, whose per-row parameter processing
    was a sixth of a 10,000-host deploy's server CPU (py-spy). The ORM's bulk update by
    primary key cost three times as much again."""
    alike: dict[tuple[tuple[str, Any], ...], list[Any]] = {}
    shapes: dict[tuple[str, ...], list[tuple[Any, Mapping[str, Any]]]] = {}
    for k, row in rows.items():
        values = tuple(sorted(row.items()))
        try:
            alike.setdefault(values, []).append(k)
        except TypeError:  # a JSON value (a dict) is not hashable: updated on its own
            shapes.setdefault(tuple(sorted(row)), []).append((k, row))
    column, within = (scope[0], {"scope": scope[1]}) if scope is not None else (None, {})
    for values, keys in alike.items():
        if len(keys) == 1:
            shapes.setdefault(tuple(k for k, _ in values), []).append((keys[0], dict(values)))
            continue
        statement = _update(table, key, column, tuple(c for c, _ in values), many=False)
        bound = {f"v_{c}": v for c, v in values} | within
        for chunk in chunks(keys):
            await session.execute(statement, {"keys": list(chunk), **bound})
    for columns, group in shapes.items():
        statement = _update(table, key, column, columns, many=True)
        params = [
            {"row_key": k, **{f"v_{c}": row[c] for c in columns}, **within} for k, row in group
        ]
        await session.execute(statement, params)


@functools.lru_cache(maxsize=256)
def _update(
    table: Table, key: Column[Any], scope: Column[Any] | None, columns: tuple[str, ...], many: bool
) -> Update:
    """The UPDATE of `columns` (bound as `v_<column>`) of the rows whose `key` is one of
    `keys` (or, `many`, is `row_key`: one row per set of parameters), and whose `scope`
    column is `scope`: built once per shape, as building one cost about 0.2 ms."""
    match = key == bindparam("row_key") if many else key.in_(bindparam("keys", expanding=True))
    statement = update(table).where(match)
    if scope is not None:
        statement = statement.where(scope == bindparam("scope", type_=scope.type))
    values = {c: bindparam(f"v_{c}", type_=table.c[c].type) for c in columns}
    return deferred(statement.values(values))  # no caller reads the row counts
