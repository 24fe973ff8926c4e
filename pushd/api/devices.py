# -*- test-case-name: tests.test_api -*-
"""
``/api/devices``: what the server knows of each terminal, and the operator's
decisions (approval, settings, alias, group, the communication key).

Device state is changed through the :class:`~pushd.registry.DeviceRegistry`
only: it caches devices, so a write behind its back would go unseen.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional

from twisted.web.resource import Resource
from twisted.web.server import Request

from pushd.api._context import Context
from pushd.api._errors import BadRequest
from pushd.api._params import Args, parse_limit
from pushd.api._resource import ApiResource, Reply, api_handler, read_json
from pushd.model import DEVICE_STATES, Device, DeviceUpdate

__all__ = ["Approve", "DeviceCommands", "DeviceResource", "Devices", "device_json", "parse_update"]

#: ``counts`` of a device: API name -> record kind.
COUNTS = (
    ("users", "users"),
    ("fingerprints", "fingerprints"),
    ("faces", "faces"),
    ("veins", "veins"),
    ("biodata", "biodata"),
    ("userphotos", "userphotos"),
    ("biophotos", "biophotos"),
    ("attlogs", "attendance"),
    ("attphotos", "attphotos"),
    ("operations", "operations"),
    ("errors", "errors"),
)

#: How many polling intervals a device may miss and still count as online.
ONLINE_DELAYS = 3

_DEFAULT_DELAY = 10
_SETTING_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_~.]*\Z")
_TEXT_FIELDS = ("alias", "group", "pushcommkey")


def _seconds(stamp: str) -> Optional[float]:
    try:
        moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc).timestamp()


def _delay(value: str) -> int:
    try:
        delay = int(value.strip())
    except ValueError:
        return _DEFAULT_DELAY
    return delay if delay > 0 else _DEFAULT_DELAY


def device_json(
    device: Device, counts: Mapping[str, int], now: float, delay: str
) -> Dict[str, Any]:
    """
    The device object of the API.

    :param now: the current time, in seconds since the epoch.
    :param delay: the device's polling interval (``Delay``) in seconds.
    """
    seen = _seconds(device.last_seen)
    online = seen is not None and now - seen <= ONLINE_DELAYS * _delay(delay)
    return {
        "sn": device.sn,
        "state": device.state,
        "online": online,
        "last_seen": device.last_seen or None,
        "first_seen": device.first_seen or None,
        "ip": device.ip,
        "alias": device.alias,
        "group": device.group,
        "firmware": device.firmware,
        "push_version": device.push_version,
        "language": device.language,
        "device_type": device.device_type,
        "pushcommkey_set": bool(device.pushcommkey),
        "crypto": device.crypto,
        "counts": dict(counts),
        "options": dict(device.options),
        "settings": dict(device.settings),
        "info": {k: v for k, v in device.info.items() if k.lower() != "pushcommkey"},
        "hybrid": dict(device.hybrid),
        "stamps": dict(device.stamps),
    }


def parse_update(body: Mapping[str, Any]) -> DeviceUpdate:
    """
    The body of ``PATCH /api/devices/{sn}`` as a :class:`DeviceUpdate`.

    ``settings`` are merged into the stored ones; their values are strings
    or numbers, sent to the device as ``Name=value`` lines.

    :raises BadRequest: an unknown field or an invalid value.
    """
    unknown = sorted(set(body) - {"state", "settings", "crypto", *_TEXT_FIELDS})
    if unknown:
        raise BadRequest(f"unknown field: {unknown[0]}")
    changes: Dict[str, Any] = {}
    if "state" in body:
        state = body["state"]
        if state not in DEVICE_STATES:
            raise BadRequest(f"state must be one of {', '.join(DEVICE_STATES)}")
        changes["state"] = state
    for name in _TEXT_FIELDS:
        if name in body:
            value = body[name]
            if not isinstance(value, str) or "\n" in value or "\r" in value:
                raise BadRequest(f"{name} must be a one-line string")
            changes[name] = value
    if "settings" in body:
        changes["settings"] = _settings(body["settings"])
    if "crypto" in body:
        if not isinstance(body["crypto"], str) or not body["crypto"]:
            raise BadRequest("crypto must be the name of a crypto transport")
        changes["crypto"] = body["crypto"]
    return DeviceUpdate(**changes)


def _settings(value: Any) -> Dict[str, str]:
    if not isinstance(value, dict):
        raise BadRequest('settings must be an object: {"Delay": 10, ...}')
    settings: Dict[str, str] = {}
    for name, setting in value.items():
        if not _SETTING_NAME.match(name):
            raise BadRequest(f"invalid setting name: {name!r}")
        if isinstance(setting, bool) or not isinstance(setting, (str, int, float)):
            raise BadRequest(f"setting {name} must be a string or a number")
        text = str(setting)
        if "\n" in text or "\r" in text:
            raise BadRequest(f"setting {name} must be one line")
        settings[name] = text
    return settings


class _DeviceViews:
    """Formatting devices with their counts and liveness."""

    def __init__(self, context: Context) -> None:
        self._context = context

    async def view(self, device: Device) -> Dict[str, Any]:
        store = self._context.store
        counts = {name: await store.count(kind, device.sn) for name, kind in COUNTS}
        return device_json(
            device,
            counts,
            self._context.clock.seconds(),
            self._context.option(device, "Delay"),
        )


class Devices(ApiResource):
    """``GET /api/devices[?state=&limit=&cursor=]``: every device, by serial number."""

    isLeaf = False

    def __init__(self, context: Context) -> None:
        super().__init__()
        self._context = context
        self._views = _DeviceViews(context)

    def child(self, name: str) -> Optional[Resource]:
        return DeviceResource(self._context, name)

    @api_handler
    async def render_GET(self, request: Request) -> Any:
        args = Args(request.args)
        limit = parse_limit(args.get("limit")) or 100
        state = args.get("state")
        if state is not None and state not in DEVICE_STATES:
            raise BadRequest(f"state must be one of {', '.join(DEVICE_STATES)}")
        cursor = args.get("cursor")
        stored: List[Device] = await self._context.store.list_devices()
        devices = [self._context.registry.cached(d.sn) or d for d in stored]
        chosen = [
            d
            for d in devices
            if (state is None or d.state == state) and (cursor is None or d.sn > cursor)
        ]
        page = chosen[:limit]
        items = [await self._views.view(d) for d in page]
        more = len(chosen) > limit
        return {"items": items, "next": page[-1].sn if more else None}


class DeviceResource(ApiResource):
    """``GET`` / ``PATCH /api/devices/{sn}``."""

    isLeaf = False

    def __init__(self, context: Context, sn: str) -> None:
        super().__init__()
        self._context = context
        self._sn = sn
        self._views = _DeviceViews(context)

    def child(self, name: str) -> Optional[Resource]:
        if name == "approve":
            return Approve(self._context, self._sn)
        if name == "commands":
            return DeviceCommands(self._context, self._sn)
        return None

    @api_handler
    async def render_GET(self, request: Request) -> Any:
        return await self._views.view(await self._context.device(self._sn))

    @api_handler
    async def render_PATCH(self, request: Request) -> Any:
        await self._context.device(self._sn)
        update = parse_update(read_json(request))
        sessions = self._context.app.sessions
        if update.crypto is not None and update.crypto not in sessions.names():
            names = ", ".join(sessions.names())
            raise BadRequest(f"no crypto transport {update.crypto!r} (installed: {names})")
        device = await self._context.registry.update(self._sn, update)
        if update.crypto is not None:
            await sessions.reset(self._sn)  # a new transport starts from a new exchange
        return await self._views.view(device)


class Approve(ApiResource):
    """``POST /api/devices/{sn}/approve``: the device may talk to us from now on."""

    def __init__(self, context: Context, sn: str) -> None:
        super().__init__()
        self._context = context
        self._sn = sn
        self._views = _DeviceViews(context)

    @api_handler
    async def render_POST(self, request: Request) -> Any:
        await self._context.device(self._sn)
        device = await self._context.registry.set_state(self._sn, "approved")
        return await self._views.view(device)


class DeviceCommands(ApiResource):
    """``POST /api/devices/{sn}/commands``: queue a command (201 and the command object)."""

    def __init__(self, context: Context, sn: str) -> None:
        super().__init__()
        self._context = context
        self._sn = sn

    @api_handler
    async def render_POST(self, request: Request) -> Any:
        await self._context.device(self._sn)
        body = read_json(request)
        commands = self._context.commands
        command = await commands.submit(self._sn, body)
        location = f"/api/commands/{command.id}".encode()
        return Reply(commands.command_json(command), 201, headers={b"location": location})
