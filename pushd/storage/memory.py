# -*- test-case-name: tests.test_storage_contract -*-
"""
An :class:`~pushd.interfaces.IStore` kept in dicts: for tests and trials.

Nothing survives a restart.  It encodes, deduplicates and filters rows with
the same :mod:`pushd.storage._tables` as the SQLite store, so both answer
alike; like every store it answers with Deferreds.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

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
    claimable,
    command_item,
    expires,
    fit_budget,
    matches,
)
from pushd.storage._events import (
    Event,
    command_event,
    device_event,
    event,
    event_object,
    events_for_rows,
)
from pushd.storage._tables import (
    TABLES,
    Filter,
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

__all__ = ["MemoryStore"]

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
}


class _Rows:
    """The rows of one table: ``id -> row`` in insertion order, and ``key -> id``."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.rows: dict[int, Row] = {}
        self.keys: dict[Row, int] = {}
        self._last_id = 0

    def add(self, row: Row) -> str:
        """Store ``row``: :returns: ``"stored"``, ``"updated"`` or ``"duplicates"``."""
        if self.table.key:
            key = self.table.key_of(row)
            known = self.keys.get(key)
            if known is not None:
                if not self.table.replaces:
                    return "duplicates"
                self.rows[known] = row
                return "updated"
            self.keys[key] = self._last_id + 1
        self._last_id += 1
        self.rows[self._last_id] = row
        return "stored"

    @property
    def last_id(self) -> int:
        return self._last_id

    def relink(self, row: Row, cmd_id: str) -> None:
        """Point the stored twin of ``row`` at the query ``cmd_id`` that sent it again."""
        row_id = self.keys[self.table.key_of(row)]
        stored = list(self.rows[row_id])
        stored[self.table.names.index("cmd_id")] = cmd_id
        self.rows[row_id] = tuple(stored)

    def remove(self, keep: Callable[[Row], bool]) -> int:
        """Drop the rows ``keep`` refuses.  :returns: how many were dropped."""
        gone = [row_id for row_id, row in self.rows.items() if not keep(row)]
        for row_id in gone:
            row = self.rows.pop(row_id)
            if self.table.key:
                self.keys.pop(self.table.key_of(row), None)
        return len(gone)


def _copy(device: Device) -> Device:
    """:returns: ``device`` with copies of its dicts, so callers cannot change the store."""
    return replace(
        device,
        info=dict(device.info),
        options=dict(device.options),
        settings=dict(device.settings),
        stamps=dict(device.stamps),
        hybrid=dict(device.hybrid),
    )


def _other_pin(table: Table, pin: str) -> Callable[[Row], bool]:
    """A test for rows of ``table`` that do not belong to user ``pin``."""

    def keep(row: Row) -> bool:
        return bool(table.key_of(row)[0] != pin)

    return keep


