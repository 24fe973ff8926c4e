# -*- test-case-name: tests.test_transfer -*-
"""
Moving a site from one store to another (``pushctl migrate-store``), and
bringing a store's schema up to date (``pushctl migrate``).

Both stores are opened first, which applies the schema scripts to each; the
copy then goes table by table, in key order, from one read transaction on
the source into one write transaction on the target, so the target holds all
of the source or nothing.  Row ids, command sequence numbers and outbox
positions are kept (so are the positions of event sinks); the target's
sequences are moved past them.  Afterwards the row count of every table is
compared.

The copy is plain blocking database work, run in a thread by
:func:`migrate_store`; stop pushd while it runs, or the source may change
under it.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple

from twisted.internet.threads import deferToThread

from pushd.errors import StoreError
from pushd.interfaces import IStore
from pushd.storage import store_from_url
from pushd.storage._sql import columns, placeholders, quote

__all__ = ["TransferError", "copy_tables", "migrate_schema", "migrate_store"]

#: Rows read and written per round trip.
BATCH = 5000

#: Tables whose primary key is a sequence the target must move past.
_SERIAL = ("id", "seq")

Progress = Callable[[str, int, int], None]


class TransferError(Exception):
    """The copy cannot be done or did not add up; nothing was committed."""


class _Database:
    """One side of the copy: a DB-API connection and its dialect."""

    def __init__(self, store: IStore) -> None:
        self.kind = store.kind
        if store.kind == "sqlite":
            self.conn: Any = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[attr-defined]
            self.mark = "?"
        elif store.kind == "postgresql":
            import psycopg

            schema = store.schema  # type: ignore[attr-defined]
            options: Dict[str, Any] = {"autocommit": True, "application_name": "pushctl"}
            if schema is not None:
                options["options"] = f"-c search_path={schema}"
            self.conn = psycopg.connect(store.url, **options)  # type: ignore[attr-defined]
            self.mark = "%s"
        else:
            raise TransferError(f"a {store.kind} store cannot be copied from or to")

    def tables(self) -> List[str]:
        if self.kind == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        else:
            sql = (
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            )
        names = {row[0] for row in self.conn.execute(sql).fetchall()}
        names.discard("schema_version")
        return sorted(names)

    def columns(self, table: str) -> List[str]:
        cursor = self.conn.execute(f"SELECT * FROM {quote(table)} WHERE 1 = 0")
        return [d[0] for d in cursor.description]

    def count(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()[0])

    def begin(self, read_only: bool) -> None:
        if self.kind == "sqlite":
            self.conn.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")
        else:
            mode = "REPEATABLE READ READ ONLY" if read_only else "READ COMMITTED"
            self.conn.execute(f"BEGIN ISOLATION LEVEL {mode}")

    def rows(self, table: str, names: Sequence[str]) -> Iterator[List[Tuple[Any, ...]]]:
        order = ", ".join(quote(n) for n in names if n in _SERIAL) or "1"
        cursor = self.conn.execute(f"SELECT {columns(names)} FROM {quote(table)} ORDER BY {order}")
        while True:
            batch = cursor.fetchmany(BATCH)
            if not batch:
                return
            yield [tuple(row) for row in batch]

    def insert(self, table: str, names: Sequence[str], rows: List[Tuple[Any, ...]]) -> None:
        sql = (
            f"INSERT INTO {quote(table)} ({columns(names)})"
            f" VALUES ({placeholders(len(names), self.mark)})"
        )
        if self.kind == "postgresql":  # PostgreSQL text cannot hold NUL (as the store does)
            rows = [tuple(_no_nul(value) for value in row) for row in rows]
            with self.conn.cursor() as cursor:
                cursor.executemany(sql, rows)
        else:
            self.conn.executemany(sql, rows)

    def move_sequences(self, table: str, names: Sequence[str]) -> None:
        if self.kind != "postgresql":
            return  # SQLite's INTEGER PRIMARY KEY continues after the largest
        for name in names:
            if name not in _SERIAL:
                continue
            row = self.conn.execute("SELECT pg_get_serial_sequence(%s, %s)", (table, name))
            sequence = row.fetchone()[0]
            if sequence is not None:  # an id that is text (commands.id) has none
                self.conn.execute(
                    f"SELECT setval(%s, COALESCE(max({quote(name)}), 1),"
                    f" max({quote(name)}) IS NOT NULL) FROM {quote(table)}",
                    (sequence,),
                )

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except Exception:
            pass

    def close(self) -> None:
        self.conn.close()


def _no_nul(value: Any) -> Any:
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def copy_tables(source: _Database, target: _Database, progress: Progress) -> Dict[str, int]:
    """
    Copy every table of ``source`` into the empty ``target``, in one transaction.

    :returns: the number of rows of each table.
    :raises TransferError: the target is not empty, the schemas differ, or
        the counts do not match afterwards.
    """
    tables = source.tables()
    missing = sorted(set(tables) - set(target.tables()))
    if missing:
        raise TransferError(f"the target has no table {', '.join(missing)}")
    full = {table: n for table in tables if (n := target.count(table))}
    if full:
        listed = ", ".join(f"{n} rows in {table}" for table, n in sorted(full.items()))
        raise TransferError(f"the target store is not empty ({listed}); copy into an empty one")
    copied: Dict[str, int] = {}
    source.begin(read_only=True)
    target.begin(read_only=False)
    try:
        for table in tables:
            names = source.columns(table)
            unknown = sorted(set(names) - set(target.columns(table)))
            if unknown:
                raise TransferError(f"the target's {table} has no column {', '.join(unknown)}")
            total, done = source.count(table), 0
            for rows in source.rows(table, names):
                target.insert(table, names, rows)
                done += len(rows)
                progress(table, done, total)
            if not total:
                progress(table, 0, 0)
            target.move_sequences(table, names)
            copied[table] = done
        for table, expected in copied.items():
            found = target.count(table)
            if found != expected:
                raise TransferError(f"{table}: {expected} rows read but {found} in the target")
        target.commit()
    except Exception:
        target.rollback()
        raise
    finally:
        source.rollback()
    return copied


def _open(url: str, reactor: Any) -> Any:
    try:
        return store_from_url(url, reactor)
    except ValueError as e:
        raise TransferError(str(e)) from e


async def migrate_schema(url: str, reactor: Any) -> int:
    """Open the store at ``url`` (applying its schema scripts); :returns: its schema version."""
    store = _open(url, reactor)
    await store.open()
    try:
        return int(getattr(store, "schema_version", 0))
    finally:
        await store.close()


async def migrate_store(
    source_url: str, target_url: str, reactor: Any, progress: Progress
) -> Dict[str, int]:
    """
    Copy everything from the store at ``source_url`` into the empty store at
    ``target_url`` (both brought to the current schema first).

    :returns: the rows copied, per table.
    :raises TransferError: as :func:`copy_tables`, or a store that cannot be opened.
    """
    stores = [_open(source_url, reactor), _open(target_url, reactor)]
    for store in stores:
        if store.kind not in ("sqlite", "postgresql"):
            raise TransferError(f"a {store.kind} store cannot be copied from or to")
    opened = []
    try:
        for store in stores:
            await store.open()
            opened.append(store)

        def copy() -> Dict[str, int]:
            with closing(_Database(stores[0])) as source, closing(_Database(stores[1])) as target:
                return copy_tables(source, target, progress)

        try:
            result: Dict[str, int] = await deferToThread(copy)
        except (sqlite3.Error, StoreError) as e:
            raise TransferError(f"database error: {e}") from e
        except Exception as e:
            if type(e).__module__.startswith("psycopg"):
                raise TransferError(f"database error: {e}") from e
            raise
        return result
    finally:
        for store in opened:
            await store.close()
