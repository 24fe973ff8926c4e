"""
Moving a site between stores (``pushctl migrate-store``) and applying the
schema (``pushctl migrate``): SQLite to PostgreSQL and SQLite to SQLite,
every table copied and counted, the target refusing to be overwritten.
"""

from __future__ import annotations

import io
import sqlite3
from typing import Any, Dict, List

import pytest
import pytest_twisted
from twisted.internet import reactor

from pushd.ctl import run
from pushd.model import DeviceUpdate, RecordQuery
from pushd.storage.sqlite import SQLiteStore
from pushd.storage.transfer import TransferError, migrate_schema, migrate_store
from tests.test_storage_contract import (
    PG_URL,
    REPLY,
    SAMPLES,
    T0,
    T1,
    _pg_store,
    command,
    ingest_samples,
    items,
    pg_schema,  # noqa: F401 - a fixture
    user,
)

KINDS = [kind for kind, _ in SAMPLES] + ["replies", "commands"]


async def a_site(path: str) -> Dict[str, Any]:
    """An SQLite store with something in every table; :returns: what it lists."""
    store = SQLiteStore(path, reactor)
    await store.open()
    store.use_outbox(True)
    try:
        await store.add_device("SN1", "pending", T0)
        await store.update_device("SN1", DeviceUpdate(state="approved", alias="Gate"))
        await store.add_device("SN2", "blocked", T0)
        await ingest_samples(store, "SN1")
        await ingest_samples(store, "SN2")
        await store.record_replies("SN1", [REPLY], T0)
        await store.record_verification("SN1", b"pin=1", "allow", T0)
        for n in range(3):
            await store.add_command(command(f"C{n}"))
        await store.claim_commands("SN1", T1, 65536, 1, T0, 3)
        await store.save_user(user("9", "Bo"), [], T0)
        await store.set_crypto_state("SN1", b"\x00state\xff")
        await store.set_sink_position("hr", 2)
        return await listing(store)
    finally:
        await store.close()


async def listing(store: Any) -> Dict[str, Any]:
    found: Dict[str, Any] = {kind: await items(store, kind, limit=1000) for kind in KINDS}
    found["devices"] = await store.list_devices()
    found["crypto"] = await store.crypto_state("SN1")
    found["events"] = await store.events_after(0, 1000)
    found["sink"] = await store.sink_position("hr")
    return found


def progress_lines() -> tuple[List[str], Any]:
    lines: List[str] = []
    return lines, lambda table, done, total: lines.append(f"{table} {done}/{total}")


@pytest_twisted.ensureDeferred
async def test_a_site_moves_from_sqlite_to_postgresql_whole(tmp_path: Any, pg_schema: str) -> None:  # noqa: F811
    before = await a_site(str(tmp_path / "site.db"))
    target = f"{PG_URL}?options=-csearch_path%3D{pg_schema}"
    from tests.test_storage_contract import _pg_execute

    _pg_execute(f"CREATE SCHEMA {pg_schema}")
    lines, progress = progress_lines()
    copied = await migrate_store(f"sqlite:{tmp_path / 'site.db'}", target, reactor, progress)
    assert copied["attendance"] == 2 and copied["devices"] == 2 and copied["commands"] == 3
    assert "attendance 2/2" in lines
    moved = _pg_store(pg_schema)
    await moved.open()
    try:
        assert await listing(moved) == before
        # the target goes on from where the source stopped: new ids follow the copied ones
        await moved.add_command(command("C9"))
        page = await moved.query("commands", RecordQuery(limit=10))
        assert [c["id"] for c in page.items][-1] == "C9"
        stored = await moved.ingest("SN1", [SAMPLES[0][1]], None, T1, None)
        assert stored.duplicates == 1  # the copied punch is known, not stored again
    finally:
        await moved.close()


@pytest_twisted.ensureDeferred
async def test_a_site_copies_to_another_sqlite_file_and_lists_the_same(tmp_path: Any) -> None:
    before = await a_site(str(tmp_path / "a.db"))
    copied = await migrate_store(
        f"sqlite:{tmp_path / 'a.db'}", f"sqlite:{tmp_path / 'b.db'}", reactor, lambda *a: None
    )
    assert sum(copied.values()) > len(SAMPLES)
    moved = SQLiteStore(str(tmp_path / "b.db"), reactor)
    await moved.open()
    try:
        assert await listing(moved) == before
    finally:
        await moved.close()


@pytest_twisted.ensureDeferred
async def test_a_target_that_holds_data_is_refused_and_left_unchanged(tmp_path: Any) -> None:
    await a_site(str(tmp_path / "a.db"))
    await a_site(str(tmp_path / "b.db"))
    with pytest.raises(TransferError, match=r"not empty .*2 rows in devices"):
        await migrate_store(
            f"sqlite:{tmp_path / 'a.db'}", f"sqlite:{tmp_path / 'b.db'}", reactor, lambda *a: None
        )
    with sqlite3.connect(str(tmp_path / "b.db")) as conn:
        assert conn.execute("SELECT count(*) FROM attendance").fetchone() == (2,)


@pytest_twisted.ensureDeferred
async def test_a_failed_copy_leaves_the_target_empty(tmp_path: Any, monkeypatch: Any) -> None:
    await a_site(str(tmp_path / "a.db"))
    from pushd.storage import transfer

    real = transfer._Database.insert

    def failing(self: Any, table: str, names: Any, rows: Any) -> None:
        if table == "users":
            raise sqlite3.OperationalError("disk I/O error")
        real(self, table, names, rows)

    monkeypatch.setattr(transfer._Database, "insert", failing)
    with pytest.raises(TransferError, match="disk I/O error"):
        await migrate_store(
            f"sqlite:{tmp_path / 'a.db'}", f"sqlite:{tmp_path / 'b.db'}", reactor, lambda *a: None
        )
    with sqlite3.connect(str(tmp_path / "b.db")) as conn:
        assert conn.execute("SELECT count(*) FROM attendance").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM devices").fetchone() == (0,)


@pytest_twisted.ensureDeferred
async def test_migrate_creates_the_schema_and_reports_its_version(tmp_path: Any) -> None:
    assert await migrate_schema(f"sqlite:{tmp_path / 'new.db'}", reactor) >= 1
    with sqlite3.connect(str(tmp_path / "new.db")) as conn:
        assert conn.execute("SELECT count(*) FROM devices").fetchone() == (0,)


@pytest_twisted.ensureDeferred
async def test_pushctl_migrate_store_prints_the_counts_and_refuses_a_memory_store(
    tmp_path: Any,
) -> None:
    await a_site(str(tmp_path / "a.db"))
    out, err = io.StringIO(), io.StringIO()
    source, target = f"sqlite:{tmp_path / 'a.db'}", f"sqlite:{tmp_path / 'b.db'}"
    assert await run(["migrate-store", source, target], stdout=out, stderr=err) == 0
    assert "attendance" in out.getvalue() and "every table's count checked" in out.getvalue()
    assert "attendance: 2 of 2 rows" in err.getvalue()
    err = io.StringIO()
    assert await run(["migrate-store", source, "memory:"], stdout=out, stderr=err) == 1
    assert "a memory store cannot be copied" in err.getvalue()
    err = io.StringIO()
    assert await run(["migrate", "nosuch:x"], stdout=out, stderr=err) == 1
    assert "Unknown store URL scheme" in err.getvalue()
