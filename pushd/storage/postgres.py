# -*- test-case-name: tests.test_storage_contract -*-
"""
An :class:`~pushd.interfaces.IStore` in a PostgreSQL database, shared by any
number of pushd nodes.

Blocking calls run in a Twisted thread pool owned by the store, each on a
connection of a psycopg_pool ``ConnectionPool`` of the same size (psycopg 3,
in autocommit mode), never in the reactor thread.  Methods named ``_thd_*``
run in those threads.  Every write is one explicit transaction; a deadlock or
serialization failure between nodes is retried a few times; any other
``psycopg.Error`` reaches the caller as :class:`pushd.errors.StoreError`.

Nothing a node decides lives only in its memory, so several nodes may serve
the same devices:

- uploads are deduplicated by unique indexes (``INSERT ... ON CONFLICT DO
  NOTHING``), newer users and templates replace older ones by upsert
  (``ON CONFLICT (key) DO UPDATE``): a retried upload that lands on another
  node is stored once;
- a poll claims its commands with ``SELECT ... FOR UPDATE SKIP LOCKED``, so
  two nodes polled at once never deliver the same command;
- upload stamps and devices are changed under the device's row lock, and
  stamps only move forward; ``last_seen`` too;
- crypto sessions and device state are read from the database on each call.

PostgreSQL text cannot hold the character U+0000, which SQLite stores: a NUL
in a text field of a record or a device is stored as U+FFFD (the lossy
line's bytes are kept in ``raw`` anyway), rather than refusing the upload
forever.

The schema is created and upgraded by the numbered scripts
``schema/postgres-NNN.sql``, each applied once, in order, in its own
transaction holding an advisory lock (nodes starting together migrate one
after the other); script N ends by setting ``schema_version`` to N.
"""

from __future__ import annotations

import ctypes
import json
import re
import sys
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Callable, TypeVar

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from pushd.errors import StoreError
from pushd.interfaces import IStore
from pushd.model import (
    STAMP_TABLES,
    Command,
    Device,
    DeviceUpdate,
    IngestResult,
    Page,
    RecordQuery,
)
from pushd.protocol.records import CommandReply, FingerTemplate, Record, UserInfo
from pushd.storage._commands import (
    TEMPLATE_KINDS,
    command_item,
    fit_budget,
    matches,
)
from pushd.storage._events import (
    EVENT_TYPES,
    Event,
    command_event,
    device_event,
    event,
    event_object,
    events_for_rows,
)
from pushd.storage._sql import COMMAND_COLUMNS as _COMMAND_COLUMNS
from pushd.storage._sql import DEVICE_COLUMNS as _DEVICE_COLUMNS
from pushd.storage._sql import columns as _columns
from pushd.storage._sql import command_from_row as _command_from_row
from pushd.storage._sql import command_row as _command_row
from pushd.storage._sql import device_from_row as _device_from_row
from pushd.storage._sql import device_row as _device_row
from pushd.storage._sql import dumps as _dumps
from pushd.storage._sql import migrations as _migrations
from pushd.storage._sql import placeholders as _placeholders
from pushd.storage._sql import quote as _q
from pushd.storage._sql import where as _where
from pushd.storage._tables import (
    TABLES,
    Row,
    Table,
    advance_stamp,
    apply_update,
    clamp_limit,
    fid_order,
    group_by_table,
    table_for_kind,
    verification_rows,
)

__all__ = ["PostgresStore"]

_T = TypeVar("_T")
_Conn = psycopg.Connection


#: The key of the advisory lock held while the schema is created or upgraded.
_MIGRATION_LOCK = 0x70757368_64000001  # "pushd", 1

#: The key of the advisory lock outbox writers take turns with.
_OUTBOX_LOCK = 0x70757368_64000002  # "pushd", 2

#: How often a write that lost a deadlock or serialization race is tried.
_ATTEMPTS = 3

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _fix_pypy_ctypes() -> None:
    """
    Let psycopg's pure-Python libpq wrapper connect on PyPy before 7.3.12.

    Its ``PGconn`` hands libpq a ``ctypes.py_object`` holding a weak
    reference to itself; the ctypes of older PyPy keeps a weak reference to
    whatever a ``py_object`` holds, and a weak reference cannot be weakly
    referenced (``TypeError``).  In that case only, psycopg is given a
    callable that holds the weak reference instead, kept alive as long as
    its connection.  Nothing changes anywhere else.
    """
    if sys.implementation.name != "pypy" or psycopg.pq.__impl__ != "python":
        return

    class _Probe:
        pass

    try:
        ctypes.py_object(weakref.ref(_Probe()))
    except TypeError:
        pass
    else:  # a fixed PyPy
        return

    from psycopg.pq import pq_ctypes

    class _Ref:
        __slots__ = ("__weakref__", "_ref")

        def __init__(self, target: Any) -> None:
            self._ref = weakref.ref(target)

        def __call__(self) -> Any:
            return self._ref()

    alive: weakref.WeakKeyDictionary[Any, _Ref] = weakref.WeakKeyDictionary()

    def ref(target: Any) -> _Ref:
        holder = alive[target] = _Ref(target)
        return holder

    pq_ctypes.ref = ref  # type: ignore[assignment]


_fix_pypy_ctypes()


