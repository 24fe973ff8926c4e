# -*- test-case-name: tests.test_storage_contract -*-
"""
An :class:`~pushd.interfaces.IStore` in one SQLite file.

One connection, opened, used and closed in the single thread of a dedicated
thread pool, so blocking calls never run in the reactor thread and SQLite
never sees two writers.  Methods named ``_thd_*`` run in that thread.

The database runs in WAL mode with ``synchronous=FULL``: a device is told
``OK`` only after the commit, so a commit must survive a power cut.  Every
write is one explicit ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction; any
``sqlite3.Error`` reaches the caller as :class:`pushd.errors.StoreError`.

The schema is created and upgraded by the numbered scripts
``schema/sqlite-NNN.sql``, each applied once, in order, in its own transaction;
script N ends by setting ``schema_version`` to N.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Callable, Tuple, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
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

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")


# -- devices ----------------------------------------------------------------

_SELECT_DEVICE = f"SELECT {_columns(_DEVICE_COLUMNS)} FROM devices"
_INSERT_DEVICE = (
    f"INSERT OR IGNORE INTO devices ({_columns(_DEVICE_COLUMNS)})"
    f" VALUES ({_placeholders(len(_DEVICE_COLUMNS), '?')})"
)
_UPDATE_DEVICE = (
    "UPDATE devices SET "
    + ", ".join(f"{_q(name)} = ?" for name in _DEVICE_COLUMNS[1:])
    + " WHERE sn = ?"
)


# -- commands ---------------------------------------------------------------

_COMMAND_INSERT = (
    f"INSERT INTO commands ({_columns(_COMMAND_COLUMNS)})"
    f" VALUES ({_placeholders(len(_COMMAND_COLUMNS), '?')})"
)
_COMMAND_SELECT = f"SELECT seq, {_columns(_COMMAND_COLUMNS)} FROM commands"


# -- record tables ----------------------------------------------------------


class _Statements:
    """The SQL of one record table, built once from its :class:`Table`."""

    def __init__(self, table: Table) -> None:
        name, columns = _q(table.kind), table.names
        conflict = "OR IGNORE " if table.key and not table.replaces else ""
        self.insert = (
            f"INSERT {conflict}INTO {name} ({_columns(columns)})"
            f" VALUES ({_placeholders(len(columns), '?')})"
        )
        self.update = (
            f"UPDATE {name} SET "
            + ", ".join(f"{_q(column)} = ?" for column in columns)
            + " WHERE "
            + " AND ".join(f"{_q(column)} = ?" for column in table.key)
        )
        self.select = f"SELECT id, {_columns(columns)} FROM {name}"
        self.count = f"SELECT count(*) FROM {name}"
        self.last_id = f"SELECT max(id) FROM {name}"
        self.select_id = f"SELECT id FROM {name} WHERE " + " AND ".join(
            f"{_q(column)} = ?" for column in table.key
        )


_SQL = {kind: _Statements(table) for kind, table in TABLES.items()}

_RELINK = (
    "UPDATE attendance SET cmd_id = ? WHERE sn = ? AND pin = ? AND time = ?"
    " AND status = ? AND verify = ? AND workcode = ?"
)
# -- schema -----------------------------------------------------------------


_Outcome = Tuple[Deferred, bool, Any]


def _deliver(outcomes: list[_Outcome]) -> None:
    """Fire the Deferred of each write of a committed (or failed) group, in the reactor thread."""
    for done, succeeded, value in outcomes:
        if succeeded:
            done.callback(value)
        else:
            done.errback(Failure(value))


def _thd_announce(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
    """Write events into the outbox, in the transaction of the data they describe."""
    if events:
        conn.executemany(
            "INSERT INTO outbox (id, sn, type, time, data) VALUES (?, ?, ?, ?, ?)",
            [(i, sn, t, when, _dumps(data)) for i, sn, t, when, data in events],
        )


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back after a failure (the first error is the one to report; closing rolls back)."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _first(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Row | None:
    """
    :returns: the first row of a query, or ``None``.

    Every row is fetched, so the statement is finished: PyPy does not finish an
    abandoned cursor at once, and an unfinished statement blocks ``COMMIT``.
    """
    rows = conn.execute(sql, params).fetchall()
    return rows[0] if rows else None


def _schema_version(conn: sqlite3.Connection) -> int:
    """:returns: the version of the schema in the database, 0 if it has none yet."""
    if not _first(conn, "SELECT 1 FROM sqlite_master WHERE name = 'schema_version'"):
        return 0
    row = _first(conn, "SELECT version FROM schema_version")
    return 0 if row is None else int(row[0])


def _store_error(error: sqlite3.Error) -> StoreError:
    return StoreError(f"Database error: {error}")


@implementer(IStore)
class SQLiteStore:
    """
    A store in the SQLite database at ``path``; see :class:`pushd.interfaces.IStore`.

    :param path: the database file, created if missing (its directory must exist).
    :param reactor: the reactor the thread pool reports to (``IReactorCore`` and
        ``IReactorFromThreads``); the global reactor by default.
    """

    kind = "sqlite"

    shared = False
    log = Logger()
    schema_version = 0
    #: Writes that may wait for the database thread before new ones are refused.
    max_queued = 1000
    _outbox_on = False

    def __init__(self, path: str, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.path = path
        self._reactor = reactor
        self._pool: ThreadPool | None = None
        self._queued: deque[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = deque()
        self._shutdown_trigger: Any = None
        self._conn: sqlite3.Connection | None = None  # only touched in the pool's thread

    # -- lifecycle -------------------------------------------------------

    def open(self) -> Deferred[None]:
        pool = ThreadPool(minthreads=1, maxthreads=1, name="pushd-sqlite")
        pool.start()
        self._pool = pool
        self._shutdown_trigger = self._reactor.addSystemEventTrigger(
            "during", "shutdown", pool.stop
        )
        opened = deferToThreadPool(self._reactor, pool, self._thd_open)
        opened.addCallback(self._log_open)
        opened.addErrback(self._stop_pool)
        return opened

    def _log_open(self, _: object) -> None:
        self.log.info(
            "SQLite store {path}, schema version {version}",
            path=self.path,
            version=self.schema_version,
        )

    def close(self) -> Deferred[None]:
        if self._pool is None:
            return succeed(None)
        closed = self._run(self._thd_close)
        closed.addBoth(self._stop_pool)
        return closed

    def _stop_pool(self, result: _T) -> _T:
        pool, self._pool = self._pool, None
        if pool is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            pool.stop()
        return result

    def _run(self, f: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """:returns: Deferred firing with ``f(connection, *args)``, called in the pool's thread."""
        if self._pool is None:
            return fail(StoreError("The store is not open"))
        return deferToThreadPool(self._reactor, self._pool, self._thd_call, f, *args)

    def _thd_call(self, f: Callable[..., _T], *args: Any) -> _T:
        if self._conn is None:
            raise StoreError("The store is not open")
        try:
            return f(self._conn, *args)
        except sqlite3.Error as e:
            raise _store_error(e) from e

    def _write(self, f: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """
        Call ``f(connection, *args)`` in a transaction: its changes are
        committed when the Deferred fires, and none are if it fails.

        Writes queued while the thread is busy are committed together (group
        commit): each in a savepoint of its own, so one failing write fails
        alone, and all of them under one COMMIT, so a burst of uploads costs
        one disk sync instead of one each.
        """
        if self._pool is None:
            return fail(StoreError("The store is not open"))
        if len(self._queued) >= self.max_queued:
            # back-pressure: refuse now (503, the device retries) rather than queue without bound
            return fail(StoreError("store busy: too many writes waiting"))
        done: Deferred[_T] = Deferred()
        self._queued.append((f, args, done))
        group = self._run(self._thd_group)
        group.addCallbacks(_deliver, self._fail_queued)
        return done

    def _fail_queued(self, failure: Failure) -> None:
        while self._queued:
            try:
                _, _, done = self._queued.popleft()
            except IndexError:  # pragma: no cover - taken by the thread meanwhile
                break
            done.errback(failure)

    def _thd_group(self, conn: sqlite3.Connection) -> list[_Outcome]:
        """Run every queued write in one transaction; never raises, reports each outcome."""
        jobs = []
        while self._queued:
            try:
                jobs.append(self._queued.popleft())
            except IndexError:  # pragma: no cover
                break
        if not jobs:
            return []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            refused = _store_error(e)
            return [(done, False, refused) for _, _, done in jobs]
        outcomes: list[_Outcome] = []
        for position, (f, args, done) in enumerate(jobs):
            try:
                conn.execute("SAVEPOINT write")
                value = f(conn, *args)
                conn.execute("RELEASE write")
            except Exception as e:
                error: Exception = _store_error(e) if isinstance(e, sqlite3.Error) else e
                outcomes.append((done, False, error))
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK TO write")
                    conn.execute("RELEASE write")
                if not conn.in_transaction:  # SQLite gave up the whole transaction
                    outcomes += [(d, False, error) for _, _, d in jobs[position + 1 :]]
                    return [(d, False, error) for d, _, _ in outcomes]
            else:
                outcomes.append((done, True, value))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            _rollback(conn)
            error = _store_error(e)
            return [(d, False, error) for d, _, _ in outcomes]
        return outcomes

    def _thd_open(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)  # we BEGIN and COMMIT
        except sqlite3.Error as e:
            raise _store_error(e) from e
        try:
            _first(conn, "PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            migrations = _migrations("sqlite")
            for number, script in migrations:
                self._thd_migrate(conn, number, script)
            version = self.schema_version = _schema_version(conn)
            latest = migrations[-1][0]
            if version > latest:
                raise StoreError(
                    f"The database schema is version {version}; this pushd knows up to {latest}"
                )
        except sqlite3.Error as e:
            conn.close()
            raise _store_error(e) from e
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _thd_migrate(self, conn: sqlite3.Connection, number: int, script: str) -> None:
        """Apply schema script ``number`` in one transaction, unless it already was."""
        if _schema_version(conn) >= number:
            return
        try:
            # executescript() runs the script as it is, so it opens the
            # transaction itself; it is committed once the version is checked.
            conn.executescript("BEGIN IMMEDIATE;\n" + script)
            if _schema_version(conn) != number:
                raise StoreError(f"Schema script {number} does not set schema_version to {number}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def _thd_close(self, conn: sqlite3.Connection) -> None:
        self._conn = None
        conn.close()

    # -- devices ---------------------------------------------------------

    def get_device(self, sn: str) -> Deferred[Device | None]:
        return self._run(self._thd_get_device, sn)

    def _thd_get_device(self, conn: sqlite3.Connection, sn: str) -> Device | None:
        row = _first(conn, _SELECT_DEVICE + " WHERE sn = ?", (sn,))
        return None if row is None else _device_from_row(row)

    def list_devices(self) -> Deferred[list[Device]]:
        return self._run(self._thd_list_devices)

    def _thd_list_devices(self, conn: sqlite3.Connection) -> list[Device]:
        rows = conn.execute(_SELECT_DEVICE + " ORDER BY sn").fetchall()
        return [_device_from_row(row) for row in rows]

    def add_device(self, sn: str, state: str, when: str) -> Deferred[Device]:
        device = Device(sn=sn, state=state, first_seen=when, last_seen=when)
        return self._write(self._thd_add_device, device)

    def _thd_add_device(self, conn: sqlite3.Connection, device: Device) -> Device:
        added = conn.execute(_INSERT_DEVICE, _device_row(device)).rowcount
        stored = self._thd_get_device(conn, device.sn)
        assert stored is not None
        if added and stored.state == "pending" and self._outbox_on:
            _thd_announce(conn, [device_event(stored, "device.pending", stored.first_seen)])
        return stored

    def update_device(self, sn: str, update: DeviceUpdate) -> Deferred[Device | None]:
        return self._write(self._thd_update_device, sn, update)

    def _thd_update_device(
        self, conn: sqlite3.Connection, sn: str, update: DeviceUpdate
    ) -> Device | None:
        device = self._thd_get_device(conn, sn)
        if device is None:
            return None
        device = apply_update(device, update)
        conn.execute(_UPDATE_DEVICE, (*_device_row(device)[1:], sn))
        return device

    def record_seen(self, seen: Sequence[tuple[str, str, str]]) -> Deferred[None]:
        return self._write(self._thd_record_seen, list(seen))

    def _thd_record_seen(self, conn: sqlite3.Connection, seen: list[tuple[str, str, str]]) -> None:
        conn.executemany(
            "UPDATE devices SET last_seen = ?, ip = ? WHERE sn = ? AND last_seen <= ?",
            [(when, ip, sn, when) for sn, ip, when in seen],
        )

    def crypto_state(self, sn: str) -> Deferred[bytes | None]:
        return self._run(self._thd_crypto_state, sn)

    def _thd_crypto_state(self, conn: sqlite3.Connection, sn: str) -> bytes | None:
        row = _first(conn, "SELECT state FROM crypto_state WHERE sn = ?", (sn,))
        return None if row is None else bytes(row[0])

    def set_crypto_state(self, sn: str, state: bytes | None) -> Deferred[None]:
        return self._write(self._thd_set_crypto_state, sn, state)

    def _thd_set_crypto_state(self, conn: sqlite3.Connection, sn: str, state: bytes | None) -> None:
        if state is None:
            conn.execute("DELETE FROM crypto_state WHERE sn = ?", (sn,))
        else:
            conn.execute(
                "INSERT INTO crypto_state (sn, state) VALUES (?, ?)"
                " ON CONFLICT (sn) DO UPDATE SET state = excluded.state",
                (sn, state),
            )

    def reset_stamps(self, sn: str) -> Deferred[None]:
        zeros = {table: "0" for table in STAMP_TABLES}
        return self._write(self._thd_set_stamps, sn, lambda stamps: zeros)

    def _thd_set_stamps(
        self,
        conn: sqlite3.Connection,
        sn: str,
        change: Callable[[dict[str, str]], dict[str, str]],
    ) -> None:
        """Merge ``change(stamps)`` into the stamps of a known device."""
        row = _first(conn, "SELECT stamps FROM devices WHERE sn = ?", (sn,))
        if row is not None:
            stamps = json.loads(row[0])
            stamps.update(change(stamps))
            conn.execute(
                "UPDATE devices SET stamps = ? WHERE sn = ?",
                (json.dumps(stamps, sort_keys=True), sn),
            )

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
        return self._write(self._thd_ingest, records, stamp, context)

    def _thd_ingest(
        self,
        conn: sqlite3.Connection,
        records: Sequence[Record],
        stamp: tuple[str, str] | None,
        context: dict[str, Any],
    ) -> IngestResult:
        counts: Counter[str] = Counter()
        announced: list[Event] = []
        sn, received = context["sn"], context["received"]
        for table, rows in group_by_table(records, context):
            sql = _SQL[table.kind]
            if table.replaces:
                for row in rows:
                    if conn.execute(sql.update, row + table.key_of(row)).rowcount:
                        counts["updated"] += 1
                    else:
                        conn.execute(sql.insert, row)
                        counts["stored"] += 1
                    if self._outbox_on and table.kind in EVENT_TYPES:
                        found = _first(conn, sql.select_id, table.key_of(row))
                        assert found is not None
                        announced += events_for_rows(table, [(found[0], row)], sn, received)
            else:
                last = _first(conn, sql.last_id) if self._outbox_on else None
                before = conn.total_changes
                conn.executemany(sql.insert, rows)
                new = conn.total_changes - before
                if new and last is not None and table.kind in EVENT_TYPES:
                    fresh = conn.execute(sql.select + " WHERE id > ? ORDER BY id", (last[0] or 0,))
                    stored = [(r[0], tuple(r[1:])) for r in fresh.fetchall()]
                    announced += events_for_rows(table, stored, sn, received)
                if table.kind == "attendance" and context["cmd_id"] and new < len(rows):
                    # a query reply (CmdId=) re-sending known punches links them to the query
                    conn.executemany(
                        _RELINK, [(context["cmd_id"], *table.key_of(row)) for row in rows]
                    )
                if table.kind == "rejected":
                    counts["rejected"] += new
                else:
                    counts["stored"] += new
                    counts["duplicates"] += len(rows) - new
            if table.kind == "users":
                conn.executemany(
                    "INSERT OR IGNORE INTO device_users (pin, sn) VALUES (?, ?)",
                    {(table.key_of(row)[0], context["sn"]) for row in rows},
                )
        if stamp is not None:
            name, value = stamp
            self._thd_set_stamps(
                conn, context["sn"], lambda stamps: {name: advance_stamp(stamps.get(name), value)}
            )
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

    def _thd_insert(self, conn: sqlite3.Connection, kind: str, rows: list[Row]) -> int:
        conn.executemany(_SQL[kind].insert, rows)
        return len(rows)

    # -- commands ----------------------------------------------------------

    def add_command(self, command: Command) -> Deferred[Command]:
        return self._write(self._thd_add_command, command)

    def _thd_add_command(self, conn: sqlite3.Connection, command: Command) -> Command:
        try:
            conn.execute(_COMMAND_INSERT, _command_row(command))
        except sqlite3.IntegrityError:
            raise ValueError(f"command id {command.id!r} is already used") from None
        return command

    def get_command(self, cmd_id: str) -> Deferred[Command | None]:
        return self._run(self._thd_get_command, cmd_id)

    def _thd_get_command(self, conn: sqlite3.Connection, cmd_id: str) -> Command | None:
        row = _first(conn, _COMMAND_SELECT + " WHERE id = ?", (cmd_id,))
        return None if row is None else _command_from_row(row[1:])

    def claim_commands(
        self, sn: str, now: str, budget: int, limit: int, resend_before: str, max_attempts: int
    ) -> Deferred[list[Command]]:
        return self._write(
            self._thd_claim_commands, sn, now, budget, limit, resend_before, max_attempts
        )

    def _thd_claim_commands(
        self,
        conn: sqlite3.Connection,
        sn: str,
        now: str,
        budget: int,
        limit: int,
        resend_before: str,
        max_attempts: int,
    ) -> list[Command]:
        rows = conn.execute(
            _COMMAND_SELECT + " WHERE sn = ? AND (status = 'pending'"
            " OR (status = 'sent' AND sent < ? AND attempts < ?)) ORDER BY seq LIMIT ?",
            (sn, resend_before, max_attempts, limit),
        ).fetchall()
        candidates = [_command_from_row(row[1:]) for row in rows]
        claimed = [
            replace(c, status="sent", sent=now, attempts=c.attempts + 1)
            for c in fit_budget(candidates, budget, limit)
        ]
        conn.executemany(
            "UPDATE commands SET status = ?, sent = ?, attempts = ? WHERE id = ?",
            [(c.status, c.sent, c.attempts, c.id) for c in claimed],
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
        conn: sqlite3.Connection,
        sn: str,
        cmd_id: str,
        status: str,
        return_code: str,
        reply: dict[str, Any],
        when: str,
    ) -> Command | None:
        command = self._thd_get_command(conn, cmd_id)
        if command is None or command.sn != sn:
            return None
        if command.status in ("pending", "sent"):
            command = replace(
                command, status=status, return_code=return_code, reply=reply, completed=when
            )
            conn.execute(
                "UPDATE commands SET status = ?, return_code = ?, reply = ?, completed = ?"
                " WHERE id = ?",
                (status, return_code, _dumps(reply), when, cmd_id),
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
        conn: sqlite3.Connection,
        now: str,
        sent_before: str,
        max_attempts: int,
        created_before: str,
    ) -> list[Command]:
        rows = conn.execute(
            _COMMAND_SELECT + " WHERE (status = 'sent' AND attempts >= ? AND sent < ?)"
            " OR (status = 'pending' AND created < ?) ORDER BY seq",
            (max_attempts, sent_before, created_before),
        ).fetchall()
        expired = [
            replace(_command_from_row(row[1:]), status="expired", completed=now) for row in rows
        ]
        conn.executemany(
            "UPDATE commands SET status = 'expired', completed = ? WHERE id = ?",
            [(now, c.id) for c in expired],
        )
        return expired

    def _thd_query_commands(self, conn: sqlite3.Connection, query: RecordQuery) -> Page:
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
        sql = _COMMAND_SELECT + " WHERE " + " AND ".join(f"{c} {op} ?" for c, op, _ in conditions)
        rows = conn.execute(
            sql + " ORDER BY seq LIMIT ?", [*(v for _, _, v in conditions), limit + 1]
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

        def write(conn: sqlite3.Connection) -> str:
            _thd_announce(conn, [made])
            return made[0]

        return self._write(write)

    def events_after(self, position: int, limit: int) -> Deferred[list[tuple[int, dict[str, Any]]]]:
        return self._run(self._thd_events_after, position, max(1, limit))

    def _thd_events_after(
        self, conn: sqlite3.Connection, position: int, limit: int
    ) -> list[tuple[int, dict[str, Any]]]:
        rows = conn.execute(
            "SELECT seq, id, sn, type, time, data FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (position, limit),
        ).fetchall()
        return [
            (seq, event_object(i, sn, t, when, json.loads(d))) for seq, i, sn, t, when, d in rows
        ]

    def outbox_size(self, after: int) -> Deferred[int]:
        return self._run(self._thd_count, "SELECT count(*) FROM outbox WHERE seq > ?", [after])

    def sink_position(self, name: str) -> Deferred[int]:
        return self._run(self._thd_count, "SELECT position FROM sinks WHERE name = ?", [name])

    def set_sink_position(self, name: str, position: int) -> Deferred[None]:
        def update(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO sinks (name, position) VALUES (?, ?) ON CONFLICT (name)"
                " DO UPDATE SET position = max(position, excluded.position)",
                (name, position),
            )

        return self._write(update)

    def add_dead_letters(
        self, sink: str, events: Sequence[dict[str, Any]], reason: str, when: str
    ) -> Deferred[None]:
        rows = [(sink, e.get("id", ""), _dumps(e), reason, when) for e in events]

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO dead_letters (sink, event_id, event, reason, time)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )

        return self._write(insert)

    def dead_letters(self, sink: str | None, query: RecordQuery) -> Deferred[Page]:
        after = int(query.cursor) if query.cursor is not None else 0
        return self._run(self._thd_dead_letters, sink, after, clamp_limit(query.limit))

    def _thd_dead_letters(
        self, conn: sqlite3.Connection, sink: str | None, after: int, limit: int
    ) -> Page:
        where = " AND sink = ?" if sink is not None else ""
        params: list[Any] = [after, *([sink] if sink is not None else []), limit + 1]
        rows = conn.execute(
            "SELECT id, sink, event, reason, time FROM dead_letters WHERE id > ?"
            + where
            + " ORDER BY id LIMIT ?",
            params,
        ).fetchall()
        items = [
            {"id": i, "sink": s, "event": json.loads(e), "reason": r, "time": t}
            for i, s, e, r, t in rows[:limit]
        ]
        return Page(items, str(items[-1]["id"]) if len(rows) > limit else None)

    def purge_events(self, before: int) -> Deferred[int]:
        return self._write(
            lambda conn: conn.execute("DELETE FROM outbox WHERE seq <= ?", (before,)).rowcount
        )

    # -- server-side users ---------------------------------------------------

    def save_user(self, user: UserInfo, templates: Sequence[Record], when: str) -> Deferred[None]:
        context = {"sn": "", "received": when, "updated": when, "cmd_id": None}
        try:
            groups = group_by_table([user, *templates], context)
        except (TypeError, ValueError):
            return fail()
        return self._write(self._thd_save_user, user.pin, groups)

    def _thd_save_user(
        self, conn: sqlite3.Connection, pin: str, groups: list[tuple[Table, list[Row]]]
    ) -> None:
        self._thd_drop_templates(conn, pin)
        for table, rows in groups:
            sql = _SQL[table.kind]
            for row in rows:
                if not conn.execute(sql.update, row + table.key_of(row)).rowcount:
                    conn.execute(sql.insert, row)

    def _thd_drop_templates(self, conn: sqlite3.Connection, pin: str) -> int:
        return sum(
            conn.execute(f"DELETE FROM {_q(kind)} WHERE pin = ?", (pin,)).rowcount
            for kind in TEMPLATE_KINDS
        )

    def delete_user(self, pin: str) -> Deferred[bool]:
        return self._write(self._thd_delete_user, pin)

    def _thd_delete_user(self, conn: sqlite3.Connection, pin: str) -> bool:
        existed = conn.execute("DELETE FROM users WHERE pin = ?", (pin,)).rowcount > 0
        conn.execute("DELETE FROM device_users WHERE pin = ?", (pin,))
        return self._thd_drop_templates(conn, pin) > 0 or existed

    def user_templates(self, pin: str) -> Deferred[list[Record]]:
        return self._run(self._thd_user_templates, pin)

    def _thd_user_templates(self, conn: sqlite3.Connection, pin: str) -> list[Record]:
        found: list[Record] = []
        for kind in TEMPLATE_KINDS:
            rows = conn.execute(_SQL[kind].select + " WHERE pin = ? ORDER BY id", (pin,))
            found += [TABLES[kind].to_record(row[1:]) for row in rows.fetchall()]
        return found

    def user_devices(self, pin: str) -> Deferred[list[str]]:
        return self._run(self._thd_user_devices, pin)

    def _thd_user_devices(self, conn: sqlite3.Connection, pin: str) -> list[str]:
        rows = conn.execute("SELECT sn FROM device_users WHERE pin = ? ORDER BY sn", (pin,))
        return [sn for (sn,) in rows.fetchall()]

    # -- reads -----------------------------------------------------------

    def get_user(self, pin: str) -> Deferred[UserInfo | None]:
        return self._run(self._thd_get_user, pin)

    def _thd_get_user(self, conn: sqlite3.Connection, pin: str) -> UserInfo | None:
        row = _first(conn, _SQL["users"].select + " WHERE pin = ?", (pin,))
        return None if row is None else TABLES["users"].to_record(row[1:])

    def fingerprints(self, pin: str) -> Deferred[list[FingerTemplate]]:
        return self._run(self._thd_fingerprints, pin)

    def _thd_fingerprints(self, conn: sqlite3.Connection, pin: str) -> list[FingerTemplate]:
        rows = conn.execute(_SQL["fingerprints"].select + " WHERE pin = ?", (pin,)).fetchall()
        found = [TABLES["fingerprints"].to_record(row[1:]) for row in rows]
        return sorted(found, key=lambda template: fid_order(template.fid))

    def query(self, kind: str, query: RecordQuery) -> Deferred[Page]:
        if kind == "commands":
            try:
                matches(Command("", "", ""), query)  # refuses unknown filters at once
            except ValueError:
                return fail()
            return self._run(self._thd_query_commands, query)
        try:
            table = table_for_kind(kind)
            where, params = _where(table.filters(query), "?")
        except ValueError:
            return fail()
        limit = clamp_limit(query.limit)
        sql = _SQL[kind].select + where + " ORDER BY id LIMIT ?"
        return self._run(self._thd_query, table, sql, [*params, limit + 1], limit)

    def _thd_query(
        self, conn: sqlite3.Connection, table: Table, sql: str, params: list[Any], limit: int
    ) -> Page:
        rows = conn.execute(sql, params).fetchall()
        items = [table.item(row[0], row[1:]) for row in rows[:limit]]
        if table.kind == "users":
            for item in items:
                senders = conn.execute(
                    "SELECT sn FROM device_users WHERE pin = ? ORDER BY sn", (item["pin"],)
                ).fetchall()
                item["devices"] = [sn for (sn,) in senders]
        return Page(items, str(items[-1]["id"]) if len(rows) > limit else None)

    def count(self, kind: str, sn: str | None) -> Deferred[int]:
        if kind == "commands":
            where, params = (" WHERE sn = ?", [sn]) if sn is not None else ("", [])
            return self._run(self._thd_count, "SELECT count(*) FROM commands" + where, params)
        try:
            table = table_for_kind(kind)
            where, params = _where(table.filters(RecordQuery(sn=sn)), "?")
        except ValueError:
            return fail()
        return self._run(self._thd_count, _SQL[kind].count + where, params)

    def _thd_count(self, conn: sqlite3.Connection, sql: str, params: list[Any]) -> int:
        row = _first(conn, sql, params)
        return int(row[0]) if row else 0
