# -*- test-case-name: tests.test_web_iclock -*-
"""
The device-facing endpoints under ``/iclock/`` (spec 5-14), one resource each.

Each handler parses (pure), calls the registry, ingestor or store, and
returns the reply bytes; :func:`~pushd.web._render.async_handler` does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Tuple

from twisted.internet.threads import deferToThreadPool
from twisted.web.resource import Resource
from twisted.web.server import Request

from pushd.commands import CommandService
from pushd.config import handshake_options
from pushd.errors import DeviceNotAuthorized, ProtocolError, UnsupportedRequest
from pushd.files import FileArea
from pushd.ingest import Ingestor
from pushd.interfaces import IStore
from pushd.model import Device
from pushd.protocol.push3 import is_push3
from pushd.protocol.query import Params, parse_handshake, parse_info, parse_params
from pushd.protocol.replies import format_ok, format_options, format_remote_att
from pushd.protocol.text import codec_for
from pushd.registration import Registrar
from pushd.registry import DeviceRegistry
from pushd.sessions import CryptoSessions
from pushd.web._render import async_handler, quiet

__all__ = [
    "CData",
    "DeviceCmd",
    "DeviceServices",
    "Exchange",
    "FData",
    "FileDownload",
    "GetRequest",
    "Ping",
    "PushEndpoint",
    "QueryData",
    "RegistryEndpoint",
    "RtData",
]


def _client_ip(request: Request) -> str:
    address = request.getClientAddress()
    return str(getattr(address, "host", "") or "")


def _body(request: Request) -> bytes:
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    return content.read()


@dataclass(frozen=True)
class DeviceServices:
    """What the device endpoints work with."""

    registry: DeviceRegistry
    ingestor: Ingestor
    store: IStore
    commands: CommandService
    sessions: CryptoSessions
    registrar: Registrar


class _OneLineRefusals(Resource):
    """A leaf answering the methods it has no ``render_*`` for with a one-line 405."""

    isLeaf = True

    def render(self, request: Request) -> object:
        method = request.method.decode("ascii", "replace")
        if method == "HEAD":
            method = "GET"
        if getattr(self, "render_" + method, None) is None:
            allowed = sorted(
                n[7:] for n in dir(self) if n.startswith("render_") and n != "render_HEAD"
            )
            request.setResponseCode(405)
            request.setHeader(b"allow", ", ".join(allowed).encode("ascii"))
            request.setHeader(b"content-type", b"text/plain")
            return b"Method not allowed"
        return super().render(request)


class _DeviceResource(_OneLineRefusals):
    """What every device endpoint holds: the registry, the ingestor, the store."""

    def __init__(self, services: DeviceServices) -> None:
        super().__init__()
        self._registry = services.registry
        self._ingestor = services.ingestor
        self._store = services.store
        self._commands = services.commands
        self._sessions = services.sessions
        self._registrar = services.registrar

    async def _admitted(self, request: Request) -> Tuple[Params, Device]:
        """
        The request's parameters and its device, if the device may be served
        (approved, and with a matching token when it has sent one before).
        """
        params = parse_params(request.args)
        device = await self._registry.admit(params.sn, _client_ip(request))
        await self._registrar.check_token(device, request.getHeader(b"cookie"))
        return params, device


class CData(_DeviceResource):
    """``/iclock/cdata``: the handshake and RemoteAtt (GET), every upload (POST)."""

    def __init__(self, services: DeviceServices, options: Sequence[Tuple[str, str]]) -> None:
        super().__init__(services)
        self._options = tuple(options)

    @async_handler
    async def render_GET(self, request: Request) -> bytes:
        params = parse_params(request.args)
        if params.table.lower() == "remoteatt":
            device = await self._registry.admit(params.sn, _client_ip(request))
            pin = params.get("pin").strip()
            if not pin:
                raise ProtocolError("RemoteAtt without PIN")
            user = await self._store.get_user(pin)
            fingerprints = await self._store.fingerprints(pin) if user else []
            return format_remote_att(user, fingerprints, codec_for(device.language))
        if "options" not in params:
            raise ProtocolError("GET cdata needs options=all or table=RemoteAtt")
        handshake = parse_handshake(params)
        if is_push3(handshake.push_version, handshake.device_type):
            device = await self._registry.handshake(handshake, _client_ip(request), False)
            return await self._registrar.handshake(device)
        device = await self._registry.handshake(handshake, _client_ip(request))
        crypto = await self._sessions.handshake(device)
        options = handshake_options(
            self._options, device.stamps, device.settings, device.push_version, crypto
        )
        return format_options(device.sn, options)

    @async_handler
    async def render_POST(self, request: Request) -> bytes:
        params, device = await self._admitted(request)
        return await self._ingestor.upload(device, params, _body(request))


class FData(_DeviceResource):
    """``/iclock/fdata``: attendance photos (spec 11.3), ``table`` defaulting to ATTPHOTO."""

    @async_handler
    async def render_POST(self, request: Request) -> bytes:
        params, device = await self._admitted(request)
        if not params.table:
            params = Params({**params.items(), "table": "ATTPHOTO"})
        return await self._ingestor.upload(device, params, _body(request))


class GetRequest(_DeviceResource):
    """``/iclock/getrequest``: the poll (spec 9, 12), with INFO on the first one."""

    @async_handler
    async def render_GET(self, request: Request) -> bytes:
        params, device = await self._admitted(request)
        info = parse_info(params.get("info"))
        if info is not None:
            device = await self._registry.record_info(device, info)
        reply = await self._commands.deliver(device)
        if reply == format_ok():
            quiet(request)
        return reply


class DeviceCmd(_DeviceResource):
    """``/iclock/devicecmd``: command results (spec 13)."""

    @async_handler
    async def render_POST(self, request: Request) -> bytes:
        _, device = await self._admitted(request)
        return await self._commands.on_replies(device, _body(request))


class Ping(_DeviceResource):
    """``/iclock/ping``: the heartbeat (spec 10)."""

    @async_handler
    async def render_GET(self, request: Request) -> bytes:
        await self._admitted(request)
        quiet(request)
        return format_ok()

    render_POST = render_GET


class FileDownload(_OneLineRefusals):
    """
    ``/iclock/file/<path>`` and ``/iclock/file?SN=..&url=..``: firmware and
    PutFile packs from ``<data-dir>/files/`` (spec 12.5.2, 12.8.2).  A request
    that names its device must come from an approved one.
    """

    isLeaf = True
    content_type = b"application/octet-stream"

    def __init__(self, registry: DeviceRegistry, files: FileArea, reactor: Any) -> None:
        super().__init__()
        self._registry = registry
        self._files = files
        self._reactor = reactor

    @async_handler
    async def render_GET(self, request: Request) -> bytes:
        params = parse_params(request.args)
        if "sn" in params:
            await self._registry.admit(params.sn, _client_ip(request))
        url = params.get("url") or "/".join(
            segment.decode("utf-8", "replace") for segment in request.postpath or []
        )
        data = await deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self._files.read, url
        )
        if data is None:
            raise UnsupportedRequest("no such file")
        return data


class Exchange(_DeviceResource):
    """
    ``/iclock/exchange?type=publickey|factors`` (spec 6, 7): the key and
    factor exchange of the device's crypto transport.  The body is read raw
    (``PublicKey=<base64>``), never form-decoded.
    """

    content_type = b"application/push;charset=UTF-8"

    @async_handler
    async def render_POST(self, request: Request) -> bytes:
        params, device = await self._admitted(request)
        kind = params.get("type").strip()
        if not kind:
            raise ProtocolError("missing type parameter")
        return await self._sessions.exchange(device, kind, _body(request))


_PUSH = b"application/push;charset=UTF-8"


def _with_cookie(request: Request, cookie: Any) -> None:
    if cookie is not None:
        request.setHeader(b"set-cookie", cookie)


class RegistryEndpoint(_DeviceResource):
    """``POST /iclock/registry`` (3.x §2.2): capabilities stored; a RegistryCode or 406."""

    content_type = _PUSH

    @async_handler
    async def render_POST(self, request: Request) -> Tuple[int, bytes]:
        params = parse_params(request.args)
        device = await self._registry.contact(params.sn, _client_ip(request))
        if device.state == "blocked":
            raise DeviceNotAuthorized()
        status, body, cookie = await self._registrar.register(device, _body(request))
        _with_cookie(request, cookie)
        return status, body


class PushEndpoint(_DeviceResource):
    """``GET|POST /iclock/push`` (3.x §2.3): the configuration with a new SessionID."""

    content_type = _PUSH

    @async_handler
    async def render_GET(self, request: Request) -> Tuple[int, bytes]:
        _, device = await self._admitted(request)
        status, body, cookie = await self._registrar.push(device)
        _with_cookie(request, cookie)
        return status, body

    render_POST = render_GET


class RtData(_DeviceResource):
    """``GET /iclock/rtdata?type=time`` (3.x §5.2): the server time, encoded."""

    content_type = _PUSH

    @async_handler
    async def render_GET(self, request: Request) -> bytes:
        params, device = await self._admitted(request)
        return self._registrar.rtdata(device, params.get("type"))


class QueryData(_DeviceResource):
    """``POST /iclock/querydata`` (3.x §4.8): results of DATA QUERY/COUNT, GET OPTIONS."""

    content_type = _PUSH

    @async_handler
    async def render_POST(self, request: Request) -> bytes:
        params, device = await self._admitted(request)
        return await self._ingestor.querydata(device, params, _body(request))