def _text(value: Any) -> Any:
    """A value PostgreSQL accepts: text without NUL (see the module documentation)."""
    if type(value) is str and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


def _clean(row: Row) -> Row:
    return tuple(_text(value) for value in row)


def _store_error(error: psycopg.Error) -> StoreError:
    return StoreError(f"Database error: {error}")


# -- devices ----------------------------------------------------------------

_SELECT_DEVICE = f"SELECT {_columns(_DEVICE_COLUMNS)} FROM devices"
_INSERT_DEVICE = (
    f"INSERT INTO devices ({_columns(_DEVICE_COLUMNS)})"
    f" VALUES ({_placeholders(len(_DEVICE_COLUMNS), '%s')}) ON CONFLICT (sn) DO NOTHING"
)
_UPDATE_DEVICE = (
    "UPDATE devices SET "
    + ", ".join(f"{_q(name)} = %s" for name in _DEVICE_COLUMNS[1:])
    + " WHERE sn = %s"
)

# -- commands ---------------------------------------------------------------

_COMMAND_INSERT = (
    f"INSERT INTO commands ({_columns(_COMMAND_COLUMNS)})"
    f" VALUES ({_placeholders(len(_COMMAND_COLUMNS), '%s')})"
)
_COMMAND_SELECT = f"SELECT seq, {_columns(_COMMAND_COLUMNS)} FROM commands"
_COMMAND_RETURNING = f" RETURNING seq, {_columns(_COMMAND_COLUMNS)}"


# -- record tables ----------------------------------------------------------

#: The PostgreSQL type of the arrays a column's values travel in.
_ARRAY_TYPES = {
    "text": "text[]",
    "strs": "text[]",
    "pairs": "text[]",
    "int": "bigint[]",
    "bool": "bigint[]",
    "blob": "bytea[]",
}


class _Statements:
    """
    The SQL of one record table, built once from its :class:`Table`.

    Rows are written by one statement per table and upload: one array per
    column, ``unnest``-ed in upload order (the ids follow it).
    """

    def __init__(self, table: Table) -> None:
        name, columns = _q(table.kind), _columns(table.names)
        # Arrays travel in binary (%b): psycopg formats text arrays far slower.
        arrays = ", ".join(f"%b::{_ARRAY_TYPES[codec]}" for _, codec in table.columns)
        values = (
            f"INSERT INTO {name} ({columns}) SELECT {columns}"
            f" FROM unnest({arrays}) WITH ORDINALITY AS v ({columns}, pushd_order)"
            " ORDER BY pushd_order"
        )
        if table.replaces:
            changed = [column for column in table.names if column not in table.key]
            self.insert = (
                f"{values} ON CONFLICT ({_columns(table.key)}) DO UPDATE SET "
                + ", ".join(f"{_q(column)} = EXCLUDED.{_q(column)}" for column in changed)
                # xmax = 0: the row was inserted, not replaced
                + f" RETURNING (xmax = 0), id, {_columns(table.key)}"
            )
            self.insert_returning = self.insert
        else:
            self.insert = values + (" ON CONFLICT DO NOTHING" if table.key else "")
            self.insert_returning = f"{self.insert} RETURNING id, {columns}"
        self.select = f"SELECT id, {columns} FROM {name}"
        self.count = f"SELECT count(*) FROM {name}"


_SQL = {kind: _Statements(table) for kind, table in TABLES.items()}


def _relink_sql(table: Table) -> str:
    """The SQL that points stored punches at the query (``CmdId=``) that sent them again."""
    key = _columns(table.key)
    arrays = ", ".join(["%b::text[]"] * len(table.key))
    return (
        f"UPDATE {_q(table.kind)} AS a SET cmd_id = %s FROM unnest({arrays}) AS k ({key})"
        f" WHERE ({', '.join('a.' + _q(c) for c in table.key)})"
        f" = ({', '.join('k.' + _q(c) for c in table.key)})"
        " AND a.cmd_id IS DISTINCT FROM %s"
    )


_RELINK = _relink_sql(TABLES["attendance"])


def _last_by_key(table: Table, rows: list[Row]) -> list[Row]:
    """:returns: for each key, its last row, in order of the key's first appearance."""
    latest: dict[Row, Row] = {}
    for row in rows:
        latest[table.key_of(row)] = row  # an existing key keeps its place
    return list(latest.values())


def _text_columns(columns: list[list[Any]]) -> bool:
    """
    Make the columns of a batch of rows storable (see :func:`_text`), in place.

    :returns: whether any value changed.
    """
    changed = False
    for i, column in enumerate(columns):
        try:
            found = "\x00" in "".join(column)  # one scan in C for a column of text
        except TypeError:  # bytes, numbers or NULLs: look value by value
            found = any(type(value) is str and "\x00" in value for value in column)
        if found:
            columns[i] = [_text(value) for value in column]
            changed = True
    return changed


