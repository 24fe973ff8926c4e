# -*- test-case-name: tests.test_commands -*-
"""
The command plane (spec 12, 13): queue commands for devices, deliver them on
polls, follow each to its result.

A command is validated when it is queued (typed builders or raw text, see
:mod:`pushd.protocol.commands`), stored durably, delivered FIFO on the
device's next polls as ``C:<id>:<command>`` lines under a byte budget, and
completed by the device's ``devicecmd`` reply.  A command delivered without a
reply is delivered again after ``resend_after`` seconds, at most ``attempts``
times, then expires; one never delivered expires after ``ttl``.

Polls are the hot path: the service remembers which devices may have
commands waiting, so a poll of any other device costs no store call.  On a
store shared with other nodes it cannot know (they queue commands too), so
every poll asks the store.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Set, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from pushd._deferred import deferred
from pushd.errors import ProtocolError, PushdError, UnsupportedRequest
from pushd.files import BASE64_PREFIX, FileArea
from pushd.interfaces import IStore
from pushd.model import Command, Device, RecordQuery
from pushd.protocol.commands import Built, build, format_commands, interpret, validate_raw
from pushd.protocol.devicecmd import parse_devicecmd
from pushd.protocol.push3 import build3, interpret3, is_push3
from pushd.protocol.records import CommandReply
from pushd.protocol.replies import format_ok
from pushd.protocol.text import codec_for
from pushd.registry import DeviceRegistry

__all__ = [
    "FAMILIES",
    "CommandRefused",
    "CommandService",
    "CommandSettings",
    "command_json",
    "parse_allowed_families",
]

T = TypeVar("T")

#: The families of ``--allow-commands`` besides the standard commands.
FAMILIES = ("shell", "files", "upgrade")


class CommandRefused(PushdError):
    """A command of a family the operator did not allow: HTTP 403."""

    status = 403


def parse_allowed_families(value: str) -> FrozenSet[str]:
    """
    ``--allow-commands``: ``standard``, ``all``, or a comma list of
    ``shell``, ``files``, ``upgrade`` (standard commands are always allowed).

    :raises ValueError: naming an unknown family.
    """
    families = {"standard"}
    for word in (w.strip().lower() for w in value.split(",")):
        if not word or word == "standard":
            continue
        if word == "all":
            families.update(FAMILIES)
        elif word in FAMILIES:
            families.add(word)
        else:
            raise ValueError(
                f"unknown command family {word!r} (standard, shell, files, upgrade, all)"
            )
    return frozenset(families)


@dataclass(frozen=True)
class CommandSettings:
    """How commands are delivered and followed."""

    allowed: FrozenSet[str] = frozenset({"standard"})
    budget: int = 64 * 1024
    limit: int = 100
    resend_after: float = 120.0
    attempts: int = 3
    ttl: float = 7 * 24 * 3600.0
    expire_every: float = 30.0


def command_json(command: Command) -> Dict[str, Any]:
    """The command object of the REST API (CONTRACT 3)."""
    return {
        "id": command.id,
        "sn": command.sn,
        "command": command.command,
        "kind": command.kind,
        "family": command.family,
        "status": command.status,
        "attempts": command.attempts,
        "return_code": command.return_code,
        "reply": dict(command.reply),
        "created": command.created,
        "sent": command.sent or None,
        "completed": command.completed or None,
    }


def _pack_line(table: str, item: Mapping[str, Any]) -> str:
    """One record of a PutFile pack, as the DATA UPDATE command that would send it."""
    if table == "USERINFO":
        names = (
            "pin",
            "name",
            "privilege",
            "password",
            "card",
            "group",
            "tz",
            "verify",
            "vice_card",
        )
        fields = {f: item[f] for f in names}
        built = build("update_user", {k: v for k, v in fields.items() if v not in ("", None)})
    elif table == "FINGERTMP":
        built = build(
            "update_fingerprint",
            {
                "pin": item["pin"],
                "fid": item["fid"],
                "template": item["template"],
                "valid": item["valid"] or 1,
            },
        )
    else:
        built = build(
            "update_face",
            {
                "pin": item["pin"],
                "fid": item["fid"],
                "template": item["template"],
                "valid": item["valid"] or 1,
            },
        )
    return built.command


class CommandService:
    """Queues, delivers and completes device commands."""

    log = Logger()

    def __init__(
        self,
        store: IStore,
        registry: DeviceRegistry,
        reactor: Any,
        files: FileArea,
        settings: CommandSettings = CommandSettings(),
        metrics: Any = None,
        shared: bool = False,
    ) -> None:
        self._store = store
        self._registry = registry
        self._clock: IReactorTime = reactor
        self._reactor = reactor
        self._files = files
        self.settings = settings
        self._metrics = metrics
        #: Devices that may have commands to deliver or to hear back about.
        self._waiting: Set[str] = set()
        #: Whether other processes queue commands in the same store: then
        #: this one cannot know who is waiting, and every poll asks the store.
        self._shared = shared

    def _now(self, shift: float = 0.0) -> str:
        moment = datetime.fromtimestamp(self._clock.seconds() + shift, tz=timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    @deferred
    async def load(self) -> None:
        """Learn which devices have commands pending or awaiting a reply (at start)."""
        for status in ("pending", "sent"):
            cursor: Optional[str] = None
            while True:
                page = await self._store.query(
                    "commands", RecordQuery(status=status, cursor=cursor, limit=10000)
                )
                self._waiting.update(item["sn"] for item in page.items)
                if page.next is None:
                    break
                cursor = page.next

    # -- queueing ----------------------------------------------------------

    @deferred
    async def submit(self, sn: str, body: Mapping[str, Any]) -> Command:
        """
        Queue the command of an API request: ``{"command": "<raw text>"}`` or
        ``{"kind": "<builder>", ...parameters}``.

        :raises UnsupportedRequest: the device is unknown.
        :raises ProtocolError: the command is invalid.
        :raises CommandRefused: its family is not allowed.
        """
        device = await self._store.get_device(sn)
        if device is None:
            raise UnsupportedRequest(f"unknown device {sn}")
        if "kind" in body:
            kind = body["kind"]
            if not isinstance(kind, str):
                raise ProtocolError("kind must be a string")
            params = {k: v for k, v in body.items() if k != "kind"}
            # the kinds the server completes itself are checked before any work is done
            if kind == "sync_data":
                self._check_family("files")
                built = await self._sync_data(params, codec_for(device.language))
            elif kind == "upgrade" and "file" in params:
                self._check_family("upgrade")
                built = await self._upgrade(params)
            elif is_push3(device.push_version, device.device_type):
                built = build3(kind, params)  # the 3.x dialect of the same kinds
            else:
                built = build(kind, params)
        elif "command" in body:
            extra = sorted(set(body) - {"command"})
            if extra:
                raise ProtocolError(f"a raw command takes no other keys: {', '.join(extra)}")
            text = body["command"]
            if not isinstance(text, str):
                raise ProtocolError("command must be a string")
            built = validate_raw(text)
        else:
            raise ProtocolError('give "command" (raw text) or "kind" (a typed builder)')
        self._check_family(built.family)
        return await self.queue(sn, built)

    def _check_family(self, family: str) -> None:
        if family not in self.settings.allowed:
            raise CommandRefused(f"{family} commands are disabled (--allow-commands {family})")

    def _in_thread(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), fn, *args)

    async def _upgrade(self, params: Mapping[str, Any]) -> Built:
        """UPGRADE of a firmware file under ``<data-dir>/files/``; checksum and size computed."""
        extra = sorted(set(params) - {"file", "method"})
        if extra:
            raise ProtocolError(f"upgrade with file takes only method besides: {', '.join(extra)}")
        relative = params["file"]
        if not isinstance(relative, str):
            raise ProtocolError("file must be a path under <data-dir>/files/")
        try:
            checksum, size = await self._in_thread(self._files.describe, relative)
        except FileNotFoundError:
            raise ProtocolError(f"no firmware file {relative!r} under <data-dir>/files/") from None
        method = params.get("method", 1)
        url = (BASE64_PREFIX if str(method) == "1" else "") + relative
        return build("upgrade", {"url": url, "checksum": checksum, "size": size, "method": method})

    async def _sync_data(self, params: Mapping[str, Any], codec: str) -> Built:
        """
        PutFile with a pack the server builds (spec 12.5.2 function 2): every
        stored user (USERINFO), fingerprint (FINGERTMP) or face (FACE) as
        ``C:<n>:DATA UPDATE ...`` lines in a tgz under ``<data-dir>/files/packs/``,
        in the device's codec like any command.
        """
        extra = sorted(set(params) - {"table", "action", "path"})
        if extra:
            raise ProtocolError(f"sync_data takes table, action and path, not: {', '.join(extra)}")
        table = str(params.get("table", "USERINFO")).upper()
        kinds = {"USERINFO": "users", "FINGERTMP": "fingerprints", "FACE": "faces"}
        if table not in kinds:
            raise ProtocolError("table must be USERINFO, FINGERTMP or FACE")
        action = str(params.get("action", "SyncData"))
        path = str(params.get("path", "/mnt/mtdblock/"))
        lines: List[str] = []
        cursor: Optional[str] = None
        while True:
            page = await self._store.query(kinds[table], RecordQuery(cursor=cursor, limit=10000))
            for item in page.items:
                lines.append(f"C:{len(lines) + 1}:{_pack_line(table, item)}")
            if page.next is None:
                break
            cursor = page.next
        content = ("\n".join(lines) + "\n").encode(codec, "replace") if lines else b""
        relative = await self._in_thread(self._files.write_pack, f"{table.lower()}.dat", content)
        counted = (
            {"table": table, "record_count": len(lines)} if action.lower() == "syncdata" else {}
        )
        return build(
            "put_file", {"url": "file/" + relative, "path": path, "action": action, **counted}
        )

    @deferred
    async def queue(self, sn: str, built: Built) -> Command:
        """Queue an already validated command for ``sn`` (no family check)."""
        command = Command(
            id=secrets.token_hex(8),
            sn=sn,
            command=built.command,
            kind=built.kind,
            family=built.family,
            created=self._now(),
        )
        command = await self._store.add_command(command)
        self._waiting.add(sn)
        if built.command.strip().upper() == "CHECK":
            # spec 12.3.1: the device re-reads its options, and stamps of 0 make it re-upload
            await self._store.reset_stamps(sn)
        self.log.info("Queued command {id} for {sn}: {kind}", id=command.id, sn=sn, kind=built.kind)
        return command

    def get(self, cmd_id: str) -> Deferred[Optional[Command]]:
        return self._store.get_command(cmd_id)

    command_json = staticmethod(command_json)

    # -- delivery ----------------------------------------------------------

    @deferred
    async def deliver(self, device: Device) -> bytes:
        """The answer to a poll: the device's next commands, or ``OK``."""
        if not self._shared and device.sn not in self._waiting:
            return format_ok()
        claimed = await self._store.claim_commands(
            device.sn,
            self._now(),
            self.settings.budget,
            self.settings.limit,
            self._now(-self.settings.resend_after),
            self.settings.attempts,
        )
        if not claimed:
            await self._forget_if_idle(device.sn)
            return format_ok()
        for command in claimed:
            if command.attempts > 1:
                self.log.info(
                    "Re-sending command {id} to {sn} (attempt {n})",
                    id=command.id,
                    sn=device.sn,
                    n=command.attempts,
                )
        lines = [(c.id, c.command) for c in claimed]
        return format_commands(lines, codec_for(device.language))

    async def _forget_if_idle(self, sn: str) -> None:
        for status in ("pending", "sent"):
            page = await self._store.query("commands", RecordQuery(sn=sn, status=status, limit=1))
            if page.items:
                return
        self._waiting.discard(sn)

    # -- replies -------------------------------------------------------------

    @deferred
    async def on_replies(self, device: Device, body: bytes) -> bytes:
        """
        Handle ``POST /iclock/devicecmd`` (spec 13): store every result as
        received, then complete the device's commands.

        :raises ProtocolError: the body holds no result, or only results for
            commands this device does not own.
        """
        replies = parse_devicecmd(body)
        await self._store.record_replies(device.sn, replies, self._now())
        foreign = []
        for reply in replies:
            if not await self._complete(device, reply):
                foreign.append(reply.cmd_id)
        if foreign:
            self.log.warn(
                "{sn} replied to command(s) it does not own: {ids}",
                sn=device.sn,
                ids=", ".join(foreign),
            )
            if len(foreign) == len(replies):
                raise ProtocolError(f"reply for unknown command id {foreign[0]}")
        return format_ok()

    async def _complete(self, device: Device, reply: CommandReply) -> bool:
        command = await self._store.get_command(reply.cmd_id)
        if command is None or command.sn != device.sn:
            return False
        push3 = is_push3(device.push_version, device.device_type)
        outcome = (interpret3 if push3 else interpret)(command.command, reply)
        if outcome.status == "pending":
            return True  # a master controller's "accepted": the result follows, same id
        data = dict(outcome.data)
        data["meaning"] = outcome.meaning
        if command.kind == "query_attlog" or command.command.upper().startswith(
            "DATA QUERY ATTLOG"
        ):
            linked = await self._store.query(
                "attendance", RecordQuery(sn=device.sn, cmd_id=command.id, limit=10000)
            )
            data["records"] = len(linked.items)
        done = await self._store.complete_command(
            device.sn, command.id, outcome.status, outcome.return_code, data, self._now()
        )
        if self._metrics is not None:
            self._metrics.commands.labels(outcome.status).inc()
        if done is not None and done.status == "succeeded" and "options" in data:
            await self._registry.record_options(device, data["options"])
        self.log.info(
            "Command {id} on {sn}: {status} ({meaning})",
            id=command.id,
            sn=device.sn,
            status=outcome.status,
            meaning=outcome.meaning,
        )
        return True

    # -- expiry ----------------------------------------------------------------

    @deferred
    async def expire(self) -> List[Command]:
        """Expire what will never be answered (run periodically)."""
        expired = await self._store.expire_commands(
            self._now(),
            self._now(-self.settings.resend_after),
            self.settings.attempts,
            self._now(-self.settings.ttl),
        )
        for command in expired:
            self.log.warn(
                "Command {id} for {sn} expired after {n} deliveries",
                id=command.id,
                sn=command.sn,
                n=command.attempts,
            )
        return expired
