# -*- test-case-name: tests.test_web_iclock -*-
"""
Uploads, from parsed request to committed records (spec 8, 11, 12.8.3, 13).

The resources hand over a device, the request parameters and the body; this
module picks the parser, does the blocking parts (unpacking tgz packs,
writing photo files) in threads, stores everything in one store call and
builds the device-visible answer, which is only ever produced after the
store call succeeded.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from typing import Any, Awaitable, Callable, List, Mapping, Optional, Sequence, Tuple, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from pushd.config import Config
from pushd.errors import ProtocolError, PushdError, RequestTooLarge, StoreError
from pushd.interfaces import IStore, IVerifier
from pushd.model import STAMP_TABLES, Device
from pushd.protocol.cdata import parse_options, parse_table
from pushd.protocol.packs import read_pack
from pushd.protocol.photo import parse_attphoto
from pushd.protocol.push3 import (
    auth_reply,
    is_push3,
    parse_attphotos,
    parse_auth_request,
    parse_querydata,
    parse_registry,
    parse_rtlog,
    parse_rtstate,
    parse_tabledata,
    row_count,
    tabledata_reply,
)
from pushd.protocol.query import Params
from pushd.protocol.records import AttPhoto, Record, Rejected
from pushd.protocol.replies import format_ok
from pushd.protocol.text import codec_for
from pushd.registry import DeviceRegistry
from pushd.sessions import CryptoSessions

__all__ = ["Ingestor"]

T = TypeVar("T")

#: Tables whose answer is a bare ``OK`` (spec 11.16); the others get ``OK: <n>``.
_PLAIN_OK = {"ERRORLOG"}


class Ingestor:
    """Turns device uploads into committed records and device answers."""

    log = Logger()

    def __init__(
        self,
        store: IStore,
        registry: DeviceRegistry,
        verifier: IVerifier,
        sessions: CryptoSessions,
        config: Config,
        reactor: IReactorThreads,
        handlers: Optional[Mapping[str, Tuple[Any, Any]]] = None,
        metrics: Any = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._verifier = verifier
        self._sessions = sessions
        self._config = config
        self._reactor = reactor
        #: table (upper case) -> (table-handler plugin, its façade)
        self._handlers = dict(handlers or {})
        self._metrics = metrics
        self._photos = os.path.abspath(os.path.join(config.data_dir, "photos"))
        #: Called with (device, records) after an upload was committed.
        self.after_commit: List[Callable[[Device, Sequence[Record]], Awaitable[None]]] = []

    def _in_thread(self, fn: Callable[..., T], *args: object) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), fn, *args)

    def _option(self, device: Device, name: str) -> str:
        return device.settings.get(name) or self._config.option(name)

    async def upload(self, device: Device, params: Params, body: bytes) -> bytes:
        """
        Handle ``POST /iclock/cdata`` (and ``/iclock/fdata``) for an admitted device.

        :returns: the answer: ``OK`` or ``OK: <n>``.
        :raises ProtocolError: malformed body; nothing was stored.
        :raises StoreError: nothing was stored; the device must retry.
        """
        if params.get("type").lower() == "postverifydata":
            return await self._verify(device, body)
        if params.get("authtype").lower() == "device":
            return await self._remote_auth(device, body)
        table = params.table.upper()
        if not table:
            raise ProtocolError("missing table parameter")
        push3 = is_push3(device.push_version, device.device_type)
        if table == "OPTIONS":
            parse = parse_registry if push3 else parse_options
            await self._registry.record_options(device, parse(body, _codec(device)))
            return format_ok()
        if params.get("contenttype").lower() == "tgz":
            body = await self._in_thread(read_pack, body)
        if table in self._handlers:
            return await self._plugin_upload(device, params, table, body)
        if table == "ATTPHOTO":
            return await self._photo(device, params, body)
        if table in ("RTLOG", "RTSTATE"):
            parse3 = parse_rtlog if table == "RTLOG" else parse_rtstate
            await self._commit(device, params, table, parse3(body, _codec(device)))
            return format_ok()
        if table == "TABLEDATA":
            return await self._tabledata(device, params, body)
        sealed = await self._sessions.unwrap(device, table, body)
        if sealed is not None:
            if sealed.cached_reply is not None:
                return sealed.cached_reply  # an exact replay: answered, not stored again
            body = sealed.plaintext or b""
        records = parse_table(table, body, _codec(device))
        if len(records) > self._config.limits.max_records:
            raise RequestTooLarge(f"upload of over {self._config.limits.max_records} records")
        await self._commit(device, params, table, records)
        reply = format_ok() if table in _PLAIN_OK else format_ok(len(records))
        if sealed is not None:
            await self._sessions.remember(device, sealed, reply)
        return reply

    async def _plugin_upload(
        self, device: Device, params: Params, table: str, body: bytes
    ) -> bytes:
        plugin, facade = self._handlers[table]
        try:
            count = await plugin.handle(facade, device.sn, params.table, params.items(), body)
        except PushdError:
            raise
        except Exception:
            self.log.failure(
                "Plugin {plugin} failed on table {table}", plugin=plugin.name, table=table
            )
            raise StoreError(f"plugin {plugin.name} failed") from None
        return format_ok(int(count))

    async def _commit(
        self, device: Device, params: Params, table: str, records: List[Record]
    ) -> None:
        stamp: Optional[Tuple[str, str]] = None
        value = params.get("stamp").strip()
        if value and table in STAMP_TABLES:
            stamp = (table, value)
        started = time.perf_counter()
        result = await self._store.ingest(
            device.sn, records, stamp, self._registry.now(), params.get("cmdid").strip() or None
        )
        if self._metrics is not None:
            self._metrics.store_seconds.observe(time.perf_counter() - started)
            self._metrics.ingested({table: result.stored + result.updated})
        for hook in self.after_commit:
            try:
                await hook(device, records)
            except Exception:
                self.log.failure("After storing an upload of {sn}", sn=device.sn)
        if result.rejected:
            self.log.warn(
                "{sn}: {n} {table} line(s) quarantined as unreadable",
                sn=device.sn,
                n=result.rejected,
                table=table,
            )

    async def _tabledata(self, device: Device, params: Params, body: bytes) -> bytes:
        """3.x ``table=tabledata&tablename=<t>``: answered ``<t>=<records accepted>`` (§3.6)."""
        name = params.get("tablename").strip()
        if not name:
            raise ProtocolError("tabledata without tablename")
        records: List[Record] = []
        if name.upper() == "ATTPHOTO":
            for row in parse_attphotos(body, _codec(device), name):
                if isinstance(row, Rejected):
                    records.append(row)
                    continue
                photo, image = row
                path = await self._in_thread(self._write_photo, device.sn, photo, image)
                records.append(replace(photo, path=path))
        else:
            records = parse_tabledata(name, body, _codec(device))
        await self._commit(device, params, name.upper(), records)
        accepted = row_count(records)
        told = params.get("count").strip()
        if told.isdigit() and int(told) != accepted:
            self.log.info(
                "{sn}: tabledata {table} said count={told}, {n} record(s) accepted",
                sn=device.sn,
                table=name,
                told=told,
                n=accepted,
            )
        return tabledata_reply(name, accepted)

    async def querydata(self, device: Device, params: Params, body: bytes) -> bytes:
        """``POST /iclock/querydata`` (3.x §4.8): a query's results, linked to its command."""
        packet = parse_querydata(params.items(), body, _codec(device))
        if packet.records:
            stamp_less = Params({**params.items(), "cmdid": packet.cmd_id})
            await self._commit(device, stamp_less, packet.table.upper(), list(packet.records))
        return packet.reply

    async def _remote_auth(self, device: Device, body: bytes) -> bytes:
        """3.x ``AuthType=device`` (§6): the verifier decides, the answer opens the door or not."""
        request = parse_auth_request(body, _codec(device))
        verdict = await self._verifier.verify(device.sn, request.line)
        await self._store.record_verification(
            device.sn, body, "allow" if verdict.allow else "deny", self._registry.now()
        )
        tips = "" if verdict.reply == "OK" else verdict.reply
        return auth_reply(request, verdict.allow, tips=tips)

    async def _photo(self, device: Device, params: Params, body: bytes) -> bytes:
        base64_payload = self._option(device, "ATTPHOTOBase64").strip() == "1"
        photo, image = parse_attphoto(body, base64_payload)
        if len(image) > self._config.limits.max_photo:
            raise RequestTooLarge(f"photo over {self._config.limits.max_photo} bytes")
        path = await self._in_thread(self._write_photo, device.sn, photo, image)
        await self._commit(device, params, "ATTPHOTO", [replace(photo, path=path)])
        return format_ok()

    def _write_photo(self, sn: str, photo: AttPhoto, image: bytes) -> str:
        """
        Write the image durably under ``photos/<SN>/`` with a name built here
        (time and content hash), never one taken from the request.

        :returns: the path relative to the data directory.
        """
        stamp = photo.time.replace("-", "").replace(":", "").replace("T", "-") or "undated"
        name = f"{stamp}-{photo.sha256[:16]}.jpg"
        folder = os.path.join(self._photos, sn)
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(image)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, os.path.join(folder, name))
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        return "/".join(("photos", sn, name))

    async def _verify(self, device: Device, body: bytes) -> bytes:
        verdict = await self._verifier.verify(device.sn, body)
        await self._store.record_verification(
            device.sn, body, "allow" if verdict.allow else "deny", self._registry.now()
        )
        return verdict.reply.encode("utf-8")


def _codec(device: Device) -> str:
    return codec_for(device.language)