@implementer(IStore)
class MemoryStore:
    """An in-memory store; see :class:`pushd.interfaces.IStore`."""

    kind = "memory"
    shared = False

    def __init__(self) -> None:
        self._devices: dict[str, Device] = {}
        self._tables = {kind: _Rows(table) for kind, table in TABLES.items()}
        self._device_users: dict[str, set[str]] = {}
        self._commands: dict[str, tuple[int, Command]] = {}
        self._crypto: dict[str, bytes] = {}
        self._outbox_on = False
        self._outbox: dict[int, dict[str, Any]] = {}
        self._outbox_seq = 0
        self._sinks: dict[str, int] = {}
        self._dead: list[dict[str, Any]] = []

    def open(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)

    # -- devices ---------------------------------------------------------

    def get_device(self, sn: str) -> Deferred[Device | None]:
        return succeed(self._device(sn))

    def list_devices(self) -> Deferred[list[Device]]:
        return succeed([_copy(self._devices[sn]) for sn in sorted(self._devices)])

    def add_device(self, sn: str, state: str, when: str) -> Deferred[Device]:
        if sn not in self._devices:
            self._devices[sn] = Device(sn=sn, state=state, first_seen=when, last_seen=when)
            if state == "pending" and self._outbox_on:
                self._announce([device_event(self._devices[sn], "device.pending", when)])
        return succeed(_copy(self._devices[sn]))

    def update_device(self, sn: str, update: DeviceUpdate) -> Deferred[Device | None]:
        if sn in self._devices:
            self._devices[sn] = apply_update(self._devices[sn], update)
        return succeed(self._device(sn))

    def record_seen(self, seen: Sequence[tuple[str, str, str]]) -> Deferred[None]:
        for sn, ip, when in seen:
            device = self._devices.get(sn)
            if device is not None and when >= device.last_seen:
                self._devices[sn] = replace(device, last_seen=when, ip=ip)
        return succeed(None)

    def crypto_state(self, sn: str) -> Deferred[bytes | None]:
        return succeed(self._crypto.get(sn))

    def set_crypto_state(self, sn: str, state: bytes | None) -> Deferred[None]:
        if state is None:
            self._crypto.pop(sn, None)
        else:
            self._crypto[sn] = bytes(state)
        return succeed(None)

    def reset_stamps(self, sn: str) -> Deferred[None]:
        device = self._devices.get(sn)
        if device is not None:
            stamps = dict(device.stamps, **{table: "0" for table in STAMP_TABLES})
            self._devices[sn] = replace(device, stamps=stamps)
        return succeed(None)

    def _device(self, sn: str) -> Device | None:
        device = self._devices.get(sn)
        return None if device is None else _copy(device)

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
            groups = group_by_table(records, context)
        except (TypeError, ValueError):
            return fail()
        counts = {"stored": 0, "duplicates": 0, "updated": 0, "rejected": 0}
        announced: list[Event] = []
        for table, rows in groups:
            for row in rows:
                outcome = self._tables[table.kind].add(row)
                if outcome == "duplicates" and table.kind == "attendance" and cmd_id:
                    self._tables[table.kind].relink(row, cmd_id)
                if outcome in ("stored", "updated") and self._outbox_on:
                    stored = self._tables[table.kind]
                    row_id = stored.keys.get(table.key_of(row)) if table.key else stored.last_id
                    assert row_id is not None
                    announced += events_for_rows(table, [(row_id, row)], sn, received)
                counts["rejected" if table.kind == "rejected" else outcome] += 1
                if table.kind == "users":
                    self._device_users.setdefault(table.key_of(row)[0], set()).add(sn)
        self._announce(announced)
        device = self._devices.get(sn)
        if stamp is not None and device is not None:
            name, value = stamp
            stamps = dict(device.stamps)
            stamps[name] = advance_stamp(stamps.get(name), value)
            self._devices[sn] = replace(device, stamps=stamps)
        return succeed(IngestResult(**counts))

    def record_replies(
        self, sn: str, replies: Sequence[CommandReply], received: str
    ) -> Deferred[int]:
        rows = TABLES["replies"].rows(replies, {"sn": sn, "received": received})
        for row in rows:
            self._tables["replies"].add(row)
        return succeed(len(rows))

    def record_verification(
        self, sn: str, data: bytes, verdict: str, received: str
    ) -> Deferred[None]:
        [row] = verification_rows(sn, data, verdict, received)
        self._tables["verifications"].add(row)
        return succeed(None)

    # -- commands ----------------------------------------------------------

    def add_command(self, command: Command) -> Deferred[Command]:
        if command.id in self._commands:
            return fail(ValueError(f"command id {command.id!r} is already used"))
        self._commands[command.id] = (len(self._commands) + 1, command)
        return succeed(command)

    def get_command(self, cmd_id: str) -> Deferred[Command | None]:
        found = self._commands.get(cmd_id)
        return succeed(None if found is None else found[1])

    def _set_command(self, command: Command) -> Command:
        seq, _ = self._commands[command.id]
        self._commands[command.id] = (seq, command)
        return command

    def claim_commands(
        self, sn: str, now: str, budget: int, limit: int, resend_before: str, max_attempts: int
    ) -> Deferred[list[Command]]:
        candidates = (
            command
            for _, command in self._commands.values()
            if command.sn == sn and claimable(command, resend_before, max_attempts)
        )
        claimed = [
            self._set_command(replace(c, status="sent", sent=now, attempts=c.attempts + 1))
            for c in fit_budget(candidates, budget, limit)
        ]
        return succeed(claimed)

    def complete_command(
        self,
        sn: str,
        cmd_id: str,
        status: str,
        return_code: str,
        reply: dict[str, Any],
        when: str,
    ) -> Deferred[Command | None]:
        found = self._commands.get(cmd_id)
        if found is None or found[1].sn != sn:
            return succeed(None)
        command = found[1]
        if command.status in ("pending", "sent"):
            command = self._set_command(
                replace(
                    command,
                    status=status,
                    return_code=return_code,
                    reply=dict(reply),
                    completed=when,
                )
            )
            if self._outbox_on:
                self._announce([command_event(command, when)])
        return succeed(command)

    def expire_commands(
        self, now: str, sent_before: str, max_attempts: int, created_before: str
    ) -> Deferred[list[Command]]:
        expired = [
            self._set_command(replace(command, status="expired", completed=now))
            for _, command in list(self._commands.values())
            if expires(command, sent_before, max_attempts, created_before)
        ]
        return succeed(expired)

    def _query_commands(self, query: RecordQuery) -> Page:
        after = int(query.cursor) if query.cursor is not None else 0
        limit = clamp_limit(query.limit)
        found = [
            (seq, command)
            for seq, command in self._commands.values()
            if seq > after and matches(command, query)
        ]
        page = found[:limit]
        more = len(found) > limit
        return Page([command_item(c) for _, c in page], str(page[-1][0]) if more else None)

    # -- events ----------------------------------------------------------------

    def use_outbox(self, enabled: bool) -> None:
        self._outbox_on = enabled

    def _announce(self, events: list[Event]) -> None:
        for event_id, sn, kind, when, data in events:
            self._outbox_seq += 1
            self._outbox[self._outbox_seq] = event_object(event_id, sn, kind, when, data)

    def record_event(self, sn: str, type: str, data: dict[str, Any], when: str) -> Deferred[str]:
        if not self._outbox_on:
            return succeed("")
        made = event(sn, type, when, data)
        self._announce([made])
        return succeed(made[0])

    def events_after(self, position: int, limit: int) -> Deferred[list[tuple[int, dict[str, Any]]]]:
        found = [(seq, e) for seq, e in self._outbox.items() if seq > position]
        return succeed(found[: max(1, limit)])

    def outbox_size(self, after: int) -> Deferred[int]:
        return succeed(sum(1 for seq in self._outbox if seq > after))

    def sink_position(self, name: str) -> Deferred[int]:
        return succeed(self._sinks.get(name, 0))

    def set_sink_position(self, name: str, position: int) -> Deferred[None]:
        self._sinks[name] = max(position, self._sinks.get(name, 0))
        return succeed(None)

    def add_dead_letters(
        self, sink: str, events: Sequence[dict[str, Any]], reason: str, when: str
    ) -> Deferred[None]:
        for item in events:
            self._dead.append(
                {
                    "id": len(self._dead) + 1,
                    "sink": sink,
                    "event": item,
                    "reason": reason,
                    "time": when,
                }
            )
        return succeed(None)

    def dead_letters(self, sink: str | None, query: RecordQuery) -> Deferred[Page]:
        after = int(query.cursor) if query.cursor is not None else 0
        limit = clamp_limit(query.limit)
        found = [d for d in self._dead if d["id"] > after and sink in (None, d["sink"])]
        page = found[:limit]
        more = len(found) > limit
        return succeed(Page([dict(d) for d in page], str(page[-1]["id"]) if more else None))

    def purge_events(self, before: int) -> Deferred[int]:
        gone = [seq for seq in self._outbox if seq <= before]
        for seq in gone:
            del self._outbox[seq]
        return succeed(len(gone))

    # -- server-side users ---------------------------------------------------

    def save_user(self, user: UserInfo, templates: Sequence[Record], when: str) -> Deferred[None]:
        context = {"sn": "", "received": when, "updated": when, "cmd_id": None}
        try:
            groups = group_by_table([user, *templates], context)
        except (TypeError, ValueError):
            return fail()
        self._drop_templates(user.pin)
        for table, rows in groups:
            for row in rows:
                self._tables[table.kind].add(row)
        return succeed(None)

    def _drop_templates(self, pin: str) -> int:
        dropped = 0
        for kind in TEMPLATE_KINDS:
            rows = self._tables[kind]
            dropped += rows.remove(_other_pin(rows.table, pin))
        return dropped

    def delete_user(self, pin: str) -> Deferred[bool]:
        existed = self._tables["users"].remove(_other_pin(TABLES["users"], pin)) > 0
        self._device_users.pop(pin, None)
        return succeed(self._drop_templates(pin) > 0 or existed)

    def user_templates(self, pin: str) -> Deferred[list[Record]]:
        found: list[Record] = []
        for kind in TEMPLATE_KINDS:
            rows = self._tables[kind]
            found += [
                rows.table.to_record(row)
                for row in rows.rows.values()
                if rows.table.key_of(row)[0] == pin
            ]
        return succeed(found)

    def user_devices(self, pin: str) -> Deferred[list[str]]:
        return succeed(sorted(self._device_users.get(pin, ())))

    # -- reads -----------------------------------------------------------

    def get_user(self, pin: str) -> Deferred[UserInfo | None]:
        users = self._tables["users"]
        row_id = users.keys.get((pin,))
        return succeed(None if row_id is None else users.table.to_record(users.rows[row_id]))

    def fingerprints(self, pin: str) -> Deferred[list[FingerTemplate]]:
        table = TABLES["fingerprints"]
        found = [
            table.to_record(row)
            for row in self._tables["fingerprints"].rows.values()
            if table.key_of(row)[0] == pin
        ]
        return succeed(sorted(found, key=lambda template: fid_order(template.fid)))

    def query(self, kind: str, query: RecordQuery) -> Deferred[Page]:
        if kind == "commands":
            try:
                return succeed(self._query_commands(query))
            except ValueError:
                return fail()
        try:
            table = table_for_kind(kind)
            matches = self._matching(table, table.filters(query))
        except ValueError:
            return fail()
        limit = clamp_limit(query.limit)
        items: list[tuple[int, Row]] = []
        for row_id, row in matches:
            if len(items) == limit:
                return succeed(Page(self._items(table, items), str(items[-1][0])))
            items.append((row_id, row))
        return succeed(Page(self._items(table, items), None))

    def count(self, kind: str, sn: str | None) -> Deferred[int]:
        if kind == "commands":
            return succeed(sum(1 for _, c in self._commands.values() if sn in (None, c.sn)))
        try:
            table = table_for_kind(kind)
            matches = self._matching(table, table.filters(RecordQuery(sn=sn)))
        except ValueError:
            return fail()
        return succeed(sum(1 for _ in matches))

    def _matching(self, table: Table, filters: list[Filter]) -> Iterator[tuple[int, Row]]:
        """:returns: an iterator over the ``(id, row)`` pairs of ``table`` that pass ``filters``."""
        rows = list(self._tables[table.kind].rows.items())
        return ((i, row) for i, row in rows if self._passes(table, filters, i, row))

    def _passes(self, table: Table, filters: list[Filter], row_id: int, row: Row) -> bool:
        for column, op, value in filters:
            if op == "device":  # users, keyed by pin alone
                if value not in self._device_users.get(table.key_of(row)[0], ()):
                    return False
                continue
            have = row_id if column == "id" else row[table.names.index(column)]
            if have is None or not _COMPARE[op](have, value):
                return False
        return True

    def _items(self, table: Table, found: list[tuple[int, Row]]) -> list[dict[str, Any]]:
        items = [table.item(row_id, row) for row_id, row in found]
        if table.kind == "users":
            for item in items:
                item["devices"] = sorted(self._device_users.get(item["pin"], ()))
        return items