def _write_rows(
    conn: _Conn[Any], table: Table, rows: list[Row], stored: list[tuple[int, Row]] | None = None
) -> int:
    """
    Store rows of one table.

    :param stored: if given, gets the ``(id, row)`` of each row stored or
        replaced, in order (for the outbox).
    :returns: how many rows are new (the others were duplicates, or
        replaced a stored version).
    """
    if not rows:
        return 0
    columns = [list(column) for column in zip(*rows)]
    if _text_columns(columns):
        rows = list(zip(*columns))
    if table.replaces:
        unique = _last_by_key(table, rows)  # one statement may not upsert a row twice
        if len(unique) < len(rows):
            columns = [list(column) for column in zip(*unique)]
    sql = _SQL[table.kind]
    cursor = conn.execute(sql.insert if stored is None else sql.insert_returning, columns)
    if table.replaces:
        returned = cursor.fetchall()
        if stored is not None:
            ids = {tuple(found[2:]): found[1] for found in returned}
            stored += [(ids[table.key_of(row)], row) for row in rows]
        return sum(1 for found in returned if found[0])
    if stored is not None:
        stored += sorted((found[0], tuple(found[1:])) for found in cursor.fetchall())
    return max(cursor.rowcount, 0)


def _thd_announce(conn: _Conn[Any], events: Sequence[Event]) -> None:
    """
    Write events into the outbox, in the transaction of the data they describe.

    Outbox writers take turns until they commit, so positions are handed out
    in commit order on every node: a sink reading past its position never
    misses an event committed later with a smaller one.
    """
    if events:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_OUTBOX_LOCK,))
        columns = [list(column) for column in zip(*events)]
        columns[-1] = [_dumps(data) for data in columns[-1]]
        conn.execute(
            "INSERT INTO outbox (id, sn, type, time, data)"
            " SELECT id, sn, type, time, data FROM unnest(%b::text[], %b::text[], %b::text[],"
            " %b::text[], %b::text[]) WITH ORDINALITY AS v (id, sn, type, time, data, pushd_order)"
            " ORDER BY pushd_order",
            [[_text(value) for value in column] for column in columns],
        )


# -- schema -----------------------------------------------------------------


def _first(conn: _Conn[Any], sql: str, params: Sequence[Any] = ()) -> Row | None:
    """:returns: the first row of a query, or ``None``."""
    return conn.execute(sql, params).fetchone()


def _thd_lock_stamps(conn: _Conn[Any], sn: str) -> dict[str, str] | None:
    """
    Lock a device's row until the end of the transaction.

    :returns: its upload stamps, ``None`` for an unknown device.
    """
    row = _first(conn, "SELECT stamps FROM devices WHERE sn = %s FOR UPDATE", (sn,))
    return None if row is None else dict(json.loads(row[0]))


def _thd_change_stamps(
    conn: _Conn[Any], sn: str, stamps: dict[str, str], changes: dict[str, str]
) -> None:
    """Write ``stamps`` (as :func:`_thd_lock_stamps` read them) updated with ``changes``."""
    merged = {**stamps, **changes}
    if merged != stamps:  # a terminal sends the same stamp again and again
        conn.execute("UPDATE devices SET stamps = %s WHERE sn = %s", (_text(_dumps(merged)), sn))


def _describe(conn: _Conn[Any]) -> str:
    """:returns: where ``conn`` is connected, password left out: ``user@host:port/db (schema)``."""
    info = conn.info
    row = _first(conn, "SELECT current_schema()")
    schema = row[0] if row else None
    return f"{info.user}@{info.host}:{info.port}/{info.dbname} (schema {schema})"


def _schema_version(conn: _Conn[Any]) -> int:
    """:returns: the version of the schema in the search path, 0 if it has none yet."""
    found = _first(conn, "SELECT to_regclass('schema_version') IS NOT NULL")
    if not (found and found[0]):
        return 0
    row = _first(conn, "SELECT version FROM schema_version")
    return 0 if row is None else int(row[0])


