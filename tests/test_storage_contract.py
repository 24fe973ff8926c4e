"""
The contract every :class:`pushd.interfaces.IStore` keeps, run against each backend.

The ``store`` fixture yields an opened store of each kind; every contract test
runs once per backend.  SQLite-only tests (durability, schema, failures) and
``store_from_url`` follow at the end.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from zope.interface.verify import verifyObject

from pushd.errors import StoreError
from pushd.interfaces import IStore
from pushd.model import RECORD_KINDS, STAMP_TABLES, Command, DeviceUpdate, IngestResult, RecordQuery
from pushd.protocol.records import (
    AccessEvent,
    AttLog,
    AttPhoto,
    BioPhoto,
    BioTemplate,
    CommandReply,
    DoorState,
    ErrorLog,
    FaceTemplate,
    FingerTemplate,
    IdCard,
    OpLog,
    OtherRecord,
    Rejected,
    UserInfo,
    UserPhoto,
    VeinTemplate,
    WorkCode,
)
from pushd.storage import store_from_url
from pushd.storage._tables import TABLES
from pushd.storage.memory import MemoryStore
from pushd.storage.sqlite import SQLiteStore

T0 = "2024-05-01T08:00:00Z"
T1 = "2024-05-01T09:00:00Z"
T2 = "2024-05-01T10:00:00Z"


def _open_store(kind: str, tmp_path: Any) -> Any:
    if kind == "memory":
        return MemoryStore()
    return SQLiteStore(str(tmp_path / "pushd.sqlite3"))


# -- PostgreSQL ---------------------------------------------------------------
#
# The PostgreSQL cases run against PUSHD_TEST_PG_URL, each in a schema of its
# own that is dropped afterwards.  Without a server they are skipped, unless
# PostgreSQL is required (CI, or PUSHD_TEST_PG_REQUIRED): then they fail.

PG_URL = os.environ.get("PUSHD_TEST_PG_URL") or "postgresql://postgres@127.0.0.1:5432/test"

_pg_trouble: list[str] = []  # why PostgreSQL cannot be used, once known


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _pg_url_shown() -> str:
    """PG_URL without its password."""
    scheme, sep, rest = PG_URL.partition("://")
    userinfo, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{userinfo.partition(':')[0]}{at}{host}" if at else PG_URL


def _require_pg() -> None:
    """Skip (or, where PostgreSQL is required, fail) when the server cannot be used."""
    if not _pg_trouble:
        try:
            import psycopg

            import pushd.storage.postgres  # noqa: F401 (what the store needs imports)

            with psycopg.connect(PG_URL, connect_timeout=5):
                pass
        except Exception as e:  # ImportError, or any connection failure
            _pg_trouble.append(" ".join(str(e).split()) or type(e).__name__)
        else:
            _pg_trouble.append("")
    reason = _pg_trouble[0]
    if reason:
        message = f"PostgreSQL at {_pg_url_shown()} cannot be used: {reason}"
        if _flag("CI") or _flag("PUSHD_TEST_PG_REQUIRED"):
            pytest.fail(message + " (set PUSHD_TEST_PG_URL to a server with trust auth)")
        pytest.skip(message)


def _pg_execute(sql: str, params: Sequence[Any] = ()) -> list[Any]:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=10) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def pg_schema() -> Any:
    """The name of a fresh PostgreSQL schema, dropped with everything in it afterwards."""
    _require_pg()
    name = f"pushd_test_{secrets.token_hex(6)}"
    try:
        yield name
    finally:
        _pg_execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def _pg_store(schema: str, **options: Any) -> Any:
    from pushd.storage.postgres import PostgresStore

    return PostgresStore(PG_URL, schema=schema, **options)


@pytest_twisted.async_yield_fixture(params=["memory", "sqlite", "postgresql"])
async def store(request: Any, tmp_path: Any) -> Any:
    """An opened, empty store of each backend."""
    if request.param == "postgresql":
        opened = _pg_store(request.getfixturevalue("pg_schema"))
    else:
        opened = _open_store(request.param, tmp_path)
    await opened.open()
    yield opened
    await opened.close()


# -- sample records ---------------------------------------------------------


def punch(pin: str = "1", time: str = "2024-05-01T07:59:00", **changes: Any) -> AttLog:
    values: dict[str, Any] = {
        "pin": pin,
        "time": time,
        "status": "0",
        "verify": "1",
        "workcode": "0",
        "extra": ("0", "0", "36.5"),
    }
    values.update(changes)
    return AttLog(**values)


def user(pin: str = "1", name: str = "Ann", **changes: Any) -> UserInfo:
    fields_ = (("PIN", pin), ("Name", name), ("Pri", "0"))
    return UserInfo(pin=pin, name=name, privilege="0", card="123", fields=fields_, **changes)


def finger(pin: str = "1", fid: str = "0", template: str = "AAAA") -> FingerTemplate:
    return FingerTemplate(
        pin=pin,
        fid=fid,
        size="4",
        valid="1",
        template=template,
        size_ok=True,
        fields=(("PIN", pin), ("FID", fid)),
    )


#: One record of each kind ingest stores, and the kind it is listed as.
SAMPLES = [
    ("attendance", punch(raw=b"1\t2024-05-01 07:59:00\t0\t1\t0\t0\t0\t36.5\xff")),
    ("operations", OpLog(op_type="4", op_who="0", time="2024-05-01T07:00:00", values=("1", "2"))),
    ("users", user()),
    ("fingerprints", finger()),
    (
        "faces",
        FaceTemplate(pin="1", fid="50", size="4", valid="1", template="BBBB", size_ok=False),
    ),
    (
        "veins",
        VeinTemplate(
            pin="1", fid="3", index="0", size="4", valid="1", template="CCCC", size_ok=True
        ),
    ),
    (
        "biodata",
        BioTemplate(
            pin="1",
            no="0",
            index="0",
            valid="1",
            duress="0",
            type="9",
            major_ver="5",
            minor_ver="8",
            format="0",
            template="DDDD",
            size_ok=True,
        ),
    ),
    (
        "userphotos",
        UserPhoto(pin="1", file_name="1.jpg", size="4", content="EEEE", size_ok=True),
    ),
    (
        "biophotos",
        BioPhoto(
            pin="1",
            file_name="1.jpg",
            type="9",
            no="0",
            index="0",
            size="4",
            content="FFFF",
            size_ok=True,
        ),
    ),
    (
        "attphotos",
        AttPhoto(
            name="20240501075900-1.jpg",
            time="2024-05-01T07:59:00",
            photo_type="0",
            pin="1",
            id_num="",
            size="2048",
            stored_size=2048,
            sha256="ab" * 32,
            path="photos/X/20240501075900-1.jpg",
            headers=(("PIN", "20240501075900-1.jpg"), ("size", "2048")),
        ),
    ),
    ("idcards", IdCard(pin="1", id_num="110", sn_num="S1", name="Ann")),
    (
        "errors",
        ErrorLog(err_code="-1", err_msg="fail", data_origin="cmd", cmd_id="7", additional=""),
    ),
    ("workcodes", WorkCode(pin="1", code="8", name="Night")),
    ("other", OtherRecord(kind="ALARM", fields=(("A", "1"),), raw=b"ALARM A=1")),
    ("rejected", Rejected(table="ATTLOG", line=b"garbage\xfe", reason="too few fields")),
    (
        "events",
        AccessEvent(
            time="2024-05-01T07:59:00",
            pin="1",
            card="0",
            door="1",
            event="0",
            event_name="verified, door opened",
            inout="0",
            verify="15",
            index="42",
            fields=(("time", "2024-05-01 07:59:00"), ("event", "0")),
        ),
    ),
    (
        "doorstates",
        DoorState(time="2024-05-01T08:00:00", sensor="01", relay="00", alarm="0" * 16, door="01"),
    ),
]

REPLY = CommandReply(
    cmd_id="12",
    return_code="0",
    cmd="INFO",
    params=(("ID", "12"), ("Return", "0"), ("CMD", "INFO")),
    lines=(("~DeviceName", "X"),),
    content=b"\x00\x01",
)


async def ingest_samples(store: Any, sn: str = "SN1") -> IngestResult:
    return await store.ingest(sn, [record for _, record in SAMPLES], None, T0, "42")


async def items(store: Any, kind: str, **query: Any) -> list[dict[str, Any]]:
    page = await store.query(kind, RecordQuery(**query))
    return list(page.items)


# -- the interface ----------------------------------------------------------


def test_store_provides_istore(store: Any) -> None:
    assert verifyObject(IStore, store)
    assert store.kind in ("memory", "sqlite", "postgresql")


# -- devices ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_add_device_records_an_unknown_device(store: Any) -> None:
    device = await store.add_device("SN1", "pending", T0)
    assert (device.sn, device.state, device.first_seen, device.last_seen) == (
        "SN1",
        "pending",
        T0,
        T0,
    )
    assert await store.get_device("SN1") == device


@pytest_twisted.ensureDeferred
async def test_add_device_leaves_a_known_device_unchanged(store: Any) -> None:
    first = await store.add_device("SN1", "pending", T0)
    again = await store.add_device("SN1", "approved", T1)
    assert again == first


@pytest_twisted.ensureDeferred
async def test_an_unknown_device_is_none(store: Any) -> None:
    assert await store.get_device("nope") is None
    assert await store.update_device("nope", DeviceUpdate(alias="x")) is None
    await store.record_seen([("nope", "10.0.0.9", T1)])
    await store.reset_stamps("nope")
    assert await store.list_devices() == []


@pytest_twisted.ensureDeferred
async def test_devices_are_listed_by_serial_number(store: Any) -> None:
    for sn in ("SN3", "SN1", "SN2"):
        await store.add_device(sn, "pending", T0)
    assert [device.sn for device in await store.list_devices()] == ["SN1", "SN2", "SN3"]


@pytest_twisted.ensureDeferred
async def test_serial_numbers_sort_by_code_point_whatever_the_locale(store: Any) -> None:
    for sn in ("a1", "B2", "a-3", "b1", "A10"):
        await store.add_device(sn, "pending", T0)
    assert [device.sn for device in await store.list_devices()] == sorted(
        ["a1", "B2", "a-3", "b1", "A10"]
    )


@pytest_twisted.ensureDeferred
async def test_update_device_merges_dicts_and_replaces_the_rest(store: Any) -> None:
    await store.add_device("SN1", "pending", T0)
    await store.update_device(
        "SN1",
        DeviceUpdate(alias="door", info={"a": "1", "b": "2"}, settings={"Delay": "10"}),
    )
    device = await store.update_device(
        "SN1",
        DeviceUpdate(state="approved", firmware="1.2", info={"b": "3", "c": "4"}),
    )
    assert device.state == "approved"
    assert device.alias == "door"  # None left it alone
    assert device.firmware == "1.2"
    assert device.info == {"a": "1", "b": "3", "c": "4"}
    assert device.settings == {"Delay": "10"}
    assert device.first_seen == T0
    assert await store.get_device("SN1") == device


@pytest_twisted.ensureDeferred
async def test_returned_devices_do_not_change_the_store(store: Any) -> None:
    device = await store.add_device("SN1", "pending", T0)
    device.info["x"] = "1"
    assert (await store.get_device("SN1")).info == {}


@pytest_twisted.ensureDeferred
async def test_record_seen_moves_last_seen_forward_for_known_devices(store: Any) -> None:
    await store.add_device("SN1", "approved", T0)
    await store.add_device("SN2", "approved", T0)
    await store.record_seen([("SN1", "10.0.0.1", T0), ("SN2", "10.0.0.2", T2), ("SN3", "x", T1)])
    await store.record_seen([("SN2", "10.0.0.9", T1)])  # older: ignored
    sn1, sn2 = await store.list_devices()
    assert (sn1.last_seen, sn1.ip) == (T0, "10.0.0.1")
    assert (sn2.last_seen, sn2.ip) == (T2, "10.0.0.2")
    assert await store.get_device("SN3") is None


@pytest_twisted.ensureDeferred
async def test_reset_stamps_sets_every_stamp_table_to_zero(store: Any) -> None:
    await store.add_device("SN1", "approved", T0)
    await store.ingest("SN1", [punch()], ("ATTLOG", "9999"), T1, None)
    await store.reset_stamps("SN1")
    device = await store.get_device("SN1")
    assert device.stamps == {table: "0" for table in STAMP_TABLES}


# -- ingest -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_resent_punches_are_stored_once(store: Any) -> None:
    upload = [punch("1"), punch("2")]
    assert await store.ingest("SN1", upload, None, T0, None) == IngestResult(stored=2)
    assert await store.ingest("SN1", upload, None, T1, None) == IngestResult(duplicates=2)
    assert await store.count("attendance", None) == 2


@pytest_twisted.ensureDeferred
async def test_a_punch_resent_in_the_same_upload_is_a_duplicate(store: Any) -> None:
    result = await store.ingest("SN1", [punch(), punch()], None, T0, None)
    assert result == IngestResult(stored=1, duplicates=1)


@pytest_twisted.ensureDeferred
async def test_punches_differing_in_any_key_field_are_distinct(store: Any) -> None:
    upload = [
        punch(),
        punch(status="1"),
        punch(verify="15"),
        punch(workcode="3"),
        punch(time="2024-05-01T08:00:00"),
        punch(extra=("other",)),  # extra is not part of the key
    ]
    assert await store.ingest("SN1", upload, None, T0, None) == IngestResult(stored=5, duplicates=1)
    assert await store.ingest("SN2", upload[:1], None, T0, None) == IngestResult(stored=1)


@pytest_twisted.ensureDeferred
async def test_punches_keep_every_field(store: Any) -> None:
    record = punch(raw=b"\xffraw")
    await store.ingest("SN1", [record], None, T0, "42")
    [item] = await items(store, "attendance")
    assert item == {
        "id": item["id"],
        "sn": "SN1",
        "pin": "1",
        "time": "2024-05-01T07:59:00",
        "status": "0",
        "verify": "1",
        "workcode": "0",
        "extra": ["0", "0", "36.5"],
        "raw": "/3Jhdw==",
        "received": T0,
        "cmd_id": "42",
    }
    assert isinstance(item["id"], int)


@pytest_twisted.ensureDeferred
async def test_operation_logs_are_deduplicated_on_all_fields(store: Any) -> None:
    log = OpLog(op_type="4", op_who="0", time="2024-05-01T07:00:00", values=("1", "2"))
    other = OpLog(op_type="4", op_who="0", time="2024-05-01T07:00:00", values=("1", "3"))
    assert await store.ingest("SN1", [log, other], None, T0, None) == IngestResult(stored=2)
    assert await store.ingest("SN1", [log], None, T1, None) == IngestResult(duplicates=1)


@pytest_twisted.ensureDeferred
async def test_a_later_user_upload_replaces_the_user(store: Any) -> None:
    assert await store.ingest("SN1", [user(name="Ann")], None, T0, None) == IngestResult(stored=1)
    [first] = await items(store, "users")
    assert await store.ingest("SN2", [user(name="Anne")], None, T1, None) == IngestResult(updated=1)
    [item] = await items(store, "users")
    assert item["id"] == first["id"]
    assert (item["name"], item["sn"], item["updated"]) == ("Anne", "SN2", T1)
    assert item["devices"] == ["SN1", "SN2"]
    assert (await store.get_user("1")).name == "Anne"


@pytest_twisted.ensureDeferred
async def test_get_user_rebuilds_the_stored_user(store: Any) -> None:
    record = user(raw=b"USER PIN=1\tName=Ann\xff", tz="0000000100000000")
    await store.ingest("SN1", [record], None, T0, None)
    assert await store.get_user("1") == record
    assert await store.get_user("2") is None


KEYED = [
    ("fingerprints", finger(template="A1"), finger(template="A2"), finger(fid="1")),
    (
        "faces",
        FaceTemplate(pin="1", fid="0", size="2", valid="1", template="A1", size_ok=True),
        FaceTemplate(pin="1", fid="0", size="2", valid="1", template="A2", size_ok=True),
        FaceTemplate(pin="1", fid="1", size="2", valid="1", template="A1", size_ok=True),
    ),
    (
        "veins",
        VeinTemplate(pin="1", fid="0", index="0", size="2", valid="1", template="A1", size_ok=True),
        VeinTemplate(pin="1", fid="0", index="0", size="2", valid="1", template="A2", size_ok=True),
        VeinTemplate(pin="1", fid="0", index="1", size="2", valid="1", template="A1", size_ok=True),
    ),
    (
        "biodata",
        SAMPLES[6][1],
        BioTemplate(**{**SAMPLES[6][1].__dict__, "template": "A2"}),
        BioTemplate(**{**SAMPLES[6][1].__dict__, "type": "2"}),
    ),
    (
        "userphotos",
        UserPhoto(pin="1", file_name="1.jpg", size="2", content="A1", size_ok=True),
        UserPhoto(pin="1", file_name="1.jpg", size="2", content="A2", size_ok=True),
        UserPhoto(pin="2", file_name="2.jpg", size="2", content="A1", size_ok=True),
    ),
    (
        "biophotos",
        SAMPLES[8][1],
        BioPhoto(**{**SAMPLES[8][1].__dict__, "content": "A2"}),
        BioPhoto(**{**SAMPLES[8][1].__dict__, "index": "1"}),
    ),
    (
        "workcodes",
        WorkCode(pin="1", code="8", name="Night"),
        WorkCode(pin="1", code="8", name="Late"),
        WorkCode(pin="2", code="8", name="Night"),
    ),
    (
        "idcards",
        IdCard(pin="1", id_num="110", sn_num="S1", name="Ann"),
        IdCard(pin="1", id_num="110", sn_num="S2", name="Ann"),
        IdCard(pin="1", id_num="111", sn_num="S1", name="Ann"),
    ),
]


@pytest.mark.parametrize(("kind", "first", "newer", "another"), KEYED, ids=[k[0] for k in KEYED])
@pytest_twisted.ensureDeferred
async def test_keyed_records_are_replaced_by_newer_versions(
    store: Any, kind: str, first: Any, newer: Any, another: Any
) -> None:
    assert await store.ingest("SN1", [first], None, T0, None) == IngestResult(stored=1)
    result = await store.ingest("SN1", [newer, another], None, T1, None)
    assert result == IngestResult(stored=1, updated=1)
    replaced, added = await items(store, kind)
    assert (replaced["sn"], replaced["updated"], added["updated"]) == ("SN1", T1, T1)
    for f in fields(newer):
        if isinstance(getattr(newer, f.name), str):
            assert replaced[f.name] == getattr(newer, f.name), f.name


@pytest_twisted.ensureDeferred
async def test_templates_are_server_wide_but_id_cards_belong_to_a_device(store: Any) -> None:
    await store.ingest("SN1", [finger(), KEYED[-1][1]], None, T0, None)
    result = await store.ingest("SN2", [finger(), KEYED[-1][1]], None, T1, None)
    assert result == IngestResult(stored=1, updated=1)
    [template] = await items(store, "fingerprints")
    assert template["sn"] == "SN2"


@pytest_twisted.ensureDeferred
async def test_fingerprints_are_ordered_by_finger_number(store: Any) -> None:
    upload = [finger(fid="10"), finger(fid="2"), finger(fid="x"), finger(fid="1"), finger("2")]
    await store.ingest("SN1", upload, None, T0, None)
    assert [t.fid for t in await store.fingerprints("1")] == ["1", "2", "10", "x"]
    assert await store.fingerprints("2") == [finger("2")]
    assert await store.fingerprints("3") == []


@pytest.mark.parametrize("kind", ["errors", "other", "attphotos"])
@pytest_twisted.ensureDeferred
async def test_resent_logs_and_photos_are_stored_once(store: Any, kind: str) -> None:
    [record] = [record for name, record in SAMPLES if name == kind]
    assert await store.ingest("SN1", [record], None, T0, None) == IngestResult(stored=1)
    assert await store.ingest("SN1", [record], None, T1, None) == IngestResult(duplicates=1)
    assert await store.ingest("SN2", [record], None, T1, None) == IngestResult(stored=1)


@pytest_twisted.ensureDeferred
async def test_rejected_lines_are_always_quarantined(store: Any) -> None:
    line = Rejected(table="ATTLOG", line=b"garbage", reason="too few fields")
    assert await store.ingest("SN1", [line], None, T0, None) == IngestResult(rejected=1)
    assert await store.ingest("SN1", [line], None, T1, None) == IngestResult(rejected=1)
    first, _ = await items(store, "rejected")
    assert first == {
        "id": first["id"],
        "sn": "SN1",
        "table": "ATTLOG",
        "line": "Z2FyYmFnZQ==",
        "reason": "too few fields",
        "received": T0,
    }


@pytest_twisted.ensureDeferred
async def test_one_upload_counts_each_outcome(store: Any) -> None:
    await store.ingest("SN1", [punch("1"), user("1")], None, T0, None)
    upload = [punch("1"), punch("2"), user("1"), user("2"), dict(SAMPLES)["rejected"]]
    result = await store.ingest("SN1", upload, None, T1, None)
    assert result == IngestResult(stored=2, duplicates=1, updated=1, rejected=1)
    assert result.total == len(upload)


@pytest_twisted.ensureDeferred
async def test_ingest_moves_the_stamp_forward_only(store: Any) -> None:
    await store.add_device("SN1", "approved", T0)

    async def stamp_after(value: str) -> str:
        await store.ingest("SN1", [], ("ATTLOG", value), T0, None)
        return (await store.get_device("SN1")).stamps["ATTLOG"]

    assert await stamp_after("100") == "100"
    assert await stamp_after("99") == "100"
    assert await stamp_after("101") == "101"
    assert await stamp_after("abc") == "abc"
    assert await stamp_after("5") == "5"
    assert (await store.get_device("SN1")).stamps == {"ATTLOG": "5"}


@pytest_twisted.ensureDeferred
async def test_an_upload_from_an_unknown_device_is_stored_without_a_device(store: Any) -> None:
    result = await store.ingest("SN9", [punch()], ("ATTLOG", "7"), T0, None)
    assert result == IngestResult(stored=1)
    assert await store.get_device("SN9") is None
    assert await store.count("attendance", "SN9") == 1


@pytest_twisted.ensureDeferred
async def test_a_query_reply_links_the_punches_it_sends_again(store: Any) -> None:
    await store.ingest("SN1", [punch("1"), punch("2")], None, T0, None)
    result = await store.ingest("SN1", [punch("1"), punch("3")], None, T1, "Q7")
    assert result == IngestResult(stored=1, duplicates=1)
    assert [i["pin"] for i in await items(store, "attendance", cmd_id="Q7")] == ["1", "3"]
    assert [i["cmd_id"] for i in await items(store, "attendance", pin="2")] == [None]


@pytest_twisted.ensureDeferred
async def test_every_command_reply_is_stored(store: Any) -> None:
    assert await store.record_replies("SN1", [REPLY, REPLY], T0) == 2
    first, second = await items(store, "replies")
    assert first == {
        "id": first["id"],
        "sn": "SN1",
        "cmd_id": "12",
        "return_code": "0",
        "cmd": "INFO",
        "params": [["ID", "12"], ["Return", "0"], ["CMD", "INFO"]],
        "lines": [["~DeviceName", "X"]],
        "content": "AAE=",
        "received": T0,
    }
    assert second["id"] > first["id"]
    assert await store.record_replies("SN1", [], T0) == 0


@pytest_twisted.ensureDeferred
async def test_verifications_are_stored_with_their_verdict(store: Any) -> None:
    assert await store.record_verification("SN1", b"PIN=1", "allow", T0) is None
    [item] = await items(store, "verifications")
    assert item == {
        "id": item["id"],
        "sn": "SN1",
        "data": "UElOPTE=",
        "verdict": "allow",
        "received": T0,
    }


# -- the command queue ---------------------------------------------------------


def command(cmd_id: str, sn: str = "SN1", text: str = "INFO", created: str = T0) -> Command:
    return Command(id=cmd_id, sn=sn, command=text, kind="info", created=created)


@pytest_twisted.ensureDeferred
async def test_commands_are_claimed_oldest_first_and_marked_sent(store: Any) -> None:
    for n in range(3):
        await store.add_command(command(f"C{n}"))
    await store.add_command(command("OTHER", sn="SN2"))
    claimed = await store.claim_commands("SN1", T1, 65536, 100, T0, 3)
    assert [(c.id, c.status, c.sent, c.attempts) for c in claimed] == [
        (f"C{n}", "sent", T1, 1) for n in range(3)
    ]
    assert await store.claim_commands("SN1", T1, 65536, 100, T0, 3) == []
    assert (await store.get_command("C1")).status == "sent"
    assert (await store.get_command("OTHER")).status == "pending"


@pytest_twisted.ensureDeferred
async def test_a_claim_stops_at_the_byte_budget_and_count_but_takes_one(store: Any) -> None:
    for n in range(5):
        await store.add_command(
            command(f"B{n}", text="DATA UPDATE USERINFO PIN=1\tName=" + "x" * 40)
        )
    line = len("C:B0:DATA UPDATE USERINFO PIN=1\tName=" + "x" * 40)
    first = await store.claim_commands("SN1", T1, 2 * line + 1, 100, T0, 3)
    assert [c.id for c in first] == ["B0", "B1"]
    second = await store.claim_commands("SN1", T1, 1, 100, T0, 3)  # over budget: one anyway
    assert [c.id for c in second] == ["B2"]
    third = await store.claim_commands("SN1", T1, 65536, 1, T0, 3)
    assert [c.id for c in third] == ["B3"]


@pytest_twisted.ensureDeferred
async def test_unanswered_commands_are_resent_up_to_the_limit_then_expire(store: Any) -> None:
    await store.add_command(command("R1"))
    times = ["2024-05-01T08:00:00Z", "2024-05-01T08:01:00Z", "2024-05-01T08:02:00Z"]
    for attempt, now in enumerate(times, start=1):
        [claimed] = await store.claim_commands("SN1", now, 65536, 100, now, 3)
        assert claimed.attempts == attempt
        # too soon for a re-send
        assert await store.claim_commands("SN1", now, 65536, 100, now, 3) == []
    assert await store.claim_commands("SN1", T2, 65536, 100, T2, 3) == []  # limit reached
    assert await store.expire_commands(T2, "2024-05-01T08:02:00Z", 3, T0) == []  # not yet
    [expired] = await store.expire_commands(T2, T2, 3, T0)
    assert (expired.id, expired.status, expired.completed) == ("R1", "expired", T2)
    assert (await store.get_command("R1")).status == "expired"


@pytest_twisted.ensureDeferred
async def test_pending_commands_never_delivered_expire_after_their_ttl(store: Any) -> None:
    await store.add_command(command("OLD", created=T0))
    await store.add_command(command("NEW", created=T2))
    expired = await store.expire_commands(T2, T0, 3, T1)
    assert [c.id for c in expired] == ["OLD"]


@pytest_twisted.ensureDeferred
async def test_results_complete_only_the_devices_own_commands_once(store: Any) -> None:
    await store.add_command(command("X1"))
    await store.claim_commands("SN1", T1, 65536, 100, T0, 3)
    assert await store.complete_command("SN2", "X1", "succeeded", "0", {}, T2) is None
    assert await store.complete_command("SN1", "NOPE", "succeeded", "0", {}, T2) is None
    done = await store.complete_command("SN1", "X1", "failed", "-1002", {"meaning": "no"}, T2)
    assert (done.status, done.return_code, dict(done.reply), done.completed) == (
        "failed",
        "-1002",
        {"meaning": "no"},
        T2,
    )
    again = await store.complete_command("SN1", "X1", "succeeded", "0", {}, T2)
    assert again.status == "failed"  # the first result stands


@pytest_twisted.ensureDeferred
async def test_command_ids_are_unique(store: Any) -> None:
    await store.add_command(command("U1"))
    with pytest.raises(ValueError):
        await store.add_command(command("U1", sn="SN2"))


@pytest_twisted.ensureDeferred
async def test_commands_list_as_json_with_filters_and_cursor(store: Any) -> None:
    for n in range(5):
        await store.add_command(command(f"L{n}", sn="SN1" if n % 2 == 0 else "SN2"))
    await store.claim_commands("SN1", T1, 65536, 1, T0, 3)
    page = await store.query("commands", RecordQuery(sn="SN1", limit=2))
    assert [i["id"] for i in page.items] == ["L0", "L2"] and page.next is not None
    rest = await store.query("commands", RecordQuery(sn="SN1", limit=2, cursor=page.next))
    assert [i["id"] for i in rest.items] == ["L4"] and rest.next is None
    sent = await store.query("commands", RecordQuery(status="sent"))
    assert [(i["id"], i["attempts"], i["reply"]) for i in sent.items] == [("L0", 1, {})]
    assert json.loads(json.dumps(sent.items)) == sent.items
    assert await store.count("commands", "SN2") == 2
    with pytest.raises(ValueError):
        await store.query("commands", RecordQuery(pin="1"))


# -- events: the outbox ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_no_events_are_kept_while_the_outbox_is_off(store: Any) -> None:
    await store.ingest("SN1", [punch()], None, T0, None)
    assert await store.events_after(0, 100) == []
    assert await store.record_event("SN1", "device.online", {}, T0) == ""


async def with_outbox(store: Any) -> Any:
    store.use_outbox(True)
    return store


@pytest_twisted.ensureDeferred
async def test_events_are_written_for_new_and_replaced_records_only(store: Any) -> None:
    await with_outbox(store)
    await store.ingest("SN1", [punch("1"), user("1"), finger("1")], None, T0, None)
    await store.ingest("SN1", [punch("1"), user("1", name="Bea")], None, T1, None)
    events = [e for _, e in await store.events_after(0, 100)]
    assert [e["type"] for e in events] == ["attendance", "user", "template", "user"]
    assert events[0]["sn"] == "SN1" and events[0]["time"] == T0
    assert events[0]["data"]["pin"] == "1" and events[0]["data"]["time"] == "2024-05-01T07:59:00"
    assert "template" not in events[2]["data"] and events[2]["data"]["kind"] == "fingerprints"
    assert events[3]["data"]["name"] == "Bea"
    assert len({e["id"] for e in events}) == 4 and all(e["id"].startswith("evt-") for e in events)
    assert json.loads(json.dumps(events)) == events


@pytest_twisted.ensureDeferred
async def test_a_failed_write_leaves_no_event(tmp_path: Any) -> None:
    store = MemoryStore()
    store.use_outbox(True)
    with pytest.raises(TypeError):
        await store.ingest("SN1", [punch(), object()], None, T0, None)  # type: ignore[list-item]
    assert await store.events_after(0, 100) == []


@pytest_twisted.ensureDeferred
async def test_devices_and_commands_announce_themselves(store: Any) -> None:
    await with_outbox(store)
    await store.add_device("NEW", "pending", T0)
    await store.add_device("NEW", "pending", T1)  # known: nothing new
    await store.add_command(command("CMD1", sn="NEW"))
    await store.claim_commands("NEW", T1, 65536, 100, T0, 3)
    await store.complete_command("NEW", "CMD1", "succeeded", "0", {"meaning": "ok"}, T2)
    await store.record_event("NEW", "device.online", {"sn": "NEW"}, T2)
    events = [e for _, e in await store.events_after(0, 100)]
    assert [e["type"] for e in events] == ["device.pending", "command.completed", "device.online"]
    assert events[1]["data"]["id"] == "CMD1" and events[1]["data"]["status"] == "succeeded"


@pytest_twisted.ensureDeferred
async def test_sinks_read_the_outbox_in_order_from_their_position(store: Any) -> None:
    await with_outbox(store)
    await store.ingest("SN1", [punch(str(n)) for n in range(5)], None, T0, None)
    first = await store.events_after(0, 2)
    assert [e["data"]["pin"] for _, e in first] == ["0", "1"]
    await store.set_sink_position("hook", first[-1][0])
    assert await store.sink_position("hook") == first[-1][0]
    await store.set_sink_position("hook", 0)  # never backwards
    assert await store.sink_position("hook") == first[-1][0]
    assert await store.sink_position("other") == 0
    rest = await store.events_after(first[-1][0], 100)
    assert [e["data"]["pin"] for _, e in rest] == ["2", "3", "4"]
    assert await store.outbox_size(first[-1][0]) == 3
    assert await store.purge_events(first[-1][0]) == 2
    assert [e["data"]["pin"] for _, e in await store.events_after(0, 100)] == ["2", "3", "4"]


@pytest_twisted.ensureDeferred
async def test_dead_letters_keep_refused_events_with_the_reason(store: Any) -> None:
    events = [{"id": "evt-1", "type": "attendance"}, {"id": "evt-2", "type": "user"}]
    await store.add_dead_letters("hook", events, "HTTP 400 Bad Request", T1)
    await store.add_dead_letters("other", events[:1], "HTTP 410 Gone", T2)
    page = await store.dead_letters("hook", RecordQuery(limit=1))
    assert [(d["sink"], d["event"]["id"], d["reason"]) for d in page.items] == [
        ("hook", "evt-1", "HTTP 400 Bad Request")
    ]
    rest = await store.dead_letters("hook", RecordQuery(cursor=page.next))
    assert [d["event"]["id"] for d in rest.items] == ["evt-2"] and rest.next is None
    assert len((await store.dead_letters(None, RecordQuery())).items) == 3


# -- users given by the operator ------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_saved_user_replaces_its_templates(store: Any) -> None:
    await store.ingest("SN1", [user("5"), finger("5", "0"), finger("5", "1")], None, T0, None)
    await store.save_user(user("5", name="Eve"), [finger("5", "3", "BBBB")], T1)
    assert (await store.get_user("5")).name == "Eve"
    [kept] = await store.user_templates("5")
    assert (kept.fid, kept.template) == ("3", "BBBB")
    assert await store.user_devices("5") == ["SN1"]


@pytest_twisted.ensureDeferred
async def test_deleting_a_user_removes_templates_and_holders(store: Any) -> None:
    await store.ingest("SN1", [user("6"), finger("6", "0")], None, T0, None)
    assert await store.delete_user("6") is True
    assert await store.get_user("6") is None
    assert await store.user_templates("6") == []
    assert await store.user_devices("6") == []
    assert await store.delete_user("6") is False


# -- queries ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_every_kind_lists_json_ready_items_with_the_record_fields(store: Any) -> None:
    assert await ingest_samples(store) == IngestResult(stored=len(SAMPLES) - 1, rejected=1)
    await store.record_replies("SN1", [REPLY], T0)
    await store.record_verification("SN1", b"data", "deny", T0)
    records = dict(SAMPLES, replies=REPLY)
    for kind in RECORD_KINDS[:-1]:  # commands: see the command queue tests
        [item] = await items(store, kind)
        assert json.loads(json.dumps(item)) == item, kind
        assert isinstance(item["id"], int) and item["sn"] == "SN1", kind
        assert (item.get("received") or item.get("updated")) == T0, kind
        if kind in records:
            names = {f.name for f in fields(records[kind])}  # type: ignore[arg-type]
            if kind == "replies":
                names.discard("raw")  # a reply is kept parsed: params, lines, content
            assert names <= set(item), kind
    [face] = await items(store, "faces")
    assert face["size_ok"] is False


@pytest_twisted.ensureDeferred
async def test_pages_follow_the_cursor_oldest_first(store: Any) -> None:
    await store.ingest("SN1", [punch(str(pin)) for pin in range(5)], None, T0, None)
    seen, cursor, pages = [], None, 0
    while True:
        page = await store.query("attendance", RecordQuery(cursor=cursor, limit=2))
        seen += [item["pin"] for item in page.items]
        pages += 1
        if page.next is None:
            break
        assert page.next == str(page.items[-1]["id"])
        cursor = page.next
    assert (seen, pages) == (["0", "1", "2", "3", "4"], 3)


@pytest_twisted.ensureDeferred
async def test_a_full_last_page_has_no_next(store: Any) -> None:
    await store.ingest("SN1", [punch("1"), punch("2")], None, T0, None)
    page = await store.query("attendance", RecordQuery(limit=2))
    assert (len(page.items), page.next) == (2, None)


@pytest_twisted.ensureDeferred
async def test_the_limit_is_clamped(store: Any) -> None:
    await store.ingest("SN1", [punch("1"), punch("2")], None, T0, None)
    assert len((await store.query("attendance", RecordQuery(limit=0))).items) == 1
    assert len((await store.query("attendance", RecordQuery(limit=-5))).items) == 1
    assert len((await store.query("attendance", RecordQuery(limit=10**9))).items) == 2


@pytest_twisted.ensureDeferred
async def test_queries_filter_by_sn_pin_and_cmd_id(store: Any) -> None:
    await store.ingest("SN1", [punch("1"), punch("2")], None, T0, "7")
    await store.ingest("SN2", [punch("1")], None, T0, None)
    assert len(await items(store, "attendance", sn="SN1")) == 2
    assert [i["sn"] for i in await items(store, "attendance", pin="1")] == ["SN1", "SN2"]
    assert [i["pin"] for i in await items(store, "attendance", sn="SN1", pin="2")] == ["2"]
    assert len(await items(store, "attendance", cmd_id="7")) == 2
    assert await items(store, "attendance", sn="SN3") == []


@pytest_twisted.ensureDeferred
async def test_since_and_until_bound_the_punch_time_inclusively(store: Any) -> None:
    times = ["2024-05-01T07:00:00", "2024-05-01T08:00:00", "2024-05-01T09:00:00"]
    await store.ingest("SN1", [punch(time=t) for t in times], None, T0, None)
    found = await items(store, "attendance", since=times[1], until=times[2])
    assert [i["time"] for i in found] == times[1:]
    assert len(await items(store, "attendance", until=times[0])) == 1


@pytest_twisted.ensureDeferred
async def test_since_and_until_bound_the_reception_time_of_other_kinds(store: Any) -> None:
    for pin, when in enumerate((T0, T1, T2)):
        await store.record_replies("SN1", [REPLY], when)
        await store.ingest("SN1", [user(str(pin))], None, when, None)
    assert [i["received"] for i in await items(store, "replies", since=T1)] == [T1, T2]
    assert [i["updated"] for i in await items(store, "users", until=T1)] == [T0, T1]


@pytest_twisted.ensureDeferred
async def test_users_of_a_device_are_those_it_sent(store: Any) -> None:
    await store.ingest("SN1", [user("1"), user("2")], None, T0, None)
    await store.ingest("SN2", [user("2"), user("3")], None, T1, None)
    assert [i["pin"] for i in await items(store, "users", sn="SN1")] == ["1", "2"]
    assert [i["devices"] for i in await items(store, "users", pin="2")] == [["SN1", "SN2"]]
    assert await store.count("users", "SN2") == 2
    assert await store.count("users", None) == 3


@pytest_twisted.ensureDeferred
async def test_count_counts_the_records_of_a_kind(store: Any) -> None:
    await store.ingest("SN1", [punch("1"), punch("2"), finger()], None, T0, None)
    await store.ingest("SN2", [punch("1")], None, T0, None)
    assert await store.count("attendance", None) == 3
    assert await store.count("attendance", "SN1") == 2
    assert await store.count("fingerprints", "SN2") == 0
    assert await store.count("verifications", None) == 0


@pytest.mark.parametrize(
    ("kind", "query"),
    [
        ("nope", RecordQuery()),
        ("operations", RecordQuery(pin="1")),
        ("users", RecordQuery(cmd_id="1")),
        ("attendance", RecordQuery(cursor="abc")),
    ],
)
@pytest_twisted.ensureDeferred
async def test_an_impossible_query_is_a_value_error(
    store: Any, kind: str, query: RecordQuery
) -> None:
    with pytest.raises(ValueError):
        await store.query(kind, query)


@pytest_twisted.ensureDeferred
async def test_counting_an_unknown_kind_is_a_value_error(store: Any) -> None:
    with pytest.raises(ValueError):
        await store.count("nope", None)


@pytest_twisted.ensureDeferred
async def test_both_backends_give_the_same_answers(tmp_path: Any) -> None:
    stores = [_open_store("memory", tmp_path), _open_store("sqlite", tmp_path)]
    answers = []
    for each in stores:
        await each.open()
        await each.add_device("SN1", "approved", T0)
        await ingest_samples(each)
        await ingest_samples(each, "SN2")
        await each.ingest("SN1", [user(name="B"), finger(fid="3")], ("ATTLOG", "5"), T1, "9")
        await each.record_replies("SN1", [REPLY], T1)
        await each.record_verification("SN2", b"x", "allow", T2)
        answer: dict[str, Any] = {"devices": await each.list_devices()}
        for kind in RECORD_KINDS:
            answer[kind] = await items(each, kind)
            answer[kind + "/SN2"] = await items(each, kind, sn="SN2", since=T0, limit=1)
        answers.append(answer)
        await each.close()
    assert answers[0] == answers[1]


# -- SQLite only ------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_sqlite_data_survives_close_and_reopen(tmp_path: Any) -> None:
    path = str(tmp_path / "pushd.sqlite3")
    first = SQLiteStore(path)
    await first.open()
    await first.add_device("SN1", "approved", T0)
    await first.ingest("SN1", [punch(), user()], ("ATTLOG", "3"), T0, None)
    await first.close()

    second = SQLiteStore(path)
    await second.open()
    try:
        device = await second.get_device("SN1")
        assert device is not None and device.stamps == {"ATTLOG": "3"}
        assert await second.get_user("1") == user()
        assert await second.ingest("SN1", [punch()], None, T1, None) == IngestResult(duplicates=1)
    finally:
        await second.close()


@pytest_twisted.ensureDeferred
async def test_sqlite_schema_is_created_on_first_open_only(tmp_path: Any) -> None:
    path = str(tmp_path / "pushd.sqlite3")
    for _ in range(2):  # the schema's CREATE TABLEs would fail if applied twice
        opened = SQLiteStore(path)
        await opened.open()
        await opened.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        for kind, table in TABLES.items():
            columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{kind}")')]
            assert columns == ["id", *table.names], kind


@pytest_twisted.ensureDeferred
async def test_sqlite_refuses_a_newer_schema(tmp_path: Any) -> None:
    path = str(tmp_path / "pushd.sqlite3")
    opened = SQLiteStore(path)
    await opened.open()
    await opened.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="version 99"):
        await SQLiteStore(path).open()


@pytest.mark.parametrize("content", [None, b"this is not an SQLite database" * 100])
@pytest_twisted.ensureDeferred
async def test_sqlite_a_database_that_cannot_be_opened_is_a_store_error(
    tmp_path: Any, content: bytes | None
) -> None:
    path = tmp_path / "db"
    if content is None:
        path.mkdir()  # a directory is no database file
    else:
        path.write_bytes(content)
    unopenable = SQLiteStore(str(path))
    with pytest.raises(StoreError, match="Database error"):
        await unopenable.open()
    await unopenable.close()  # harmless after a failed open


@pytest_twisted.ensureDeferred
async def test_sqlite_a_failed_write_is_a_store_error_and_stores_nothing(tmp_path: Any) -> None:
    path = str(tmp_path / "pushd.sqlite3")
    failing = SQLiteStore(path)
    await failing.open()
    try:
        await failing.add_device("SN1", "approved", T0)
        with sqlite3.connect(path) as conn:  # as a full disk would, fail every punch
            conn.execute(
                "CREATE TRIGGER fail BEFORE INSERT ON attendance"
                " BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
            )
        with pytest.raises(StoreError, match="disk I/O error"):
            await failing.ingest("SN1", [user(), punch()], ("ATTLOG", "5"), T1, None)
        assert await failing.get_user("1") is None
        device = await failing.get_device("SN1")
        assert device is not None and device.stamps == {}
    finally:
        await failing.close()


@pytest_twisted.ensureDeferred
async def test_sqlite_writes_queued_together_commit_together_and_fail_alone(
    tmp_path: Any,
) -> None:
    path = str(tmp_path / "pushd.sqlite3")
    grouped = SQLiteStore(path)
    await grouped.open()
    try:
        await grouped.add_device("SN1", "approved", T0)
        with sqlite3.connect(path) as conn:  # punches of PIN 13 cannot be stored
            conn.execute(
                "CREATE TRIGGER fail BEFORE INSERT ON attendance WHEN NEW.pin = '13'"
                " BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
            )
        # Issued without waiting: the thread finds them queued and commits them as a group.
        writes = [
            grouped.ingest("SN1", [punch(str(n)), user(str(n))], ("ATTLOG", str(n)), T1, None)
            for n in range(10, 17)
        ]
        outcomes = await defer.DeferredList(writes, consumeErrors=True)
        failed = [n for n, (ok, _) in zip(range(10, 17), outcomes) if not ok]
        assert failed == [13]
        assert outcomes[3][1].check(StoreError)
        assert [r.stored for ok, r in outcomes if ok] == [2] * 6
        assert await grouped.get_user("13") is None  # the failed write stored nothing
        assert await grouped.count("attendance", "SN1") == 6
        device = await grouped.get_device("SN1")
        assert device is not None and device.stamps == {"ATTLOG": "16"}
    finally:
        await grouped.close()


@pytest_twisted.ensureDeferred
async def test_sqlite_a_closed_store_answers_store_error(tmp_path: Any) -> None:
    closed = SQLiteStore(str(tmp_path / "pushd.sqlite3"))
    with pytest.raises(StoreError):
        await closed.get_device("SN1")
    await closed.open()
    await closed.close()
    with pytest.raises(StoreError):
        await closed.ingest("SN1", [punch()], None, T0, None)


# -- PostgreSQL only: several nodes on one database ----------------------------


async def _open_nodes(schema: str, count: int = 2) -> list[Any]:
    """``count`` stores on one schema, opened at once: as many pushd nodes starting together."""
    nodes = [_pg_store(schema) for _ in range(count)]
    await defer.gatherResults([node.open() for node in nodes], consumeErrors=True)
    return nodes


async def _close_nodes(nodes: list[Any]) -> None:
    await defer.gatherResults([node.close() for node in nodes], consumeErrors=True)


def _all(deferreds: list[Any]) -> Any:
    return defer.gatherResults(deferreds, consumeErrors=True)


@pytest_twisted.ensureDeferred
async def test_postgresql_nodes_starting_together_create_the_schema_once(pg_schema: str) -> None:
    nodes = await _open_nodes(pg_schema, 3)
    try:
        assert [node.schema_version for node in nodes] == [1, 1, 1]
        assert _pg_execute(f"SELECT version FROM {pg_schema}.schema_version") == [(1,)]
        for kind, table in TABLES.items():
            columns = _pg_execute(
                "SELECT column_name FROM information_schema.columns"
                f" WHERE table_schema = '{pg_schema}' AND table_name = '{kind}'"
                " ORDER BY ordinal_position"
            )
            assert [name for (name,) in columns] == ["id", *table.names], kind
    finally:
        await _close_nodes(nodes)
    reopened = _pg_store(pg_schema)  # the scripts are not applied twice
    await reopened.open()
    await reopened.close()


@pytest_twisted.ensureDeferred
async def test_postgresql_nodes_polled_together_never_deliver_a_command_twice(
    pg_schema: str,
) -> None:
    a, b = nodes = await _open_nodes(pg_schema)
    try:
        queued = [f"Q{n:02}" for n in range(40)]
        for cmd_id in queued:
            await a.add_command(command(cmd_id))
        delivered: list[str] = []
        while True:  # rounds of 6 polls on each node at once, 2 commands at most each
            polls = [node.claim_commands("SN1", T1, 65536, 2, "", 3) for node in nodes * 6]
            claimed = [c.id for batch in await _all(polls) for c in batch]
            if not claimed:
                break
            delivered += claimed
        assert sorted(delivered) == queued  # every command, each once
        for cmd_id in queued:
            assert (await b.get_command(cmd_id)).attempts == 1
    finally:
        await _close_nodes(nodes)


@pytest_twisted.ensureDeferred
async def test_postgresql_a_poll_skips_the_commands_another_node_is_claiming(
    pg_schema: str,
) -> None:
    import psycopg
    from twisted.internet import reactor

    store = _pg_store(pg_schema)
    await store.open()
    try:
        for n in range(3):
            await store.add_command(command(f"K{n}"))
        other = psycopg.connect(PG_URL, options=f"-c search_path={pg_schema}")
        try:  # another node is in the middle of claiming K0
            other.execute("SELECT 1 FROM commands WHERE id = 'K0' FOR UPDATE")
            claiming = store.claim_commands("SN1", T1, 65536, 100, T0, 3)
            claimed = await claiming.addTimeout(10, reactor)  # skipped, not waited for
            assert [c.id for c in claimed] == ["K1", "K2"]
        finally:
            other.rollback()
            other.close()
        assert [c.id for c in await store.claim_commands("SN1", T1, 65536, 100, T0, 3)] == ["K0"]
    finally:
        await store.close()


@pytest.mark.parametrize("stamp", [None, ("ATTLOG", "9")])
@pytest_twisted.ensureDeferred
async def test_postgresql_an_upload_through_two_nodes_at_once_is_stored_once(
    pg_schema: str, stamp: Any
) -> None:
    a, b = nodes = await _open_nodes(pg_schema)
    try:
        await a.add_device("SN1", "approved", T0)
        for round_ in range(4):
            upload = [punch(f"{round_}-{n}") for n in range(300)]
            upload += [user(f"{round_}-{n}") for n in range(30)]
            first, second = await _all(
                [node.ingest("SN1", upload, stamp, T1, None) for node in nodes]
            )
            assert first.stored + second.stored == 330
            assert first.duplicates + second.duplicates == 300
            assert first.updated + second.updated == 30
            assert first.total == second.total == 330
        assert await a.count("attendance", None) == 1200
        assert await b.count("users", "SN1") == 120
        assert (await b.get_device("SN1")).stamps == ({} if stamp is None else {"ATTLOG": "9"})
    finally:
        await _close_nodes(nodes)


@pytest_twisted.ensureDeferred
async def test_postgresql_stamps_only_move_forward_under_concurrent_ingests(
    pg_schema: str,
) -> None:
    a, b = nodes = await _open_nodes(pg_schema)
    try:
        await a.add_device("SN1", "approved", T0)
        # Uploads of each stamp table, in a random order, half on each node, all at once.
        uploads = [(table, value) for value in range(1, 61) for table in STAMP_TABLES]
        random.Random(7).shuffle(uploads)
        await _all(
            [
                nodes[n % 2].ingest(
                    "SN1", [punch(f"{table}{value}")], (table, str(value)), T1, None
                )
                for n, (table, value) in enumerate(uploads)
            ]
        )
        assert (await a.get_device("SN1")).stamps == {table: "60" for table in STAMP_TABLES}
        await b.ingest("SN1", [], ("ATTLOG", "3"), T2, None)
        assert (await a.get_device("SN1")).stamps["ATTLOG"] == "60"
        assert await b.count("attendance", "SN1") == len(uploads)
    finally:
        await _close_nodes(nodes)


@pytest_twisted.ensureDeferred
async def test_postgresql_a_sink_reading_while_nodes_write_misses_no_event(
    pg_schema: str,
) -> None:
    nodes = await _open_nodes(pg_schema, 3)
    writers, reader = nodes[:2], nodes[2]
    try:
        for node in nodes:
            node.use_outbox(True)
        sizes = [n % 7 + 1 for n in range(120)]
        writing = _all(
            [
                writers[n % 2].ingest(
                    "SN1", [punch(f"{n}-{i}") for i in range(size)], None, T0, None
                )
                for n, size in enumerate(sizes)
            ]
        )
        seen: list[tuple[int, str]] = []

        async def read(limit: int) -> None:  # a sink: read past its position
            seen.extend(
                (position, found["id"])
                for position, found in await reader.events_after(seen[-1][0] if seen else 0, limit)
            )

        while not writing.called:
            await read(50)
        await writing
        await read(10000)
        everything = [
            (position, found["id"]) for position, found in await reader.events_after(0, 10000)
        ]
        assert len(everything) == sum(sizes)
        assert seen == everything  # in order, none skipped
    finally:
        await _close_nodes(nodes)


@pytest_twisted.ensureDeferred
async def test_postgresql_nodes_share_devices_sessions_and_sightings(pg_schema: str) -> None:
    a, b = nodes = await _open_nodes(pg_schema)
    try:
        await a.add_device("SN1", "pending", T0)
        await b.update_device("SN1", DeviceUpdate(state="approved", crypto="zkx1"))
        await a.set_crypto_state("SN1", b"\x00session\xff")
        assert (await b.get_device("SN1")).state == "approved"
        assert await b.crypto_state("SN1") == b"\x00session\xff"
        await _all(
            [
                a.record_seen([("SN1", "10.0.0.2", T2), ("SN1", "10.0.0.1", T1)]),
                b.record_seen([("SN1", "10.0.0.9", T0)]),
            ]
        )
        device = await b.get_device("SN1")
        assert (device.last_seen, device.ip) == (T2, "10.0.0.2")
        await b.set_crypto_state("SN1", None)
        assert await a.crypto_state("SN1") is None
    finally:
        await _close_nodes(nodes)


@pytest_twisted.ensureDeferred
async def test_postgresql_gives_the_same_answers_as_memory(pg_schema: str) -> None:
    def without_ids(value: Any) -> Any:  # a PostgreSQL sequence may skip numbers
        if isinstance(value, dict):
            return {k: without_ids(v) for k, v in value.items() if k != "id"}
        if isinstance(value, list):
            return [without_ids(v) for v in value]
        return value

    answers = []
    for each in (MemoryStore(), _pg_store(pg_schema)):
        await each.open()
        await each.add_device("SN1", "approved", T0)
        await ingest_samples(each)
        await ingest_samples(each, "SN2")
        await each.ingest("SN1", [user(name="B"), finger(fid="3")], ("ATTLOG", "5"), T1, "9")
        await each.record_replies("SN1", [REPLY], T1)
        await each.record_verification("SN2", b"x", "allow", T2)
        await each.add_command(command("A1"))
        await each.claim_commands("SN1", T1, 65536, 10, T0, 3)
        await each.complete_command("SN1", "A1", "succeeded", "0", {"k": ["v"]}, T2)
        answer: dict[str, Any] = {"devices": await each.list_devices()}
        for kind in RECORD_KINDS:
            answer[kind] = without_ids(await items(each, kind))
            answer[kind + "/SN2"] = without_ids(
                await items(each, kind, sn="SN2", since=T0, limit=1)
            )
            answer[kind + "#"] = await each.count(kind, "SN1")
        answer["templates"] = await each.user_templates("1")
        answers.append(answer)
        await each.close()
    assert answers[0] == answers[1]


@pytest_twisted.ensureDeferred
async def test_postgresql_long_free_text_is_stored_and_deduplicated(pg_schema: str) -> None:
    store = _pg_store(pg_schema)
    await store.open()
    try:  # far beyond what a B-tree index entry may hold
        long_ = secrets.token_hex(20000)
        records = [
            OtherRecord(kind="CUSTOM", fields=(("Data", long_),)),
            ErrorLog(err_code="-1", err_msg=long_, data_origin="cmd", cmd_id="1", additional=long_),
            OpLog(op_type="4", op_who="0", time="2024-05-01T07:00:00", values=(long_,)),
        ]
        assert await store.ingest("SN1", records, None, T0, None) == IngestResult(stored=3)
        assert await store.ingest("SN1", records, None, T1, None) == IngestResult(duplicates=3)
        [other] = await items(store, "other")
        assert other["fields"] == [["Data", long_]]
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_postgresql_a_nul_in_text_is_stored_as_a_replacement_character(
    pg_schema: str,
) -> None:
    store = _pg_store(pg_schema)
    await store.open()
    try:
        await store.add_device("SN1", "approved", T0)
        await store.update_device("SN1", DeviceUpdate(alias="door\x00", info={"a\x00": "b\x00"}))
        assert await store.ingest("SN1", [user(name="A\x00B"), punch("7\x00")], None, T0, None) == (
            IngestResult(stored=2)
        )
        assert await store.ingest("SN1", [punch("7\x00")], None, T1, None) == IngestResult(
            duplicates=1
        )
        assert (await store.get_user("1")).name == "A\ufffdB"
        device = await store.get_device("SN1")
        assert (device.alias, device.info) == ("door\ufffd", {"a\x00": "b\x00"})  # JSON escapes
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_postgresql_a_failed_write_is_a_store_error_and_stores_nothing(
    pg_schema: str,
) -> None:
    store = _pg_store(pg_schema)
    await store.open()
    try:
        await store.add_device("SN1", "approved", T0)
        _pg_execute(  # as a full disk would, fail every punch of PIN 13
            f"CREATE FUNCTION {pg_schema}.fail() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$;"
            f" CREATE TRIGGER fail BEFORE INSERT ON {pg_schema}.attendance"
            f" FOR EACH ROW WHEN (NEW.pin = '13') EXECUTE FUNCTION {pg_schema}.fail()"
        )
        with pytest.raises(StoreError, match="No space left on device") as raised:
            await store.ingest("SN1", [user("13"), punch("13")], ("ATTLOG", "5"), T1, None)
        assert "\n" not in str(raised.value)
        assert await store.get_user("13") is None
        assert (await store.get_device("SN1")).stamps == {}
        result = await store.ingest("SN1", [user("14"), punch("14")], ("ATTLOG", "6"), T1, None)
        assert result == IngestResult(stored=2)
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_postgresql_a_write_that_lost_a_deadlock_is_tried_again(pg_schema: str) -> None:
    import psycopg.errors

    store = _pg_store(pg_schema)
    await store.open()
    try:
        calls: list[int] = []

        def write(conn: Any, losses: int) -> int:
            calls.append(1)
            name = f"{losses}-{len(calls)}"
            conn.execute("INSERT INTO sinks (name, position) VALUES (%s, %s)", (name, 1))
            if len(calls) <= losses:
                raise psycopg.errors.DeadlockDetected("deadlock detected")
            return len(calls)

        assert await store._write(write, 2) == 3  # the third attempt commits
        assert await store.sink_position("2-3") == 1
        assert await store.sink_position("2-1") == 0  # the lost attempts left nothing
        calls.clear()
        with pytest.raises(StoreError, match="deadlock detected"):
            await store._write(write, 3)
        assert len(calls) == 3
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_postgresql_too_many_waiting_writes_are_refused(pg_schema: str) -> None:
    store = _pg_store(pg_schema)
    store.max_queued = 3
    await store.open()
    try:
        writes = [store.ingest("SN1", [punch(str(n))], None, T0, None) for n in range(5)]
        outcomes = await defer.DeferredList(writes, consumeErrors=True)
        assert [ok for ok, _ in outcomes] == [True, True, True, False, False]
        assert outcomes[3][1].check(StoreError) and "store busy" in str(outcomes[3][1].value)
        assert await store.ingest("SN1", [punch("9")], None, T0, None) == IngestResult(stored=1)
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_postgresql_refuses_a_newer_schema(pg_schema: str) -> None:
    store = _pg_store(pg_schema)
    await store.open()
    await store.close()
    _pg_execute(f"UPDATE {pg_schema}.schema_version SET version = 99")
    with pytest.raises(StoreError, match="version 99"):
        await _pg_store(pg_schema).open()


@pytest_twisted.ensureDeferred
async def test_postgresql_a_closed_store_answers_store_error(pg_schema: str) -> None:
    closed = _pg_store(pg_schema)
    with pytest.raises(StoreError):
        await closed.get_device("SN1")
    await closed.open()
    await closed.close()
    with pytest.raises(StoreError):
        await closed.ingest("SN1", [punch()], None, T0, None)


@pytest_twisted.ensureDeferred
async def test_postgresql_a_server_that_cannot_be_reached_is_a_store_error() -> None:
    pytest.importorskip("psycopg")
    from pushd.storage.postgres import PostgresStore

    unreachable = PostgresStore("postgresql://pushd:secret@127.0.0.1:1/pushd", timeout=2)
    with pytest.raises(StoreError, match="Database error") as raised:
        await unreachable.open()
    assert "secret" not in str(raised.value)
    await unreachable.close()  # harmless after a failed open


def test_postgresql_schema_names_are_plain_identifiers() -> None:
    pytest.importorskip("psycopg")
    from pushd.storage.postgres import PostgresStore

    with pytest.raises(ValueError, match="schema name"):
        PostgresStore(PG_URL, schema='x"; DROP TABLE y; --')


# -- store_from_url ---------------------------------------------------------


def test_store_from_url_builds_a_sqlite_store_and_its_directory(
    tmp_path: Any, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = store_from_url("sqlite:data/pushd.sqlite3")
    assert isinstance(relative, SQLiteStore) and relative.path == "data/pushd.sqlite3"
    assert (tmp_path / "data").is_dir()
    absolute = str(tmp_path / "a" / "b.sqlite3")
    assert store_from_url("sqlite:" + absolute).path == absolute  # type: ignore[attr-defined]
    assert store_from_url("sqlite://" + absolute).path == absolute  # type: ignore[attr-defined]
    assert os.path.isdir(tmp_path / "a")


def test_store_from_url_builds_a_memory_store() -> None:
    assert isinstance(store_from_url("memory:"), MemoryStore)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "PostgreSQL"])
def test_store_from_url_builds_a_postgresql_store_without_connecting(scheme: str) -> None:
    pytest.importorskip("psycopg")
    from pushd.storage.postgres import PostgresStore

    built = store_from_url(f"{scheme}://pushd:secret@db.invalid:5433/pushd?sslmode=require")
    assert isinstance(built, PostgresStore) and built.kind == "postgresql"
    assert built.url == "postgresql://pushd:secret@db.invalid:5433/pushd?sslmode=require"


def test_store_from_url_says_when_psycopg_is_missing(monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "pushd.storage.postgres", None)  # import fails
    with pytest.raises(ValueError, match="needs psycopg 3 and psycopg-pool") as raised:
        store_from_url("postgresql://pushd:secret@db/pushd")
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql:secret@db/pushd", "starts with postgresql://"),
        ("mysql://db/pushd", "'mysql'"),
        ("sqlite:", "No database path"),
        ("pushd.sqlite3", "Not a store URL"),
        ("memory:/x", "'memory'"),
    ],
)
def test_store_from_url_refuses_other_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        store_from_url(url)
    assert "secret" not in str(raised.value)
