# -*- test-case-name: tests.test_storage_contract -*-
"""
What the SQL backends share: quoting, the row forms of devices and commands,
and the ``WHERE`` clause of a record query.

The backends differ only in their parameter marker (``?`` for SQLite, ``%s``
for PostgreSQL), which :func:`where` and :func:`placeholders` take.

Pure: no Twisted imports, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import fields
from importlib import resources
from typing import Any

from pushd.model import Command, Device
from pushd.storage._tables import Filter, Row

__all__ = [
    "COMMAND_COLUMNS",
    "DEVICE_COLUMNS",
    "columns",
    "command_from_row",
    "command_row",
    "device_from_row",
    "device_row",
    "dumps",
    "migrations",
    "placeholders",
    "quote",
    "where",
]


def dumps(value: Any) -> str:
    """JSON text with sorted keys, so equal values are equal text."""
    return json.dumps(value, sort_keys=True)


def quote(name: str) -> str:
    """Quote an identifier (column names such as ``group`` are SQL keywords)."""
    return '"' + name + '"'


def columns(names: Sequence[str]) -> str:
    return ", ".join(quote(name) for name in names)


def placeholders(count: int, mark: str) -> str:
    return ", ".join([mark] * count)


# -- devices ----------------------------------------------------------------

DEVICE_COLUMNS = tuple(f.name for f in fields(Device))
_DEVICE_DICTS = ("info", "options", "settings", "stamps", "hybrid")


def device_row(device: Device) -> Row:
    """:returns: the column values of ``device``, dicts as JSON text."""
    return tuple(
        dumps(dict(getattr(device, name))) if name in _DEVICE_DICTS else getattr(device, name)
        for name in DEVICE_COLUMNS
    )


def device_from_row(row: Row) -> Device:
    values = dict(zip(DEVICE_COLUMNS, row))
    for name in _DEVICE_DICTS:
        values[name] = json.loads(values[name])
    return Device(**values)


# -- commands ---------------------------------------------------------------

COMMAND_COLUMNS = tuple(f.name for f in fields(Command))


def command_row(command: Command) -> Row:
    return tuple(
        dumps(dict(command.reply)) if name == "reply" else getattr(command, name)
        for name in COMMAND_COLUMNS
    )


def command_from_row(row: Row) -> Command:
    values = dict(zip(COMMAND_COLUMNS, row))
    values["reply"] = json.loads(values["reply"])
    return Command(**values)


# -- record queries ---------------------------------------------------------

_OPERATORS = ("=", ">=", "<=", ">")


def where(filters: list[Filter], mark: str) -> tuple[str, list[Any]]:
    """:returns: the ``WHERE`` clause (or ``""``) and the parameters of ``filters``."""
    clauses, params = [], []
    for column, op, value in filters:
        if op == "device":  # users sent by the device at least once
            clauses.append(f"pin IN (SELECT pin FROM device_users WHERE sn = {mark})")
        else:
            assert op in _OPERATORS, op
            clauses.append(f"{quote(column)} {op} {mark}")
        params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


# -- schema -----------------------------------------------------------------


def migrations(backend: str) -> list[tuple[int, str]]:
    """
    :returns: the numbered schema scripts of ``backend`` shipped with pushd
        (``schema/<backend>-<n>.sql``), in order.
    """
    name = re.compile(re.escape(backend) + r"-(\d+)\.sql")
    found = []
    for entry in resources.files("pushd.storage").joinpath("schema").iterdir():
        match = name.fullmatch(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)