@implementer(IStore)
class PostgresStore:
    """
    A store in the PostgreSQL database at ``url``; see :class:`pushd.interfaces.IStore`.

    :param url: a libpq connection URL (``postgresql://user:password@host:port/db``);
        it may hold a password, so it is never logged.
    :param reactor: the reactor the thread pool reports to (``IReactorCore`` and
        ``IReactorFromThreads``); the global reactor by default.
    :param schema: the PostgreSQL schema to keep the tables in, created if
        missing; the connection's default search path when ``None``.
    :param connections: how many connections (and threads) at most.
    :param timeout: seconds to wait for a connection before a call fails.
    :raises ValueError: for a schema name that is not a plain identifier.
    """

    kind = "postgresql"

    shared = True
    log = Logger()
    schema_version = 0
    #: Writes that may wait for a connection before new ones are refused.
    max_queued = 1000
    _outbox_on = False

    def __init__(
        self,
        url: str,
        reactor: Any = None,
        schema: str | None = None,
        connections: int = 4,
        timeout: float = 10.0,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"Not a plain PostgreSQL schema name: {schema!r}")
        self.url = url
        self.schema = schema
        self._reactor = reactor
        self._size = max(1, connections)
        self._timeout = timeout
        self._threads: ThreadPool | None = None
        self._pool: ConnectionPool[Any] | None = None  # set and used in the threads
        self._shutdown_trigger: Any = None
        self._writes = 0  # writes waiting or running
        self._where = ""  # user@host:port/database (schema), for the log
        self._applied: list[int] = []  # the schema scripts this open() applied

    def _connect_options(self) -> dict[str, Any]:
        """The keyword arguments of every connection."""
        options: dict[str, Any] = {
            "autocommit": True,  # transactions are explicit
            "connect_timeout": max(1, round(self._timeout)),
            "application_name": "pushd",
        }
        if self.schema is not None:
            options["options"] = f"-c search_path={self.schema}"
        return options

    # -- lifecycle -------------------------------------------------------

    def open(self) -> Deferred[None]:
        threads = ThreadPool(minthreads=1, maxthreads=self._size, name="pushd-postgresql")
        threads.start()
        self._threads = threads
        self._shutdown_trigger = self._reactor.addSystemEventTrigger(
            "during", "shutdown", threads.stop
        )
        opened = deferToThreadPool(self._reactor, threads, self._thd_open)
        opened.addCallback(self._log_open)
        opened.addErrback(self._stop_threads)
        return opened

    def _log_open(self, _: object) -> None:
        self.log.info(
            "PostgreSQL store {where}, schema version {version}{applied},"
            " {size} connections at most",
            where=self._where,
            version=self.schema_version,
            applied=f" (applied now: {', '.join(map(str, self._applied))})"
            if self._applied
            else "",
            size=self._size,
        )

    def close(self) -> Deferred[None]:
        if self._threads is None:
            return succeed(None)
        closed = deferToThreadPool(self._reactor, self._threads, self._thd_close)
        closed.addBoth(self._stop_threads)
        return closed

    def _stop_threads(self, result: _T) -> _T:
        threads, self._threads = self._threads, None
        if threads is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            threads.stop()
        return result

    def _thd_open(self) -> None:
        try:
            with psycopg.connect(self.url, **self._connect_options()) as conn:
                self._thd_migrate(conn)
                self._where = _describe(conn)
            pool: ConnectionPool[Any] = ConnectionPool(
                self.url,
                kwargs=self._connect_options(),
                min_size=1,
                max_size=self._size,
                timeout=self._timeout,
                name="pushd",
                open=False,
            )
            try:
                pool.open(wait=True, timeout=self._timeout)
            except BaseException:
                pool.close()  # or its workers would go on trying to connect
                raise
        except psycopg.Error as e:
            raise _store_error(e) from e
        self._pool = pool

    def _thd_migrate(self, conn: _Conn[Any]) -> None:
        """Apply the schema scripts not applied yet, each in one transaction."""
        migrations = _migrations("postgres")
        for number, script in migrations:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                if self.schema is not None:
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(self.schema)}")
                if _schema_version(conn) >= number:
                    continue
                conn.execute(script.encode())  # several statements: sent as they are
                if _schema_version(conn) != number:
                    raise StoreError(
                        f"Schema script {number} does not set schema_version to {number}"
                    )
                self._applied.append(number)
        version = self.schema_version = _schema_version(conn)
        latest = migrations[-1][0]
        if version > latest:
            raise StoreError(
                f"The database schema is version {version}; this pushd knows up to {latest}"
            )

    def _thd_close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _run(self, f: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """:returns: Deferred firing with ``f(connection, *args)``, called in a pool thread."""
        return self._call(False, f, args)

    def _write(self, f: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """Like :meth:`_run`, in a transaction: committed when the Deferred fires."""
        return self._call(True, f, args)

    def _call(self, write: bool, f: Callable[..., _T], args: tuple[Any, ...]) -> Deferred[_T]:
        if self._threads is None:
            return fail(StoreError("The store is not open"))
        if not write:
            return deferToThreadPool(self._reactor, self._threads, self._thd_call, write, f, args)
        if self._writes >= self.max_queued:
            # back-pressure: refuse now (503, the device retries) rather than queue without bound
            return fail(StoreError("store busy: too many writes waiting"))
        self._writes += 1
        done = deferToThreadPool(self._reactor, self._threads, self._thd_call, write, f, args)
        return done.addBoth(self._written)

    def _written(self, result: _T) -> _T:
        self._writes -= 1
        return result

    def _thd_call(self, write: bool, f: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        for attempt in range(1, _ATTEMPTS + 1):
            pool = self._pool
            if pool is None:
                raise StoreError("The store is not open")
            try:
                with pool.connection() as conn:
                    if not write:
                        return f(conn, *args)
                    with conn.transaction():
                        return f(conn, *args)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as e:
                if attempt == _ATTEMPTS:
                    raise _store_error(e) from e
                self._reactor.callFromThread(
                    self.log.info,
                    "Retrying a write after a conflict between nodes: {error}",
                    error=e,
                )
            except psycopg.Error as e:
                raise _store_error(e) from e
        raise AssertionError("unreachable")  # pragma: no cover

    # -- devices ---------------------------------------------------------

    def get_device(self, sn: str) -> Deferred[Device | None]:
        return self._run(self._thd_get_device, sn)

    def _thd_get_device(self, conn: _Conn[Any], sn: str, lock: bool = False) -> Device | None:
        sql = _SELECT_DEVICE + " WHERE sn = %s" + (" FOR UPDATE" if lock else "")
        row = _first(conn, sql, (sn,))
        return None if row is None else _device_from_row(row)

    def list_devices(self) -> Deferred[list[Device]]:
        return self._run(self._thd_list_devices)

    def _thd_list_devices(self, conn: _Conn[Any]) -> list[Device]:
        rows = conn.execute(_SELECT_DEVICE + " ORDER BY sn").fetchall()
        return [_device_from_row(row) for row in rows]

    def add_device(self, sn: str, state: str, when: str) -> Deferred[Device]:
        device = Device(sn=sn, state=state, first_seen=when, last_seen=when)
        return self._write(self._thd_add_device, device)

    def _thd_add_device(self, conn: _Conn[Any], device: Device) -> Device:
        added = conn.execute(_INSERT_DEVICE, _clean(_device_row(device))).rowcount
        stored = self._thd_get_device(conn, device.sn)
        assert stored is not None
        if added and stored.state == "pending" and self._outbox_on:
            _thd_announce(conn, [device_event(stored, "device.pending", stored.first_seen)])
        return stored

    def update_device(self, sn: str, update: DeviceUpdate) -> Deferred[Device | None]:
        return self._write(self._thd_update_device, sn, update)

    def _thd_update_device(self, conn: _Conn[Any], sn: str, update: DeviceUpdate) -> Device | None:
        device = self._thd_get_device(conn, sn, lock=True)
        if device is None:
            return None
        device = apply_update(device, update)
        conn.execute(_UPDATE_DEVICE, (*_clean(_device_row(device))[1:], sn))
        return device

    def record_seen(self, seen: Sequence[tuple[str, str, str]]) -> Deferred[None]:
        latest: dict[str, tuple[str, str]] = {}
        for sn, ip, when in seen:  # the latest sighting of each device (ties: the last one)
            if sn not in latest or when >= latest[sn][1]:
                latest[sn] = (ip, when)
        # in one order on every node, so two nodes never wait for each other's rows
        params = [(when, _text(ip), sn, when) for sn, (ip, when) in sorted(latest.items())]
        return self._write(self._thd_record_seen, params)

    def _thd_record_seen(self, conn: _Conn[Any], params: list[tuple[str, str, str, str]]) -> None:
        with conn.cursor() as cursor:
            cursor.executemany(
                "UPDATE devices SET last_seen = %s, ip = %s WHERE sn = %s AND last_seen <= %s",
                params,
            )

    def crypto_state(self, sn: str) -> Deferred[bytes | None]:
        return self._run(self._thd_crypto_state, sn)

    def _thd_crypto_state(self, conn: _Conn[Any], sn: str) -> bytes | None:
        row = _first(conn, "SELECT state FROM crypto_state WHERE sn = %s", (sn,))
        return None if row is None else bytes(row[0])

    def set_crypto_state(self, sn: str, state: bytes | None) -> Deferred[None]:
        return self._write(self._thd_set_crypto_state, sn, state)

    def _thd_set_crypto_state(self, conn: _Conn[Any], sn: str, state: bytes | None) -> None:
        if state is None:
            conn.execute("DELETE FROM crypto_state WHERE sn = %s", (sn,))
        else:
            conn.execute(
                "INSERT INTO crypto_state (sn, state) VALUES (%s, %s)"
                " ON CONFLICT (sn) DO UPDATE SET state = EXCLUDED.state",
                (sn, bytes(state)),
            )

    def reset_stamps(self, sn: str) -> Deferred[None]:
        zeros = {table: "0" for table in STAMP_TABLES}
        return self._write(self._thd_set_stamps, sn, lambda stamps: zeros)

    def _thd_set_stamps(
        self,
        conn: _Conn[Any],
        sn: str,
        change: Callable[[dict[str, str]], dict[str, str]],
    ) -> None:
        """Merge ``change(stamps)`` into the stamps of a known device, under its row lock."""
        stamps = _thd_lock_stamps(conn, sn)
        if stamps is not None:
            _thd_change_stamps(conn, sn, stamps, change(stamps))

    # -- uploads ---------------------------------------------------------

    def ingest(
        self,
        sn: str,
        records: Sequence[Record],
        stamp: tuple[str, str] | None,
        received: str,
        cmd_id: str | None,
    ) -> Deferred[IngestResult]:
        context = {"sn": sn, "received": received, "updated": received, "cmd_id": cmd_id}
        try:
            groups = group_by_table(records, context)  # encoded here, not in a thread
        except (TypeError, ValueError):
            return fail()
        return self._write(self._thd_ingest, context, groups, stamp)

    def _thd_ingest(
        self,
        conn: _Conn[Any],
        context: dict[str, Any],
        groups: list[tuple[Table, list[Row]]],
        stamp: tuple[str, str] | None,
    ) -> IngestResult:
        sn, received, cmd_id = context["sn"], context["received"], context["cmd_id"]
        # Lock the device first: uploads of one device, on any node, queue here
        # instead of locking each other's records in different orders.
        stamps = None if stamp is None else _thd_lock_stamps(conn, sn)
        counts: Counter[str] = Counter()
        announced: list[Event] = []
        for table, rows in groups:
            stored: list[tuple[int, Row]] | None = (
                [] if self._outbox_on and table.kind in EVENT_TYPES else None
            )
            new = _write_rows(conn, table, rows, stored)
            if stored:
                announced += events_for_rows(table, stored, sn, received)
            if table.kind == "rejected":
                counts["rejected"] += new
            elif table.replaces:
                counts["stored"] += new
                counts["updated"] += len(rows) - new
            else:
                counts["stored"] += new
                counts["duplicates"] += len(rows) - new
            if table.kind == "attendance" and cmd_id and new < len(rows):
                # a query reply (CmdId=) re-sending known punches links them to the query
                keys = zip(*(_clean(table.key_of(row)) for row in rows))
                conn.execute(_RELINK, [cmd_id, *(list(column) for column in keys), cmd_id])
            if table.kind == "users":
                pins = sorted({table.key_of(row)[0] for row in rows})
                conn.execute(
                    "INSERT INTO device_users (pin, sn) SELECT pin, %s FROM unnest(%b::text[])"
                    " AS v (pin) ON CONFLICT DO NOTHING",
                    (_text(sn), [_text(pin) for pin in pins]),
                )
        if stamp is not None and stamps is not None:
            name, value = stamp
            _thd_change_stamps(conn, sn, stamps, {name: advance_stamp(stamps.get(name), value)})
        _thd_announce(conn, announced)
        return IngestResult(**counts)

    def record_replies(
        self, sn: str, replies: Sequence[CommandReply], received: str
    ) -> Deferred[int]:
        rows = TABLES["replies"].rows(replies, {"sn": sn, "received": received})
        return self._write(self._thd_insert, "replies", rows)

    def record_verification(
        self, sn: str, data: bytes, verdict: str, received: str
    ) -> Deferred[None]:
        rows = verification_rows(sn, data, verdict, received)
        d = self._write(self._thd_insert, "verifications", rows)
        return d.addCallback(lambda _: None)

    def _thd_insert(self, conn: _Conn[Any], kind: str, rows: list[Row]) -> int:
        return _write_rows(conn, TABLES[kind], rows)

    # -- commands ----------------------------------------------------------

    def add_command(self, command: Command) -> Deferred[Command]:
        return self._write(self._thd_add_command, command)

    def _thd_add_command(self, conn: _Conn[Any], command: Command) -> Command:
        try:
            conn.execute(_COMMAND_INSERT, _clean(_command_row(command)))
        except psycopg.errors.UniqueViolation:
            raise ValueError(f"command id {command.id!r} is already used") from None
        return command

    def get_command(self, cmd_id: str) -> Deferred[Command | None]:
        return self._run(self._thd_get_command, cmd_id)

    def _thd_get_command(self, conn: _Conn[Any], cmd_id: str, lock: bool = False) -> Command | None:
        sql = _COMMAND_SELECT + " WHERE id = %s" + (" FOR UPDATE" if lock else "")
        row = _first(conn, sql, (cmd_id,))
        return None if row is None else _command_from_row(row[1:])

    def claim_commands(
        self, sn: str, now: str, budget: int, limit: int, resend_before: str, max_attempts: int
    ) -> Deferred[list[Command]]:
        return self._write(
            self._thd_claim_commands, sn, now, budget, limit, resend_before, max_attempts
        )

    def _thd_claim_commands(
        self,
        conn: _Conn[Any],
        sn: str,
        now: str,
        budget: int,
        limit: int,
        resend_before: str,
        max_attempts: int,
    ) -> list[Command]:
        # Commands another node is claiming right now are locked: skipped, not waited for.
        rows = conn.execute(
            _COMMAND_SELECT + " WHERE sn = %s AND (status = 'pending'"
            " OR (status = 'sent' AND sent < %s AND attempts < %s))"
            " ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED",
            (sn, resend_before, max_attempts, max(1, limit)),
        ).fetchall()
        candidates = [_command_from_row(row[1:]) for row in rows]
        claimed = [
            replace(c, status="sent", sent=now, attempts=c.attempts + 1)
            for c in fit_budget(candidates, budget, limit)
        ]
        if claimed:
            conn.execute(
                "UPDATE commands SET status = 'sent', sent = %s, attempts = attempts + 1"
                " WHERE id = ANY(%s)",
                (now, [c.id for c in claimed]),
            )
        return claimed

    def complete_command(
        self,
        sn: str,
        cmd_id: str,
        status: str,
        return_code: str,
        reply: dict[str, Any],
        when: str,
    ) -> Deferred[Command | None]:
        return self._write(self._thd_complete_command, sn, cmd_id, status, return_code, reply, when)

    def _thd_complete_command(
        self,
        conn: _Conn[Any],
        sn: str,
        cmd_id: str,
        status: str,
        return_code: str,
        reply: dict[str, Any],
        when: str,
    ) -> Command | None:
        command = self._thd_get_command(conn, cmd_id, lock=True)
        if command is None or command.sn != sn:
            return None
        if command.status in ("pending", "sent"):
            command = replace(
                command, status=status, return_code=return_code, reply=reply, completed=when
            )
            conn.execute(
                "UPDATE commands SET status = %s, return_code = %s, reply = %s, completed = %s"
                " WHERE id = %s",
                (status, _text(return_code), _text(_dumps(reply)), when, cmd_id),
            )
            if self._outbox_on:
                _thd_announce(conn, [command_event(command, when)])
        return command

    def expire_commands(
        self, now: str, sent_before: str, max_attempts: int, created_before: str
    ) -> Deferred[list[Command]]:
        return self._write(
            self._thd_expire_commands, now, sent_before, max_attempts, created_before
        )

    def _thd_expire_commands(
        self,
        conn: _Conn[Any],
        now: str,
        sent_before: str,
        max_attempts: int,
        created_before: str,
    ) -> list[Command]:
        rows = conn.execute(
            "UPDATE commands SET status = 'expired', completed = %s"
            " WHERE (status = 'sent' AND attempts >= %s AND sent < %s)"
            " OR (status = 'pending' AND created < %s)" + _COMMAND_RETURNING,
            (now, max_attempts, sent_before, created_before),
        ).fetchall()
        return [_command_from_row(row[1:]) for row in sorted(rows, key=lambda row: row[0])]

    def _thd_query_commands(self, conn: _Conn[Any], query: RecordQuery) -> Page:
        limit = clamp_limit(query.limit)
        conditions: list[tuple[str, str, Any]] = [
            ("seq", ">", int(query.cursor) if query.cursor is not None else 0)
        ]
        for column, op, value in (
            ("sn", "=", query.sn),
            ("status", "=", query.status),
            ("created", ">=", query.since),
            ("created", "<=", query.until),
        ):
            if value is not None:
                conditions.append((column, op, value))
        sql = _COMMAND_SELECT + " WHERE " + " AND ".join(f"{c} {op} %s" for c, op, _ in conditions)
        rows = conn.execute(
            sql + " ORDER BY seq LIMIT %s", [*(v for _, _, v in conditions), limit + 1]
        ).fetchall()
        found = [(row[0], _command_from_row(row[1:])) for row in rows]
        page = found[:limit]
        more = len(found) > limit
        return Page([command_item(c) for _, c in page], str(page[-1][0]) if more else None)

    # -- events ----------------------------------------------------------------

    def use_outbox(self, enabled: bool) -> None:
        self._outbox_on = enabled

    def record_event(self, sn: str, type: str, data: dict[str, Any], when: str) -> Deferred[str]:
        if not self._outbox_on:
            return succeed("")
        made = event(sn, type, when, data)
        return self._write(self._thd_record_event, made)

    def _thd_record_event(self, conn: _Conn[Any], made: Event) -> str:
        _thd_announce(conn, [made])
        return made[0]

    def events_after(self, position: int, limit: int) -> Deferred[list[tuple[int, dict[str, Any]]]]:
        return self._run(self._thd_events_after, position, max(1, limit))

    def _thd_events_after(
        self, conn: _Conn[Any], position: int, limit: int
    ) -> list[tuple[int, dict[str, Any]]]:
        rows = conn.execute(
            "SELECT seq, id, sn, type, time, data FROM outbox WHERE seq > %s ORDER BY seq LIMIT %s",
            (position, limit),
        ).fetchall()
        return [
            (seq, event_object(i, sn, t, when, json.loads(d))) for seq, i, sn, t, when, d in rows
        ]

    def outbox_size(self, after: int) -> Deferred[int]:
        return self._run(self._thd_count, "SELECT count(*) FROM outbox WHERE seq > %s", [after])

    def sink_position(self, name: str) -> Deferred[int]:
        return self._run(self._thd_count, "SELECT position FROM sinks WHERE name = %s", [name])

    def set_sink_position(self, name: str, position: int) -> Deferred[None]:
        return self._write(self._thd_set_sink_position, name, position)

    def _thd_set_sink_position(self, conn: _Conn[Any], name: str, position: int) -> None:
        conn.execute(
            "INSERT INTO sinks (name, position) VALUES (%s, %s) ON CONFLICT (name)"
            " DO UPDATE SET position = greatest(sinks.position, EXCLUDED.position)",
            (_text(name), position),
        )

    def add_dead_letters(
        self, sink: str, events: Sequence[dict[str, Any]], reason: str, when: str
    ) -> Deferred[None]:
        rows = [_clean((sink, str(e.get("id", "")), _dumps(e), reason, when)) for e in events]
        return self._write(self._thd_add_dead_letters, rows)

    def _thd_add_dead_letters(self, conn: _Conn[Any], rows: list[Row]) -> None:
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO dead_letters (sink, event_id, event, reason, time)"
                " VALUES (%s, %s, %s, %s, %s)",
                rows,
            )

    def dead_letters(self, sink: str | None, query: RecordQuery) -> Deferred[Page]:
        try:
            after = int(query.cursor) if query.cursor is not None else 0
        except ValueError:
            return fail()
        return self._run(self._thd_dead_letters, sink, after, clamp_limit(query.limit))

    def _thd_dead_letters(self, conn: _Conn[Any], sink: str | None, after: int, limit: int) -> Page:
        where = " AND sink = %s" if sink is not None else ""
        params: list[Any] = [after, *([sink] if sink is not None else []), limit + 1]
        rows = conn.execute(
            "SELECT id, sink, event, reason, time FROM dead_letters WHERE id > %s"
            + where
            + " ORDER BY id LIMIT %s",
            params,
        ).fetchall()
        items = [
            {"id": i, "sink": s, "event": json.loads(e), "reason": r, "time": t}
            for i, s, e, r, t in rows[:limit]
        ]
        return Page(items, str(items[-1]["id"]) if len(rows) > limit else None)

    def purge_events(self, before: int) -> Deferred[int]:
        return self._write(self._thd_purge_events, before)

    def _thd_purge_events(self, conn: _Conn[Any], before: int) -> int:
        return conn.execute("DELETE FROM outbox WHERE seq <= %s", (before,)).rowcount

    # -- server-side users ---------------------------------------------------

    def save_user(self, user: UserInfo, templates: Sequence[Record], when: str) -> Deferred[None]:
        context = {"sn": "", "received": when, "updated": when, "cmd_id": None}
        try:
            groups = group_by_table([user, *templates], context)
        except (TypeError, ValueError):
            return fail()
        return self._write(self._thd_save_user, user.pin, groups)

    def _thd_save_user(
        self, conn: _Conn[Any], pin: str, groups: list[tuple[Table, list[Row]]]
    ) -> None:
        self._thd_drop_templates(conn, pin)
        for table, rows in groups:
            _write_rows(conn, table, rows)

    def _thd_drop_templates(self, conn: _Conn[Any], pin: str) -> int:
        return sum(
            conn.execute(f"DELETE FROM {_q(kind)} WHERE pin = %s", (pin,)).rowcount
            for kind in TEMPLATE_KINDS
        )

    def delete_user(self, pin: str) -> Deferred[bool]:
        return self._write(self._thd_delete_user, pin)

    def _thd_delete_user(self, conn: _Conn[Any], pin: str) -> bool:
        existed = conn.execute("DELETE FROM users WHERE pin = %s", (pin,)).rowcount > 0
        conn.execute("DELETE FROM device_users WHERE pin = %s", (pin,))
        return self._thd_drop_templates(conn, pin) > 0 or existed

    def user_templates(self, pin: str) -> Deferred[list[Record]]:
        return self._run(self._thd_user_templates, pin)

    def _thd_user_templates(self, conn: _Conn[Any], pin: str) -> list[Record]:
        found: list[Record] = []
        for kind in TEMPLATE_KINDS:
            rows = conn.execute(_SQL[kind].select + " WHERE pin = %s ORDER BY id", (pin,))
            found += [TABLES[kind].to_record(row[1:]) for row in rows.fetchall()]
        return found

    def user_devices(self, pin: str) -> Deferred[list[str]]:
        return self._run(self._thd_user_devices, pin)

    def _thd_user_devices(self, conn: _Conn[Any], pin: str) -> list[str]:
        rows = conn.execute("SELECT sn FROM device_users WHERE pin = %s ORDER BY sn", (pin,))
        return [sn for (sn,) in rows.fetchall()]

    # -- reads -----------------------------------------------------------

    def get_user(self, pin: str) -> Deferred[UserInfo | None]:
        return self._run(self._thd_get_user, pin)

    def _thd_get_user(self, conn: _Conn[Any], pin: str) -> UserInfo | None:
        row = _first(conn, _SQL["users"].select + " WHERE pin = %s", (pin,))
        return None if row is None else TABLES["users"].to_record(row[1:])

    def fingerprints(self, pin: str) -> Deferred[list[FingerTemplate]]:
        return self._run(self._thd_fingerprints, pin)

    def _thd_fingerprints(self, conn: _Conn[Any], pin: str) -> list[FingerTemplate]:
        rows = conn.execute(_SQL["fingerprints"].select + " WHERE pin = %s", (pin,)).fetchall()
        found = [TABLES["fingerprints"].to_record(row[1:]) for row in rows]
        return sorted(found, key=lambda template: fid_order(template.fid))

    def query(self, kind: str, query: RecordQuery) -> Deferred[Page]:
        if kind == "commands":
            try:
                matches(Command("", "", ""), query)  # refuses unknown filters at once
                if query.cursor is not None:
                    int(query.cursor)
            except ValueError:
                return fail()
            return self._run(self._thd_query_commands, query)
        try:
            table = table_for_kind(kind)
            where, params = _where(table.filters(query), "%s")
        except ValueError:
            return fail()
        limit = clamp_limit(query.limit)
        sql = _SQL[kind].select + where + " ORDER BY id LIMIT %s"
        return self._run(self._thd_query, table, sql, [*params, limit + 1], limit)

    def _thd_query(
        self, conn: _Conn[Any], table: Table, sql: str, params: list[Any], limit: int
    ) -> Page:
        rows = conn.execute(sql, params).fetchall()
        items = [table.item(row[0], row[1:]) for row in rows[:limit]]
        if table.kind == "users" and items:
            senders: dict[str, list[str]] = {item["pin"]: [] for item in items}
            for pin, sn in conn.execute(
                "SELECT pin, sn FROM device_users WHERE pin = ANY(%s) ORDER BY sn",
                (list(senders),),
            ).fetchall():
                senders[pin].append(sn)
            for item in items:
                item["devices"] = list(senders[item["pin"]])
        return Page(items, str(items[-1]["id"]) if len(rows) > limit else None)

    def count(self, kind: str, sn: str | None) -> Deferred[int]:
        if kind == "commands":
            where, params = (" WHERE sn = %s", [sn]) if sn is not None else ("", [])
            return self._run(self._thd_count, "SELECT count(*) FROM commands" + where, params)
        try:
            table = table_for_kind(kind)
            where, params = _where(table.filters(RecordQuery(sn=sn)), "%s")
        except ValueError:
            return fail()
        return self._run(self._thd_count, _SQL[kind].count + where, params)

    def _thd_count(self, conn: _Conn[Any], sql: str, params: list[Any]) -> int:
        row = _first(conn, sql, params)
        return int(row[0]) if row else 0
