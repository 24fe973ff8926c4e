# -*- test-case-name: tests.test_events -*-
"""
Events (CONTRACT 4) made from stored rows, shared by every store.

A store with its outbox enabled writes these in the same transaction as the
rows they describe, so an event exists if and only if its data was stored:
for new rows and replaced ones, never for re-sent duplicates.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from pushd.model import Command, Device
from pushd.storage._commands import command_item
from pushd.storage._tables import Row, Table

__all__ = [
    "EVENT_TYPES",
    "Event",
    "command_event",
    "device_event",
    "event",
    "event_object",
    "events_for_rows",
]

#: What each record kind announces, for the kinds that announce anything.
EVENT_TYPES = {
    "attendance": "attendance",
    "operations": "operation",
    "events": "operation",
    "users": "user",
    "fingerprints": "template",
    "faces": "template",
    "veins": "template",
    "biodata": "template",
    "userphotos": "template",
    "biophotos": "template",
    "attphotos": "photo",
    "errors": "error",
}

#: Payload fields left out of events (receivers fetch them through the API).
_HEAVY = ("template", "content", "raw", "line")

#: One outbox row: (event id, sn, type, time, data).
Event = tuple[str, str, str, str, dict[str, Any]]


def event(sn: str, kind: str, when: str, data: dict[str, Any]) -> Event:
    """A new event with a unique, stable id."""
    return (f"evt-{secrets.token_hex(12)}", sn, kind, when, data)


def events_for_rows(
    table: Table, rows: Iterable[tuple[int, Row]], sn: str, when: str
) -> list[Event]:
    """The events announcing stored rows ``(id, row)`` of ``table`` (none for silent kinds)."""
    kind = EVENT_TYPES.get(table.kind)
    if kind is None:
        return []
    found = []
    for row_id, row in rows:
        data = {k: v for k, v in table.item(row_id, row).items() if k not in _HEAVY}
        if kind == "template":
            data["kind"] = table.kind
        if table.kind == "attphotos":
            data["url"] = f"/api/photos/att-{row_id}"
        found.append(event(sn, kind, when, data))
    return found


def device_event(device: Device, kind: str, when: str) -> Event:
    """``device.online``, ``device.offline`` or ``device.pending``."""
    data = {"sn": device.sn, "state": device.state, "ip": device.ip, "last_seen": device.last_seen}
    return event(device.sn, kind, when, data)


def event_object(
    event_id: str, sn: str, kind: str, when: str, data: dict[str, Any]
) -> dict[str, Any]:
    """The event as sinks send it (CONTRACT 4)."""
    return {"id": event_id, "type": kind, "sn": sn, "time": when, "data": data}


def command_event(command: Command, when: str) -> Event:
    """``command.completed`` for a command that just got its result."""
    return event(command.sn, "command.completed", when, command_item(command))
