# -*- test-case-name: tests.test_storage_contract -*-
"""
What is stored for each record kind, shared by every backend.

A :class:`Table` says which columns a kind has, how each value is encoded,
which columns make a record unique, and whether a record with the same key is
a duplicate (kept once) or a newer version (replacing the stored one).  Rows
are tuples of SQL-ready values (``str``, ``bytes``, ``int`` or ``None``, lists
as JSON text); the memory store keeps the same tuples, so both backends
encode, deduplicate, filter and decode in exactly the same way.

Pure: no Twisted imports, no I/O.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from functools import cached_property
from operator import attrgetter
from types import SimpleNamespace
from typing import Any, Callable, Optional

from pushd.model import RECORD_KINDS, Device, DeviceUpdate, RecordQuery
from pushd.protocol import records as r

__all__ = [
    "MAX_LIMIT",
    "TABLES",
    "Filter",
    "Row",
    "Table",
    "advance_stamp",
    "apply_update",
    "clamp_limit",
    "fid_order",
    "group_by_table",
    "table_for_kind",
    "verification_rows",
]

#: The largest page :meth:`pushd.interfaces.IStore.query` returns.
MAX_LIMIT = 10000

#: The stored values of one record, in column order.
Row = tuple[Any, ...]

#: One condition of a query: ``(column, operator, value)``; operators are
#: ``=``, ``>=``, ``<=`` and ``>`` (on ``id``), plus ``device`` (users only:
#: the user was sent by that device at least once).
Filter = tuple[str, str, Any]


#: JSON text of lists and key/value fields: compact, and stable for deduplication.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


@dataclass(frozen=True)
class _Codec:
    """How one kind of value goes into a row, out to JSON, and back into a record."""

    encode: Callable[[Any], Any]
    to_json: Callable[[Any], Any]
    to_record: Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _blob_to_json(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode("ascii")


def _strs_to_record(value: str) -> tuple[str, ...]:
    return tuple(json.loads(value))


def _pairs_to_record(value: str) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in json.loads(value))


_CODECS: dict[str, _Codec] = {
    "text": _Codec(_same, _same, _same),
    "int": _Codec(int, int, int),
    "bool": _Codec(int, bool, bool),
    "blob": _Codec(_same, _blob_to_json, _same),
    "strs": _Codec(_dumps, json.loads, _strs_to_record),
    "pairs": _Codec(_dumps, json.loads, _pairs_to_record),
}


@dataclass(frozen=True)
class Table:
    """
    The stored form of one record kind.

    :ivar kind: the name in :data:`pushd.model.RECORD_KINDS`, also the SQL table name.
    :ivar columns: ``(name, codec)`` pairs in item order, ``id`` excepted:
        ``sn``, the record's ``fields``, then the ``tail``.
    :ivar fields: the attributes of the record stored.
    :ivar tail: the columns after the fields: ``received`` or ``updated``, and
        ``cmd_id`` for punches.
    :ivar key: the columns that make a record unique; empty if every record is kept.
    :ivar replaces: whether a record with a known key replaces the stored one
        (``updated``) instead of being a duplicate.
    :ivar time: the column ``since``/``until`` bound.
    :ivar record: the record class rows are rebuilt into, if any.
    """

    kind: str
    columns: tuple[tuple[str, str], ...]
    fields: tuple[str, ...]
    tail: tuple[str, ...]
    key: tuple[str, ...] = ()
    replaces: bool = False
    time: str = "received"
    record: Optional[type] = None

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @cached_property
    def _key_indexes(self) -> tuple[int, ...]:
        return tuple(self.names.index(name) for name in self.key)

    @cached_property
    def _conversions(self) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
        """The fields whose values change when stored: ``(index, encode)`` pairs."""
        codecs = dict(self.columns)
        return tuple(
            (i, _CODECS[codecs[name]].encode)
            for i, name in enumerate(self.fields)
            if _CODECS[codecs[name]].encode is not _same
        )

    def rows(self, records: Iterable[Any], context: Mapping[str, Any]) -> list[Row]:
        """
        Encode records of this kind.

        :param context: the values of ``sn`` and the ``tail`` columns.
        """
        head = (context["sn"],)
        tail = tuple(context[name] for name in self.tail)
        get = attrgetter(*self.fields)
        conversions = self._conversions
        rows = []
        for record in records:
            values: list[Any] = list(get(record))
            for i, encode in conversions:
                if values[i] is not None:
                    values[i] = encode(values[i])
            rows.append((*head, *values, *tail))
        return rows

    def key_of(self, row: Row) -> Row:
        """:returns: the values of the key columns of ``row``."""
        return tuple(row[i] for i in self._key_indexes)

    def item(self, row_id: int, row: Row) -> dict[str, Any]:
        """:returns: the JSON-ready dict of a stored row."""
        item: dict[str, Any] = {"id": row_id}
        for (name, codec), value in zip(self.columns, row):
            item[name] = None if value is None else _CODECS[codec].to_json(value)
        return item

    def to_record(self, row: Row) -> Any:
        """:returns: the record a stored row was made from."""
        assert self.record is not None, self.kind
        wanted = {f.name for f in fields(self.record)}
        values = {}
        for (name, codec), value in zip(self.columns, row):
            if name in wanted:
                values[name] = None if value is None else _CODECS[codec].to_record(value)
        return self.record(**values)

    def filters(self, query: RecordQuery) -> list[Filter]:
        """
        :returns: the conditions ``query`` sets, the cursor included.
        :raises ValueError: for a filter this kind has no column for, or a bad cursor.
        """
        conditions: list[Filter] = []
        if query.sn is not None:
            conditions.append(
                ("pin", "device", query.sn) if self.kind == "users" else ("sn", "=", query.sn)
            )
        for name in ("pin", "cmd_id"):
            value = getattr(query, name)
            if value is not None:
                if name not in self.names:
                    raise ValueError(f"{self.kind} cannot be filtered by {name}")
                conditions.append((name, "=", value))
        if query.since is not None:
            conditions.append((self.time, ">=", query.since))
        if query.until is not None:
            conditions.append((self.time, "<=", query.until))
        if query.cursor is not None:
            try:
                conditions.append(("id", ">", int(query.cursor)))
            except ValueError:
                raise ValueError(f"invalid cursor: {query.cursor!r}") from None
        return conditions


def _columns(spec: str) -> tuple[tuple[str, str], ...]:
    """``"pin time extra:strs"`` -> ``(("pin", "text"), ("time", "text"), ("extra", "strs"))``."""
    return tuple(
        (name, codec or "text") for name, _, codec in (word.partition(":") for word in spec.split())
    )


def _table(
    kind: str,
    record: type | None,
    spec: str,
    key: str = "",
    replaces: bool = False,
    time: str = "",
    tail: str = "",
) -> Table:
    stamp = "updated" if replaces else "received"
    stored = _columns(spec)
    return Table(
        kind=kind,
        columns=(("sn", "text"), *stored, *_columns(f"{stamp} {tail}")),
        fields=tuple(name for name, _ in stored),
        tail=tuple(f"{stamp} {tail}".split()),
        key=tuple(key.split()),
        replaces=replaces,
        time=time or stamp,
        record=record,
    )


_TEMPLATE = "size valid template size_ok:bool fields:pairs raw:blob"

#: Every record kind, in the order of :data:`pushd.model.RECORD_KINDS`.
TABLES: dict[str, Table] = {
    t.kind: t
    for t in (
        _table(
            "attendance",
            r.AttLog,
            "pin time status verify workcode extra:strs raw:blob",
            key="sn pin time status verify workcode",
            time="time",
            tail="cmd_id",  # the CmdId= of a query reply, not part of the punch
        ),
        _table(
            "operations",
            r.OpLog,
            "op_type op_who time values:strs raw:blob",
            key="sn op_type op_who time values",
            time="time",
        ),
        _table(
            "users",
            r.UserInfo,
            "pin name privilege password card group tz verify vice_card fields:pairs raw:blob",
            key="pin",
            replaces=True,
        ),
        _table("fingerprints", r.FingerTemplate, f"pin fid {_TEMPLATE}", "pin fid", True),
        _table("faces", r.FaceTemplate, f"pin fid {_TEMPLATE}", "pin fid", True),
        _table("veins", r.VeinTemplate, f"pin fid index {_TEMPLATE}", "pin fid index", True),
        _table(
            "biodata",
            r.BioTemplate,
            "pin no index valid duress type major_ver minor_ver format"
            " template size_ok:bool fields:pairs raw:blob",
            key="pin type no index",
            replaces=True,
        ),
        _table(
            "userphotos",
            r.UserPhoto,
            "pin file_name size content size_ok:bool fields:pairs raw:blob",
            key="pin",
            replaces=True,
        ),
        _table(
            "biophotos",
            r.BioPhoto,
            "pin file_name type no index size content size_ok:bool fields:pairs raw:blob",
            key="pin type no index",
            replaces=True,
        ),
        _table(
            "attphotos",
            r.AttPhoto,
            "name time photo_type pin id_num size stored_size:int sha256 path headers:pairs",
            key="sn name",
            time="time",
        ),
        _table(
            "idcards",
            r.IdCard,
            "pin id_num sn_num name fields:pairs raw:blob",
            key="sn pin id_num",
            replaces=True,
        ),
        _table(
            "errors",
            r.ErrorLog,
            "err_code err_msg data_origin cmd_id additional fields:pairs raw:blob",
            key="sn err_code err_msg data_origin cmd_id additional",
        ),
        _table(
            "workcodes", r.WorkCode, "pin code name fields:pairs raw:blob", "pin", replaces=True
        ),
        _table("other", r.OtherRecord, "kind fields:pairs raw:blob", key="sn kind fields"),
        _table("rejected", r.Rejected, "table line:blob reason"),
        _table("replies", None, "cmd_id return_code cmd params:pairs lines:pairs content:blob"),
        _table("verifications", None, "data:blob verdict"),
        _table(
            "events",
            r.AccessEvent,
            "time pin card door event event_name inout verify index fields:pairs raw:blob",
            key="sn time event pin door index",
            time="time",
        ),
        _table(
            "doorstates",
            r.DoorState,
            "time sensor relay alarm door fields:pairs raw:blob",
            key="sn time sensor relay alarm door",
            time="time",
        ),
    )
}

assert (*TABLES, "commands") == RECORD_KINDS  # commands have their own rules (_commands)

_BY_RECORD: dict[type, Table] = {t.record: t for t in TABLES.values() if t.record is not None}


def table_for_kind(kind: str) -> Table:
    """:raises ValueError: for a kind not in :data:`pushd.model.RECORD_KINDS`."""
    try:
        return TABLES[kind]
    except KeyError:
        raise ValueError(f"unknown record kind: {kind!r}") from None


def group_by_table(records: Any, context: Mapping[str, Any]) -> list[tuple[Table, list[Row]]]:
    """
    Encode the records of one upload, grouped by table in order of first appearance.

    :param records: a sequence of :data:`pushd.protocol.records.Record`.
    :param context: ``sn``, ``received`` (also as ``updated``) and ``cmd_id``.
    :raises TypeError: for an object that is not a record.
    """
    groups: dict[type, list[Any]] = {}
    for record in records:
        groups.setdefault(type(record), []).append(record)
    encoded = []
    for record_type, members in groups.items():
        table = _BY_RECORD.get(record_type)
        if table is None:
            raise TypeError(f"not a record: {members[0]!r}")
        encoded.append((table, table.rows(members, context)))
    return encoded


def verification_rows(sn: str, data: bytes, verdict: str, received: str) -> list[Row]:
    """:returns: the row of one PostVerifyData request and its verdict."""
    request = SimpleNamespace(data=data, verdict=verdict)
    return TABLES["verifications"].rows([request], {"sn": sn, "received": received})


def clamp_limit(limit: int) -> int:
    """:returns: ``limit`` brought into ``1..MAX_LIMIT``."""
    return max(1, min(int(limit), MAX_LIMIT))


def fid_order(fid: str) -> tuple[int, int, str]:
    """Sort key of finger numbers: numerically where they are numbers, then as text."""
    return (0, int(fid), "") if fid.isdecimal() else (1, 0, fid)


def advance_stamp(old: str | None, new: str) -> str:
    """:returns: the stamp to keep: the larger if both are integers, else ``new``."""
    if old is None:
        return new
    try:
        return old if int(old) > int(new) else new
    except ValueError:
        return new


_MERGED = ("info", "options", "settings", "hybrid")


def apply_update(device: Device, update: DeviceUpdate) -> Device:
    """
    :returns: ``device`` with ``update`` applied: ``None`` fields left as they
        are, the dict fields merged key by key, the others replaced.
    """
    changes: dict[str, Any] = {}
    for name in (f.name for f in fields(update)):
        value = getattr(update, name)
        if value is None:
            continue
        if name in _MERGED:
            merged = dict(getattr(device, name))
            merged.update(value)
            value = merged
        changes[name] = value
    return replace(device, **changes)
